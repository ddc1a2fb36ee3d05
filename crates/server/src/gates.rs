//! Gates wired into the server: registered versions loaded for evaluation through the serving catalog's
//! model source (Python models only when the operator allowed them), and the registry asking the gate
//! before every alias move.

use std::sync::Arc;

use async_trait::async_trait;
use loopline_model_runtimes::PythonModels;
use loopline_pipelines::gate::evaluate::GateModel;
use loopline_pipelines::gate::service::{GateService, ModelProvider};

/// Versions fetched and loaded as serving would.
pub struct ServedModels {
    pub source: Arc<dyn loopline_serving::ModelSource>,
    pub python_models: PythonModels,
}

fn directory_size(path: &std::path::Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![path.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => pending.push(entry.path()),
                Ok(_) => total += entry.metadata().map(|m| m.len()).unwrap_or(0),
                Err(_) => {}
            }
        }
    }
    total
}

#[async_trait]
impl ModelProvider for ServedModels {
    async fn load(&self, name: &str, version: i64) -> Result<GateModel, String> {
        let fetched = self
            .source
            .fetch(name, &version.to_string())
            .await
            .map_err(|e| format!("model '{name}' version {version}: {e}"))?;
        let directory = fetched.directory.clone();
        let python_models = self.python_models;
        let loaded = tokio::task::spawn_blocking(move || {
            let size = directory_size(&directory);
            loopline_model_runtimes::load_model_with(&directory, python_models).map(|loaded| (loaded, size))
        })
        .await
        .map_err(|e| format!("loading the model stopped: {e}"))?
        .map_err(|e| format!("model '{name}' version {version} cannot be loaded: {e}"))?;
        let (loaded, size_bytes) = loaded;
        let input_columns = loaded
            .descriptor
            .signature()
            .and_then(|signature| match &signature.inputs {
                Some(loopline_model_runtime_api::Schema::Columns(columns)) => {
                    columns.iter().map(|c| c.name.clone()).collect::<Option<Vec<String>>>()
                }
                _ => None,
            });
        Ok(GateModel {
            model: loaded.model,
            input_columns,
            size_bytes,
            holder: Some(Arc::new(fetched)),
        })
    }
}

/// The registry's side: a version may take a protected alias only with a passing gate.
pub struct RegistryGate(pub Arc<GateService>);

#[async_trait]
impl loopline_model_registry::AliasGate for RegistryGate {
    async fn admit(&self, name: &str, alias: &str, version: i64) -> Result<(), String> {
        self.0.admit(name, alias, version).await
    }

    async fn admit_rename(&self, name: &str, new_name: &str) -> Result<(), String> {
        self.0.admit_rename(name, new_name).await
    }
}
