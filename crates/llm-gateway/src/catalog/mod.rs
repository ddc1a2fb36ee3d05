//! MLflow 3's AI-gateway catalog: secrets (provider keys, sealed), model definitions (a provider model and the
//! secret it uses) and endpoints (a name callers use, with primary and fallback models, tags and bindings).
//! The whole catalog is one small document, changed by the operations here (each checks what MLflow's server
//! checks and answers in its words) and stored by the caller with a compare-and-swap on its generation, so
//! replicas never lose each other's changes. [`build`] turns it into gateway models next to the YAML's.

pub mod budgets;
pub mod build;
mod entities;
pub mod guardrails;

pub use budgets::{Action, BudgetChange, BudgetPolicy, DurationUnit, Named, Scope};
pub use entities::*;
pub use guardrails::{GuardAction, Guardrail, GuardrailConfig, Judge, ReadyGuard, ScorerCopy, Stage};

use loopline_core::ErrorCode;
use std::collections::BTreeMap;

/// Most secrets, model definitions or endpoints one catalog holds (it is read whole).
pub const MAX_ENTRIES: usize = 1_000;
/// Most models, tags or bindings on one endpoint.
pub const MAX_PER_ENDPOINT: usize = 100;
/// Longest name of a secret, a model definition or an endpoint.
const MAX_NAME: usize = 255;
/// Longest provider name, model name and tag key; longest tag value and secret or config value.
const MAX_PROVIDER: usize = 64;
const MAX_MODEL_NAME: usize = 256;
const MAX_TAG_KEY: usize = 250;
const MAX_TAG_VALUE: usize = 5_000;
const MAX_VALUE: usize = 16 * 1024;
/// Most fields in one secret's value or configuration.
const MAX_FIELDS: usize = 16;
/// Keys that choose where requests go: never in a secret's value, and only `api_base` (checked) in its
/// configuration.
const ROUTING_KEYS: [&str; 4] = ["base_url", "custom_llm_provider", "fallbacks", "model_list"];

/// A refusal, in MLflow's error codes and words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CatalogError {
    /// MLflow's error code.
    pub code: ErrorCode,
    /// What was wrong.
    pub message: String,
}

impl CatalogError {
    /// An `INVALID_PARAMETER_VALUE` refusal.
    pub fn invalid(message: impl Into<String>) -> CatalogError {
        CatalogError {
            code: ErrorCode::InvalidParameterValue,
            message: message.into(),
        }
    }

    fn missing(what: &str, key: &str, value: &str) -> CatalogError {
        CatalogError {
            code: ErrorCode::ResourceDoesNotExist,
            message: format!("{what} not found ({key}='{value}')"),
        }
    }

    fn missing_text(message: String) -> CatalogError {
        CatalogError {
            code: ErrorCode::ResourceDoesNotExist,
            message,
        }
    }

    fn exists(message: String) -> CatalogError {
        CatalogError {
            code: ErrorCode::ResourceAlreadyExists,
            message,
        }
    }
}

type Result<T> = std::result::Result<T, CatalogError>;

/// A new id: MLflow's prefix and 32 hex digits.
pub fn new_id(prefix: &str) -> String {
    let bytes: [u8; 16] = rand::random();
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("{prefix}-{hex}")
}

/// A secret's field as it may be shown: its first 3 and last 4 characters, `***` when shorter than 8.
pub fn mask(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    if chars.len() < 8 {
        return "***".into();
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}...{tail}")
}

fn check_text(value: &str, field: &str, max: usize) -> Result<()> {
    if value.trim().is_empty() {
        return Err(CatalogError::invalid(format!(
            "Missing value for required parameter '{field}'. See the API docs for more information about request parameters."
        )));
    }
    if value.chars().count() > max || value.chars().any(char::is_control) {
        return Err(CatalogError::invalid(format!(
            "'{field}' must be at most {max} characters, without control characters"
        )));
    }
    Ok(())
}

/// An endpoint name: letters, digits, `_`, `-` and `.` only.
pub fn check_endpoint_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > MAX_NAME
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(CatalogError::invalid(format!(
            "Invalid endpoint name '{name}'. Name can only contain letters, numbers, underscores, hyphens, and dots."
        )));
    }
    Ok(())
}

/// A secret's value: at most 16 string fields, none that would choose where requests go.
pub fn check_secret_value(value: &BTreeMap<String, String>) -> Result<()> {
    let mut routing: Vec<&str> = value
        .keys()
        .map(String::as_str)
        .filter(|key| *key == "api_base" || ROUTING_KEYS.contains(key))
        .collect();
    routing.sort_unstable();
    if !routing.is_empty() {
        return Err(CatalogError::invalid(format!(
            "secret_value must not contain '{}': these keys choose where the gateway sends requests. Set the \
             upstream with 'api_base' in auth_config, where it is validated.",
            routing.join(", ")
        )));
    }
    check_fields(value, "secret_value")
}

fn check_fields(value: &BTreeMap<String, String>, field: &str) -> Result<()> {
    if value.len() > MAX_FIELDS {
        return Err(CatalogError::invalid(format!(
            "'{field}' holds at most {MAX_FIELDS} fields"
        )));
    }
    for (key, text) in value {
        if key.is_empty() || key.len() > MAX_PROVIDER || text.len() > MAX_VALUE {
            return Err(CatalogError::invalid(format!(
                "'{field}': field names of 1 to {MAX_PROVIDER} bytes and values of at most {MAX_VALUE} bytes"
            )));
        }
    }
    Ok(())
}

/// A secret's configuration, normalised: no keys that choose where requests go besides `api_base`, a blank
/// `api_base` dropped. The caller checks a remaining `api_base` (scheme, address).
pub fn normalise_auth_config(mut config: BTreeMap<String, String>) -> Result<BTreeMap<String, String>> {
    let routing: Vec<&str> = ROUTING_KEYS
        .iter()
        .copied()
        .filter(|key| config.contains_key(*key))
        .collect();
    if !routing.is_empty() {
        return Err(CatalogError::invalid(format!(
            "auth_config must not contain '{}': these options choose where the gateway sends requests. Set the \
             upstream with 'api_base', which is validated.",
            routing.join(", ")
        )));
    }
    if config.get("api_base").is_some_and(|base| base.trim().is_empty()) {
        config.remove("api_base");
    }
    check_fields(&config, "auth_config")?;
    Ok(config)
}

impl Catalog {
    /// Refuses when a model definition (or, with `secret`, every one using that secret) would send requests
    /// where `reach` does not allow.
    pub fn check_reach(&self, reach: &build::Reach, definition: Option<&str>, secret: Option<&str>) -> Result<()> {
        for candidate in &self.model_definitions {
            let concerned = definition == Some(candidate.model_definition_id.as_str())
                || (secret.is_some() && candidate.secret_id.as_deref() == secret);
            if !concerned {
                continue;
            }
            // One that has nowhere to go is stored and never called (MLflow keeps any provider's models);
            // one that would go where the rules forbid is refused.
            if let Ok((_, base)) = build::target_of(self, candidate) {
                reach.admits(&base).map_err(|why| {
                    CatalogError::invalid(format!("Model definition '{}' cannot be called: {why}", candidate.name))
                })?;
            }
        }
        Ok(())
    }

    fn full(&self, count: usize, what: &str) -> Result<()> {
        if count >= MAX_ENTRIES {
            return Err(CatalogError::invalid(format!(
                "a server keeps at most {MAX_ENTRIES} gateway {what}: delete unused ones first"
            )));
        }
        Ok(())
    }

    /// The secret with this id.
    pub fn secret(&self, id: &str) -> Result<&Secret> {
        self.secrets
            .iter()
            .find(|secret| secret.secret_id == id)
            .ok_or_else(|| CatalogError::missing("GatewaySecret", "secret_id", id))
    }

    fn secret_mut(&mut self, id: &str) -> Result<&mut Secret> {
        self.secrets
            .iter_mut()
            .find(|secret| secret.secret_id == id)
            .ok_or_else(|| CatalogError::missing("GatewaySecret", "secret_id", id))
    }

    /// Adds a secret (its value already sealed and masked by the caller).
    pub fn create_secret(&mut self, secret: Secret) -> Result<&Secret> {
        check_text(&secret.secret_name, "secret_name", MAX_NAME)?;
        if let Some(provider) = &secret.provider {
            check_text(provider, "provider", MAX_PROVIDER)?;
        }
        self.full(self.secrets.len(), "secrets")?;
        if self.secrets.iter().any(|other| other.secret_name == secret.secret_name) {
            return Err(CatalogError::exists(format!(
                "Secret with name '{}' already exists",
                secret.secret_name
            )));
        }
        self.secrets.push(secret);
        Ok(self.secrets.last().expect("just pushed"))
    }

    /// Changes a secret's value (when given: sealed and masked) and its configuration (when given).
    pub fn update_secret(
        &mut self,
        id: &str,
        value: Option<(String, BTreeMap<String, String>)>,
        auth_config: Option<BTreeMap<String, String>>,
        by: Option<String>,
        now: i64,
    ) -> Result<&Secret> {
        let secret = self.secret_mut(id)?;
        if let Some((sealed, masked)) = value {
            secret.sealed = sealed;
            secret.masked_values = masked;
        }
        if let Some(config) = auth_config {
            secret.auth_config = config;
        }
        secret.last_updated_by = by;
        secret.last_updated_at = now;
        Ok(secret)
    }

    /// Deletes a secret; the model definitions that used it stay, without one.
    pub fn delete_secret(&mut self, id: &str) -> Result<()> {
        self.secret(id)?;
        self.secrets.retain(|secret| secret.secret_id != id);
        for definition in &mut self.model_definitions {
            if definition.secret_id.as_deref() == Some(id) {
                definition.secret_id = None;
            }
        }
        Ok(())
    }

    /// The model definition with this id.
    pub fn definition(&self, id: &str) -> Result<&ModelDefinition> {
        self.model_definitions
            .iter()
            .find(|definition| definition.model_definition_id == id)
            .ok_or_else(|| CatalogError::missing("GatewayModelDefinition", "model_definition_id", id))
    }

    /// The name of the secret a definition uses, when it still exists.
    pub fn secret_name_of(&self, definition: &ModelDefinition) -> Option<&str> {
        let id = definition.secret_id.as_deref()?;
        self.secrets
            .iter()
            .find(|secret| secret.secret_id == id)
            .map(|secret| secret.secret_name.as_str())
    }

    fn check_definition(&self, definition: &ModelDefinition) -> Result<()> {
        check_text(&definition.name, "name", MAX_NAME)?;
        check_text(&definition.provider, "provider", MAX_PROVIDER)?;
        check_text(&definition.model_name, "model_name", MAX_MODEL_NAME)?;
        if let Some(secret) = &definition.secret_id {
            self.secret(secret)?;
        }
        if self
            .model_definitions
            .iter()
            .any(|other| other.name == definition.name && other.model_definition_id != definition.model_definition_id)
        {
            return Err(CatalogError::exists(format!(
                "Model definition with name '{}' already exists",
                definition.name
            )));
        }
        Ok(())
    }

    /// Adds a model definition.
    pub fn create_definition(&mut self, definition: ModelDefinition) -> Result<&ModelDefinition> {
        if definition.secret_id.as_deref().is_none_or(str::is_empty) {
            return Err(CatalogError::invalid(
                "Missing value for required parameter 'secret_id'. See the API docs for more information about request parameters.",
            ));
        }
        self.full(self.model_definitions.len(), "model definitions")?;
        self.check_definition(&definition)?;
        self.model_definitions.push(definition);
        Ok(self.model_definitions.last().expect("just pushed"))
    }

    /// Changes the fields given of a model definition.
    pub fn update_definition(
        &mut self,
        id: &str,
        change: ModelDefinition,
        by: Option<String>,
        now: i64,
    ) -> Result<&ModelDefinition> {
        let mut definition = self.definition(id)?.clone();
        if !change.name.is_empty() {
            definition.name = change.name;
        }
        if let Some(secret) = change.secret_id.filter(|secret| !secret.is_empty()) {
            definition.secret_id = Some(secret);
        }
        if !change.model_name.is_empty() {
            definition.model_name = change.model_name;
        }
        if !change.provider.is_empty() {
            definition.provider = change.provider;
        }
        if by.is_some() {
            definition.last_updated_by = by;
        }
        definition.last_updated_at = now;
        self.check_definition(&definition)?;
        let slot = self
            .model_definitions
            .iter_mut()
            .find(|slot| slot.model_definition_id == id)
            .expect("found above");
        *slot = definition;
        Ok(slot)
    }

    /// Deletes a model definition no endpoint uses.
    pub fn delete_definition(&mut self, id: &str) -> Result<()> {
        self.definition(id)?;
        let used = self.endpoints.iter().any(|endpoint| {
            endpoint
                .model_mappings
                .iter()
                .any(|mapping| mapping.model_definition_id == id)
        });
        if used {
            return Err(CatalogError {
                code: ErrorCode::InvalidState,
                message: "Cannot delete model definition that is currently in use by endpoints. Detach it from all \
                          endpoints first."
                    .into(),
            });
        }
        self.model_definitions
            .retain(|definition| definition.model_definition_id != id);
        Ok(())
    }

    /// The endpoint with this id.
    pub fn endpoint(&self, id: &str) -> Result<&Endpoint> {
        self.endpoints
            .iter()
            .find(|endpoint| endpoint.endpoint_id == id)
            .ok_or_else(|| CatalogError::missing("GatewayEndpoint", "endpoint_id", id))
    }

    /// The endpoint with this name.
    pub fn endpoint_named(&self, name: &str) -> Result<&Endpoint> {
        self.endpoints
            .iter()
            .find(|endpoint| endpoint.name == name)
            .ok_or_else(|| CatalogError::missing("GatewayEndpoint", "name", name))
    }

    fn endpoint_mut(&mut self, id: &str) -> Result<&mut Endpoint> {
        self.endpoints
            .iter_mut()
            .find(|endpoint| endpoint.endpoint_id == id)
            .ok_or_else(|| CatalogError::missing("GatewayEndpoint", "endpoint_id", id))
    }

    fn mappings(&self, configs: &[ModelConfig], by: &Option<String>, now: i64) -> Result<Vec<Mapping>> {
        if configs.len() > MAX_PER_ENDPOINT {
            return Err(CatalogError::invalid(format!(
                "an endpoint has at most {MAX_PER_ENDPOINT} models"
            )));
        }
        let mut unknown: Vec<&str> = configs
            .iter()
            .map(|config| config.model_definition_id.as_str())
            .filter(|id| self.definition(id).is_err())
            .collect();
        unknown.sort_unstable();
        unknown.dedup();
        if !unknown.is_empty() {
            return Err(CatalogError {
                code: ErrorCode::ResourceDoesNotExist,
                message: format!("Model definitions not found: {}", unknown.join(", ")),
            });
        }
        let mut mappings: Vec<Mapping> = Vec::with_capacity(configs.len());
        for config in configs {
            check_weight(config.weight)?;
            if mappings.iter().any(|mapping| {
                mapping.model_definition_id == config.model_definition_id && mapping.linkage_type == config.linkage_type
            }) {
                return Err(CatalogError::exists(format!(
                    "Model definition '{}' is listed twice as {}",
                    config.model_definition_id,
                    config.linkage_type.name()
                )));
            }
            mappings.push(Mapping {
                mapping_id: new_id("m"),
                model_definition_id: config.model_definition_id.clone(),
                linkage_type: config.linkage_type,
                weight: config.weight,
                fallback_order: config.fallback_order,
                created_at: now,
                created_by: by.clone(),
            });
        }
        Ok(mappings)
    }

    /// Adds an endpoint (its experiment, when tracked, already made by the caller).
    pub fn create_endpoint(&mut self, change: EndpointChange, by: Option<String>, now: i64) -> Result<&Endpoint> {
        let name = change.name.unwrap_or_default();
        check_endpoint_name(&name)?;
        let configs = change.model_configs.unwrap_or_default();
        if configs.is_empty() {
            return Err(CatalogError::invalid(
                "Endpoint must have at least one model configuration",
            ));
        }
        self.full(self.endpoints.len(), "endpoints")?;
        let model_mappings = self.mappings(&configs, &by, now)?;
        if self.endpoints.iter().any(|other| other.name == name) {
            return Err(CatalogError::exists(format!(
                "Endpoint with name '{name}' already exists"
            )));
        }
        let has_fallbacks = model_mappings
            .iter()
            .any(|mapping| mapping.linkage_type == Linkage::Fallback);
        self.endpoints.push(Endpoint {
            endpoint_id: new_id("e"),
            name,
            created_at: now,
            last_updated_at: now,
            created_by: by.clone(),
            last_updated_by: by,
            model_mappings,
            tags: BTreeMap::new(),
            routing_strategy: change.routing_strategy,
            fallback_config: change
                .fallback_config
                .or_else(|| has_fallbacks.then(FallbackConfig::default)),
            experiment_id: change.experiment_id,
            usage_tracking: change.usage_tracking.unwrap_or(true),
            bindings: Vec::new(),
        });
        Ok(self.endpoints.last().expect("just pushed"))
    }

    /// Changes what is given of an endpoint; new model configs replace all its models.
    pub fn update_endpoint(
        &mut self,
        id: &str,
        change: EndpointChange,
        by: Option<String>,
        now: i64,
    ) -> Result<&Endpoint> {
        self.endpoint(id)?;
        if let Some(name) = &change.name {
            check_endpoint_name(name)?;
            if self
                .endpoints
                .iter()
                .any(|other| &other.name == name && other.endpoint_id != id)
            {
                return Err(CatalogError::exists(format!(
                    "Endpoint with name '{name}' already exists"
                )));
            }
        }
        let mappings = match change.model_configs.filter(|configs| !configs.is_empty()) {
            Some(configs) => Some(self.mappings(&configs, &by, now)?),
            None => None,
        };
        let endpoint = self.endpoint_mut(id)?;
        if let Some(name) = change.name {
            endpoint.name = name;
        }
        if let Some(mappings) = mappings {
            endpoint.model_mappings = mappings;
        }
        if let Some(strategy) = change.routing_strategy {
            endpoint.routing_strategy = Some(strategy);
        }
        if let Some(fallback) = change.fallback_config {
            endpoint.fallback_config = Some(fallback);
        }
        if let Some(experiment) = change.experiment_id {
            endpoint.experiment_id = Some(experiment);
        }
        if let Some(tracking) = change.usage_tracking {
            endpoint.usage_tracking = tracking;
        }
        if by.is_some() {
            endpoint.last_updated_by = by;
        }
        endpoint.last_updated_at = now;
        Ok(endpoint)
    }

    /// Deletes an endpoint with its models, tags and bindings (model definitions and secrets stay).
    pub fn delete_endpoint(&mut self, id: &str) -> Result<()> {
        self.endpoint(id)?;
        self.endpoints.retain(|endpoint| endpoint.endpoint_id != id);
        self.forget_endpoint_in_guardrails(id);
        Ok(())
    }

    /// Adds a model to an endpoint.
    pub fn attach(&mut self, id: &str, config: ModelConfig, by: Option<String>, now: i64) -> Result<Mapping> {
        self.endpoint(id)?;
        let mut mapping = self.mappings(std::slice::from_ref(&config), &by, now)?;
        let mapping = mapping.pop().expect("one config, one mapping");
        let endpoint = self.endpoint_mut(id)?;
        if endpoint.model_mappings.iter().any(|other| {
            other.model_definition_id == mapping.model_definition_id && other.linkage_type == mapping.linkage_type
        }) {
            return Err(CatalogError::exists(format!(
                "Model definition '{}' is already attached to endpoint '{id}'",
                mapping.model_definition_id
            )));
        }
        if endpoint.model_mappings.len() >= MAX_PER_ENDPOINT {
            return Err(CatalogError::invalid(format!(
                "an endpoint has at most {MAX_PER_ENDPOINT} models"
            )));
        }
        endpoint.model_mappings.push(mapping.clone());
        endpoint.last_updated_at = now;
        if by.is_some() {
            endpoint.last_updated_by = by;
        }
        Ok(mapping)
    }

    /// Removes a model from an endpoint (its first mapping, whichever its linkage).
    pub fn detach(&mut self, id: &str, definition: &str) -> Result<()> {
        let endpoint = self.endpoint_mut(id)?;
        let Some(position) = endpoint
            .model_mappings
            .iter()
            .position(|mapping| mapping.model_definition_id == definition)
        else {
            return Err(CatalogError::missing_text(format!(
                "Model definition '{definition}' is not attached to endpoint '{id}'"
            )));
        };
        endpoint.model_mappings.remove(position);
        Ok(())
    }

    /// Sets (or replaces) a tag on an endpoint.
    pub fn set_tag(&mut self, id: &str, key: &str, value: &str) -> Result<()> {
        check_text(key, "key", MAX_TAG_KEY)?;
        if value.chars().count() > MAX_TAG_VALUE {
            return Err(CatalogError::invalid(format!(
                "a tag value is at most {MAX_TAG_VALUE} characters"
            )));
        }
        let endpoint = self.endpoint_mut(id)?;
        if !endpoint.tags.contains_key(key) && endpoint.tags.len() >= MAX_PER_ENDPOINT {
            return Err(CatalogError::invalid(format!(
                "an endpoint has at most {MAX_PER_ENDPOINT} tags"
            )));
        }
        endpoint.tags.insert(key.into(), value.into());
        Ok(())
    }

    /// Removes a tag (nothing when the endpoint has no such tag).
    pub fn delete_tag(&mut self, id: &str, key: &str) -> Result<()> {
        self.endpoint_mut(id)?.tags.remove(key);
        Ok(())
    }

    /// Records that a resource uses an endpoint.
    pub fn bind(&mut self, id: &str, binding: Binding) -> Result<&Binding> {
        check_resource_type(&binding.resource_type)?;
        check_text(&binding.resource_id, "resource_id", MAX_NAME)?;
        let endpoint = self.endpoint_mut(id)?;
        if endpoint
            .bindings
            .iter()
            .any(|other| other.resource_type == binding.resource_type && other.resource_id == binding.resource_id)
        {
            return Err(CatalogError::exists(format!(
                "The {} '{}' is already bound to endpoint '{id}'",
                binding.resource_type, binding.resource_id
            )));
        }
        if endpoint.bindings.len() >= MAX_PER_ENDPOINT {
            return Err(CatalogError::invalid(format!(
                "an endpoint has at most {MAX_PER_ENDPOINT} bindings"
            )));
        }
        endpoint.bindings.push(binding);
        Ok(endpoint.bindings.last().expect("just pushed"))
    }

    /// Removes a binding.
    pub fn unbind(&mut self, id: &str, resource_type: &str, resource_id: &str) -> Result<()> {
        let missing = || {
            CatalogError::missing_text(format!(
                "GatewayEndpointBinding not found (endpoint_id='{id}', resource_type='{resource_type}', \
                 resource_id='{resource_id}')"
            ))
        };
        let endpoint = self.endpoint_mut(id).map_err(|_| missing())?;
        let before = endpoint.bindings.len();
        endpoint
            .bindings
            .retain(|binding| !(binding.resource_type == resource_type && binding.resource_id == resource_id));
        if endpoint.bindings.len() == before {
            return Err(missing());
        }
        Ok(())
    }
}

fn check_weight(weight: f32) -> Result<()> {
    if !weight.is_finite() || !(0.0..=1_000_000.0).contains(&weight) {
        return Err(CatalogError::invalid(format!(
            "weight {weight} is not a number from 0 to 1000000"
        )));
    }
    Ok(())
}

/// The kinds of resource that bind to endpoints (MLflow knows scorers only).
fn check_resource_type(resource_type: &str) -> Result<()> {
    if resource_type != "scorer" {
        return Err(CatalogError::invalid(format!(
            "Invalid resource_type '{resource_type}': the only kind of resource bound to an endpoint is 'scorer'"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
