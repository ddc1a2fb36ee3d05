//! The catalog's entities as stored (serde) and as MLflow's messages name their fields.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A provider key: its value sealed, only a masked form ever shown.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Secret {
    pub secret_id: String,
    pub secret_name: String,
    #[serde(default)]
    pub provider: Option<String>,
    /// The value (a JSON object of strings), sealed by the server's secrets key together with the secret's id.
    pub sealed: String,
    /// Each field of the value, masked.
    pub masked_values: BTreeMap<String, String>,
    #[serde(default)]
    pub auth_config: BTreeMap<String, String>,
    pub created_at: i64,
    pub last_updated_at: i64,
    #[serde(default)]
    pub created_by: Option<String>,
    #[serde(default)]
    pub last_updated_by: Option<String>,
}

/// A provider's model and the secret it is called with.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelDefinition {
    pub model_definition_id: String,
    pub name: String,
    /// `None` once the secret was deleted (the model is then skipped).
    #[serde(default)]
    pub secret_id: Option<String>,
    pub provider: String,
    pub model_name: String,
    pub created_at: i64,
    pub last_updated_at: i64,
    #[serde(default)]
    pub created_by: Option<String>,
    #[serde(default)]
    pub last_updated_by: Option<String>,
}

/// Whether an endpoint's model answers first or when the primaries failed.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum Linkage {
    #[serde(rename = "PRIMARY")]
    Primary,
    #[serde(rename = "FALLBACK")]
    Fallback,
}

impl Linkage {
    /// The name MLflow's enum gives it.
    pub fn name(self) -> &'static str {
        match self {
            Linkage::Primary => "PRIMARY",
            Linkage::Fallback => "FALLBACK",
        }
    }

    /// From MLflow's enum name or number.
    pub fn parse(value: &serde_json::Value) -> Option<Linkage> {
        match value {
            serde_json::Value::String(text) if text == "PRIMARY" => Some(Linkage::Primary),
            serde_json::Value::String(text) if text == "FALLBACK" => Some(Linkage::Fallback),
            serde_json::Value::Number(number) if number.as_i64() == Some(1) => Some(Linkage::Primary),
            serde_json::Value::Number(number) if number.as_i64() == Some(2) => Some(Linkage::Fallback),
            _ => None,
        }
    }
}

/// A model on an endpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Mapping {
    pub mapping_id: String,
    pub model_definition_id: String,
    pub linkage_type: Linkage,
    pub weight: f32,
    #[serde(default)]
    pub fallback_order: Option<i32>,
    pub created_at: i64,
    #[serde(default)]
    pub created_by: Option<String>,
}

/// What a model config in a request asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub model_definition_id: String,
    pub linkage_type: Linkage,
    pub weight: f32,
    pub fallback_order: Option<i32>,
}

/// How an endpoint falls back.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FallbackConfig {
    #[serde(default)]
    pub strategy: Option<String>,
    #[serde(default)]
    pub max_attempts: Option<i32>,
}

/// A resource (a scorer) that uses an endpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Binding {
    pub resource_type: String,
    pub resource_id: String,
    pub created_at: i64,
    pub last_updated_at: i64,
    #[serde(default)]
    pub created_by: Option<String>,
}

/// A name callers use and the models behind it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Endpoint {
    pub endpoint_id: String,
    pub name: String,
    pub created_at: i64,
    pub last_updated_at: i64,
    #[serde(default)]
    pub created_by: Option<String>,
    #[serde(default)]
    pub last_updated_by: Option<String>,
    #[serde(default)]
    pub model_mappings: Vec<Mapping>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// `REQUEST_BASED_TRAFFIC_SPLIT`: primaries share the traffic by weight; otherwise the first answers.
    #[serde(default)]
    pub routing_strategy: Option<String>,
    #[serde(default)]
    pub fallback_config: Option<FallbackConfig>,
    #[serde(default)]
    pub experiment_id: Option<String>,
    #[serde(default = "yes")]
    pub usage_tracking: bool,
    #[serde(default)]
    pub bindings: Vec<Binding>,
}

fn yes() -> bool {
    true
}

/// What a new or changed endpoint asks for (`None`: unchanged on update).
#[derive(Debug, Clone, Default)]
pub struct EndpointChange {
    pub name: Option<String>,
    pub model_configs: Option<Vec<ModelConfig>>,
    pub routing_strategy: Option<String>,
    pub fallback_config: Option<FallbackConfig>,
    pub experiment_id: Option<String>,
    pub usage_tracking: Option<bool>,
}

/// The catalog.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Catalog {
    #[serde(default)]
    pub secrets: Vec<Secret>,
    #[serde(default)]
    pub model_definitions: Vec<ModelDefinition>,
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    #[serde(default)]
    pub budget_policies: Vec<super::budgets::BudgetPolicy>,
    #[serde(default)]
    pub guardrails: Vec<super::guardrails::Guardrail>,
    #[serde(default)]
    pub guardrail_configs: Vec<super::guardrails::GuardrailConfig>,
}
