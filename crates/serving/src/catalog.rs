//! Which models answer: a [`Catalog`] maps a model name and an optional version or alias to a running
//! model. [`FixedCatalog`] serves one model (`loopline serve -m`); [`LoadingCatalog`] loads registry versions
//! on first use through a [`ModelSource`], keeps them loaded, and remembers why a version failed to load so
//! its endpoints report not-ready with the reason while every other model keeps serving.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use loopline_model_runtime_api::ModelDescriptor;
use tokio::sync::OnceCell;

use crate::metrics::Metrics;
use crate::runner::{ModelRunner, RunnerConfig};

/// A model ready to answer.
#[derive(Clone, Debug)]
pub struct Served {
    /// The registered (or given) name.
    pub name: String,
    /// The running model.
    pub runner: Arc<ModelRunner>,
    /// Its `MLmodel`.
    pub descriptor: Arc<ModelDescriptor>,
    /// The model's files on local disk, when the catalog fetched them: kept as long as the model is served
    /// (a restarted Python worker reads them again) and removed when the last holder lets go.
    pub files: Option<Arc<FetchedModel>>,
}

/// A model directory made available locally, and whatever removes it again once dropped.
pub struct FetchedModel {
    /// The directory holding `MLmodel`.
    pub directory: PathBuf,
    /// Dropped with this value (a temporary directory that deletes itself); `None` for directories that
    /// belong to someone else.
    pub cleanup: Option<Box<dyn Send + Sync>>,
}

impl std::fmt::Debug for FetchedModel {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("FetchedModel")
            .field("directory", &self.directory)
            .finish_non_exhaustive()
    }
}

/// Why no model answers.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CatalogError {
    /// No such model or version (404).
    #[error("{0}")]
    NotFound(String),
    /// It exists but cannot serve (503), with the reason.
    #[error("{0}")]
    NotReady(String),
}

/// Finds running models.
#[async_trait]
pub trait Catalog: Send + Sync {
    /// The model `name` at `reference` (a version number or an alias; `None` for the default), loading it if
    /// needed.
    async fn get(&self, name: &str, reference: Option<&str>) -> Result<Served, CatalogError>;

    /// Models loaded now (for metrics and readiness).
    fn loaded(&self) -> Vec<Served>;

    /// Whether the server can serve: for a fixed model, whether it loaded.
    fn ready(&self) -> Result<(), String> {
        Ok(())
    }
}

/// One model, loaded at start.
pub struct FixedCatalog {
    served: Served,
}

impl FixedCatalog {
    /// Serves `served` under its name.
    pub fn new(served: Served) -> FixedCatalog {
        FixedCatalog { served }
    }
}

#[async_trait]
impl Catalog for FixedCatalog {
    async fn get(&self, name: &str, reference: Option<&str>) -> Result<Served, CatalogError> {
        if name != self.served.name {
            return Err(CatalogError::NotFound(format!(
                "no model named '{name}'; this server serves '{}'",
                self.served.name
            )));
        }
        match reference {
            Some(version) if version != self.served.runner.version() => Err(CatalogError::NotFound(format!(
                "model '{name}' has no version '{version}' here; this server serves version '{}'",
                self.served.runner.version()
            ))),
            _ => Ok(self.served.clone()),
        }
    }

    fn loaded(&self) -> Vec<Served> {
        vec![self.served.clone()]
    }
}

/// Where registry versions come from.
#[async_trait]
pub trait ModelSource: Send + Sync {
    /// The concrete version `reference` names (a number, an alias, or `None` for the newest version).
    async fn resolve(&self, name: &str, reference: Option<&str>) -> Result<String, CatalogError>;

    /// Makes the version's model directory available locally; it is removed when the result is dropped.
    async fn fetch(&self, name: &str, version: &str) -> Result<FetchedModel, CatalogError>;
}

type Slot = Arc<OnceCell<Result<Served, (String, Instant)>>>;

/// A model name and the version or alias asked for.
type Reference = (String, Option<String>);

/// Registry versions loaded on first use.
pub struct LoadingCatalog {
    source: Arc<dyn ModelSource>,
    config: RunnerConfig,
    metrics: Arc<Metrics>,
    slots: Mutex<HashMap<(String, String), Slot>>,
    retry_after: Duration,
    /// Recent resolutions of (model, reference) to a version, so a request does not query the registry.
    resolved: Mutex<HashMap<Reference, (String, Instant)>>,
}

/// How long a resolved reference is trusted: a moved alias or a deleted version is seen within this time.
const RESOLUTION_TTL: Duration = Duration::from_secs(1);

impl LoadingCatalog {
    /// A catalog over `source`; a failed load is retried after `retry_after`.
    pub fn new(
        source: Arc<dyn ModelSource>,
        config: RunnerConfig,
        metrics: Arc<Metrics>,
        retry_after: Duration,
    ) -> Self {
        LoadingCatalog {
            source,
            config,
            metrics,
            slots: Mutex::new(HashMap::new()),
            retry_after,
            resolved: Mutex::new(HashMap::new()),
        }
    }

    fn slot(&self, key: &(String, String)) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(slot) = slots.get(key) {
            let stale = matches!(slot.get(), Some(Err((_, at))) if at.elapsed() >= self.retry_after);
            if !stale {
                return slot.clone();
            }
        }
        let slot: Slot = Arc::new(OnceCell::new());
        slots.insert(key.clone(), slot.clone());
        slot
    }

    async fn resolve(&self, name: &str, reference: Option<&str>) -> Result<String, CatalogError> {
        let key = (name.to_string(), reference.map(str::to_string));
        let cached = {
            let resolved = self.resolved.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            resolved
                .get(&key)
                .filter(|(_, at)| at.elapsed() < RESOLUTION_TTL)
                .map(|(version, _)| version.clone())
        };
        if let Some(version) = cached {
            return Ok(version);
        }
        let version = self.source.resolve(name, reference).await?;
        let mut resolved = self.resolved.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if resolved.len() > 10_000 {
            resolved.retain(|_, (_, at)| at.elapsed() < RESOLUTION_TTL);
        }
        resolved.insert(key, (version.clone(), Instant::now()));
        Ok(version)
    }

    /// Unloads every version of `name` except `keep` (a running request keeps its model until it finishes).
    pub fn retain(&self, name: &str, keep: &[String]) {
        let mut slots = self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        slots.retain(|(model, version), _| model != name || keep.contains(version));
    }

    async fn load(&self, name: &str, version: &str) -> Result<Served, (String, Instant)> {
        let failed = |message: String| (message, Instant::now());
        let files = Arc::new(
            self.source
                .fetch(name, version)
                .await
                .map_err(|e| failed(e.to_string()))?,
        );
        let directory = files.directory.clone();
        // A failed load drops `files` here, which removes the download: retries leave nothing behind.
        let python_models = self.config.python_models;
        let loaded =
            tokio::task::spawn_blocking(move || loopline_model_runtimes::load_model_with(&directory, python_models))
                .await
                .map_err(|e| failed(format!("loading the model stopped: {e}")))?
                .map_err(|e| failed(format!("model '{name}' version {version} cannot be loaded: {e}")))?;
        tracing::info!(model = name, version, "model loaded");
        Ok(Served {
            name: name.to_string(),
            runner: ModelRunner::start(name, version, loaded.model, self.config, self.metrics.clone()),
            descriptor: Arc::new(loaded.descriptor),
            files: Some(files),
        })
    }
}

#[async_trait]
impl Catalog for LoadingCatalog {
    async fn get(&self, name: &str, reference: Option<&str>) -> Result<Served, CatalogError> {
        let version = self.resolve(name, reference).await?;
        let key = (name.to_string(), version.clone());
        let slot = self.slot(&key);
        let result = slot.get_or_init(|| self.load(name, &version)).await;
        match result {
            Ok(served) => Ok(served.clone()),
            Err((message, _)) => {
                tracing::warn!(model = name, version, reason = %message, "model not ready");
                Err(CatalogError::NotReady(message.clone()))
            }
        }
    }

    fn loaded(&self) -> Vec<Served> {
        let slots = self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        slots
            .values()
            .filter_map(|slot| slot.get().and_then(|r| r.as_ref().ok()).cloned())
            .collect()
    }
}
