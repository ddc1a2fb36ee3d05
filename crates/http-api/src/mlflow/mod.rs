//! MLflow's REST API (2.0 and 3.0) and its artifact proxy.

mod artifacts;
mod assessment_shape;
mod assessments;
mod eval_datasets;
mod experiments;
mod issues;
mod logged_models;
mod meta;
mod metric_charts;
mod model_versions;
mod promptlab;
mod registered_models;
mod registry_events;
mod runs;
mod scorer_endpoints;
mod scorers;
mod trace_artifacts;
mod trace_metrics;
mod traces;
mod traces_v2;
mod ui_artifacts;

pub(crate) use ui_artifacts::list_run_artifacts;
mod webhooks;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use axum::Json;
use axum::Router;
use axum::http::{StatusCode, Uri};
use axum::routing::{delete, get, patch, post, put};
use loopline_core::ErrorCode;
use serde::Serialize;
use serde_json::{Map, Value};

/// JSON response of a handler.
pub(crate) type JsonResult = ApiResult<Json<Value>>;

/// `{}`: MLflow's void response.
pub(crate) fn empty_object() -> JsonResult {
    Ok(Json(Value::Object(Map::new())))
}

/// Serialises an entity.
pub(crate) fn to_json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("entities serialise to JSON: this is a bug")
}

/// `{field: items, next_page_token: token}` with empty parts omitted, as proto3 JSON does.
pub(crate) fn page_response<T: Serialize>(field: &str, items: &[T], next_page_token: Option<String>) -> JsonResult {
    let mut object = Map::new();
    if !items.is_empty() {
        object.insert(field.to_string(), to_json(&items));
    }
    if let Some(token) = next_page_token {
        object.insert("next_page_token".to_string(), Value::String(token));
    }
    Ok(Json(Value::Object(object)))
}

/// `{key: value}`.
pub(crate) fn single<T: Serialize>(key: &str, value: &T) -> JsonResult {
    let mut object = Map::new();
    object.insert(key.to_string(), to_json(value));
    Ok(Json(Value::Object(object)))
}

/// A required string field, or the 400 that names it.
pub(crate) fn required<'a>(value: &'a Option<String>, field: &str) -> ApiResult<&'a str> {
    Ok(loopline_tracking::validation::required(value.as_deref(), field)?)
}

/// A page size from the request, or the endpoint's default; negative values are a 400.
pub(crate) fn page_size(max_results: Option<i64>, default: i64) -> ApiResult<u64> {
    u64::try_from(max_results.unwrap_or(default))
        .map_err(|_| ApiError::invalid("Invalid value for parameter 'max_results': it must not be negative"))
}

async fn unknown_endpoint(uri: Uri) -> ApiError {
    ApiError::new(
        ErrorCode::EndpointNotFound,
        format!("no endpoint matches '{}'", uri.path()),
    )
}

async fn method_not_allowed() -> (StatusCode, Json<Value>) {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(
            serde_json::json!({"error_code": "ENDPOINT_NOT_FOUND", "message": "this endpoint does not accept that HTTP method"}),
        ),
    )
}

/// All MLflow routes.
pub fn routes(state: AppState) -> Router {
    let api = "/api/2.0/mlflow";
    let api3 = "/api/3.0/mlflow";
    let artifacts_root = "/api/2.0/mlflow-artifacts/artifacts";
    Router::new()
        .route("/health", get(meta::health))
        .route("/version", get(meta::version))
        .route("/api/loopline/v1/version", get(meta::loopline_version))
        .route("/v1/traces", post(crate::otlp::export))
        .route(&format!("{api3}/server-info"), get(meta::server_info))
        // Experiments.
        .route(&format!("{api}/experiments/create"), post(experiments::create))
        .route(&format!("{api}/experiments/get"), get(experiments::get))
        .route(&format!("{api}/experiments/get-by-name"), get(experiments::get_by_name))
        .route(
            &format!("{api}/experiments/search"),
            post(experiments::search).get(experiments::search),
        )
        .route(&format!("{api}/experiments/update"), post(experiments::update))
        .route(&format!("{api}/experiments/delete"), post(experiments::delete))
        .route(&format!("{api}/experiments/restore"), post(experiments::restore))
        .route(
            &format!("{api}/experiments/set-experiment-tag"),
            post(experiments::set_tag),
        )
        .route(
            &format!("{api}/experiments/delete-experiment-tag"),
            post(experiments::delete_tag),
        )
        // Runs.
        .route(&format!("{api}/runs/create"), post(runs::create))
        .route(&format!("{api}/runs/get"), get(runs::get))
        .route(&format!("{api}/runs/update"), post(runs::update))
        .route(&format!("{api}/runs/delete"), post(runs::delete))
        .route(&format!("{api}/runs/restore"), post(runs::restore))
        .route(&format!("{api}/runs/log-metric"), post(runs::log_metric))
        .route(&format!("{api}/runs/log-parameter"), post(runs::log_parameter))
        .route(&format!("{api}/runs/set-tag"), post(runs::set_tag))
        .route(&format!("{api}/runs/delete-tag"), post(runs::delete_tag))
        .route(&format!("{api}/runs/log-batch"), post(runs::log_batch))
        .route(&format!("{api}/runs/log-inputs"), post(runs::log_inputs))
        .route(&format!("{api}/runs/outputs"), post(runs::log_outputs))
        .route(&format!("{api}/runs/search"), post(runs::search).get(runs::search))
        .route(&format!("{api}/metrics/get-history"), get(runs::metric_history))
        .route(
            &format!("{api}/metrics/get-history-bulk-interval"),
            get(metric_charts::bulk_interval),
        )
        .route(&format!("{api}/metrics/get-history-bulk"), get(metric_charts::bulk))
        // Logged models.
        .route(&format!("{api}/logged-models"), post(logged_models::create))
        .route(&format!("{api}/logged-models/search"), post(logged_models::search))
        .route(
            &format!("{api}/logged-models/{{model_id}}"),
            get(logged_models::get)
                .patch(logged_models::finalize)
                .delete(logged_models::delete),
        )
        .route(
            &format!("{api}/logged-models/{{model_id}}/tags"),
            patch(logged_models::set_tags),
        )
        .route(
            &format!("{api}/logged-models/{{model_id}}/tags/{{key}}"),
            delete(logged_models::delete_tag),
        )
        .route(
            &format!("{api}/logged-models/{{model_id}}/params"),
            post(logged_models::log_params),
        )
        // Registered models.
        .route(
            &format!("{api}/registered-models/create"),
            post(registered_models::create),
        )
        .route(&format!("{api}/registered-models/get"), get(registered_models::get))
        .route(
            &format!("{api}/registered-models/search"),
            get(registered_models::search),
        )
        .route(
            &format!("{api}/registered-models/update"),
            patch(registered_models::update),
        )
        .route(
            &format!("{api}/registered-models/rename"),
            post(registered_models::rename),
        )
        .route(
            &format!("{api}/registered-models/delete"),
            delete(registered_models::delete),
        )
        .route(
            &format!("{api}/registered-models/set-tag"),
            post(registered_models::set_tag),
        )
        .route(
            &format!("{api}/registered-models/delete-tag"),
            delete(registered_models::delete_tag),
        )
        .route(
            &format!("{api}/registered-models/get-latest-versions"),
            post(registered_models::latest_versions).get(registered_models::latest_versions),
        )
        .route(
            &format!("{api}/registered-models/alias"),
            post(registered_models::set_alias)
                .get(registered_models::get_by_alias)
                .delete(registered_models::delete_alias),
        )
        // Model versions.
        .route(&format!("{api}/model-versions/create"), post(model_versions::create))
        .route(&format!("{api}/model-versions/get"), get(model_versions::get))
        .route(
            &format!("{api}/model-versions/get-download-uri"),
            get(model_versions::download_uri),
        )
        .route(&format!("{api}/model-versions/search"), get(model_versions::search))
        .route(&format!("{api}/model-versions/update"), patch(model_versions::update))
        .route(
            &format!("{api}/model-versions/transition-stage"),
            post(model_versions::transition_stage),
        )
        .route(&format!("{api}/model-versions/delete"), delete(model_versions::delete))
        .route(&format!("{api}/model-versions/set-tag"), post(model_versions::set_tag))
        .route(
            &format!("{api}/model-versions/delete-tag"),
            delete(model_versions::delete_tag),
        )
        // Traces.
        .route(&format!("{api3}/traces"), post(traces::start))
        .route(&format!("{api3}/traces/search"), post(traces::search))
        .route(&format!("{api3}/traces/batchGet"), get(traces::batch_get))
        .route(&format!("{api3}/traces/batchGetInfos"), post(traces::batch_get_infos))
        .route(&format!("{api3}/traces/get"), get(traces::get_by_query))
        .route(&format!("{api3}/traces/metrics"), post(trace_metrics::query))
        .route(
            &format!("{api3}/traces/calculate-filter-correlation"),
            post(trace_metrics::correlation),
        )
        .route(&format!("{api3}/traces/{{trace_id}}"), get(traces::get))
        .route(
            &format!("{api3}/traces/{{trace_id}}/assessments"),
            post(assessments::create),
        )
        .route(
            &format!("{api3}/traces/{{trace_id}}/assessments/{{assessment_id}}"),
            get(assessments::get)
                .patch(assessments::update)
                .delete(assessments::delete),
        )
        .route(
            &format!("{api}/traces/{{trace_id}}/tags"),
            patch(traces::set_tag).delete(traces::delete_tag),
        )
        .route(&format!("{api}/traces/delete-traces"), post(traces::delete_traces))
        .route(&format!("{api}/traces/link-to-run"), post(traces::link_to_run))
        // The web UI's trace download.
        // Routes the web UI calls under /ajax-api only (the server serves every /ajax-api path as its /api twin).
        .route(&format!("{api}/get-trace-artifact"), get(trace_artifacts::get))
        .route(&format!("{api3}/get-trace-artifact"), get(trace_artifacts::get))
        .route(&format!("{api3}/assistant/config"), get(meta::assistant_config))
        .route(&format!("{api3}/assistant/providers"), get(meta::assistant_providers))
        .route(
            &format!("{api3}/ui-telemetry"),
            get(meta::ui_telemetry_config).post(meta::ui_telemetry_records),
        )
        .route(&format!("{api}/gateway-proxy"), get(meta::gateway_proxy_list))
        .route(&format!("{api}/artifacts/list"), get(ui_artifacts::list))
        .route(
            &format!("{api}/logged-models/{{model_id}}/artifacts/directories"),
            get(ui_artifacts::model_list),
        )
        .route(
            &format!("{api}/logged-models/{{model_id}}/artifacts/files"),
            get(ui_artifacts::model_file),
        )
        .route(&format!("{api}/runs/create-promptlab-run"), post(promptlab::create))
        .route(
            &format!("{api}/experiments/search-datasets"),
            post(experiments::search_datasets),
        )
        .route("/get-artifact", get(ui_artifacts::run_file))
        .route(&format!("{api}/upload-artifact"), post(ui_artifacts::upload))
        .route("/graphql", post(crate::graphql::handle).get(crate::graphql::handle))
        .route("/model-versions/get-artifact", get(ui_artifacts::version_file))
        // Registry webhooks.
        .route(&format!("{api}/webhooks"), post(webhooks::create).get(webhooks::list))
        .route(
            &format!("{api}/webhooks/{{webhook_id}}"),
            get(webhooks::get).patch(webhooks::update).delete(webhooks::delete),
        )
        .route(&format!("{api}/webhooks/{{webhook_id}}/test"), post(webhooks::test))
        // Issues.
        .route(&format!("{api3}/issues"), post(issues::create))
        .route(&format!("{api3}/issues/search"), post(issues::search))
        .route(
            &format!("{api3}/issues/{{issue_id}}"),
            get(issues::get).patch(issues::update),
        )
        // Registered scorers.
        .route(&format!("{api3}/scorers/register"), post(scorers::register))
        .route(&format!("{api3}/scorers/list"), get(scorers::list))
        .route(&format!("{api3}/scorers/versions"), get(scorers::versions))
        .route(&format!("{api3}/scorers/get"), get(scorers::get))
        .route(&format!("{api3}/scorers/delete"), delete(scorers::delete))
        .route(&format!("{api3}/scorers/online-configs"), get(scorers::online_configs))
        .route(
            &format!("{api3}/scorers/online-config"),
            put(scorers::set_online_config),
        )
        // GenAI evaluation datasets (the client calls them under 3.0; MLflow serves 2.0 too).
        .route(&format!("{api3}/datasets/create"), post(eval_datasets::create))
        .route(&format!("{api3}/datasets/search"), post(eval_datasets::search))
        .route(
            &format!("{api3}/datasets/{{dataset_id}}"),
            get(eval_datasets::get).delete(eval_datasets::delete),
        )
        .route(
            &format!("{api3}/datasets/{{dataset_id}}/tags"),
            patch(eval_datasets::set_tags),
        )
        .route(
            &format!("{api3}/datasets/{{dataset_id}}/tags/{{key}}"),
            delete(eval_datasets::delete_tag),
        )
        .route(
            &format!("{api3}/datasets/{{dataset_id}}/records"),
            post(eval_datasets::upsert_records)
                .get(eval_datasets::get_records)
                .delete(eval_datasets::delete_records),
        )
        .route(
            &format!("{api3}/datasets/{{dataset_id}}/experiment-ids"),
            get(eval_datasets::experiment_ids),
        )
        .route(
            &format!("{api3}/datasets/{{dataset_id}}/add-experiments"),
            post(eval_datasets::add_experiments),
        )
        .route(
            &format!("{api3}/datasets/{{dataset_id}}/remove-experiments"),
            post(eval_datasets::remove_experiments),
        )
        .route(&format!("{api}/traces"), post(traces_v2::start).get(traces_v2::search))
        .route(&format!("{api}/traces/{{request_id}}"), patch(traces_v2::end))
        .route(&format!("{api}/traces/{{request_id}}/info"), get(traces_v2::info))
        .route(&format!("{api}/traces/link-prompts"), post(traces::link_prompts))
        // Artifact proxy.
        .route(artifacts_root, get(artifacts::list))
        .route(
            &format!("{artifacts_root}/{{*path}}"),
            put(artifacts::upload)
                .get(artifacts::download)
                .delete(artifacts::delete),
        )
        .fallback(unknown_endpoint)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}
