//! Logged-model endpoints (MLflow 3): every `log_model` goes through these.

use super::{JsonResult, empty_object, page_response, required, single};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{KeyValueInput, MlflowMessage, one_or_many, to_tags};
use axum::extract::{Path, State};
use loopline_core::proto_json::deserialize_optional_int64;
use loopline_metadata_store::{DatasetRef, LoggedModelSearch, NewLoggedModel, PageRequest};
use serde::Deserialize;

#[derive(Deserialize)]
pub(super) struct CreateRequest {
    experiment_id: Option<String>,
    name: Option<String>,
    source_run_id: Option<String>,
    #[serde(default)]
    params: Vec<KeyValueInput>,
    #[serde(default)]
    tags: Vec<KeyValueInput>,
    model_type: Option<String>,
}

pub(super) async fn create(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<CreateRequest>,
) -> JsonResult {
    let experiment_id = required(&request.experiment_id, "experiment_id")?.to_string();
    let model = state
        .tracking
        .create_logged_model(NewLoggedModel {
            experiment_id,
            name: request.name.unwrap_or_default(),
            source_run_id: request.source_run_id.filter(|run_id| !run_id.is_empty()),
            params: to_tags(request.params, "params")?,
            tags: to_tags(request.tags, "tags")?,
            model_type: request.model_type.unwrap_or_default(),
        })
        .await?;
    single("model", &model)
}

pub(super) async fn get(State(state): State<AppState>, Path(model_id): Path<String>) -> JsonResult {
    let model = state.tracking.store().get_logged_model(&model_id).await?;
    single("model", &model)
}

#[derive(Deserialize)]
pub(super) struct FinalizeRequest {
    status: Option<super::experiments::NameOrNumber>,
}

pub(super) async fn finalize(
    State(state): State<AppState>,
    Path(model_id): Path<String>,
    MlflowMessage(request): MlflowMessage<FinalizeRequest>,
) -> JsonResult {
    let status = request
        .status
        .map(|status| status.as_text())
        .ok_or_else(|| ApiError::invalid("Missing value for required parameter 'status'."))?;
    let model = state.tracking.finalize_logged_model(&model_id, &status).await?;
    single("model", &model)
}

pub(super) async fn delete(State(state): State<AppState>, Path(model_id): Path<String>) -> JsonResult {
    state.tracking.store().delete_logged_model(&model_id).await?;
    empty_object()
}

/// At most as many entries per call as a run's log-batch takes.
fn check_entry_count(count: usize, what: &str) -> Result<(), ApiError> {
    let limit = loopline_tracking::validation::MAX_ENTITIES_PER_BATCH;
    if count > limit {
        return Err(ApiError::invalid(format!(
            "a request can log at most {limit} logged-model {what}, got {count}"
        )));
    }
    Ok(())
}

#[derive(Deserialize)]
pub(super) struct TagsRequest {
    #[serde(default)]
    tags: Vec<KeyValueInput>,
}

pub(super) async fn set_tags(
    State(state): State<AppState>,
    Path(model_id): Path<String>,
    MlflowMessage(request): MlflowMessage<TagsRequest>,
) -> JsonResult {
    let tags = to_tags(request.tags, "tags")?;
    check_entry_count(tags.len(), "tags")?;
    loopline_tracking::validation::validate_tags(&tags, loopline_tracking::validation::MAX_RUN_TAG_VALUE_LENGTH)?;
    state.tracking.store().set_logged_model_tags(&model_id, &tags).await?;
    empty_object()
}

pub(super) async fn delete_tag(
    State(state): State<AppState>,
    Path((model_id, key)): Path<(String, String)>,
) -> JsonResult {
    state.tracking.store().delete_logged_model_tag(&model_id, &key).await?;
    empty_object()
}

#[derive(Deserialize)]
pub(super) struct ParamsRequest {
    #[serde(default)]
    params: Vec<KeyValueInput>,
}

pub(super) async fn log_params(
    State(state): State<AppState>,
    Path(model_id): Path<String>,
    MlflowMessage(request): MlflowMessage<ParamsRequest>,
) -> JsonResult {
    let params = to_tags(request.params, "params")?;
    check_entry_count(params.len(), "params")?;
    loopline_tracking::validation::validate_tags(&params, loopline_tracking::validation::MAX_PARAM_VALUE_LENGTH)?;
    state
        .tracking
        .store()
        .log_logged_model_params(&model_id, &params)
        .await?;
    empty_object()
}

#[derive(Deserialize)]
pub(super) struct OrderField {
    field_name: Option<String>,
    #[serde(default, deserialize_with = "crate::extract::lenient_bool")]
    ascending: Option<bool>,
    dataset_name: Option<String>,
    dataset_digest: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct DatasetField {
    dataset_name: Option<String>,
    dataset_digest: Option<String>,
}

/// The most datasets one search may name.
const MAX_SEARCH_DATASETS: usize = 100;

#[derive(Deserialize)]
pub(super) struct SearchRequest {
    #[serde(default, deserialize_with = "one_or_many")]
    experiment_ids: Vec<String>,
    filter: Option<String>,
    #[serde(default)]
    order_by: Vec<OrderField>,
    #[serde(default, deserialize_with = "deserialize_optional_int64")]
    max_results: Option<i64>,
    page_token: Option<String>,
    #[serde(default)]
    datasets: Vec<DatasetField>,
}

pub(super) async fn search(
    State(state): State<AppState>,
    viewer: crate::access::visibility::Viewer,
    MlflowMessage(request): MlflowMessage<SearchRequest>,
) -> JsonResult {
    let asked = !request.experiment_ids.is_empty();
    let narrowed = viewer.narrow("experiment", request.experiment_ids.clone());
    if asked && narrowed.is_empty() {
        return super::page_response::<serde_json::Value>("models", &[], None);
    }
    let order_by = request
        .order_by
        .iter()
        .map(|order| {
            Ok((
                required(&order.field_name, "order_by.field_name")?.to_string(),
                order.ascending.unwrap_or(true),
            ))
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let order_datasets = request
        .order_by
        .into_iter()
        .map(|order| {
            order
                .dataset_name
                .filter(|name| !name.is_empty())
                .map(|name| DatasetRef {
                    name,
                    digest: order.dataset_digest.filter(|digest| !digest.is_empty()),
                })
        })
        .collect();
    if request.datasets.len() > MAX_SEARCH_DATASETS {
        return Err(ApiError::invalid(format!(
            "Invalid value for parameter 'datasets': at most {MAX_SEARCH_DATASETS} datasets, got {}",
            request.datasets.len()
        )));
    }
    let datasets = request
        .datasets
        .into_iter()
        .map(|dataset| {
            let name = dataset
                .dataset_name
                .filter(|name| !name.is_empty())
                .ok_or_else(|| ApiError::invalid("`dataset_name` in the `datasets` clause must be specified."))?;
            Ok(DatasetRef {
                name,
                digest: dataset.dataset_digest.filter(|digest| !digest.is_empty()),
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let max_results = super::page_size(request.max_results, 100)?;
    let search = LoggedModelSearch {
        experiment_ids: narrowed,
        filter: request.filter,
        order_by,
        order_datasets,
        datasets,
        page: PageRequest {
            max_results,
            page_token: request.page_token,
        },
    };
    let page = state.tracking.store().search_logged_models(&search).await?;
    page_response("models", &page.items, page.next_page_token)
}
