//! Models the server runs itself: the local sentence-embedding model (`loopline server --embeddings-model`).
//! They are deployments of a provider of kind [`ProviderKind::Local`](crate::config::ProviderKind::Local), so
//! their calls pass the same keys, limits, budgets, caches and traces as a remote provider's.

use crate::config::{Deployment, GatewayConfig, ModelGroup, Provider, ProviderKind};
use crate::provider::Failure;
use serde_json::{Map, Value};
use std::time::Duration;

/// The name of the provider that stands for the server itself.
pub const LOCAL_PROVIDER: &str = "loopline-local";

/// What answers a local provider's calls.
#[async_trait::async_trait]
pub trait LocalModels: Send + Sync {
    /// OpenAI's embeddings answer for `request`, whose `model` is a local model's name.
    async fn embeddings(&self, request: &Map<String, Value>) -> Result<Value, Failure>;
}

impl GatewayConfig {
    /// Offers the local embedding model `name` under that name, unless the configuration already has a model
    /// so named (the operator's own routing wins). Answers whether it was added.
    pub fn with_local_embeddings(&mut self, name: &str) -> bool {
        if self.models.iter().any(|model| model.name == name) {
            return false;
        }
        let provider = match self
            .providers
            .iter()
            .position(|provider| provider.kind == ProviderKind::Local)
        {
            Some(index) => index,
            None => {
                self.providers.push(Provider {
                    name: LOCAL_PROVIDER.into(),
                    kind: ProviderKind::Local,
                    base_url: String::new(),
                    api_key: None,
                    api_version: None,
                    guarded: false,
                });
                self.providers.len() - 1
            }
        };
        self.models.push(ModelGroup {
            name: name.into(),
            deployments: vec![Deployment {
                provider,
                model: name.into(),
                weight: 1,
                price: None,
            }],
            fallbacks: Vec::new(),
            timeout: Duration::from_secs(120),
            retries: 0,
            cache_ttl: Duration::ZERO,
            guards: crate::guardrails::Guards::default(),
            strategy: crate::routing::Strategy::default(),
            semantic: None,
            hidden: false,
            trace_experiment_id: None,
            endpoint_id: None,
        });
        true
    }
}
