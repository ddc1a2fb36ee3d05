//! Registered scorers (`/api/3.0/mlflow/scorers/...`), as `Scorer.register`, `list_scorers`, `get_scorer`
//! and `delete_scorer` call them. Loopline stores them and never runs them. As MLflow by default, it refuses
//! scorers that carry code (`@scorer` functions, whose `call_source` runs when a client loads them): a
//! registry entry must not be a way to run code on every reader's machine.

use super::scorer_endpoints::{catalog, to_ids, to_names};
use super::{JsonResult, empty_object, single};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{MlflowMessage, one_or_many};
use axum::extract::State;
use loopline_core::proto_json::deserialize_optional_int64;
use loopline_llm_gateway::catalog::Catalog;
use loopline_llm_gateway::catalog::guardrails::carries_code;
use loopline_metadata_store::ScorerVersion;
use serde::Deserialize;
use serde_json::{Value, json};

/// The largest serialized scorer.
const MAX_SERIALIZED_BYTES: usize = 1 << 20;
/// MLflow's message for a scorer that carries code.
const CODE_REFUSED: &str = "Custom scorer registration (using @scorer decorator) is disabled by default outside of \
Databricks tracking environments due to security concerns. Custom scorers require arbitrary code execution during \
deserialization. Loopline stores scorers for every reader of the registry, so it does not take ones that carry code: \
register built-in scorers or make_judge() scorers, and keep custom scorer code in a source repository.";

/// A scorer as `list`, `versions` and `get` answer it (gateway endpoints it names by their current names).
fn scorer_json(scorer: &ScorerVersion, catalog: &Catalog) -> Value {
    json!({
        "experiment_id": scorer.experiment_id.parse::<i64>().map(Value::from).unwrap_or_else(|_| Value::String(scorer.experiment_id.clone())),
        "scorer_name": scorer.name,
        "scorer_version": scorer.version,
        "serialized_scorer": to_names(&scorer.serialized, catalog),
        "creation_time": scorer.creation_time,
        "scorer_id": scorer.scorer_id,
    })
}

#[derive(Deserialize)]
pub(super) struct RegisterRequest {
    experiment_id: Option<String>,
    name: Option<String>,
    serialized_scorer: Option<String>,
}

pub(super) async fn register(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<RegisterRequest>,
) -> JsonResult {
    let experiment_id = super::required(&request.experiment_id, "experiment_id")?;
    let name = super::required(&request.name, "name")?;
    let serialized = super::required(&request.serialized_scorer, "serialized_scorer")?;
    loopline_tracking::validation::validate_key("scorer", name)?;
    if serialized.len() > MAX_SERIALIZED_BYTES {
        return Err(ApiError::invalid(format!(
            "serialized_scorer is larger than {MAX_SERIALIZED_BYTES} bytes"
        )));
    }
    let mut parsed: Value =
        serde_json::from_str(serialized).map_err(|_| ApiError::invalid("serialized_scorer must be valid JSON"))?;
    if carries_code(&parsed) {
        return Err(ApiError::invalid(CODE_REFUSED));
    }
    let catalog = catalog(state.tracking.store().as_ref()).await?;
    let stored = to_ids(serialized, &mut parsed, &catalog)?;
    let scorer = state
        .tracking
        .store()
        .register_scorer(experiment_id, name, &stored)
        .await?;
    Ok(axum::Json(json!({
        "version": scorer.version,
        "scorer_id": scorer.scorer_id,
        "experiment_id": scorer.experiment_id,
        "name": scorer.name,
        "serialized_scorer": to_names(&scorer.serialized, &catalog),
        "creation_time": scorer.creation_time,
    })))
}

#[derive(Deserialize)]
pub(super) struct ListRequest {
    experiment_id: Option<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    experiment_ids: Vec<String>,
}

pub(super) async fn list(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<ListRequest>,
) -> JsonResult {
    if request.experiment_id.is_some() && !request.experiment_ids.is_empty() {
        return Err(ApiError::invalid("give experiment_id or experiment_ids, not both"));
    }
    let experiments: Vec<String> = request
        .experiment_id
        .into_iter()
        .chain(request.experiment_ids)
        .collect();
    let scorers = state.tracking.store().list_scorers(&experiments).await?;
    let catalog = catalog(state.tracking.store().as_ref()).await?;
    let shown: Vec<Value> = scorers.iter().map(|scorer| scorer_json(scorer, &catalog)).collect();
    single("scorers", &shown)
}

#[derive(Deserialize)]
pub(super) struct NamedRequest {
    experiment_id: Option<String>,
    name: Option<String>,
    #[serde(default, deserialize_with = "deserialize_optional_int64")]
    version: Option<i64>,
}

fn named(request: &NamedRequest) -> ApiResult<(&str, &str)> {
    Ok((
        super::required(&request.experiment_id, "experiment_id")?,
        super::required(&request.name, "name")?,
    ))
}

pub(super) async fn versions(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<NamedRequest>,
) -> JsonResult {
    let (experiment_id, name) = named(&request)?;
    let scorers = state.tracking.store().scorer_versions(experiment_id, name).await?;
    let catalog = catalog(state.tracking.store().as_ref()).await?;
    let shown: Vec<Value> = scorers.iter().map(|scorer| scorer_json(scorer, &catalog)).collect();
    single("scorers", &shown)
}

pub(super) async fn get(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<NamedRequest>,
) -> JsonResult {
    let (experiment_id, name) = named(&request)?;
    let scorer = state
        .tracking
        .store()
        .get_scorer(experiment_id, name, request.version)
        .await?;
    let catalog = catalog(state.tracking.store().as_ref()).await?;
    single("scorer", &scorer_json(&scorer, &catalog))
}

pub(super) async fn delete(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<NamedRequest>,
) -> JsonResult {
    let (experiment_id, name) = named(&request)?;
    state
        .tracking
        .store()
        .delete_scorer(experiment_id, name, request.version)
        .await?;
    empty_object()
}

/// Online-scoring settings of scorers. Loopline runs no scorer online, so no scorer has any (the client asks
/// before showing a scorer).
pub(super) async fn online_configs() -> JsonResult {
    single("configs", &Vec::<Value>::new())
}

#[derive(Deserialize)]
pub(super) struct OnlineConfigRequest {
    experiment_id: Option<String>,
    name: Option<String>,
    sample_rate: Option<Value>,
}

/// Turning a scorer on for live traces: Loopline does not run scorers (they are the user's to run, with
/// `mlflow.genai.evaluate`), so it says so rather than accepting a setting nothing would honour. Turning one
/// off (`sample_rate` 0, what `scorer.stop()` sends) is what is already true, and is answered as MLflow does.
pub(super) async fn set_online_config(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<OnlineConfigRequest>,
) -> ApiResult<axum::Json<Value>> {
    let experiment_id = super::required(&request.experiment_id, "experiment_id")?;
    let name = super::required(&request.name, "name")?;
    let sample_rate = match &request.sample_rate {
        Some(Value::Number(number)) => number.as_f64(),
        Some(Value::String(text)) => text.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|rate| (0.0..=1.0).contains(rate))
    .ok_or_else(|| ApiError::invalid("Invalid value for parameter 'sample_rate': a number from 0.0 to 1.0"))?;
    if sample_rate > 0.0 {
        return Err(ApiError::invalid(
            "Loopline does not run scorers on live traces: evaluate with mlflow.genai.evaluate, or watch live \
             traffic with a monitor (loopline monitor create)",
        ));
    }
    let scorer = state.tracking.store().get_scorer(experiment_id, name, None).await?;
    Ok(axum::Json(json!({"config": {
        "online_scoring_config_id": format!("osc-{}", scorer.scorer_id),
        "scorer_id": scorer.scorer_id,
        "sample_rate": 0.0,
        "experiment_id": experiment_id,
    }})))
}
