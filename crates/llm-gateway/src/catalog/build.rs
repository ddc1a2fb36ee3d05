//! The catalog as gateway models: each endpoint becomes a model callers name, its primary models the
//! deployments (all of them shared by weight with `REQUEST_BASED_TRAFFIC_SPLIT`, else the first), its fallback
//! models hidden groups tried in `fallback_order`, as many as `fallback_config.max_attempts` allows. A model
//! whose secret was deleted, or does not open, is skipped (and said so in the log).

use super::{Catalog, Endpoint, Linkage, Mapping};

/// Opens a secret's sealed value: its fields, or `None` when it does not open under this server's key.
pub type Opener<'a> = &'a dyn Fn(&super::Secret) -> Option<BTreeMap<String, String>>;
use crate::config::{Deployment, GatewayConfig, ModelGroup, Provider, ProviderKind, Secret};
use std::collections::BTreeMap;
use std::time::Duration;

/// A provider MLflow's catalog may name: its wire format and where it is, unless the secret's `api_base` says.
pub struct Known {
    /// MLflow's provider name.
    pub name: &'static str,
    /// How it is spoken to.
    pub kind: ProviderKind,
    /// Its public base URL (`None`: the secret's configuration must give `api_base`).
    pub base: Option<&'static str>,
}

/// The providers the catalog's models may use.
pub const PROVIDERS: &[Known] = &[
    Known {
        name: "anthropic",
        kind: ProviderKind::Anthropic,
        base: Some("https://api.anthropic.com/v1"),
    },
    Known {
        name: "azure",
        kind: ProviderKind::Azure,
        base: None,
    },
    Known {
        name: "deepseek",
        kind: ProviderKind::OpenaiCompatible,
        base: Some("https://api.deepseek.com/v1"),
    },
    Known {
        name: "fireworks_ai",
        kind: ProviderKind::OpenaiCompatible,
        base: Some("https://api.fireworks.ai/inference/v1"),
    },
    Known {
        name: "groq",
        kind: ProviderKind::OpenaiCompatible,
        base: Some("https://api.groq.com/openai/v1"),
    },
    Known {
        name: "mistral",
        kind: ProviderKind::OpenaiCompatible,
        base: Some("https://api.mistral.ai/v1"),
    },
    Known {
        name: "ollama",
        kind: ProviderKind::OpenaiCompatible,
        base: Some("http://localhost:11434/v1"),
    },
    Known {
        name: "openai",
        kind: ProviderKind::Openai,
        base: Some("https://api.openai.com/v1"),
    },
    Known {
        name: "openrouter",
        kind: ProviderKind::OpenaiCompatible,
        base: Some("https://openrouter.ai/api/v1"),
    },
    Known {
        name: "together_ai",
        kind: ProviderKind::OpenaiCompatible,
        base: Some("https://api.together.xyz/v1"),
    },
    Known {
        name: "vllm",
        kind: ProviderKind::OpenaiCompatible,
        base: None,
    },
    Known {
        name: "xai",
        kind: ProviderKind::OpenaiCompatible,
        base: Some("https://api.x.ai/v1"),
    },
];

/// The provider by MLflow's name.
pub fn known(name: &str) -> Option<&'static Known> {
    PROVIDERS.iter().find(|known| known.name == name)
}

/// Where catalog providers may be reached: the operator's schemes, and public addresses only unless private
/// ones are allowed (the rules a secret's `api_base` is checked by when it is saved, held again when the
/// catalog is served and, for names, when each connection is made).
#[derive(Debug, Clone)]
pub struct Reach {
    /// URL schemes allowed (lower case).
    pub allowed_schemes: Vec<String>,
    /// Whether private, loopback and link-local addresses may be reached.
    pub allow_private: bool,
}

impl Default for Reach {
    fn default() -> Self {
        Reach {
            allowed_schemes: vec!["https".into()],
            allow_private: false,
        }
    }
}

impl Reach {
    /// Whether a base URL may be called; `Ok(true)` when its connections must go to public addresses only.
    pub fn admits(&self, base: &str) -> Result<bool, String> {
        let url = reqwest::Url::parse(base).map_err(|error| format!("'{base}' is not a URL: {error}"))?;
        if !self.allowed_schemes.iter().any(|scheme| scheme == url.scheme()) {
            return Err(format!(
                "'{base}' uses the scheme '{}'; allowed: {} (see --gateway-api-base-allowed-schemes)",
                url.scheme(),
                self.allowed_schemes.join(", ")
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!(
                "'{base}' carries credentials; put the key in the secret's value"
            ));
        }
        let host = url.host_str().unwrap_or_default();
        if host.is_empty() {
            return Err(format!("'{base}' has no host"));
        }
        // `localhost` and its subdomains are loopback whatever DNS says (RFC 6761).
        let local_name = host.eq_ignore_ascii_case("localhost") || host.to_ascii_lowercase().ends_with(".localhost");
        let private_address = host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| !loopline_core::net::is_public(address));
        if !self.allow_private && (local_name || private_address) {
            return Err(format!(
                "'{base}' is a non-public address (see --gateway-api-base-allow-private-addresses)"
            ));
        }
        Ok(!self.allow_private)
    }
}

/// The value MLflow's traffic split names.
pub const TRAFFIC_SPLIT: &str = "REQUEST_BASED_TRAFFIC_SPLIT";

/// How long a catalog model's answer may take (the YAML's default).
fn timeout() -> Duration {
    Duration::from_secs(crate::config::default_timeout())
}

/// `base` with the catalog's endpoints added as models (a YAML model of the same name wins).
pub fn with_catalog(base: &GatewayConfig, catalog: &Catalog, open: Opener<'_>, reach: &Reach) -> GatewayConfig {
    let mut config = base.clone();
    config.budget_policies = catalog.budget_policies.clone();
    let mut providers: BTreeMap<String, usize> = BTreeMap::new();
    for endpoint in &catalog.endpoints {
        if base.model(&endpoint.name).is_some() {
            tracing::warn!(endpoint = %endpoint.name, "an MLflow gateway endpoint has the name of a model in the gateway's configuration file, which answers for it");
            continue;
        }
        let mut deployment_of = |mapping: &Mapping| -> Option<Deployment> {
            let definition = catalog.definition(&mapping.model_definition_id).ok()?;
            let key = definition.model_definition_id.clone();
            let provider = match providers.get(&key) {
                Some(index) => *index,
                None => {
                    let provider = provider_of(catalog, &definition.model_definition_id, open, reach)
                        .map_err(|why| {
                            tracing::warn!(endpoint = %endpoint.name, model = %definition.name, %why, "an MLflow gateway model is skipped");
                        })
                        .ok()?;
                    config.providers.push(provider);
                    providers.insert(key, config.providers.len() - 1);
                    config.providers.len() - 1
                }
            };
            Some(Deployment {
                provider,
                model: definition.model_name.clone(),
                weight: (mapping.weight * 100.0).round().clamp(1.0, 100_000_000.0) as u32,
                price: base.catalog_price(&definition.provider, &definition.model_name),
            })
        };
        let mut primaries: Vec<Deployment> = endpoint
            .model_mappings
            .iter()
            .filter(|mapping| mapping.linkage_type == Linkage::Primary)
            .filter_map(&mut deployment_of)
            .collect();
        if primaries.is_empty() {
            continue;
        }
        if endpoint.routing_strategy.as_deref() != Some(TRAFFIC_SPLIT) {
            primaries.truncate(1);
        }
        let mut fallbacks = Vec::new();
        if let Some(fallback) = &endpoint.fallback_config {
            let mut ordered: Vec<&Mapping> = endpoint
                .model_mappings
                .iter()
                .filter(|mapping| mapping.linkage_type == Linkage::Fallback)
                .collect();
            ordered.sort_by_key(|mapping| (mapping.fallback_order.is_none(), mapping.fallback_order));
            let allowed = fallback
                .max_attempts
                .filter(|attempts| *attempts > 0)
                .map_or(ordered.len(), |attempts| attempts as usize);
            for (index, mapping) in ordered.into_iter().take(allowed).enumerate() {
                if let Some(deployment) = deployment_of(mapping) {
                    config.models.push(group(
                        format!("{}\u{1}fallback{index}", endpoint.name),
                        vec![deployment],
                        Vec::new(),
                        endpoint,
                        true,
                    ));
                    fallbacks.push(config.models.len() - 1);
                }
            }
        }
        config
            .models
            .push(group(endpoint.name.clone(), primaries, fallbacks, endpoint, false));
    }
    config
}

fn group(
    name: String,
    deployments: Vec<Deployment>,
    fallbacks: Vec<usize>,
    endpoint: &Endpoint,
    hidden: bool,
) -> ModelGroup {
    ModelGroup {
        name,
        deployments,
        fallbacks,
        timeout: timeout(),
        // MLflow's endpoints try each model once; fallbacks are their retries.
        retries: 0,
        cache_ttl: Duration::ZERO,
        guards: crate::guardrails::Guards::default(),
        strategy: crate::routing::Strategy::Weighted,
        semantic: None,
        hidden,
        trace_experiment_id: endpoint.experiment_id.clone().filter(|_| endpoint.usage_tracking),
        endpoint_id: Some(endpoint.endpoint_id.clone()),
    }
}

/// Where a model definition's requests go, with its secret opened.
fn provider_of(catalog: &Catalog, definition_id: &str, open: Opener<'_>, reach: &Reach) -> Result<Provider, String> {
    let definition = catalog.definition(definition_id).map_err(|error| error.message)?;
    let secret_id = definition.secret_id.as_deref().ok_or("its secret was deleted")?;
    let secret = catalog.secret(secret_id).map_err(|error| error.message)?;
    let value = open(secret).ok_or_else(|| {
        format!(
            "its secret {} does not open with this server's secrets key (did LOOPLINE_SECRETS_KEY change?)",
            secret.secret_id
        )
    })?;
    let api_key = value
        .get("api_key")
        .or_else(|| (value.len() == 1).then(|| value.values().next()).flatten())
        .cloned();
    let (kind, base) = target_of(catalog, definition)?;
    let guarded = reach.admits(&base)?;
    Ok(Provider {
        // MLflow's provider name, as the deployment header, metrics and traces show it (`openai/gpt-4o`).
        name: definition.provider.clone(),
        kind,
        base_url: base,
        api_key: api_key.map(Secret::new),
        api_version: secret
            .auth_config
            .get("api_version")
            .cloned()
            .or_else(|| (kind == ProviderKind::Azure).then(|| crate::config::AZURE_API_VERSION.to_string())),
        guarded,
    })
}

/// How and where a model definition's requests go: its provider's wire format (Azure when its secret says
/// `api_type: azure`), and its secret's `api_base`, else its provider's public URL.
pub fn target_of(catalog: &Catalog, definition: &super::ModelDefinition) -> Result<(ProviderKind, String), String> {
    let config = definition
        .secret_id
        .as_deref()
        .and_then(|id| catalog.secret(id).ok())
        .map(|secret| &secret.auth_config);
    let api_base = config
        .and_then(|config| config.get("api_base"))
        .map(|base| base.trim_end_matches('/').to_string());
    // A provider this gateway does not know is called as OpenAI-compatible, at its secret's `api_base`.
    let Some(known) = known(&definition.provider) else {
        return api_base.map(|base| (ProviderKind::OpenaiCompatible, base)).ok_or_else(|| {
            format!(
                "provider '{}' is not one this gateway knows: give its secret an 'api_base' for its OpenAI-compatible \
                 API, or use one of the supported providers",
                definition.provider
            )
        });
    };
    let azure = known.kind == ProviderKind::Azure
        || matches!(
            config.and_then(|config| config.get("api_type")).map(String::as_str),
            Some("azure" | "azuread")
        );
    let base = api_base
        .or(if azure { None } else { known.base.map(str::to_string) })
        .ok_or_else(|| {
            format!(
                "provider '{}' needs 'api_base' in the secret's auth_config",
                definition.provider
            )
        })?;
    Ok((if azure { ProviderKind::Azure } else { known.kind }, base))
}
