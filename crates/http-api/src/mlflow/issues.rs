//! MLflow 3's issues (`/api/3.0/mlflow/issues...`): problems found in traces, each with a status and a
//! severity; traces point at an issue through assessments of kind "issue" named by its id.

use super::{JsonResult, required};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{MlflowMessage, lenient_bool, one_or_many};
use axum::Json;
use axum::extract::{Path, State};
use loopline_core::proto_json::deserialize_optional_int64;
use loopline_metadata_store::{Issue, IssueChange, IssueSearch, PageRequest};
use serde::Deserialize;
use serde_json::{Map, Value};

const STATUSES: [&str; 3] = ["pending", "rejected", "resolved"];
const SEVERITIES: [&str; 4] = ["not_an_issue", "low", "medium", "high"];
/// Bounds on what one issue holds.
const MAX_NAME_CHARS: usize = 1_000;
const MAX_DESCRIPTION_BYTES: usize = 64 * 1024;
const MAX_LIST_ITEMS: usize = 100;
const MAX_ITEM_BYTES: usize = 8 * 1024;

fn checked_choice(value: Option<&str>, field: &str, allowed: &[&str]) -> ApiResult<Option<String>> {
    match value.filter(|value| !value.is_empty()) {
        None => Ok(None),
        Some(value) if allowed.contains(&value) => Ok(Some(value.to_string())),
        Some(value) => Err(ApiError::invalid(format!(
            "Invalid value '{value}' for parameter '{field}' supplied: use one of {}",
            allowed.join(", ")
        ))),
    }
}

fn checked_text(value: Option<&str>, field: &str, max_bytes: usize) -> ApiResult<Option<String>> {
    match value.filter(|value| !value.is_empty()) {
        Some(value) if value.len() > max_bytes => Err(ApiError::invalid(format!(
            "'{field}' is {} bytes long, more than the {max_bytes} accepted",
            value.len()
        ))),
        other => Ok(other.map(str::to_string)),
    }
}

fn checked_list(items: Vec<String>, field: &str) -> ApiResult<Vec<String>> {
    if items.len() > MAX_LIST_ITEMS || items.iter().any(|item| item.len() > MAX_ITEM_BYTES) {
        return Err(ApiError::invalid(format!(
            "'{field}' may hold at most {MAX_LIST_ITEMS} entries of at most {MAX_ITEM_BYTES} bytes each"
        )));
    }
    Ok(items)
}

/// An issue as MLflow writes it: empty and unset fields left out.
fn issue_json(issue: &Issue) -> Value {
    let mut object = Map::new();
    let mut put = |key: &str, value: Value| {
        object.insert(key.to_string(), value);
    };
    put("issue_id", issue.issue_id.clone().into());
    put("experiment_id", issue.experiment_id.clone().into());
    put("name", issue.name.clone().into());
    put("description", issue.description.clone().into());
    put("status", issue.status.clone().into());
    if let Some(severity) = &issue.severity {
        put("severity", severity.clone().into());
    }
    if !issue.root_causes.is_empty() {
        put("root_causes", issue.root_causes.clone().into());
    }
    if let Some(run_id) = &issue.source_run_id {
        put("source_run_id", run_id.clone().into());
    }
    put("created_timestamp", issue.created_timestamp.into());
    put("last_updated_timestamp", issue.last_updated_timestamp.into());
    if let Some(created_by) = &issue.created_by {
        put("created_by", created_by.clone().into());
    }
    if !issue.categories.is_empty() {
        put("categories", issue.categories.clone().into());
    }
    if let Some(count) = issue.trace_count {
        put("trace_count", count.into());
    }
    Value::Object(object)
}

#[derive(Deserialize)]
pub(super) struct CreateRequest {
    experiment_id: Option<String>,
    name: Option<String>,
    description: Option<String>,
    status: Option<String>,
    severity: Option<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    root_causes: Vec<String>,
    source_run_id: Option<String>,
    created_by: Option<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    categories: Vec<String>,
}

pub(super) async fn create(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<CreateRequest>,
) -> JsonResult {
    let experiment_id = required(&request.experiment_id, "experiment_id")?;
    let name = required(&request.name, "name")?;
    let description = required(&request.description, "description")?;
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::invalid(format!(
            "'name' is longer than {MAX_NAME_CHARS} characters"
        )));
    }
    let now = loopline_core::time::now_millis();
    let issue = Issue {
        issue_id: format!("iss-{}", loopline_core::ids::new_run_id()),
        experiment_id: experiment_id.to_string(),
        name: name.to_string(),
        description: checked_text(Some(description), "description", MAX_DESCRIPTION_BYTES)?.unwrap_or_default(),
        status: checked_choice(request.status.as_deref(), "status", &STATUSES)?.unwrap_or_else(|| "pending".into()),
        severity: checked_choice(request.severity.as_deref(), "severity", &SEVERITIES)?,
        root_causes: checked_list(request.root_causes, "root_causes")?,
        source_run_id: checked_text(request.source_run_id.as_deref(), "source_run_id", 256)?,
        categories: checked_list(request.categories, "categories")?,
        created_by: checked_text(request.created_by.as_deref(), "created_by", 1_024)?,
        created_timestamp: now,
        last_updated_timestamp: now,
        trace_count: None,
    };
    state.tracking.store().create_issue(&issue).await?;
    Ok(Json(serde_json::json!({"issue": issue_json(&issue)})))
}

pub(super) async fn get(State(state): State<AppState>, Path(issue_id): Path<String>) -> JsonResult {
    let issue = state.tracking.store().get_issue(&issue_id).await?;
    Ok(Json(serde_json::json!({"issue": issue_json(&issue)})))
}

#[derive(Deserialize)]
pub(super) struct UpdateRequest {
    name: Option<String>,
    description: Option<String>,
    status: Option<String>,
    severity: Option<String>,
}

pub(super) async fn update(
    State(state): State<AppState>,
    Path(issue_id): Path<String>,
    MlflowMessage(request): MlflowMessage<UpdateRequest>,
) -> JsonResult {
    let name = checked_text(request.name.as_deref(), "name", MAX_NAME_CHARS * 4)?;
    if name.as_ref().is_some_and(|name| name.chars().count() > MAX_NAME_CHARS) {
        return Err(ApiError::invalid(format!(
            "'name' is longer than {MAX_NAME_CHARS} characters"
        )));
    }
    let change = IssueChange {
        name,
        description: checked_text(request.description.as_deref(), "description", MAX_DESCRIPTION_BYTES)?,
        status: checked_choice(request.status.as_deref(), "status", &STATUSES)?,
        severity: checked_choice(request.severity.as_deref(), "severity", &SEVERITIES)?,
    };
    let issue = state.tracking.store().update_issue(&issue_id, &change).await?;
    Ok(Json(serde_json::json!({"issue": issue_json(&issue)})))
}

#[derive(Deserialize)]
pub(super) struct SearchRequest {
    experiment_id: Option<String>,
    filter_string: Option<String>,
    #[serde(default, deserialize_with = "deserialize_optional_int64")]
    max_results: Option<i64>,
    page_token: Option<String>,
    #[serde(default, deserialize_with = "lenient_bool")]
    include_trace_count: Option<bool>,
}

pub(super) async fn search(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<SearchRequest>,
) -> JsonResult {
    let max_results = match request.max_results {
        None => 100,
        Some(value) if (1..=50_000).contains(&value) => value as u64,
        Some(value) => {
            return Err(ApiError::invalid(format!(
                "Invalid value {value} for parameter 'max_results' supplied: it must be between 1 and 50000"
            )));
        }
    };
    let page = state
        .tracking
        .store()
        .search_issues(&IssueSearch {
            experiment_id: request.experiment_id.filter(|id| !id.is_empty()),
            filter: request.filter_string.filter(|filter| !filter.is_empty()),
            include_trace_count: request.include_trace_count.unwrap_or(false),
            page: PageRequest {
                max_results,
                page_token: request.page_token.filter(|token| !token.is_empty()),
            },
        })
        .await?;
    let issues: Vec<Value> = page.items.iter().map(issue_json).collect();
    let mut object = Map::new();
    object.insert("issues".into(), Value::Array(issues));
    // Always present, empty on the last page, as MLflow answers it.
    object.insert(
        "next_page_token".into(),
        Value::String(page.next_page_token.unwrap_or_default()),
    );
    Ok(Json(Value::Object(object)))
}
