//! `/graphql`, for the queries the MLflow web UI sends: `mlflowGetExperiment`, `mlflowGetRun` (with its
//! experiment and model versions), `mlflowSearchRuns`, `mlflowListArtifacts`, `mlflowSearchModelVersions` and
//! `test`. Each resolves through the same store calls as the REST routes and is answered as MLflow's Graphene
//! schema answers: `__typename` where asked, 64-bit integers as strings, NaN metrics as null, errors as a list
//! of messages beside `data`. MLflow's limits hold (depth 10, 10 root fields, 10 aliases per level, 1,000
//! selections), checked before anything runs (its unbounded batching was a denial-of-service CVE).

mod parse;
mod project;

pub(crate) use project::snake_case;

use crate::AppState;
use crate::access::visibility::Viewer;
use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use loopline_metadata_store::Owned;
use loopline_metadata_store::{PageRequest, RegistrySearch, RunSearch, ViewType};
use parse::{Field, Operation};
use serde_json::{Map, Value, json};

const MAX_DEPTH: usize = 10;
const MAX_ROOT_FIELDS: usize = 10;
const MAX_ALIASES: usize = 10;
const MAX_SELECTIONS: usize = 1_000;

/// MLflow's limits on a parsed operation.
fn check_limits(operation: &Operation) -> Result<(), String> {
    let mut selections = 0;
    let mut stack: Vec<(&[Field], usize)> = vec![(&operation.selections, 1)];
    while let Some((fields, depth)) = stack.pop() {
        if depth > MAX_DEPTH {
            return Err(format!("Query exceeds maximum depth of {MAX_DEPTH}"));
        }
        let aliases = fields.iter().filter(|field| field.alias.is_some()).count();
        if aliases > MAX_ALIASES {
            return Err(format!(
                "GraphQL queries should have at most {MAX_ALIASES} aliases, got {aliases} aliases."
            ));
        }
        for field in fields {
            selections += 1;
            if selections > MAX_SELECTIONS {
                return Err(format!("Query exceeds maximum total selections of {MAX_SELECTIONS}"));
            }
            if !field.selections.is_empty() {
                stack.push((&field.selections, depth + 1));
            }
        }
    }
    let roots = operation.selections.len();
    if roots > MAX_ROOT_FIELDS {
        return Err(format!(
            "GraphQL queries should have at most {MAX_ROOT_FIELDS} root fields, got {roots} root fields."
        ));
    }
    Ok(())
}

fn answer(data: Value, errors: Vec<String>) -> Json<Value> {
    let errors = if errors.is_empty() { Value::Null } else { json!(errors) };
    Json(json!({"data": data, "errors": errors}))
}

/// What a GraphQL request asks.
struct GraphqlRequest {
    query: String,
    variables: Map<String, Value>,
    operation_name: Option<String>,
}

/// The request: a JSON body (POST) or query parameters (GET) with `query`, `variables`, `operationName`.
fn request_parts(headers: &HeaderMap, uri: &axum::http::Uri, body: &[u8]) -> Result<GraphqlRequest, String> {
    let object: Map<String, Value> = if body.is_empty() {
        form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
            .map(|(key, value)| {
                let value = if key == "variables" {
                    serde_json::from_str(&value).unwrap_or(Value::Null)
                } else {
                    Value::String(value.into_owned())
                };
                (key.into_owned(), value)
            })
            .collect()
    } else {
        let is_json = loopline_core::media_type::is_json_media_type(
            headers.get("content-type").and_then(|value| value.to_str().ok()),
        );
        if !is_json {
            return Err("a GraphQL request is JSON: send Content-Type: application/json".to_string());
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(object)) => object,
            Ok(_) => return Err("a GraphQL request is a JSON object with a query".to_string()),
            Err(error) => return Err(format!("the request is not JSON: {error}")),
        }
    };
    let query = object
        .get("query")
        .and_then(Value::as_str)
        .ok_or("the request has no query")?
        .to_string();
    let variables = match object.get("variables") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(variables)) => variables.clone(),
        Some(_) => return Err("variables must be a JSON object".to_string()),
    };
    let operation_name = object.get("operationName").and_then(Value::as_str).map(str::to_string);
    Ok(GraphqlRequest {
        query,
        variables,
        operation_name,
    })
}

/// `POST|GET /graphql`.
pub async fn handle(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: axum::body::Body,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    // A body declared past the limit is refused at once, before anything is read or waited for.
    let body = match crate::extract::read_body_limited(body, MAX_REQUEST_BYTES).await {
        Ok(body) => body,
        Err(error) => return error.into_response(),
    };
    execute(&state, &viewer, &headers, &uri, &body).await.into_response()
}

/// The largest GraphQL request body (its query is bounded far below this).
const MAX_REQUEST_BYTES: usize = 1024 * 1024;

async fn execute(
    state: &AppState,
    viewer: &Viewer,
    headers: &HeaderMap,
    uri: &axum::http::Uri,
    body: &[u8],
) -> Json<Value> {
    let GraphqlRequest {
        query,
        variables,
        operation_name,
    } = match request_parts(headers, uri, body) {
        Ok(request) => request,
        Err(message) => return answer(Value::Null, vec![message]),
    };
    let operations = match parse::parse(&query) {
        Ok(operations) => operations,
        Err(message) => return answer(Value::Null, vec![format!("Syntax Error: {message}")]),
    };
    let operation = match &operation_name {
        Some(name) => operations
            .iter()
            .find(|operation| operation.name.as_deref() == Some(name)),
        None if operations.len() == 1 => operations.first(),
        None => None,
    };
    let Some(operation) = operation else {
        return answer(
            Value::Null,
            vec!["Must provide the name of an operation the document defines (operationName).".to_string()],
        );
    };
    if let Err(message) = check_limits(operation) {
        return answer(Value::Null, vec![message]);
    }
    let mut data = Map::new();
    let mut errors = Vec::new();
    for field in &operation.selections {
        match resolve_root(state, viewer, &operation.kind, field, &variables).await {
            Ok((value, type_name)) => {
                data.insert(
                    field.key().to_string(),
                    project::project(&value, &field.selections, type_name),
                );
            }
            Err(message) => {
                errors.push(message);
                data.insert(field.key().to_string(), Value::Null);
            }
        }
    }
    answer(Value::Object(data), errors)
}

/// The `input` argument of a root field.
fn input(field: &Field, variables: &Map<String, Value>) -> Map<String, Value> {
    field
        .arguments
        .iter()
        .find(|(name, _)| name == "input")
        .map(|(_, value)| value.resolve(variables))
        .and_then(|value| value.as_object().cloned())
        .unwrap_or_default()
}

fn text(input: &Map<String, Value>, key: &str) -> Option<String> {
    input.get(key).and_then(Value::as_str).map(str::to_string)
}

fn strings(input: &Map<String, Value>, key: &str) -> Vec<String> {
    input
        .get(key)
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

fn number(input: &Map<String, Value>, key: &str) -> Option<u64> {
    match input.get(key) {
        Some(Value::Number(number)) => number.as_u64(),
        Some(Value::String(text)) => text.parse().ok(),
        _ => None,
    }
}

/// MLflow's `apiError` for a failed call.
fn api_error(error: impl Into<crate::error::ApiError>) -> Value {
    let error: crate::error::ApiError = error.into();
    json!({"code": error.code.as_str(), "message": error.message, "help_url": Value::Null})
}

/// MLflow's `apiError` for a caller who may not read what was asked.
fn denied() -> Value {
    api_error(crate::error::ApiError::new(
        loopline_core::ErrorCode::PermissionDenied,
        "Permission denied.",
    ))
}

/// True when every run's experiment is readable (a run that does not exist is left to the query to report).
async fn runs_readable(state: &AppState, viewer: &Viewer, run_ids: &[String]) -> Result<bool, Value> {
    if viewer.sees_all("experiment") {
        return Ok(true);
    }
    for run_id in run_ids {
        let owner = state
            .tracking
            .store()
            .owner_of(Owned::Run, run_id)
            .await
            .map_err(api_error)?;
        if owner.is_some_and(|experiment| !viewer.may_read("experiment", &experiment)) {
            return Ok(false);
        }
    }
    Ok(true)
}

async fn resolve_root(
    state: &AppState,
    viewer: &Viewer,
    kind: &str,
    field: &Field,
    variables: &Map<String, Value>,
) -> Result<(Value, &'static str), String> {
    let input = input(field, variables);
    let store = state.tracking.store();
    Ok(match (kind, field.name.as_str()) {
        (_, "__typename") => (
            json!(if kind == "mutation" {
                "MutationType"
            } else {
                "QueryType"
            }),
            "",
        ),
        ("query", "test") => {
            let given = field
                .arguments
                .iter()
                .find(|(name, _)| name == "inputString")
                .map(|(_, value)| value.resolve(variables))
                .unwrap_or(Value::Null);
            (json!({"output": given}), "Test")
        }
        ("query", "mlflowGetExperiment") => {
            let id = text(&input, "experimentId").unwrap_or_default();
            let value = match store.get_experiment(&id).await {
                Ok(_) if !viewer.may_read("experiment", &id) => json!({"api_error": denied()}),
                Ok(experiment) => json!({"experiment": crate::mlflow::to_json(&experiment)}),
                Err(error) => json!({"api_error": api_error(error)}),
            };
            (value, "MlflowGetExperimentResponse")
        }
        ("query", "mlflowGetRun") => {
            let id = text(&input, "runId").unwrap_or_default();
            let value = match store.get_run(&id).await {
                Ok(run) if !viewer.may_read("experiment", &run.info.experiment_id) => json!({"api_error": denied()}),
                Ok(run) => {
                    let mut run_json = crate::mlflow::to_json(&run);
                    if field_wants(field, &["run", "experiment"])
                        && let Ok(experiment) = store.get_experiment(&run.info.experiment_id).await
                    {
                        run_json["experiment"] = crate::mlflow::to_json(&experiment);
                    }
                    if field_wants(field, &["run", "modelVersions"]) {
                        let search = RegistrySearch {
                            filter: Some(format!("run_id = '{}'", id.replace('\'', ""))),
                            order_by: Vec::new(),
                            page: PageRequest {
                                max_results: 1_000,
                                page_token: None,
                            },
                        };
                        if let Ok(page) = store.search_model_versions(&search).await {
                            let readable: Vec<_> = page
                                .items
                                .iter()
                                .filter(|version| viewer.may_read("registered_model", &version.name))
                                .collect();
                            run_json["model_versions"] = crate::mlflow::to_json(&readable);
                        }
                    }
                    json!({"run": run_json})
                }
                Err(error) => json!({"api_error": api_error(error)}),
            };
            (value, "MlflowGetRunResponse")
        }
        (_, "mlflowSearchRuns") => {
            let asked = strings(&input, "experimentIds");
            let experiment_ids = viewer.narrow("experiment", asked.clone());
            if !asked.is_empty() && experiment_ids.is_empty() {
                return Ok((json!({"runs": [], "next_page_token": null}), "MlflowSearchRunsResponse"));
            }
            let search = RunSearch {
                experiment_ids,
                filter: text(&input, "filter"),
                order_by: strings(&input, "orderBy"),
                view_type: match text(&input, "runViewType").as_deref() {
                    Some("DELETED_ONLY") => ViewType::DeletedOnly,
                    Some("ALL") => ViewType::All,
                    _ => ViewType::ActiveOnly,
                },
                page: PageRequest {
                    max_results: number(&input, "maxResults").unwrap_or(1_000),
                    page_token: text(&input, "pageToken"),
                },
            };
            let value = match store.search_runs(&search).await {
                Ok(page) => {
                    json!({"runs": crate::mlflow::to_json(&page.items), "next_page_token": page.next_page_token})
                }
                Err(error) => json!({"api_error": api_error(error)}),
            };
            (value, "MlflowSearchRunsResponse")
        }
        ("query", "mlflowSearchModelVersions") => {
            let search = RegistrySearch {
                filter: text(&input, "filter"),
                order_by: strings(&input, "orderBy"),
                page: PageRequest::default(),
            };
            let wanted = PageRequest {
                max_results: number(&input, "maxResults").unwrap_or(200),
                page_token: text(&input, "pageToken"),
            };
            let found = viewer
                .page(
                    "registered_model",
                    |version: &loopline_metadata_store::ModelVersion| version.name.clone(),
                    wanted,
                    |page| {
                        let search = RegistrySearch { page, ..search.clone() };
                        let store = store.clone();
                        async move { Ok(store.search_model_versions(&search).await?) }
                    },
                )
                .await;
            let value = match found {
                Ok(page) => {
                    json!({"model_versions": crate::mlflow::to_json(&page.items), "next_page_token": page.next_page_token})
                }
                Err(error) => json!({"api_error": api_error(error)}),
            };
            (value, "MlflowSearchModelVersionsResponse")
        }
        ("query", "mlflowGetMetricHistoryBulkInterval") => {
            let run_ids = strings(&input, "runIds");
            let key = text(&input, "metricKey").unwrap_or_default();
            let max_results = number(&input, "maxResults").unwrap_or(2_500).clamp(1, 2_500) as usize;
            let range = match (
                input.get("startStep").and_then(Value::as_i64),
                input.get("endStep").and_then(Value::as_i64),
            ) {
                (Some(start), Some(end)) if start <= end => Some((start, end)),
                _ => None,
            };
            let value = if run_ids.is_empty() || run_ids.len() > 100 || key.is_empty() {
                json!({"api_error": api_error(crate::error::ApiError::invalid(
                    "mlflowGetMetricHistoryBulkInterval needs 1 to 100 runIds and a metricKey",
                ))})
            } else if !runs_readable(state, viewer, &run_ids).await.unwrap_or(false) {
                json!({"api_error": denied()})
            } else {
                match store.metric_history_sampled(&run_ids, &key, max_results, range).await {
                    Ok(points) => json!({"metrics": crate::mlflow::to_json(&points)}),
                    Err(error) => json!({"api_error": api_error(error)}),
                }
            };
            (value, "MlflowGetMetricHistoryBulkIntervalResponse")
        }
        (_, "mlflowSearchDatasets") => {
            let experiment_ids = strings(&input, "experimentIds");
            let value = if experiment_ids.is_empty() || experiment_ids.len() > 20 {
                json!({"api_error": api_error(crate::error::ApiError::invalid(
                    "SearchDatasets request must specify 1 to 20 experiment_ids.",
                ))})
            } else if experiment_ids.iter().any(|id| !viewer.may_read("experiment", id)) {
                json!({"api_error": denied()})
            } else {
                match store.dataset_summaries(&experiment_ids, 1_000).await {
                    Ok(summaries) => json!({"dataset_summaries": summaries
                        .into_iter()
                        .map(|summary| json!({
                            "experiment_id": summary.experiment_id,
                            "name": summary.name,
                            "digest": summary.digest,
                            "context": summary.context.unwrap_or_default(),
                        }))
                        .collect::<Vec<_>>()}),
                    Err(error) => json!({"api_error": api_error(error)}),
                }
            };
            (value, "MlflowSearchDatasetsResponse")
        }
        ("query", "mlflowListArtifacts") => {
            let run_id = text(&input, "runId").or_else(|| text(&input, "runUuid"));
            let path = text(&input, "path");
            let readable = match &run_id {
                Some(run_id) => runs_readable(state, viewer, std::slice::from_ref(run_id))
                    .await
                    .unwrap_or(false),
                None => true,
            };
            if !readable {
                return Ok((json!({"api_error": denied()}), "MlflowListArtifactsResponse"));
            }
            let value = match crate::mlflow::list_run_artifacts(state, run_id.as_ref(), path.as_deref()).await {
                Ok(listing) => listing,
                Err(error) => json!({"api_error": api_error(error)}),
            };
            (value, "MlflowListArtifactsResponse")
        }
        (kind, other) => {
            return Err(format!(
                "Cannot query field '{other}' on type '{}': this server answers mlflowGetExperiment, mlflowGetRun, \
                 mlflowSearchRuns, mlflowSearchModelVersions, mlflowListArtifacts, \
                 mlflowGetMetricHistoryBulkInterval, mlflowSearchDatasets and test.",
                if kind == "mutation" {
                    "MutationType"
                } else {
                    "QueryType"
                }
            ));
        }
    })
}

/// Whether a selection asks for the field at `path` below it.
fn field_wants(field: &Field, path: &[&str]) -> bool {
    let mut fields = &field.selections;
    for step in path {
        match fields.iter().find(|selection| selection.name == *step) {
            Some(found) => fields = &found.selections,
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mlflows_limits_are_kept() {
        let deep = format!(
            "query q {{ mlflowGetExperiment(input: {{experimentId: \"1\"}}) {{ experiment {{ {}name{} }} }} }}",
            "name { ".repeat(12),
            " }".repeat(12)
        );
        let operation = &parse::parse(&deep).unwrap()[0];
        assert_eq!(
            check_limits(operation).unwrap_err(),
            "Query exceeds maximum depth of 10"
        );
        let roots: String = (0..12)
            .map(|i| format!("k{i}: test(inputString: \"a\") {{ output }} "))
            .collect();
        let operation = &parse::parse(&format!("query q {{ {roots} }}")).unwrap()[0];
        assert!(check_limits(operation).unwrap_err().contains("at most 10"));
        let wide: String = (0..1_002).map(|i| format!("f{i} ")).collect();
        let operation = &parse::parse(&format!("{{ test {{ {wide} }} }}")).unwrap()[0];
        assert!(check_limits(operation).unwrap_err().contains("total selections"));
    }
}
