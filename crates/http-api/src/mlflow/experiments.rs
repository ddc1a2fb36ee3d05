//! Experiment endpoints.

use super::{JsonResult, empty_object, page_response, required, single};
use crate::AppState;
use crate::access::visibility::Viewer;
use crate::error::ApiError;
use crate::extract::{KeyValueInput, MlflowMessage, one_or_many, to_tags};
use axum::extract::State;
use loopline_core::proto_json::deserialize_optional_int64;
use loopline_metadata_store::{Experiment, ExperimentSearch, LifecycleStage, PageRequest, Tag, ViewType};
use serde::Deserialize;

/// Parses MLflow's ViewType by name or number.
pub(super) fn parse_view_type(value: Option<&str>) -> Result<ViewType, ApiError> {
    match value.unwrap_or("ACTIVE_ONLY") {
        "ACTIVE_ONLY" | "1" | "" => Ok(ViewType::ActiveOnly),
        "DELETED_ONLY" | "2" => Ok(ViewType::DeletedOnly),
        "ALL" | "3" => Ok(ViewType::All),
        other => Err(ApiError::invalid(format!(
            "Invalid view type '{other}': expected ACTIVE_ONLY, DELETED_ONLY or ALL"
        ))),
    }
}

/// An enum field that may arrive as a name or a number.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum NameOrNumber {
    Name(String),
    Number(i64),
}

impl NameOrNumber {
    pub(super) fn as_text(&self) -> String {
        match self {
            NameOrNumber::Name(name) => name.clone(),
            NameOrNumber::Number(number) => number.to_string(),
        }
    }
}

#[derive(Deserialize)]
pub(super) struct CreateRequest {
    name: Option<String>,
    artifact_location: Option<String>,
    #[serde(default)]
    tags: Vec<KeyValueInput>,
}

pub(super) async fn create(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<CreateRequest>,
) -> JsonResult {
    let name = required(&request.name, "name")?;
    let tags = to_tags(request.tags, "tags")?;
    let experiment_id = state
        .tracking
        .create_experiment(name, request.artifact_location.as_deref(), &tags)
        .await?;
    single("experiment_id", &experiment_id)
}

#[derive(Deserialize)]
pub(super) struct GetRequest {
    experiment_id: Option<String>,
}

pub(super) async fn get(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<GetRequest>,
) -> JsonResult {
    let experiment_id = required(&request.experiment_id, "experiment_id")?;
    let experiment = state.tracking.store().get_experiment(experiment_id).await?;
    single("experiment", &experiment)
}

#[derive(Deserialize)]
pub(super) struct GetByNameRequest {
    experiment_name: Option<String>,
}

pub(super) async fn get_by_name(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<GetByNameRequest>,
) -> JsonResult {
    let name = required(&request.experiment_name, "experiment_name")?;
    let experiment = state.tracking.store().get_experiment_by_name(name).await?;
    single("experiment", &experiment)
}

#[derive(Deserialize)]
pub(super) struct SearchRequest {
    #[serde(default, deserialize_with = "deserialize_optional_int64")]
    max_results: Option<i64>,
    page_token: Option<String>,
    filter: Option<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    order_by: Vec<String>,
    view_type: Option<NameOrNumber>,
}

pub(super) async fn search(
    State(state): State<AppState>,
    viewer: Viewer,
    MlflowMessage(request): MlflowMessage<SearchRequest>,
) -> JsonResult {
    let max_results = super::page_size(request.max_results, 1000)?;
    let search = ExperimentSearch {
        filter: request.filter,
        order_by: request.order_by,
        view_type: parse_view_type(request.view_type.map(|view| view.as_text()).as_deref())?,
        page: PageRequest::default(),
    };
    let wanted = PageRequest {
        max_results,
        page_token: request.page_token,
    };
    let page = viewer
        .page(
            "experiment",
            |item: &Experiment| item.experiment_id.clone(),
            wanted,
            |page| {
                let search = ExperimentSearch { page, ..search.clone() };
                let store = state.tracking.store().clone();
                async move { Ok(store.search_experiments(&search).await?) }
            },
        )
        .await?;
    page_response("experiments", &page.items, page.next_page_token)
}

#[derive(Deserialize)]
pub(super) struct UpdateRequest {
    experiment_id: Option<String>,
    new_name: Option<String>,
}

pub(super) async fn update(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<UpdateRequest>,
) -> JsonResult {
    let experiment_id = required(&request.experiment_id, "experiment_id")?;
    let new_name = required(&request.new_name, "new_name")?;
    state.tracking.rename_experiment(experiment_id, new_name).await?;
    empty_object()
}

pub(super) async fn delete(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<GetRequest>,
) -> JsonResult {
    let experiment_id = required(&request.experiment_id, "experiment_id")?;
    state
        .tracking
        .store()
        .set_experiment_lifecycle(experiment_id, LifecycleStage::Deleted)
        .await?;
    empty_object()
}

pub(super) async fn restore(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<GetRequest>,
) -> JsonResult {
    let experiment_id = required(&request.experiment_id, "experiment_id")?;
    state
        .tracking
        .store()
        .set_experiment_lifecycle(experiment_id, LifecycleStage::Active)
        .await?;
    empty_object()
}

#[derive(Deserialize)]
pub(super) struct TagRequest {
    experiment_id: Option<String>,
    key: Option<String>,
    value: Option<String>,
}

pub(super) async fn set_tag(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<TagRequest>,
) -> JsonResult {
    let experiment_id = required(&request.experiment_id, "experiment_id")?;
    let key = required(&request.key, "key")?;
    let tag = Tag::new(key, request.value.clone().unwrap_or_default());
    state.tracking.set_experiment_tag(experiment_id, &tag).await?;
    empty_object()
}

pub(super) async fn delete_tag(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<TagRequest>,
) -> JsonResult {
    let experiment_id = required(&request.experiment_id, "experiment_id")?;
    let key = required(&request.key, "key")?;
    state.tracking.store().delete_experiment_tag(experiment_id, key).await?;
    empty_object()
}

#[derive(Deserialize)]
pub(super) struct SearchDatasetsRequest {
    #[serde(default, deserialize_with = "one_or_many")]
    experiment_ids: Vec<String>,
}

/// The most experiments one dataset search may name (MLflow's limit).
const MAX_DATASET_SEARCH_EXPERIMENTS: usize = 20;
/// The most summaries one answer holds (MLflow's limit).
const MAX_DATASET_SUMMARIES: u64 = 1_000;

/// The datasets runs of some experiments used (the web UI's dataset filter), as MLflow's `SearchDatasets`.
pub(super) async fn search_datasets(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<SearchDatasetsRequest>,
) -> JsonResult {
    if request.experiment_ids.is_empty() {
        return Err(ApiError::invalid(
            "SearchDatasets request must specify at least one experiment_id.",
        ));
    }
    if request.experiment_ids.len() > MAX_DATASET_SEARCH_EXPERIMENTS {
        return Err(ApiError::invalid(format!(
            "SearchDatasets request cannot specify more than {MAX_DATASET_SEARCH_EXPERIMENTS} experiment_ids. \
             Received {} experiment_ids.",
            request.experiment_ids.len()
        )));
    }
    let summaries = state
        .tracking
        .store()
        .dataset_summaries(&request.experiment_ids, MAX_DATASET_SUMMARIES)
        .await?;
    let summaries: Vec<serde_json::Value> = summaries
        .into_iter()
        .map(|summary| {
            let mut entry = serde_json::json!({
                "experiment_id": summary.experiment_id,
                "name": summary.name,
                "digest": summary.digest,
            });
            if let Some(context) = summary.context {
                entry["context"] = serde_json::Value::String(context);
            }
            entry
        })
        .collect();
    page_response("dataset_summaries", &summaries, None)
}
