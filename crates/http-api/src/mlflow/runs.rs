//! Run endpoints: lifecycle, logging, inputs/outputs, search and metric history.

use super::experiments::{NameOrNumber, parse_view_type};
use super::{JsonResult, empty_object, page_response, required, single};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{KeyValueInput, MlflowMessage, one_or_many, to_tags};
use axum::extract::State;
use loopline_core::proto_json::{deserialize_optional_double, deserialize_optional_int64};
use loopline_metadata_store::*;
use loopline_tracking::service::StartRun;
use serde::Deserialize;

/// Run endpoints accept `run_id` or its legacy twin `run_uuid`.
#[derive(Deserialize)]
pub(super) struct RunIdentity {
    run_id: Option<String>,
    run_uuid: Option<String>,
}

impl RunIdentity {
    fn resolve(&self) -> ApiResult<&str> {
        resolve_run_id(&self.run_id, &self.run_uuid)
    }
}

/// The run id from `run_id`, or from its legacy twin `run_uuid`.
fn resolve_run_id<'a>(run_id: &'a Option<String>, run_uuid: &'a Option<String>) -> ApiResult<&'a str> {
    let non_empty = |value: &'a Option<String>| value.as_deref().filter(|id| !id.is_empty());
    non_empty(run_id)
        .or(non_empty(run_uuid))
        .ok_or_else(|| ApiError::invalid("Missing value for required parameter 'run_id'."))
}

fn run_response(run: &Run) -> JsonResult {
    single("run", run)
}

#[derive(Deserialize)]
pub(super) struct CreateRequest {
    experiment_id: Option<String>,
    user_id: Option<String>,
    run_name: Option<String>,
    #[serde(default, deserialize_with = "deserialize_optional_int64")]
    start_time: Option<i64>,
    #[serde(default)]
    tags: Vec<KeyValueInput>,
}

pub(super) async fn create(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<CreateRequest>,
) -> JsonResult {
    let run = state
        .tracking
        .create_run(StartRun {
            experiment_id: request.experiment_id,
            user_id: request.user_id,
            run_name: request.run_name,
            start_time: request.start_time,
            tags: to_tags(request.tags, "tags")?,
        })
        .await?;
    run_response(&run)
}

pub(super) async fn get(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<RunIdentity>,
) -> JsonResult {
    let run = state.tracking.store().get_run(request.resolve()?).await?;
    run_response(&run)
}

#[derive(Deserialize)]
pub(super) struct UpdateRequest {
    run_id: Option<String>,
    run_uuid: Option<String>,
    status: Option<NameOrNumber>,
    #[serde(default, deserialize_with = "deserialize_optional_int64")]
    end_time: Option<i64>,
    run_name: Option<String>,
}

pub(super) async fn update(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<UpdateRequest>,
) -> JsonResult {
    let update = RunUpdate {
        status: request.status.map(|status| status.as_text()),
        end_time: request.end_time,
        run_name: request.run_name,
    };
    let info = state
        .tracking
        .update_run(resolve_run_id(&request.run_id, &request.run_uuid)?, update)
        .await?;
    single("run_info", &info)
}

pub(super) async fn delete(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<RunIdentity>,
) -> JsonResult {
    state
        .tracking
        .store()
        .set_run_lifecycle(request.resolve()?, LifecycleStage::Deleted)
        .await?;
    empty_object()
}

pub(super) async fn restore(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<RunIdentity>,
) -> JsonResult {
    state
        .tracking
        .store()
        .set_run_lifecycle(request.resolve()?, LifecycleStage::Active)
        .await?;
    empty_object()
}

/// A metric point as clients send it: the body of log-metric, and each entry of log-batch's `metrics`
/// (where clients repeat the run id).
#[derive(Deserialize)]
pub(super) struct MetricInput {
    run_id: Option<String>,
    run_uuid: Option<String>,
    key: Option<String>,
    #[serde(default, deserialize_with = "deserialize_optional_double")]
    value: Option<f64>,
    #[serde(default, deserialize_with = "deserialize_optional_int64")]
    timestamp: Option<i64>,
    #[serde(default, deserialize_with = "deserialize_optional_int64")]
    step: Option<i64>,
    model_id: Option<String>,
    dataset_name: Option<String>,
    dataset_digest: Option<String>,
}

impl MetricInput {
    /// The metric, or the 400 naming a missing field as MLflow does (`timestamp`, `metrics[2].timestamp`).
    fn into_metric(self, path: &str) -> ApiResult<Metric> {
        let missing = |field: &str| {
            ApiError::invalid(format!(
                "Missing value for required parameter '{path}{field}'. See the API docs for more information about \
                 request parameters."
            ))
        };
        let key = self.key.filter(|key| !key.is_empty()).ok_or_else(|| missing("key"))?;
        let value = self.value.ok_or_else(|| missing("value"))?;
        // MLflow refuses a point without a time rather than inventing one.
        let timestamp = self.timestamp.ok_or_else(|| missing("timestamp"))?;
        let non_empty = |text: Option<String>| text.filter(|text| !text.is_empty());
        Ok(Metric {
            key,
            value,
            timestamp,
            step: self.step.unwrap_or(0),
            dataset_name: non_empty(self.dataset_name),
            dataset_digest: non_empty(self.dataset_digest),
            model_id: non_empty(self.model_id),
            run_id: None,
        })
    }
}

pub(super) async fn log_metric(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<MetricInput>,
) -> JsonResult {
    let run_id = resolve_run_id(&request.run_id, &request.run_uuid)?.to_string();
    let batch = LogBatch {
        metrics: vec![request.into_metric("")?],
        ..LogBatch::default()
    };
    state.tracking.log_batch(&run_id, batch).await?;
    empty_object()
}

#[derive(Deserialize)]
pub(super) struct KeyValueRequest {
    run_id: Option<String>,
    run_uuid: Option<String>,
    key: Option<String>,
    value: Option<String>,
}

impl KeyValueRequest {
    fn tag(&self) -> ApiResult<Tag> {
        let key = required(&self.key, "key")?;
        Ok(Tag::new(key, self.value.clone().unwrap_or_default()))
    }
}

pub(super) async fn log_parameter(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<KeyValueRequest>,
) -> JsonResult {
    let batch = LogBatch {
        params: vec![request.tag()?],
        ..LogBatch::default()
    };
    state
        .tracking
        .log_batch(resolve_run_id(&request.run_id, &request.run_uuid)?, batch)
        .await?;
    empty_object()
}

pub(super) async fn set_tag(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<KeyValueRequest>,
) -> JsonResult {
    let batch = LogBatch {
        tags: vec![request.tag()?],
        ..LogBatch::default()
    };
    state
        .tracking
        .log_batch(resolve_run_id(&request.run_id, &request.run_uuid)?, batch)
        .await?;
    empty_object()
}

pub(super) async fn delete_tag(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<KeyValueRequest>,
) -> JsonResult {
    let key = required(&request.key, "key")?;
    state
        .tracking
        .store()
        .delete_run_tag(resolve_run_id(&request.run_id, &request.run_uuid)?, key)
        .await?;
    empty_object()
}

#[derive(Deserialize)]
pub(super) struct LogBatchRequest {
    run_id: Option<String>,
    run_uuid: Option<String>,
    #[serde(default)]
    metrics: Vec<MetricInput>,
    #[serde(default)]
    params: Vec<KeyValueInput>,
    #[serde(default)]
    tags: Vec<KeyValueInput>,
}

pub(super) async fn log_batch(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<LogBatchRequest>,
) -> JsonResult {
    let metrics = request
        .metrics
        .into_iter()
        .enumerate()
        .map(|(index, metric)| metric.into_metric(&format!("metrics[{index}].")))
        .collect::<ApiResult<Vec<_>>>()?;
    let batch = LogBatch {
        metrics,
        params: to_tags(request.params, "params")?,
        tags: to_tags(request.tags, "tags")?,
    };
    state
        .tracking
        .log_batch(resolve_run_id(&request.run_id, &request.run_uuid)?, batch)
        .await?;
    empty_object()
}

#[derive(Deserialize)]
pub(super) struct DatasetFields {
    name: Option<String>,
    digest: Option<String>,
    source_type: Option<String>,
    source: Option<String>,
    schema: Option<String>,
    profile: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct DatasetInputFields {
    #[serde(default)]
    tags: Vec<KeyValueInput>,
    dataset: Option<DatasetFields>,
}

#[derive(Deserialize)]
pub(super) struct ModelReference {
    model_id: Option<String>,
    #[serde(default, deserialize_with = "deserialize_optional_int64")]
    step: Option<i64>,
}

#[derive(Deserialize)]
pub(super) struct LogInputsRequest {
    run_id: Option<String>,
    run_uuid: Option<String>,
    #[serde(default)]
    datasets: Vec<DatasetInputFields>,
    #[serde(default)]
    models: Vec<ModelReference>,
}

pub(super) async fn log_inputs(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<LogInputsRequest>,
) -> JsonResult {
    let mut datasets = Vec::with_capacity(request.datasets.len());
    for input in request.datasets {
        let fields = input
            .dataset
            .ok_or_else(|| ApiError::invalid("Missing value for required parameter 'datasets.dataset'."))?;
        datasets.push(DatasetInput {
            tags: to_tags(input.tags, "datasets.tags")?,
            dataset: Dataset {
                name: required(&fields.name, "datasets.dataset.name")?.to_string(),
                digest: required(&fields.digest, "datasets.dataset.digest")?.to_string(),
                source_type: fields.source_type.unwrap_or_default(),
                source: fields.source.unwrap_or_default(),
                schema: fields.schema,
                profile: fields.profile,
            },
        });
    }
    let models = request
        .models
        .into_iter()
        .map(|model| {
            Ok(ModelInput {
                model_id: required(&model.model_id, "models.model_id")?.to_string(),
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    state
        .tracking
        .store()
        .log_inputs(resolve_run_id(&request.run_id, &request.run_uuid)?, &datasets, &models)
        .await?;
    empty_object()
}

#[derive(Deserialize)]
pub(super) struct LogOutputsRequest {
    run_id: Option<String>,
    run_uuid: Option<String>,
    #[serde(default)]
    models: Vec<ModelReference>,
}

pub(super) async fn log_outputs(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<LogOutputsRequest>,
) -> JsonResult {
    let models = request
        .models
        .into_iter()
        .map(|model| {
            Ok(ModelOutput {
                model_id: required(&model.model_id, "models.model_id")?.to_string(),
                step: model.step.unwrap_or(0),
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    state
        .tracking
        .store()
        .log_outputs(resolve_run_id(&request.run_id, &request.run_uuid)?, &models)
        .await?;
    empty_object()
}

#[derive(Deserialize)]
pub(super) struct SearchRequest {
    #[serde(default, deserialize_with = "one_or_many")]
    experiment_ids: Vec<String>,
    filter: Option<String>,
    run_view_type: Option<NameOrNumber>,
    #[serde(default, deserialize_with = "deserialize_optional_int64")]
    max_results: Option<i64>,
    #[serde(default, deserialize_with = "one_or_many")]
    order_by: Vec<String>,
    page_token: Option<String>,
}

pub(super) async fn search(
    State(state): State<AppState>,
    viewer: crate::access::visibility::Viewer,
    MlflowMessage(request): MlflowMessage<SearchRequest>,
) -> JsonResult {
    let max_results = super::page_size(request.max_results, 1000)?;
    // Only readable experiments are searched (as MLflow's auth narrows them).
    let asked = !request.experiment_ids.is_empty();
    let experiment_ids = viewer.narrow("experiment", request.experiment_ids);
    if asked && experiment_ids.is_empty() {
        return page_response::<serde_json::Value>("runs", &[], None);
    }
    let search = RunSearch {
        experiment_ids,
        filter: request.filter,
        order_by: request.order_by,
        view_type: parse_view_type(request.run_view_type.map(|view| view.as_text()).as_deref())?,
        page: PageRequest {
            max_results,
            page_token: request.page_token,
        },
    };
    let page = state.tracking.store().search_runs(&search).await?;
    page_response("runs", &page.items, page.next_page_token)
}

#[derive(Deserialize)]
pub(super) struct HistoryRequest {
    run_id: Option<String>,
    run_uuid: Option<String>,
    metric_key: Option<String>,
    #[serde(default, deserialize_with = "deserialize_optional_int64")]
    max_results: Option<i64>,
    page_token: Option<String>,
}

pub(super) async fn metric_history(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<HistoryRequest>,
) -> JsonResult {
    let key = required(&request.metric_key, "metric_key")?;
    let max_results = super::page_size(request.max_results, 25_000)?;
    let page_request = PageRequest {
        max_results,
        page_token: request.page_token.clone(),
    };
    let page = state
        .tracking
        .store()
        .metric_history(resolve_run_id(&request.run_id, &request.run_uuid)?, key, &page_request)
        .await?;
    page_response("metrics", &page.items, page.next_page_token)
}
