//! Model-version endpoints.

use super::registered_models::registry_search;
use super::{JsonResult, empty_object, page_response, required, single};
use crate::AppState;
use crate::extract::{KeyValueInput, MlflowMessage, lenient_bool, one_or_many, to_tags};
use axum::extract::State;
use loopline_core::proto_json::deserialize_optional_int64;
use loopline_metadata_store::Tag;
use loopline_model_registry::CreateModelVersion;
use serde::Deserialize;

#[derive(Deserialize)]
pub(super) struct CreateRequest {
    name: Option<String>,
    source: Option<String>,
    run_id: Option<String>,
    model_id: Option<String>,
    run_link: Option<String>,
    description: Option<String>,
    #[serde(default)]
    tags: Vec<KeyValueInput>,
}

pub(super) async fn create(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<CreateRequest>,
) -> JsonResult {
    let name = required(&request.name, "name")?.to_string();
    let source = required(&request.source, "source")?.to_string();
    let version = state
        .registry
        .create_model_version(CreateModelVersion {
            name,
            source,
            run_id: request.run_id,
            model_id: request.model_id,
            run_link: request.run_link,
            description: request.description,
            tags: to_tags(request.tags, "tags")?,
        })
        .await?;
    super::registry_events::model_version_created(&state, &version);
    single("model_version", &version)
}

#[derive(Deserialize)]
pub(super) struct VersionRequest {
    name: Option<String>,
    version: Option<String>,
}

pub(super) async fn get(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<VersionRequest>,
) -> JsonResult {
    let name = required(&request.name, "name")?;
    let version = required(&request.version, "version")?;
    let model_version = state.registry.get_model_version(name, version).await?;
    single("model_version", &model_version)
}

pub(super) async fn download_uri(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<VersionRequest>,
) -> JsonResult {
    let name = required(&request.name, "name")?;
    let version = required(&request.version, "version")?;
    let uri = state.registry.download_uri(name, version).await?;
    single("artifact_uri", &uri)
}

pub(super) async fn delete(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<VersionRequest>,
) -> JsonResult {
    let name = required(&request.name, "name")?;
    let version = required(&request.version, "version")?;
    let number = loopline_model_registry::RegistryService::parse_version_number(version)?;
    state.registry.store().delete_model_version(name, number).await?;
    empty_object()
}

#[derive(Deserialize)]
pub(super) struct SearchRequest {
    filter: Option<String>,
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
    let search = registry_search(
        request.filter,
        request.max_results,
        request.order_by,
        request.page_token,
        10_000,
    )?;
    let wanted = search.page.clone();
    let page = viewer
        .page(
            "registered_model",
            |version: &loopline_metadata_store::ModelVersion| version.name.clone(),
            wanted,
            |page| {
                let search = loopline_metadata_store::RegistrySearch { page, ..search.clone() };
                let store = state.registry.store().clone();
                async move { Ok(store.search_model_versions(&search).await?) }
            },
        )
        .await?;
    page_response("model_versions", &page.items, page.next_page_token)
}

#[derive(Deserialize)]
pub(super) struct UpdateRequest {
    name: Option<String>,
    version: Option<String>,
    description: Option<String>,
}

pub(super) async fn update(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<UpdateRequest>,
) -> JsonResult {
    let name = required(&request.name, "name")?;
    let version = required(&request.version, "version")?;
    let number = loopline_model_registry::RegistryService::parse_version_number(version)?;
    let model_version = state
        .registry
        .store()
        .update_model_version(name, number, request.description.as_deref().unwrap_or_default())
        .await?;
    single("model_version", &model_version)
}

#[derive(Deserialize)]
pub(super) struct TransitionRequest {
    name: Option<String>,
    version: Option<String>,
    stage: Option<String>,
    #[serde(default, deserialize_with = "lenient_bool")]
    archive_existing_versions: Option<bool>,
}

pub(super) async fn transition_stage(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<TransitionRequest>,
) -> JsonResult {
    let name = required(&request.name, "name")?;
    let version = required(&request.version, "version")?;
    let stage = required(&request.stage, "stage")?;
    let archive = request.archive_existing_versions.unwrap_or(false);
    let model_version = state.registry.transition_stage(name, version, stage, archive).await?;
    single("model_version", &model_version)
}

#[derive(Deserialize)]
pub(super) struct TagRequest {
    name: Option<String>,
    version: Option<String>,
    key: Option<String>,
    value: Option<String>,
}

pub(super) async fn set_tag(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<TagRequest>,
) -> JsonResult {
    let name = required(&request.name, "name")?;
    let version = required(&request.version, "version")?;
    let key = required(&request.key, "key")?;
    state
        .registry
        .set_model_version_tag(name, version, &Tag::new(key, request.value.clone().unwrap_or_default()))
        .await?;
    super::registry_events::model_version_tag(
        &state,
        name,
        version,
        key,
        Some(request.value.as_deref().unwrap_or_default()),
    )
    .await;
    empty_object()
}

pub(super) async fn delete_tag(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<TagRequest>,
) -> JsonResult {
    let name = required(&request.name, "name")?;
    let version = required(&request.version, "version")?;
    let key = required(&request.key, "key")?;
    let number = loopline_model_registry::RegistryService::parse_version_number(version)?;
    state
        .registry
        .store()
        .delete_model_version_tag(name, number, key)
        .await?;
    super::registry_events::model_version_tag(&state, name, version, key, None).await;
    empty_object()
}
