//! MLflow 3's AI-gateway API on the tracking server: the management routes under `/api/3.0/mlflow/gateway/`
//! (and `/ajax-api/3.0/`) that MLflow's client and UI use for secrets, model definitions and endpoints, the
//! UI's discovery routes, and the invocation routes MLflow gives each endpoint under `/gateway/`. Endpoints
//! are served by the same gateway as the configuration file's models (limits, guardrails, traces and all).
//!
//! The catalog is one document in the metadata store, replaced with a compare-and-swap on its generation.
//! The replica that changes it serves the change at once; the others look at the generation at most once a
//! second while calls arrive, and load the new catalog when it moved.

pub mod budgets;
pub mod discovery;
pub mod guardrails;
pub mod invoke;
pub mod management;
mod params;
mod shapes;

use crate::error::ApiError;
use crate::webhooks::address::DestinationPolicy;
use crate::webhooks::seal::Sealer;
use loopline_core::ErrorCode;
use loopline_llm_gateway::catalog::{Catalog, CatalogError, ReadyGuard, Secret};
use loopline_llm_gateway::live::LiveGateway;
use loopline_metadata_store::MetadataStore;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a replica looks for catalog changes made elsewhere, while calls arrive.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// Attempts at a change when other replicas keep changing the catalog first.
const ATTEMPTS: usize = 16;
/// The largest catalog document read (the entries' counts are bounded, so this is never reached honestly).
const MAX_DOCUMENT: usize = 64 << 20;

/// The catalog, where it is stored, and the gateway that serves it.
pub struct CatalogSync {
    pub store: Arc<dyn MetadataStore>,
    pub live: Arc<LiveGateway>,
    sealer: Arc<Sealer>,
    /// Where a secret's `api_base` may point.
    pub destinations: DestinationPolicy,
    next_check: Mutex<Instant>,
    /// This server's changes, one at a time (they would only race each other's compare-and-swap).
    writer: tokio::sync::Mutex<()>,
    /// The catalog's scorer guardrails by endpoint name, as served now.
    guards: std::sync::RwLock<(i64, Arc<Guards>)>,
}

/// Scorer guardrails by the name of the endpoint they guard.
type Guards = std::collections::HashMap<String, Vec<ReadyGuard>>;

impl CatalogSync {
    /// The catalog stored in `store`, served by `live`, its secrets sealed by `sealer`.
    pub fn new(
        store: Arc<dyn MetadataStore>,
        live: Arc<LiveGateway>,
        sealer: Arc<Sealer>,
        destinations: DestinationPolicy,
    ) -> CatalogSync {
        CatalogSync {
            store,
            live,
            sealer,
            destinations,
            next_check: Mutex::new(Instant::now()),
            writer: tokio::sync::Mutex::new(()),
            guards: std::sync::RwLock::new((i64::MIN, Arc::new(Guards::new()))),
        }
    }

    /// The stored catalog and its generation.
    pub async fn load(&self) -> Result<(i64, Catalog), ApiError> {
        stored_catalog(self.store.as_ref()).await
    }

    /// Serves the stored catalog if it changed (now, whether or not a check is due).
    pub async fn refresh(&self) -> Result<(), ApiError> {
        let generation = self.store.gateway_catalog_generation().await?;
        if generation != self.live.generation() {
            let (generation, catalog) = self.load().await?;
            self.install(generation, &catalog);
        }
        Ok(())
    }

    /// Serves catalog changes made by other replicas, looking at most once a second.
    pub async fn refresh_if_due(&self) {
        {
            let mut next = self.next_check.lock().expect("catalog check time");
            let now = Instant::now();
            if now < *next {
                return;
            }
            *next = now + CHECK_EVERY;
        }
        if let Err(error) = self.refresh().await {
            tracing::warn!(error = %error.message, "the gateway catalog could not be read; serving the one loaded before");
        }
    }

    fn install(&self, generation: i64, catalog: &Catalog) {
        self.live
            .install(generation, catalog, &|secret: &Secret| self.open(secret));
        // Two refreshes may end out of order: the newer catalog's guardrails stay, as its endpoints do.
        let mut guards = self.guards.write().expect("guardrails");
        if generation > guards.0 {
            *guards = (generation, Arc::new(catalog.guards_by_endpoint()));
        }
    }

    /// The scorer guardrails that run on calls of the endpoint named `endpoint`, in order (none: empty).
    pub fn guards_for(&self, endpoint: &str) -> Vec<ReadyGuard> {
        let guards = self.guards.read().expect("guardrails").1.clone();
        guards.get(endpoint).cloned().unwrap_or_default()
    }

    /// Applies `change` to the newest catalog and stores it, retrying when another writer came first; the
    /// result is served at once.
    pub async fn change<T>(
        &self,
        mut change: impl FnMut(&mut Catalog) -> Result<T, CatalogError>,
    ) -> Result<T, ApiError> {
        let _one_at_a_time = self.writer.lock().await;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                // Another replica changed it meanwhile: wait a little, differently each time, and read it again.
                let jitter: u64 = rand::random::<u64>() % 20;
                tokio::time::sleep(Duration::from_millis(5 * attempt as u64 + jitter)).await;
            }
            let (generation, mut catalog) = self.load().await?;
            let answer = change(&mut catalog).map_err(refusal)?;
            let body = serde_json::to_string(&catalog).map_err(|error| {
                ApiError::new(
                    ErrorCode::InternalError,
                    format!("writing the gateway catalog: {error}"),
                )
            })?;
            if self.store.put_gateway_catalog(generation, &body).await? {
                self.install(generation + 1, &catalog);
                return Ok(answer);
            }
        }
        Err(ApiError::new(
            ErrorCode::TemporarilyUnavailable,
            "the gateway catalog is being changed by others at the same time; retry",
        ))
    }

    /// A secret's value sealed for it.
    pub fn seal(&self, secret_id: &str, value: &BTreeMap<String, String>) -> String {
        let inner = serde_json::json!({"secret_id": secret_id, "value": value});
        self.sealer.seal(&inner.to_string())
    }

    /// A secret's value, when it opens under this server's key and was sealed for this secret.
    fn open(&self, secret: &Secret) -> Option<BTreeMap<String, String>> {
        let text = self.sealer.open(&secret.sealed)?;
        let mut inner: Map<String, Value> = serde_json::from_str(&text).ok()?;
        if inner.get("secret_id").and_then(Value::as_str) != Some(secret.secret_id.as_str()) {
            return None;
        }
        serde_json::from_value(inner.remove("value")?).ok()
    }
}

/// The catalog stored in `store` and its generation (an empty one, generation 0, when none was written).
pub async fn stored_catalog(store: &dyn MetadataStore) -> Result<(i64, Catalog), ApiError> {
    let Some((generation, body)) = store.gateway_catalog().await? else {
        return Ok((0, Catalog::default()));
    };
    if body.len() > MAX_DOCUMENT {
        return Err(ApiError::new(
            ErrorCode::InternalError,
            "the stored gateway catalog is larger than any this server writes",
        ));
    }
    let catalog = serde_json::from_str(&body).map_err(|error| {
        ApiError::new(
            ErrorCode::InternalError,
            format!("the stored gateway catalog cannot be read: {error}"),
        )
    })?;
    Ok((generation, catalog))
}

/// A catalog refusal as MLflow answers it.
pub fn refusal(error: CatalogError) -> ApiError {
    ApiError::new(error.code, error.message)
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as i64)
}

/// Every `(method, path, operation)` under `prefix` as (method, full path), for the permission table.
pub(super) fn op_route_list<O>(prefix: &str, routes: &[(&'static str, &str, O)]) -> Vec<(&'static str, String)> {
    routes
        .iter()
        .map(|(method, path, _)| (*method, format!("{prefix}{path}")))
        .collect()
}

/// A router of one handler per `(method, path, operation)` under `prefix`, each answering `answer(sync, op,
/// request)` as JSON or as MLflow's error.
pub(super) fn op_routes<O, F, Fut>(
    prefix: &str,
    routes: &[(&str, &str, O)],
    sync: Arc<CatalogSync>,
    answer: F,
) -> axum::Router
where
    O: Copy + Send + Sync + 'static,
    F: Fn(Arc<CatalogSync>, O, axum::extract::Request) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Value, ApiError>> + Send + 'static,
{
    use axum::response::IntoResponse;
    use axum::routing::{delete, get, patch, post};
    let mut router = axum::Router::new();
    for (method, path, op) in routes {
        let op = *op;
        let answer = answer.clone();
        let handler = move |axum::extract::State(sync): axum::extract::State<Arc<CatalogSync>>,
                            request: axum::extract::Request| {
            let answer = answer.clone();
            async move {
                match answer(sync, op, request).await {
                    Ok(value) => axum::Json(value).into_response(),
                    Err(error) => error.into_response(),
                }
            }
        };
        let route = match *method {
            "GET" => get(handler),
            "DELETE" => delete(handler),
            "PATCH" => patch(handler),
            _ => post(handler),
        };
        router = router.route(&format!("{prefix}{path}"), route);
    }
    router.with_state(sync)
}
