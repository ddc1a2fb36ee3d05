//! This server's own registry and artifact store, reached in-process.

use std::sync::Arc;

use async_trait::async_trait;
use futures::TryStreamExt;
use loopline_artifact_store::{ArtifactPath, ArtifactStore};
use loopline_metadata_store::{LoggedModelSearch, MetadataStore, ModelVersion, PageRequest};

use super::{Entry, ModelRepository};

/// The registry in the metadata store and the artifact store behind the proxy.
pub struct LocalRepository {
    store: Arc<dyn MetadataStore>,
    artifacts: Arc<dyn ArtifactStore>,
}

impl LocalRepository {
    /// Over these stores.
    pub fn new(store: Arc<dyn MetadataStore>, artifacts: Arc<dyn ArtifactStore>) -> LocalRepository {
        LocalRepository { store, artifacts }
    }

    async fn version(&self, name: &str, reference: Option<&str>) -> Result<ModelVersion, String> {
        let found = match reference {
            Some(alias) if alias.starts_with('@') => self.store.get_model_version_by_alias(name, &alias[1..]).await,
            Some(number) if !number.is_empty() && number.chars().all(|c| c.is_ascii_digit()) => {
                let number = number.parse::<i64>().map_err(|e| format!("version {number}: {e}"))?;
                self.store.get_model_version(name, number).await
            }
            other => {
                let stages: Vec<String> = match other {
                    Some(stage) if !stage.eq_ignore_ascii_case("latest") => {
                        vec![
                            loopline_model_registry::normalize_stage(stage)
                                .map_err(|e| e.to_string())?
                                .to_string(),
                        ]
                    }
                    _ => Vec::new(),
                };
                let versions = self
                    .store
                    .get_latest_versions(name, &stages)
                    .await
                    .map_err(|e| e.to_string())?;
                let newest = versions.into_iter().max_by_key(|v| v.version_number).ok_or_else(|| {
                    format!(
                        "model '{name}' has no version{}",
                        other.map(|s| format!(" in stage {s}")).unwrap_or_default()
                    )
                })?;
                return refuse_prompts(newest);
            }
        };
        let version = found.map_err(|e| e.to_string())?;
        refuse_prompts(version)
    }
}

/// A prompt version (a template the registry keeps for `mlflow.genai.load_prompt`) has no model to serve or
/// evaluate: its source is one of MLflow's placeholders.
fn refuse_prompts(version: ModelVersion) -> Result<ModelVersion, String> {
    let is_prompt = version
        .tags
        .iter()
        .any(|tag| tag.key == "mlflow.prompt.is_prompt" && tag.value.eq_ignore_ascii_case("true"));
    if is_prompt {
        return Err(format!(
            "'{}' version {} is a prompt, not a model: load it with mlflow.genai.load_prompt; prompts cannot be served",
            version.name, version.version
        ));
    }
    Ok(version)
}

/// A version as the catalog names it (digits) as the store numbers it.
fn version_number(version: &str) -> Result<i64, String> {
    version
        .parse::<i64>()
        .map_err(|_| format!("version '{version}' is not a number"))
}

#[async_trait]
impl ModelRepository for LocalRepository {
    async fn version_digest(&self, name: &str, version: &str) -> Result<Option<String>, String> {
        let version = self
            .store
            .get_model_version(name, version_number(version)?)
            .await
            .map_err(|e| e.to_string())?;
        Ok(version.content_digest)
    }

    async fn record_version_digest(&self, name: &str, version: &str, digest: &str) -> Result<(), String> {
        self.store
            .record_model_version_digest(name, version_number(version)?, digest)
            .await
            .map_err(|e| e.to_string())
    }

    async fn version_location(&self, name: &str, reference: Option<&str>) -> Result<(String, String), String> {
        let version = self.version(name, reference).await?;
        Ok((version.version, version.storage_location))
    }

    async fn logged_model_location(&self, model_id: &str) -> Result<String, String> {
        let model = self.store.get_logged_model(model_id).await.map_err(|e| e.to_string())?;
        Ok(model.info.artifact_uri)
    }

    async fn run_location(&self, run_id: &str) -> Result<(String, String), String> {
        let run = self.store.get_run(run_id).await.map_err(|e| e.to_string())?;
        Ok((run.info.artifact_uri, run.info.experiment_id))
    }

    async fn run_model_location(
        &self,
        run_id: &str,
        experiment_id: &str,
        name: &str,
    ) -> Result<Option<String>, String> {
        let page = self
            .store
            .search_logged_models(&LoggedModelSearch {
                experiment_ids: vec![experiment_id.to_string()],
                filter: Some(super::runs_models_filter(run_id)),
                page: PageRequest {
                    max_results: 100,
                    page_token: None,
                },
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?;
        Ok(page
            .items
            .into_iter()
            .find(|m| m.info.name == name)
            .map(|m| m.info.artifact_uri))
    }

    async fn list(&self, path: &str) -> Result<Vec<Entry>, String> {
        let path = ArtifactPath::parse(path).map_err(|e| e.to_string())?;
        let entries = self.artifacts.list(&path).await.map_err(|e| e.to_string())?;
        Ok(entries
            .into_iter()
            .map(|e| Entry {
                name: e.name,
                is_dir: e.is_dir,
            })
            .collect())
    }

    async fn read(&self, path: &str) -> Result<Vec<u8>, String> {
        let artifact = ArtifactPath::parse(path).map_err(|e| e.to_string())?;
        let download = self.artifacts.get(&artifact).await.map_err(|e| e.to_string())?;
        let chunks: Vec<bytes::Bytes> = download
            .body
            .try_collect()
            .await
            .map_err(|e| format!("reading {path}: {e}"))?;
        Ok(chunks.concat())
    }
}
