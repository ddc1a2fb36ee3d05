//! Registered-model endpoints, including aliases.

use super::{JsonResult, empty_object, page_response, required, single};
use crate::AppState;
use crate::error::ApiError;
use crate::extract::{KeyValueInput, MlflowMessage, one_or_many, to_tags};
use axum::extract::State;
use loopline_core::proto_json::deserialize_optional_int64;
use loopline_metadata_store::{PageRequest, RegistrySearch, Tag};
use serde::Deserialize;

#[derive(Deserialize)]
pub(super) struct CreateRequest {
    name: Option<String>,
    #[serde(default)]
    tags: Vec<KeyValueInput>,
    description: Option<String>,
}

pub(super) async fn create(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<CreateRequest>,
) -> JsonResult {
    let name = required(&request.name, "name")?;
    let tags = to_tags(request.tags, "tags")?;
    let model = state
        .registry
        .create_registered_model(name, &tags, request.description.as_deref().unwrap_or_default())
        .await?;
    super::registry_events::registered_model_created(&state, &model);
    single("registered_model", &model)
}

#[derive(Deserialize)]
pub(super) struct NameRequest {
    name: Option<String>,
}

pub(super) async fn get(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<NameRequest>,
) -> JsonResult {
    let name = required(&request.name, "name")?;
    let model = state.registry.store().get_registered_model(name).await?;
    single("registered_model", &model)
}

pub(super) async fn delete(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<NameRequest>,
) -> JsonResult {
    let name = required(&request.name, "name")?;
    state.registry.store().delete_registered_model(name).await?;
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

/// Turns the shared search fields into a store query.
pub(super) fn registry_search(
    filter: Option<String>,
    max_results: Option<i64>,
    order_by: Vec<String>,
    page_token: Option<String>,
    default_max: i64,
) -> Result<RegistrySearch, ApiError> {
    let max_results = super::page_size(max_results, default_max)?;
    Ok(RegistrySearch {
        filter,
        order_by,
        page: PageRequest {
            max_results,
            page_token,
        },
    })
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
        100,
    )?;
    let wanted = search.page.clone();
    let page = viewer
        .page(
            "registered_model",
            |model: &loopline_metadata_store::RegisteredModel| model.name.clone(),
            wanted,
            |page| {
                let search = loopline_metadata_store::RegistrySearch { page, ..search.clone() };
                let store = state.registry.store().clone();
                async move { Ok(store.search_registered_models(&search).await?) }
            },
        )
        .await?;
    page_response("registered_models", &page.items, page.next_page_token)
}

#[derive(Deserialize)]
pub(super) struct UpdateRequest {
    name: Option<String>,
    description: Option<String>,
}

pub(super) async fn update(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<UpdateRequest>,
) -> JsonResult {
    let name = required(&request.name, "name")?;
    let model = state
        .registry
        .store()
        .update_registered_model(name, request.description.as_deref().unwrap_or_default())
        .await?;
    single("registered_model", &model)
}

#[derive(Deserialize)]
pub(super) struct RenameRequest {
    name: Option<String>,
    new_name: Option<String>,
}

pub(super) async fn rename(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<RenameRequest>,
) -> JsonResult {
    let name = required(&request.name, "name")?;
    let new_name = required(&request.new_name, "new_name")?;
    let model = state.registry.rename_registered_model(name, new_name).await?;
    single("registered_model", &model)
}

#[derive(Deserialize)]
pub(super) struct TagRequest {
    name: Option<String>,
    key: Option<String>,
    value: Option<String>,
}

pub(super) async fn set_tag(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<TagRequest>,
) -> JsonResult {
    let name = required(&request.name, "name")?;
    let key = required(&request.key, "key")?;
    state
        .registry
        .set_registered_model_tag(name, &Tag::new(key, request.value.clone().unwrap_or_default()))
        .await?;
    super::registry_events::registered_model_tag(&state, name, key, Some(request.value.as_deref().unwrap_or_default()))
        .await;
    empty_object()
}

pub(super) async fn delete_tag(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<TagRequest>,
) -> JsonResult {
    let name = required(&request.name, "name")?;
    let key = required(&request.key, "key")?;
    state.registry.store().delete_registered_model_tag(name, key).await?;
    super::registry_events::registered_model_tag(&state, name, key, None).await;
    empty_object()
}

#[derive(Deserialize)]
pub(super) struct LatestVersionsRequest {
    name: Option<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    stages: Vec<String>,
}

pub(super) async fn latest_versions(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<LatestVersionsRequest>,
) -> JsonResult {
    let name = required(&request.name, "name")?;
    let versions = state.registry.latest_versions(name, &request.stages).await?;
    page_response("model_versions", &versions, None)
}

#[derive(Deserialize)]
pub(super) struct AliasRequest {
    name: Option<String>,
    alias: Option<String>,
    version: Option<String>,
}

pub(super) async fn set_alias(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<AliasRequest>,
) -> JsonResult {
    let name = required(&request.name, "name")?;
    let alias = required(&request.alias, "alias")?;
    let version = required(&request.version, "version")?;
    state.registry.set_alias(name, alias, version).await?;
    super::registry_events::alias(&state, name, alias, Some(version)).await;
    empty_object()
}

pub(super) async fn get_by_alias(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<AliasRequest>,
) -> JsonResult {
    let name = required(&request.name, "name")?;
    let alias = required(&request.alias, "alias")?;
    let version = state.registry.store().get_model_version_by_alias(name, alias).await?;
    single("model_version", &version)
}

pub(super) async fn delete_alias(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<AliasRequest>,
) -> JsonResult {
    let name = required(&request.name, "name")?;
    let alias = required(&request.alias, "alias")?;
    state.registry.store().delete_alias(name, alias).await?;
    super::registry_events::alias(&state, name, alias, None).await;
    empty_object()
}
