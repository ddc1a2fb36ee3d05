//! The management API's answers in MLflow's message shapes: secrets with masked values only, model
//! definitions with their secret's name, endpoints with their mappings (each with its model definition),
//! tags, routing and fallback settings.

use loopline_llm_gateway::catalog::{Binding, Catalog, Endpoint, Mapping, ModelDefinition, Secret};
use serde_json::{Map, Value, json};

fn insert_some(fields: &mut Map<String, Value>, key: &str, value: &Option<String>) {
    if let Some(value) = value {
        fields.insert(key.into(), Value::String(value.clone()));
    }
}

/// A secret as MLflow shows it: masked values only.
pub(super) fn secret_json(secret: &Secret) -> Value {
    let mut fields = Map::new();
    fields.insert("secret_id".into(), json!(secret.secret_id));
    fields.insert("secret_name".into(), json!(secret.secret_name));
    fields.insert("masked_values".into(), json!(secret.masked_values));
    fields.insert("created_at".into(), json!(secret.created_at));
    fields.insert("last_updated_at".into(), json!(secret.last_updated_at));
    insert_some(&mut fields, "provider", &secret.provider);
    insert_some(&mut fields, "created_by", &secret.created_by);
    insert_some(&mut fields, "last_updated_by", &secret.last_updated_by);
    if !secret.auth_config.is_empty() {
        fields.insert("auth_config".into(), json!(secret.auth_config));
    }
    Value::Object(fields)
}

pub(super) fn definition_json(catalog: &Catalog, definition: &ModelDefinition) -> Value {
    let mut fields = Map::new();
    fields.insert("model_definition_id".into(), json!(definition.model_definition_id));
    fields.insert("name".into(), json!(definition.name));
    insert_some(&mut fields, "secret_id", &definition.secret_id);
    insert_some(
        &mut fields,
        "secret_name",
        &catalog.secret_name_of(definition).map(str::to_string),
    );
    fields.insert("provider".into(), json!(definition.provider));
    fields.insert("model_name".into(), json!(definition.model_name));
    fields.insert("created_at".into(), json!(definition.created_at));
    fields.insert("last_updated_at".into(), json!(definition.last_updated_at));
    insert_some(&mut fields, "created_by", &definition.created_by);
    insert_some(&mut fields, "last_updated_by", &definition.last_updated_by);
    Value::Object(fields)
}

pub(super) fn mapping_json(catalog: &Catalog, endpoint_id: &str, mapping: &Mapping) -> Value {
    let mut fields = Map::new();
    fields.insert("mapping_id".into(), json!(mapping.mapping_id));
    fields.insert("endpoint_id".into(), json!(endpoint_id));
    fields.insert("model_definition_id".into(), json!(mapping.model_definition_id));
    if let Ok(definition) = catalog.definition(&mapping.model_definition_id) {
        fields.insert("model_definition".into(), definition_json(catalog, definition));
    }
    fields.insert("weight".into(), json!(mapping.weight));
    fields.insert("created_at".into(), json!(mapping.created_at));
    insert_some(&mut fields, "created_by", &mapping.created_by);
    fields.insert("linkage_type".into(), json!(mapping.linkage_type.name()));
    if let Some(order) = mapping.fallback_order {
        fields.insert("fallback_order".into(), json!(order));
    }
    Value::Object(fields)
}

pub(super) fn endpoint_json(catalog: &Catalog, endpoint: &Endpoint) -> Value {
    let mut fields = Map::new();
    fields.insert("endpoint_id".into(), json!(endpoint.endpoint_id));
    fields.insert("name".into(), json!(endpoint.name));
    fields.insert("created_at".into(), json!(endpoint.created_at));
    fields.insert("last_updated_at".into(), json!(endpoint.last_updated_at));
    let mappings: Vec<Value> = endpoint
        .model_mappings
        .iter()
        .map(|mapping| mapping_json(catalog, &endpoint.endpoint_id, mapping))
        .collect();
    if !mappings.is_empty() {
        fields.insert("model_mappings".into(), Value::Array(mappings));
    }
    fields.insert(
        "created_by".into(),
        json!(endpoint.created_by.clone().unwrap_or_default()),
    );
    fields.insert(
        "last_updated_by".into(),
        json!(endpoint.last_updated_by.clone().unwrap_or_default()),
    );
    if !endpoint.tags.is_empty() {
        let tags: Vec<Value> = endpoint
            .tags
            .iter()
            .map(|(key, value)| json!({"key": key, "value": value}))
            .collect();
        fields.insert("tags".into(), Value::Array(tags));
    }
    insert_some(&mut fields, "routing_strategy", &endpoint.routing_strategy);
    if let Some(fallback) = &endpoint.fallback_config {
        let mut config = Map::new();
        insert_some(&mut config, "strategy", &fallback.strategy);
        if let Some(attempts) = fallback.max_attempts {
            config.insert("max_attempts".into(), json!(attempts));
        }
        fields.insert("fallback_config".into(), Value::Object(config));
    }
    insert_some(&mut fields, "experiment_id", &endpoint.experiment_id);
    fields.insert("usage_tracking".into(), json!(endpoint.usage_tracking));
    Value::Object(fields)
}

pub(super) fn binding_json(endpoint_id: &str, binding: &Binding) -> Value {
    let mut fields = Map::new();
    fields.insert("endpoint_id".into(), json!(endpoint_id));
    fields.insert("resource_type".into(), json!(binding.resource_type));
    fields.insert("resource_id".into(), json!(binding.resource_id));
    fields.insert("created_at".into(), json!(binding.created_at));
    fields.insert("last_updated_at".into(), json!(binding.last_updated_at));
    insert_some(&mut fields, "created_by", &binding.created_by);
    insert_some(&mut fields, "last_updated_by", &binding.created_by);
    Value::Object(fields)
}
