//! The management routes, as MLflow's server answers them: parameters from the query string (GET) or the
//! JSON body (others), in MLflow's snake_case or the proto's camelCase names; answers in MLflow's message
//! shapes; refusals as `{error_code, message}` in MLflow's words. Secret values are sealed before they are
//! stored and never leave the server: answers carry each field masked.

use super::params::{Params, invalid_value, missing, params};
use super::shapes::{binding_json, definition_json, endpoint_json, mapping_json, secret_json};
use super::{CatalogSync, now_ms, refusal};
use crate::error::ApiError;
use axum::Router;
use axum::extract::Request;
use loopline_access::Principal;
use loopline_core::ErrorCode;
use loopline_llm_gateway::catalog::{
    Binding, EndpointChange, FallbackConfig, Linkage, ModelConfig, ModelDefinition, Secret, check_secret_value, mask,
    new_id, normalise_auth_config,
};
use loopline_metadata_store::Tag;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

const PREFIX: &str = "/api/3.0/mlflow/gateway";

/// One management operation.
#[derive(Debug, Clone, Copy)]
enum Op {
    CreateSecret,
    GetSecret,
    UpdateSecret,
    DeleteSecret,
    ListSecrets,
    CreateDefinition,
    GetDefinition,
    ListDefinitions,
    UpdateDefinition,
    DeleteDefinition,
    CreateEndpoint,
    GetEndpoint,
    UpdateEndpoint,
    DeleteEndpoint,
    ListEndpoints,
    Attach,
    Detach,
    CreateBinding,
    DeleteBinding,
    ListBindings,
    SetTag,
    DeleteTag,
}

/// Every route: method, path under `/api/3.0/mlflow/gateway`, operation.
const ROUTES: &[(&str, &str, Op)] = &[
    ("POST", "/secrets/create", Op::CreateSecret),
    ("GET", "/secrets/get", Op::GetSecret),
    ("POST", "/secrets/update", Op::UpdateSecret),
    ("DELETE", "/secrets/delete", Op::DeleteSecret),
    ("GET", "/secrets/list", Op::ListSecrets),
    ("POST", "/model-definitions/create", Op::CreateDefinition),
    ("GET", "/model-definitions/get", Op::GetDefinition),
    ("GET", "/model-definitions/list", Op::ListDefinitions),
    ("POST", "/model-definitions/update", Op::UpdateDefinition),
    ("DELETE", "/model-definitions/delete", Op::DeleteDefinition),
    ("POST", "/endpoints/create", Op::CreateEndpoint),
    ("GET", "/endpoints/get", Op::GetEndpoint),
    ("POST", "/endpoints/update", Op::UpdateEndpoint),
    ("DELETE", "/endpoints/delete", Op::DeleteEndpoint),
    ("GET", "/endpoints/list", Op::ListEndpoints),
    ("POST", "/endpoints/models/attach", Op::Attach),
    ("POST", "/endpoints/models/detach", Op::Detach),
    ("POST", "/endpoints/bindings/create", Op::CreateBinding),
    ("DELETE", "/endpoints/bindings/delete", Op::DeleteBinding),
    ("GET", "/endpoints/bindings/list", Op::ListBindings),
    ("POST", "/endpoints/set-tag", Op::SetTag),
    ("DELETE", "/endpoints/delete-tag", Op::DeleteTag),
];

/// Every management route (method, full path), for the permission table.
pub fn route_list() -> Vec<(&'static str, String)> {
    ROUTES
        .iter()
        .map(|(method, path, _)| (*method, format!("{PREFIX}{path}")))
        .collect()
}

/// Whether a management route only reads.
pub fn reads_only(method: &str) -> bool {
    method == "GET"
}

/// The management routes over `sync`.
pub fn routes(sync: Arc<CatalogSync>) -> Router {
    super::op_routes(PREFIX, ROUTES, sync, |sync: Arc<CatalogSync>, op, request| async move {
        answer(&sync, op, request).await
    })
}

async fn answer(sync: &CatalogSync, op: Op, request: Request) -> Result<Value, ApiError> {
    let caller = request
        .extensions()
        .get::<Principal>()
        .map(|principal| principal.username.to_string());
    let params = Params(params(request).await?);
    let by = |field: &str| -> Result<Option<String>, ApiError> {
        Ok(params
            .text(field)?
            .filter(|text| !text.is_empty())
            .or_else(|| caller.clone()))
    };
    let now = now_ms();
    match op {
        Op::CreateSecret => {
            let name = params.required("secret_name")?;
            let value = params.map("secret_value")?.unwrap_or_default();
            check_secret_value(&value).map_err(refusal)?;
            let auth_config = checked_config(sync, params.map("auth_config")?.unwrap_or_default()).await?;
            let id = new_id("s");
            let secret = Secret {
                sealed: sync.seal(&id, &value),
                masked_values: masked(&value),
                secret_id: id,
                secret_name: name,
                provider: params.text("provider")?.filter(|provider| !provider.is_empty()),
                auth_config,
                created_at: now,
                last_updated_at: now,
                created_by: by("created_by")?,
                last_updated_by: by("created_by")?,
            };
            let made = sync
                .change(|catalog| catalog.create_secret(secret.clone()).cloned())
                .await?;
            Ok(json!({"secret": secret_json(&made)}))
        }
        Op::GetSecret => {
            let id = params.required("secret_id")?;
            let (_, catalog) = sync.load().await?;
            Ok(json!({"secret": secret_json(catalog.secret(&id).map_err(refusal)?)}))
        }
        Op::UpdateSecret => {
            let id = params.required("secret_id")?;
            let value = params.map("secret_value")?.filter(|value| !value.is_empty());
            if let Some(value) = &value {
                check_secret_value(value).map_err(refusal)?;
            }
            let config = match params.map("auth_config")?.filter(|config| !config.is_empty()) {
                Some(config) => Some(checked_config(sync, config).await?),
                None => None,
            };
            let sealed = value.map(|value| (sync.seal(&id, &value), masked(&value)));
            let updated_by = params.text("updated_by")?.or_else(|| caller.clone());
            let made = sync
                .change(|catalog| {
                    let made = catalog
                        .update_secret(&id, sealed.clone(), config.clone(), updated_by.clone(), now)?
                        .clone();
                    catalog.check_reach(sync.live.reach(), None, Some(&id))?;
                    Ok(made)
                })
                .await?;
            Ok(json!({"secret": secret_json(&made)}))
        }
        Op::DeleteSecret => {
            let id = params.required("secret_id")?;
            sync.change(|catalog| catalog.delete_secret(&id)).await?;
            Ok(json!({}))
        }
        Op::ListSecrets => {
            let provider = params.text("provider")?.filter(|provider| !provider.is_empty());
            let (_, catalog) = sync.load().await?;
            let secrets: Vec<Value> = catalog
                .secrets
                .iter()
                .filter(|secret| provider.is_none() || secret.provider == provider)
                .map(secret_json)
                .collect();
            Ok(json!({"secrets": secrets}))
        }
        Op::CreateDefinition => {
            let definition = ModelDefinition {
                model_definition_id: new_id("d"),
                name: params.required("name")?,
                secret_id: Some(params.required("secret_id")?),
                provider: params.required("provider")?,
                model_name: params.required("model_name")?,
                created_at: now,
                last_updated_at: now,
                created_by: by("created_by")?,
                last_updated_by: by("created_by")?,
            };
            let (made, catalog) = sync
                .change(|catalog| {
                    let made = catalog.create_definition(definition.clone())?.clone();
                    catalog.check_reach(sync.live.reach(), Some(&made.model_definition_id), None)?;
                    Ok((made, catalog.clone()))
                })
                .await?;
            Ok(json!({"model_definition": definition_json(&catalog, &made)}))
        }
        Op::GetDefinition => {
            let id = params.required("model_definition_id")?;
            let (_, catalog) = sync.load().await?;
            let definition = catalog.definition(&id).map_err(refusal)?;
            Ok(json!({"model_definition": definition_json(&catalog, definition)}))
        }
        Op::ListDefinitions => {
            let provider = params.text("provider")?.filter(|text| !text.is_empty());
            let secret = params.text("secret_id")?.filter(|text| !text.is_empty());
            let (_, catalog) = sync.load().await?;
            let definitions: Vec<Value> = catalog
                .model_definitions
                .iter()
                .filter(|definition| {
                    provider
                        .as_ref()
                        .is_none_or(|provider| &definition.provider == provider)
                })
                .filter(|definition| secret.is_none() || definition.secret_id == secret)
                .map(|definition| definition_json(&catalog, definition))
                .collect();
            Ok(json!({"model_definitions": definitions}))
        }
        Op::UpdateDefinition => {
            let id = params.required("model_definition_id")?;
            let change = ModelDefinition {
                model_definition_id: id.clone(),
                name: params.text("name")?.unwrap_or_default(),
                secret_id: params.text("secret_id")?,
                provider: params.text("provider")?.unwrap_or_default(),
                model_name: params.text("model_name")?.unwrap_or_default(),
                created_at: 0,
                last_updated_at: 0,
                created_by: None,
                last_updated_by: None,
            };
            let updated_by = params.text("updated_by")?.or_else(|| caller.clone());
            let (made, catalog) = sync
                .change(|catalog| {
                    let made = catalog
                        .update_definition(&id, change.clone(), updated_by.clone(), now)?
                        .clone();
                    catalog.check_reach(sync.live.reach(), Some(&id), None)?;
                    Ok((made, catalog.clone()))
                })
                .await?;
            Ok(json!({"model_definition": definition_json(&catalog, &made)}))
        }
        Op::DeleteDefinition => {
            let id = params.required("model_definition_id")?;
            sync.change(|catalog| catalog.delete_definition(&id)).await?;
            Ok(json!({}))
        }
        Op::CreateEndpoint => create_endpoint(sync, &params, by("created_by")?, now).await,
        Op::GetEndpoint => {
            let id = params.text("endpoint_id")?.filter(|text| !text.is_empty());
            let name = params.text("name")?.filter(|text| !text.is_empty());
            let (_, catalog) = sync.load().await?;
            let endpoint = match (id, name) {
                (Some(id), None) => catalog.endpoint(&id),
                (None, Some(name)) => catalog.endpoint_named(&name),
                _ => {
                    return Err(ApiError::new(
                        ErrorCode::InvalidParameterValue,
                        "Exactly one of endpoint_id or name must be provided",
                    ));
                }
            }
            .map_err(refusal)?;
            Ok(json!({"endpoint": endpoint_json(&catalog, endpoint)}))
        }
        Op::UpdateEndpoint => update_endpoint(sync, &params, params.text("updated_by")?.or(caller), now).await,
        Op::DeleteEndpoint => {
            let id = params.required("endpoint_id")?;
            sync.change(|catalog| catalog.delete_endpoint(&id)).await?;
            Ok(json!({}))
        }
        Op::ListEndpoints => {
            let provider = params.text("provider")?.filter(|text| !text.is_empty());
            let (_, catalog) = sync.load().await?;
            let endpoints: Vec<Value> = catalog
                .endpoints
                .iter()
                // As MLflow lists them: endpoints without models are not shown.
                .filter(|endpoint| !endpoint.model_mappings.is_empty())
                .filter(|endpoint| {
                    provider.as_ref().is_none_or(|provider| {
                        endpoint.model_mappings.iter().any(|mapping| {
                            catalog
                                .definition(&mapping.model_definition_id)
                                .is_ok_and(|definition| &definition.provider == provider)
                        })
                    })
                })
                .map(|endpoint| endpoint_json(&catalog, endpoint))
                .collect();
            Ok(json!({"endpoints": endpoints}))
        }
        Op::Attach => {
            let id = params.required("endpoint_id")?;
            let config = match params.0.get("model_config") {
                Some(value @ Value::Object(_)) => model_config(value, "model_config")?,
                _ => return Err(missing("model_config")),
            };
            let (mapping, catalog) = sync
                .change(|catalog| {
                    let mapping = catalog.attach(&id, config.clone(), by("created_by").ok().flatten(), now)?;
                    Ok((mapping, catalog.clone()))
                })
                .await?;
            Ok(json!({"mapping": mapping_json(&catalog, &id, &mapping)}))
        }
        Op::Detach => {
            let id = params.required("endpoint_id")?;
            let definition = params.required("model_definition_id")?;
            sync.change(|catalog| catalog.detach(&id, &definition)).await?;
            Ok(json!({}))
        }
        Op::CreateBinding => {
            let id = params.required("endpoint_id")?;
            let binding = Binding {
                resource_type: params.required("resource_type")?,
                resource_id: params.required("resource_id")?,
                created_at: now,
                last_updated_at: now,
                created_by: by("created_by")?,
            };
            let made = sync
                .change(|catalog| catalog.bind(&id, binding.clone()).cloned())
                .await?;
            Ok(json!({"binding": binding_json(&id, &made)}))
        }
        Op::DeleteBinding => {
            let id = params.required("endpoint_id")?;
            let kind = params.required("resource_type")?;
            let resource = params.required("resource_id")?;
            sync.change(|catalog| catalog.unbind(&id, &kind, &resource)).await?;
            Ok(json!({}))
        }
        Op::ListBindings => {
            let id = params.text("endpoint_id")?.filter(|text| !text.is_empty());
            let kind = params.text("resource_type")?.filter(|text| !text.is_empty());
            let resource = params.text("resource_id")?.filter(|text| !text.is_empty());
            let (_, catalog) = sync.load().await?;
            let bindings: Vec<Value> = catalog
                .endpoints
                .iter()
                .filter(|endpoint| id.as_ref().is_none_or(|id| &endpoint.endpoint_id == id))
                .flat_map(|endpoint| endpoint.bindings.iter().map(move |binding| (endpoint, binding)))
                .filter(|(_, binding)| kind.as_ref().is_none_or(|kind| &binding.resource_type == kind))
                .filter(|(_, binding)| {
                    resource
                        .as_ref()
                        .is_none_or(|resource| &binding.resource_id == resource)
                })
                .map(|(endpoint, binding)| binding_json(&endpoint.endpoint_id, binding))
                .collect();
            Ok(json!({"bindings": bindings}))
        }
        Op::SetTag => {
            let id = params.required("endpoint_id")?;
            let key = params.required("key")?;
            let value = params.text("value")?.unwrap_or_default();
            sync.change(|catalog| catalog.set_tag(&id, &key, &value)).await?;
            Ok(json!({}))
        }
        Op::DeleteTag => {
            let id = params.required("endpoint_id")?;
            let key = params.required("key")?;
            sync.change(|catalog| catalog.delete_tag(&id, &key)).await?;
            Ok(json!({}))
        }
    }
}

/// Creates an endpoint; with usage tracking and no experiment named, its calls are traced in the experiment
/// `gateway/<name>` (made, or reused when it exists), as MLflow does.
async fn create_endpoint(sync: &CatalogSync, params: &Params, by: Option<String>, now: i64) -> Result<Value, ApiError> {
    // An absent list is an empty one, as the proto reads it (the client leaves empty lists out).
    let mut change = endpoint_change(sync, params).await?;
    if let Some(name) = &change.name
        && sync.live.base().model(name).is_some()
    {
        return Err(ApiError::new(
            ErrorCode::ResourceAlreadyExists,
            format!("The gateway's configuration file has a model named '{name}'; choose another endpoint name"),
        ));
    }
    // Refusals first, before an experiment is made for an endpoint that will not be.
    let (_, mut trial) = sync.load().await?;
    trial
        .create_endpoint(change.clone(), by.clone(), now)
        .map_err(refusal)?;
    let track = change.usage_tracking.unwrap_or(true);
    let made_experiment = if track && change.experiment_id.is_none() {
        let name = change.name.clone().unwrap_or_default();
        let experiment = endpoint_experiment(sync, &name).await?;
        change.experiment_id = Some(experiment.clone());
        Some(experiment)
    } else {
        None
    };
    let (made, catalog) = sync
        .change(|catalog| {
            let made = catalog.create_endpoint(change.clone(), by.clone(), now)?.clone();
            Ok((made, catalog.clone()))
        })
        .await?;
    if let Some(experiment) = made_experiment {
        let tag = Tag {
            key: "mlflow.experiment.sourceId".into(),
            value: made.endpoint_id.clone(),
        };
        sync.store.set_experiment_tag(&experiment, &tag).await?;
    }
    Ok(json!({"endpoint": endpoint_json(&catalog, &made)}))
}

async fn update_endpoint(sync: &CatalogSync, params: &Params, by: Option<String>, now: i64) -> Result<Value, ApiError> {
    let id = params.required("endpoint_id")?;
    let mut change = endpoint_change(sync, params).await?;
    let (_, catalog) = sync.load().await?;
    let current = catalog.endpoint(&id).map_err(refusal)?;
    if let Some(name) = &change.name
        && sync.live.base().model(name).is_some()
    {
        return Err(ApiError::new(
            ErrorCode::ResourceAlreadyExists,
            format!("The gateway's configuration file has a model named '{name}'; choose another endpoint name"),
        ));
    }
    if change.usage_tracking == Some(true) && current.experiment_id.is_none() && change.experiment_id.is_none() {
        let name = change.name.clone().unwrap_or_else(|| current.name.clone());
        change.experiment_id = Some(endpoint_experiment(sync, &name).await?);
    }
    let (made, catalog) = sync
        .change(|catalog| {
            let made = catalog.update_endpoint(&id, change.clone(), by.clone(), now)?.clone();
            Ok((made, catalog.clone()))
        })
        .await?;
    Ok(json!({"endpoint": endpoint_json(&catalog, &made)}))
}

/// The experiment an endpoint's calls are traced in: `gateway/<name>`, made when missing.
async fn endpoint_experiment(sync: &CatalogSync, endpoint: &str) -> Result<String, ApiError> {
    let name = format!("gateway/{endpoint}");
    match sync.store.get_experiment_by_name(&name).await {
        Ok(found) if found.lifecycle_stage == "active" => return Ok(found.experiment_id),
        Ok(_) => {
            return Err(ApiError::new(
                ErrorCode::InvalidParameterValue,
                format!(
                    "The experiment '{name}' that traces this endpoint's calls is deleted: restore it, name another \
                     with experiment_id, or set usage_tracking to false"
                ),
            ));
        }
        Err(loopline_metadata_store::StoreError::NotFound(_)) => {}
        Err(error) => return Err(error.into()),
    }
    let tags = [
        Tag {
            key: "mlflow.experiment.sourceType".into(),
            value: "GATEWAY".into(),
        },
        Tag {
            key: "mlflow.experiment.isGateway".into(),
            value: "true".into(),
        },
    ];
    match sync.store.create_experiment(&name, None, &tags).await {
        Ok(id) => Ok(id),
        Err(loopline_metadata_store::StoreError::AlreadyExists(_)) => {
            Ok(sync.store.get_experiment_by_name(&name).await?.experiment_id)
        }
        Err(error) => Err(error.into()),
    }
}

/// What a create or update request asks of an endpoint.
async fn endpoint_change(sync: &CatalogSync, params: &Params) -> Result<EndpointChange, ApiError> {
    let model_configs = match params.0.get("model_configs") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .enumerate()
                .map(|(index, item)| model_config(item, &format!("model_configs[{index}]")))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(other) => return Err(invalid_value(other, "model_configs")),
    };
    let experiment_id = match params.text("experiment_id")?.filter(|text| !text.is_empty()) {
        Some(id) => {
            if id.parse::<i64>().is_err() {
                return Err(ApiError::new(
                    ErrorCode::InvalidParameterValue,
                    format!("Invalid experiment ID '{id}'. Experiment ID must be a valid integer."),
                ));
            }
            sync.store.get_experiment(&id).await?;
            Some(id)
        }
        None => None,
    };
    Ok(EndpointChange {
        name: params.text("name")?.filter(|text| !text.is_empty()),
        model_configs,
        routing_strategy: match params.0.get("routing_strategy") {
            None | Some(Value::Null) => None,
            Some(value) => Some(enum_name(value, "routing_strategy", &["REQUEST_BASED_TRAFFIC_SPLIT"])?),
        },
        fallback_config: match params.0.get("fallback_config") {
            None | Some(Value::Null) => None,
            Some(Value::Object(fields)) => Some(FallbackConfig {
                strategy: match fields.get("strategy") {
                    None | Some(Value::Null) => None,
                    Some(value) => Some(enum_name(value, "fallback_config.strategy", &["SEQUENTIAL"])?),
                },
                max_attempts: integer(fields.get("max_attempts").or(fields.get("maxAttempts")), "max_attempts")?,
            }),
            Some(other) => return Err(invalid_value(other, "fallback_config")),
        },
        experiment_id,
        usage_tracking: params.flag("usage_tracking")?,
    })
}

/// An enum field by name or number (1-based, as the proto numbers them after UNSPECIFIED).
fn enum_name(value: &Value, field: &str, names: &[&str]) -> Result<String, ApiError> {
    let found = match value {
        Value::String(text) => names.iter().find(|name| *name == text),
        Value::Number(number) => number
            .as_u64()
            .and_then(|index| index.checked_sub(1))
            .and_then(|index| names.get(index as usize)),
        _ => None,
    };
    found
        .map(|name| name.to_string())
        .ok_or_else(|| invalid_value(value, field))
}

fn integer(value: Option<&Value>, field: &str) -> Result<Option<i32>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => number
            .as_i64()
            .and_then(|number| i32::try_from(number).ok())
            .map(Some)
            .ok_or_else(|| invalid_value(&Value::Number(number.clone()), field)),
        Some(Value::String(text)) => text
            .parse::<i32>()
            .map(Some)
            .map_err(|_| invalid_value(&Value::String(text.clone()), field)),
        Some(other) => Err(invalid_value(other, field)),
    }
}

/// One model config of a request.
fn model_config(value: &Value, location: &str) -> Result<ModelConfig, ApiError> {
    let Value::Object(fields) = value else {
        return Err(invalid_value(value, location));
    };
    let field = |snake: &str, camel: &str| fields.get(snake).or_else(|| fields.get(camel));
    let linkage = field("linkage_type", "linkageType")
        .and_then(Linkage::parse)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidParameterValue,
                format!(
                    "Invalid or missing value for required parameter 'linkage_type' in {location}. Must be one of: \
                     PRIMARY, FALLBACK."
                ),
            )
        })?;
    let definition = match field("model_definition_id", "modelDefinitionId") {
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        _ => return Err(missing(&format!("{location}.model_definition_id"))),
    };
    let weight = match field("weight", "weight") {
        None | Some(Value::Null) => 1.0,
        Some(Value::Number(number)) => number.as_f64().unwrap_or(f64::NAN) as f32,
        Some(other) => return Err(invalid_value(other, "weight")),
    };
    Ok(ModelConfig {
        model_definition_id: definition,
        linkage_type: linkage,
        weight,
        fallback_order: integer(field("fallback_order", "fallbackOrder"), "fallback_order")?,
    })
}

/// A secret's configuration, normalised, its `api_base` checked against the destination policy.
async fn checked_config(
    sync: &CatalogSync,
    config: BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, ApiError> {
    let config = normalise_auth_config(config).map_err(refusal)?;
    if let Some(base) = config.get("api_base") {
        sync.destinations.check(base).await.map_err(|reason| {
            // The destination policy speaks of webhooks, whose rules these are too.
            let reason = reason
                .replace("Webhook URL", "Gateway secret api_base")
                .replace("webhook URL", "Gateway secret api_base");
            ApiError::new(ErrorCode::InvalidParameterValue, reason)
        })?;
    }
    Ok(config)
}

fn masked(value: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    value.iter().map(|(key, text)| (key.clone(), mask(text))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::params::{camel_case, snake_case};

    #[test]
    fn names_convert_both_ways() {
        assert_eq!(snake_case("secretId"), "secret_id");
        assert_eq!(snake_case("secret_id"), "secret_id");
        assert_eq!(camel_case("model_definition_id"), "modelDefinitionId");
    }

    #[test]
    fn enums_are_read_by_name_or_number() {
        assert_eq!(enum_name(&json!(1), "x", &["A"]).unwrap(), "A");
        assert_eq!(enum_name(&json!("A"), "x", &["A"]).unwrap(), "A");
        assert!(enum_name(&json!(0), "x", &["A"]).is_err());
        assert!(enum_name(&json!(-1), "x", &["A"]).is_err());
        assert!(enum_name(&json!({"a": 1}), "x", &["A"]).is_err());
    }
}
