//! The HTTP wire layer. Each protocol lives in its own module; handlers extract, call one service
//! function, and map the result. Today: MLflow's REST API (tracking, registry, logged models, traces) and
//! its artifact proxy.

pub mod access;
pub mod ai_gateway;
pub mod anthropic;
pub mod error;
pub mod extract;
mod graphql;
pub mod mlflow;
pub mod openai;
pub mod otlp;
pub mod ui;
pub mod webhooks;

use axum::Router;
use loopline_artifact_store::ArtifactStore;
use loopline_model_registry::RegistryService;
use loopline_tracking::TrackingService;
use std::sync::Arc;

/// Limits the wire layer enforces.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Largest JSON request body, in bytes.
    pub max_json_body_bytes: usize,
    /// Largest artifact upload, in bytes.
    pub max_artifact_bytes: u64,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_json_body_bytes: 16 * 1024 * 1024,
            max_artifact_bytes: 64 * 1024 * 1024 * 1024,
        }
    }
}

/// Everything handlers need.
#[derive(Clone)]
pub struct AppState {
    /// Tracking operations.
    pub tracking: TrackingService,
    /// Registry operations.
    pub registry: RegistryService,
    /// Artifact storage behind the proxy.
    pub artifacts: Arc<dyn ArtifactStore>,
    /// Request limits.
    pub limits: HttpLimits,
    /// Registry webhooks: destination rules, secrets and deliveries.
    pub webhooks: webhooks::Webhooks,
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    mlflow::routes(state)
}
