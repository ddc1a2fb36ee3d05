//! Registry changes told to webhooks, with MLflow's payloads: a change to a prompt (a registered model
//! tagged `mlflow.prompt.is_prompt`) is a prompt event, any other a model event.

use crate::AppState;
use loopline_metadata_store::{ModelVersion, RegisteredModel, Tag};
use serde_json::{Map, Value, json};

const PROMPT_TAG: &str = "mlflow.prompt.is_prompt";
const PROMPT_TYPE_TAG: &str = "_mlflow_prompt_type";
const PROMPT_TEXT_TAG: &str = "mlflow.prompt.text";

fn tags_json(tags: &[Tag], hidden: &[&str]) -> Value {
    Value::Object(
        tags.iter()
            .filter(|tag| !hidden.contains(&tag.key.as_str()))
            .map(|tag| (tag.key.clone(), Value::String(tag.value.clone())))
            .collect::<Map<String, Value>>(),
    )
}

fn marks_prompt(tags: &[Tag]) -> bool {
    tags.iter()
        .any(|tag| tag.key == PROMPT_TAG && tag.value.eq_ignore_ascii_case("true"))
}

fn text_or_null(text: &str) -> Value {
    if text.is_empty() {
        Value::Null
    } else {
        Value::String(text.to_string())
    }
}

/// Whether a registered model is a prompt (false when it cannot be read: the event is then a model's).
async fn is_prompt(state: &AppState, name: &str) -> bool {
    state
        .registry
        .store()
        .get_registered_model(name)
        .await
        .is_ok_and(|model| marks_prompt(&model.tags))
}

fn emit(state: &AppState, entity: &'static str, action: &'static str, data: Value) {
    state
        .webhooks
        .emit(state.tracking.store().clone(), entity, action, data);
}

pub(super) fn registered_model_created(state: &AppState, model: &RegisteredModel) {
    if marks_prompt(&model.tags) {
        let data = json!({"name": model.name, "tags": tags_json(&model.tags, &[PROMPT_TAG, PROMPT_TYPE_TAG]),
            "description": text_or_null(&model.description)});
        emit(state, "prompt", "created", data);
    } else {
        let data = json!({"name": model.name, "tags": tags_json(&model.tags, &[]),
            "description": text_or_null(&model.description)});
        emit(state, "registered_model", "created", data);
    }
}

pub(super) fn model_version_created(state: &AppState, version: &ModelVersion) {
    if marks_prompt(&version.tags) {
        let template = version
            .tags
            .iter()
            .find(|tag| tag.key == PROMPT_TEXT_TAG)
            .map_or(Value::Null, |tag| Value::String(tag.value.clone()));
        let data = json!({"name": version.name, "version": version.version, "template": template,
            "tags": tags_json(&version.tags, &[PROMPT_TAG, PROMPT_TYPE_TAG, PROMPT_TEXT_TAG]),
            "description": text_or_null(&version.description)});
        emit(state, "prompt_version", "created", data);
    } else {
        let data = json!({"name": version.name, "version": version.version, "source": version.source,
            "run_id": text_or_null(&version.run_id), "tags": tags_json(&version.tags, &[]),
            "description": text_or_null(&version.description)});
        emit(state, "model_version", "created", data);
    }
}

/// A registered model's tag set or deleted (told only for prompts, as MLflow).
pub(super) async fn registered_model_tag(state: &AppState, name: &str, key: &str, value: Option<&str>) {
    if !is_prompt(state, name).await {
        return;
    }
    match value {
        Some(value) => emit(
            state,
            "prompt_tag",
            "set",
            json!({"name": name, "key": key, "value": value}),
        ),
        None => emit(state, "prompt_tag", "deleted", json!({"name": name, "key": key})),
    }
}

pub(super) async fn model_version_tag(state: &AppState, name: &str, version: &str, key: &str, value: Option<&str>) {
    let entity = if is_prompt(state, name).await {
        "prompt_version_tag"
    } else {
        "model_version_tag"
    };
    match value {
        Some(value) => emit(
            state,
            entity,
            "set",
            json!({"name": name, "version": version, "key": key, "value": value}),
        ),
        None => emit(
            state,
            entity,
            "deleted",
            json!({"name": name, "version": version, "key": key}),
        ),
    }
}

pub(super) async fn alias(state: &AppState, name: &str, alias: &str, version: Option<&str>) {
    let entity = if is_prompt(state, name).await {
        "prompt_alias"
    } else {
        "model_version_alias"
    };
    match version {
        Some(version) => emit(
            state,
            entity,
            "created",
            json!({"name": name, "alias": alias, "version": version}),
        ),
        None => emit(state, entity, "deleted", json!({"name": name, "alias": alias})),
    }
}
