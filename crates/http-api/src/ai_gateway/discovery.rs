//! The routes MLflow's UI asks before it shows the gateway forms: which providers exist, which models a
//! provider has, what a provider's secret and configuration hold, and whether secrets are sealed with a key
//! the operator chose. Loopline names the providers it speaks to; the models it lists are those the gateway
//! configuration's `prices:` names and those the catalog's model definitions already use (no provider's price
//! list ships with the binary, where it would go stale).

use super::CatalogSync;
use crate::error::ApiError;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use loopline_core::ErrorCode;
use loopline_llm_gateway::catalog::build::{PROVIDERS, known};
use loopline_llm_gateway::config::ProviderKind;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

const PREFIX: &str = "/api/3.0/mlflow/gateway";

/// Every discovery route (all GET), for the permission table.
pub const ROUTES: &[&str] = &[
    "/api/3.0/mlflow/gateway/supported-providers",
    "/api/3.0/mlflow/gateway/supported-models",
    "/api/3.0/mlflow/gateway/provider-config",
    "/api/3.0/mlflow/gateway/secrets/config",
];

/// The discovery routes.
pub fn routes(sync: Arc<CatalogSync>) -> Router {
    Router::new()
        .route(&format!("{PREFIX}/supported-providers"), get(providers))
        .route(&format!("{PREFIX}/supported-models"), get(models))
        .route(&format!("{PREFIX}/provider-config"), get(provider_config))
        .route(&format!("{PREFIX}/secrets/config"), get(secrets_config))
        .with_state(sync)
}

async fn providers() -> Response {
    let names: Vec<&str> = PROVIDERS.iter().map(|known| known.name).collect();
    axum::Json(json!({ "providers": names })).into_response()
}

async fn models(State(sync): State<Arc<CatalogSync>>, Query(query): Query<BTreeMap<String, String>>) -> Response {
    let provider = query.get("provider").filter(|provider| !provider.is_empty());
    let catalog = match sync.load().await {
        Ok((_, catalog)) => catalog,
        Err(error) => return error.into_response(),
    };
    let base = sync.live.base();
    // The models priced in the configuration file, and those the catalog's definitions already use.
    let known: BTreeSet<(&str, &str)> = base
        .catalog_prices
        .iter()
        .map(|entry| (entry.provider.as_str(), entry.model.as_str()))
        .chain(
            catalog
                .model_definitions
                .iter()
                .map(|definition| (definition.provider.as_str(), definition.model_name.as_str())),
        )
        .filter(|(known_provider, _)| provider.is_none_or(|provider| known_provider == provider))
        .collect();
    let models: Vec<Value> = known
        .into_iter()
        .map(|(provider, model)| {
            let price = base.catalog_price(provider, model);
            json!({
                "model": model, "provider": provider, "mode": "chat",
                "supports_function_calling": false, "supports_vision": false, "supports_reasoning": false,
                "supports_prompt_caching": false, "supports_response_schema": false,
                "max_input_tokens": null, "max_output_tokens": null,
                "input_cost_per_token": price.map(|price| price.input / 1e6),
                "output_cost_per_token": price.map(|price| price.output / 1e6),
                "modality": null, "deprecation_date": null, "last_updated_at": null,
            })
        })
        .collect();
    axum::Json(json!({ "models": models })).into_response()
}

fn field(name: &str, description: String, required: bool) -> Value {
    json!({"name": name, "type": "string", "description": description, "required": required})
}

async fn provider_config(Query(query): Query<BTreeMap<String, String>>) -> Response {
    let Some(provider) = query.get("provider").filter(|provider| !provider.is_empty()) else {
        return ApiError::new(ErrorCode::InvalidParameterValue, "Provider parameter is required").into_response();
    };
    // A provider Loopline does not name is called as an OpenAI-compatible server at the secret's `api_base`
    // (as a model definition naming it is), so its form asks for that address; MLflow answers such names
    // with its generic form too.
    let (kind, base) = known(provider).map_or((ProviderKind::OpenaiCompatible, None), |known| (known.kind, known.base));
    let title = title(provider);
    let mut config_fields = vec![field("api_base", format!("{title} API Base URL"), base.is_none())];
    if kind == ProviderKind::Azure {
        config_fields.push(field("api_version", format!("{title} API version"), true));
    }
    let mode = json!({
        "mode": "api_key",
        "display_name": "API Key",
        "description": format!("Use {title} API Key"),
        "secret_fields": [field("api_key", format!("{title} API Key"), base.is_some_and(|base| !base.starts_with("http://localhost")))],
        "config_fields": config_fields,
    });
    axum::Json(json!({"auth_modes": [mode], "default_mode": "api_key"})).into_response()
}

/// `openai` as MLflow titles it: `Openai`.
fn title(provider: &str) -> String {
    let mut characters = provider.chars();
    match characters.next() {
        Some(first) => first.to_uppercase().chain(characters).collect(),
        None => String::new(),
    }
}

async fn secrets_config() -> Response {
    let shared = std::env::var(crate::webhooks::seal::SECRETS_KEY_ENV).is_ok_and(|key| !key.is_empty());
    axum::Json(json!({"secrets_available": true, "using_default_passphrase": !shared})).into_response()
}
