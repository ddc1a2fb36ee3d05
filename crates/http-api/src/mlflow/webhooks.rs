//! Registry webhooks (`/api/2.0/mlflow/webhooks`): create, list, get, update, delete and test, as MLflow 3's
//! webhook client calls them. The secret is sealed before it is stored and never returned.

use super::{JsonResult, empty_object};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::MlflowMessage;
use crate::webhooks::{ENTITY_ACTIONS, example_payload};
use axum::Json;
use axum::extract::{Path, State};
use loopline_core::proto_json::deserialize_optional_int64;
use loopline_metadata_store::{PageRequest, Webhook, WebhookChange};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// The longest description and secret accepted.
const MAX_DESCRIPTION_CHARS: usize = 1_000;
const MAX_SECRET_BYTES: usize = 1_024;
/// The most events one webhook subscribes to.
const MAX_EVENTS: usize = 64;

#[derive(Deserialize, Clone)]
pub(super) struct EventInput {
    entity: Option<String>,
    action: Option<String>,
}

fn check_name(name: &str) -> ApiResult<()> {
    let bytes = name.as_bytes();
    let alnum = |b: &u8| b.is_ascii_alphanumeric();
    let valid = !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.first().is_some_and(alnum)
        && bytes.last().is_some_and(alnum)
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "Webhook name '{name}' is invalid. It must start and end with a letter or digit, be less than 63 \
             characters long, and contain only letters, digits, dots (.), underscores (_), and hyphens (-)."
        )))
    }
}

fn check_events(events: &[EventInput]) -> ApiResult<Vec<(String, String)>> {
    if events.is_empty() {
        return Err(ApiError::invalid("Webhook events must be a non-empty list of events."));
    }
    if events.len() > MAX_EVENTS {
        return Err(ApiError::invalid(format!(
            "a webhook subscribes to at most {MAX_EVENTS} events"
        )));
    }
    let mut checked = Vec::new();
    for event in events {
        let entity = event.entity.as_deref().unwrap_or_default().to_ascii_lowercase();
        let action = event.action.as_deref().unwrap_or_default().to_ascii_lowercase();
        let Some((_, actions)) = ENTITY_ACTIONS.iter().find(|(name, _)| *name == entity) else {
            return Err(ApiError::invalid(format!(
                "Invalid entity '{entity}'. Valid entities are: {}",
                ENTITY_ACTIONS
                    .iter()
                    .map(|(name, _)| *name)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        if !actions.contains(&action.as_str()) {
            return Err(ApiError::invalid(format!(
                "Invalid action '{action}' for entity '{entity}'. Valid actions are: [{}]",
                actions.iter().map(|a| format!("'{a}'")).collect::<Vec<_>>().join(", ")
            )));
        }
        if !checked.contains(&(entity.clone(), action.clone())) {
            checked.push((entity, action));
        }
    }
    Ok(checked)
}

fn check_status(status: Option<&str>) -> ApiResult<Option<String>> {
    match status.filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(status @ ("ACTIVE" | "DISABLED")) => Ok(Some(status.to_string())),
        Some(other) => Err(ApiError::invalid(format!(
            "Invalid webhook status '{other}': use ACTIVE or DISABLED"
        ))),
    }
}

fn check_description(description: Option<String>) -> ApiResult<Option<String>> {
    match description {
        Some(text) if text.chars().count() > MAX_DESCRIPTION_CHARS => Err(ApiError::invalid(format!(
            "Webhook description is longer than {MAX_DESCRIPTION_CHARS} characters"
        ))),
        other => Ok(other.filter(|text| !text.is_empty())),
    }
}

fn check_secret(secret: Option<&str>) -> ApiResult<Option<&str>> {
    match secret.filter(|s| !s.is_empty()) {
        Some(secret) if secret.len() > MAX_SECRET_BYTES => Err(ApiError::invalid(format!(
            "Webhook secret is longer than {MAX_SECRET_BYTES} bytes"
        ))),
        other => Ok(other),
    }
}

async fn check_url(state: &AppState, url: &str) -> ApiResult<()> {
    state
        .webhooks
        .policy
        .check(url)
        .await
        .map(|_| ())
        .map_err(ApiError::invalid)
}

/// A webhook as MLflow writes it (events with enum names; no secret).
fn webhook_json(webhook: &Webhook) -> Value {
    let mut object = Map::new();
    object.insert("webhook_id".into(), webhook.webhook_id.clone().into());
    object.insert("name".into(), webhook.name.clone().into());
    if let Some(description) = &webhook.description {
        object.insert("description".into(), description.clone().into());
    }
    object.insert("url".into(), webhook.url.clone().into());
    object.insert(
        "events".into(),
        Value::Array(
            webhook
                .events
                .iter()
                .map(|(entity, action)| json!({"entity": entity.to_uppercase(), "action": action.to_uppercase()}))
                .collect(),
        ),
    );
    object.insert("status".into(), webhook.status.clone().into());
    object.insert("creation_timestamp".into(), webhook.creation_timestamp.into());
    object.insert("last_updated_timestamp".into(), webhook.last_updated_timestamp.into());
    Value::Object(object)
}

#[derive(Deserialize)]
pub(super) struct CreateRequest {
    name: Option<String>,
    url: Option<String>,
    #[serde(default)]
    events: Vec<EventInput>,
    description: Option<String>,
    secret: Option<String>,
    status: Option<String>,
}

pub(super) async fn create(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<CreateRequest>,
) -> JsonResult {
    let name = super::required(&request.name, "name")?;
    let url = super::required(&request.url, "url")?;
    check_name(name)?;
    let events = check_events(&request.events)?;
    check_url(&state, url).await?;
    let now = loopline_core::time::now_millis();
    let webhook = Webhook {
        webhook_id: loopline_core::ids::new_run_id(),
        name: name.to_string(),
        description: check_description(request.description)?,
        url: url.to_string(),
        events,
        status: check_status(request.status.as_deref())?.unwrap_or_else(|| "ACTIVE".into()),
        secret: check_secret(request.secret.as_deref())?.map(|secret| state.webhooks.seal(secret)),
        creation_timestamp: now,
        last_updated_timestamp: now,
    };
    state.tracking.store().create_webhook(&webhook).await?;
    Ok(Json(json!({"webhook": webhook_json(&webhook)})))
}

#[derive(Deserialize)]
pub(super) struct ListRequest {
    #[serde(default, deserialize_with = "deserialize_optional_int64")]
    max_results: Option<i64>,
    page_token: Option<String>,
}

pub(super) async fn list(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<ListRequest>,
) -> JsonResult {
    let max_results = match request.max_results {
        None | Some(0) => 100,
        Some(value) if (1..=1_000).contains(&value) => value as u64,
        Some(_) => return Err(ApiError::invalid("max_results must be between 1 and 1000.")),
    };
    let page = state
        .tracking
        .store()
        .list_webhooks(&PageRequest {
            max_results,
            page_token: request.page_token.filter(|token| !token.is_empty()),
        })
        .await?;
    let mut object = Map::new();
    object.insert(
        "webhooks".into(),
        Value::Array(page.items.iter().map(webhook_json).collect()),
    );
    if let Some(token) = page.next_page_token {
        object.insert("next_page_token".into(), token.into());
    }
    Ok(Json(Value::Object(object)))
}

pub(super) async fn get(State(state): State<AppState>, Path(webhook_id): Path<String>) -> JsonResult {
    let webhook = state.tracking.store().get_webhook(&webhook_id).await?;
    Ok(Json(json!({"webhook": webhook_json(&webhook)})))
}

#[derive(Deserialize)]
pub(super) struct UpdateRequest {
    name: Option<String>,
    description: Option<String>,
    url: Option<String>,
    #[serde(default)]
    events: Vec<EventInput>,
    secret: Option<String>,
    status: Option<String>,
}

pub(super) async fn update(
    State(state): State<AppState>,
    Path(webhook_id): Path<String>,
    MlflowMessage(request): MlflowMessage<UpdateRequest>,
) -> JsonResult {
    let name = request.name.filter(|name| !name.is_empty());
    if let Some(name) = &name {
        check_name(name)?;
    }
    let url = request.url.filter(|url| !url.is_empty());
    if let Some(url) = &url {
        check_url(&state, url).await?;
    }
    let events = if request.events.is_empty() {
        None
    } else {
        Some(check_events(&request.events)?)
    };
    let change = WebhookChange {
        name,
        description: match request.description {
            None => None,
            Some(description) => Some(check_description(Some(description))?),
        },
        url,
        events,
        secret: match request.secret.as_deref() {
            None => None,
            Some(secret) => Some(check_secret(Some(secret))?.map(|secret| state.webhooks.seal(secret))),
        },
        status: check_status(request.status.as_deref())?,
    };
    let webhook = state.tracking.store().update_webhook(&webhook_id, &change).await?;
    Ok(Json(json!({"webhook": webhook_json(&webhook)})))
}

pub(super) async fn delete(State(state): State<AppState>, Path(webhook_id): Path<String>) -> JsonResult {
    state.tracking.store().delete_webhook(&webhook_id).await?;
    empty_object()
}

#[derive(Deserialize)]
pub(super) struct TestRequest {
    event: Option<EventInput>,
}

pub(super) async fn test(
    State(state): State<AppState>,
    Path(webhook_id): Path<String>,
    MlflowMessage(request): MlflowMessage<TestRequest>,
) -> JsonResult {
    let webhook = state.tracking.store().get_webhook(&webhook_id).await?;
    let (entity, action) = match &request.event {
        Some(event) => check_events(std::slice::from_ref(event))?.remove(0),
        None => webhook
            .events
            .first()
            .cloned()
            .ok_or_else(|| ApiError::invalid("the webhook subscribes to no events"))?,
    };
    let outcome = state
        .webhooks
        .deliver(&webhook, &entity, &action, &example_payload(&entity, &action))
        .await;
    let mut result = Map::new();
    result.insert("success".into(), outcome.success.into());
    if let Some(status) = outcome.response_status {
        result.insert("response_status".into(), status.into());
    }
    if let Some(body) = outcome.response_body {
        result.insert("response_body".into(), body.into());
    }
    if let Some(error) = outcome.error_message {
        result.insert(
            "error_message".into(),
            format!("Failed to test webhook: {error}").into(),
        );
    }
    Ok(Json(json!({"result": result})))
}
