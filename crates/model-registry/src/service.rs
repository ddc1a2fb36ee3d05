//! Registry operations.

use crate::error::{RegistryError, RegistryResult};
use loopline_metadata_store::*;
use loopline_tracking::uris::validate_model_version_source;
use loopline_tracking::validation::{MAX_REGISTRY_TAG_VALUE_LENGTH, validate_tags};
use std::sync::Arc;

/// The tag marking a registered model or version as a prompt.
const PROMPT_TAG: &str = "mlflow.prompt.is_prompt";
/// The sources MLflow's senders give prompt versions (the client's and the store's placeholders).
const PROMPT_SOURCES: [&str; 2] = ["dummy-source", "prompt-template"];
/// The logged-model tag listing the versions registered from a model.
const MODEL_VERSIONS_TAG: &str = "mlflow.modelVersions";
/// Longest alias name.
const MAX_ALIAS_LENGTH: usize = 255;

/// A version to create, as the client describes it.
#[derive(Debug, Clone, Default)]
pub struct CreateModelVersion {
    /// Registered model name.
    pub name: String,
    /// Source URI.
    pub source: String,
    /// Run id, if given.
    pub run_id: Option<String>,
    /// Logged model id, if given.
    pub model_id: Option<String>,
    /// Run link.
    pub run_link: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Tags.
    pub tags: Vec<Tag>,
}

/// Takes the digest of the files a new version's source names, so that serving can refuse files that were
/// replaced after registration.
#[async_trait::async_trait]
pub trait ContentSealer: Send + Sync {
    /// The digest of the model at `storage_location` (`None` when it lives where this server does not read,
    /// such as an external bucket), or why the model cannot be read.
    async fn digest(&self, storage_location: &str) -> Result<Option<Sealed>, String>;
}

/// What a sealer read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// `sha256:<hex>` over the model's files; `None` when there were none to read yet (the first load takes
    /// it then).
    pub digest: Option<String>,
    /// Where they are, as a path below the artifact proxy's root.
    pub artifact_path: String,
}

/// Decides whether a version may take an alias (a quality gate); the registry asks before every alias move
/// made through it.
#[async_trait::async_trait]
pub trait AliasGate: Send + Sync {
    /// `Ok` when `version` may take `alias`; otherwise why not, for the caller.
    async fn admit(&self, name: &str, alias: &str, version: i64) -> Result<(), String>;
    /// `Ok` when the model may be renamed (a gated model may not: its policy and evidence name it).
    async fn admit_rename(&self, _name: &str, _new_name: &str) -> Result<(), String> {
        Ok(())
    }
}

/// Registry operations over a metadata store.
#[derive(Clone)]
pub struct RegistryService {
    store: Arc<dyn MetadataStore>,
    sealer: Option<Arc<dyn ContentSealer>>,
    alias_gate: Option<Arc<dyn AliasGate>>,
    source_pattern: Option<regex::Regex>,
}

/// Accepts stage names in any case and returns MLflow's spelling.
pub fn normalize_stage(stage: &str) -> RegistryResult<&'static str> {
    MODEL_VERSION_STAGES
        .iter()
        .find(|known| known.eq_ignore_ascii_case(stage))
        .copied()
        .ok_or_else(|| {
            RegistryError::InvalidParameter(format!(
                "Invalid Model Version stage: {stage}. Value must be one of None, Staging, Production, Archived."
            ))
        })
}

/// Parses a version number sent as a string.
pub fn parse_version(version: &str) -> RegistryResult<i64> {
    version
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|number| *number > 0)
        .ok_or_else(|| {
            RegistryError::InvalidParameter(format!("Model version must be a positive integer, got '{version}'."))
        })
}

fn validate_model_name(name: &str) -> RegistryResult<()> {
    if name.trim().is_empty() {
        return Err(RegistryError::InvalidParameter(
            "Registered model name cannot be empty.".to_string(),
        ));
    }
    if name.contains('/') && name.split('/').any(|segment| segment == "..") {
        return Err(RegistryError::InvalidParameter(format!(
            "Invalid registered model name '{name}'."
        )));
    }
    Ok(())
}

fn validate_alias(alias: &str) -> RegistryResult<()> {
    let invalid_shape = alias.is_empty()
        || alias.len() > MAX_ALIAS_LENGTH
        || !alias
            .chars()
            .all(|character| character.is_alphanumeric() || character == '_' || character == '-');
    let reserved = alias.eq_ignore_ascii_case("latest")
        || (alias.len() > 1
            && alias.starts_with(['v', 'V'])
            && alias[1..].chars().all(|character| character.is_ascii_digit()));
    if invalid_shape || reserved {
        return Err(RegistryError::InvalidParameter(format!(
            "Invalid alias name: '{alias}'. Aliases may only contain alphanumerics, underscores and dashes, be at most {MAX_ALIAS_LENGTH} characters, and may not be 'latest' or of the form 'v<number>'."
        )));
    }
    Ok(())
}

impl RegistryService {
    /// Wraps a store.
    pub fn new(store: Arc<dyn MetadataStore>) -> Self {
        Self {
            store,
            sealer: None,
            alias_gate: None,
            source_pattern: None,
        }
    }

    /// Refuses new versions whose source `pattern` does not find a match in (the operator's rule, as MLflow's
    /// `MLFLOW_CREATE_MODEL_VERSION_SOURCE_VALIDATION_REGEX`).
    pub fn with_source_pattern(mut self, pattern: Option<regex::Regex>) -> Self {
        self.source_pattern = pattern;
        self
    }

    /// Asks `gate` before every alias move.
    pub fn with_alias_gate(mut self, gate: Arc<dyn AliasGate>) -> Self {
        self.alias_gate = Some(gate);
        self
    }

    /// Records the digest of every new version's files with `sealer`.
    pub fn with_sealer(mut self, sealer: Arc<dyn ContentSealer>) -> Self {
        self.sealer = Some(sealer);
        self
    }

    /// The underlying store.
    pub fn store(&self) -> &Arc<dyn MetadataStore> {
        &self.store
    }

    /// Creates a registered model.
    pub async fn create_registered_model(
        &self,
        name: &str,
        tags: &[Tag],
        description: &str,
    ) -> RegistryResult<RegisteredModel> {
        validate_model_name(name)?;
        validate_tags(tags, MAX_REGISTRY_TAG_VALUE_LENGTH)?;
        Ok(self.store.create_registered_model(name, tags, description).await?)
    }

    /// Renames a registered model.
    pub async fn rename_registered_model(&self, name: &str, new_name: &str) -> RegistryResult<RegisteredModel> {
        validate_model_name(new_name)?;
        if let Some(gate) = &self.alias_gate {
            gate.admit_rename(name, new_name)
                .await
                .map_err(RegistryError::InvalidParameter)?;
        }
        Ok(self.store.rename_registered_model(name, new_name).await?)
    }

    /// Sets a registered-model tag.
    pub async fn set_registered_model_tag(&self, name: &str, tag: &Tag) -> RegistryResult<()> {
        validate_tags(std::slice::from_ref(tag), MAX_REGISTRY_TAG_VALUE_LENGTH)?;
        Ok(self.store.set_registered_model_tag(name, tag).await?)
    }

    /// Sets a version tag.
    pub async fn set_model_version_tag(&self, name: &str, version: &str, tag: &Tag) -> RegistryResult<()> {
        validate_tags(std::slice::from_ref(tag), MAX_REGISTRY_TAG_VALUE_LENGTH)?;
        Ok(self
            .store
            .set_model_version_tag(name, parse_version(version)?, tag)
            .await?)
    }

    /// Creates a version, linking it to its logged model or run and recording the link on the model.
    pub async fn create_model_version(&self, request: CreateModelVersion) -> RegistryResult<ModelVersion> {
        validate_model_name(&request.name)?;
        validate_tags(&request.tags, MAX_REGISTRY_TAG_VALUE_LENGTH)?;
        if let Some(pattern) = &self.source_pattern
            && !pattern.is_match(&request.source)
        {
            return Err(RegistryError::InvalidParameter(format!(
                "Invalid model version source: '{}'.",
                request.source
            )));
        }
        // A prompt version (MLflow's prompt registry) is text in its tags: its source is one of MLflow's
        // placeholders, never fetched, never sealed.
        let is_prompt = request
            .tags
            .iter()
            .rev()
            .find(|tag| tag.key == PROMPT_TAG)
            .is_some_and(|tag| tag.value.eq_ignore_ascii_case("true"));
        if is_prompt {
            if !PROMPT_SOURCES.contains(&request.source.as_str()) {
                return Err(RegistryError::InvalidParameter(format!(
                    "Invalid prompt source: '{}'. Prompt sources must use an MLflow placeholder.",
                    request.source
                )));
            }
            let version = self
                .store
                .create_model_version(&NewModelVersion {
                    name: request.name.clone(),
                    source: request.source.clone(),
                    run_id: request.run_id.clone().unwrap_or_default(),
                    run_link: request.run_link.unwrap_or_default(),
                    description: request.description.unwrap_or_default(),
                    tags: request.tags,
                    model_id: None,
                    storage_location: request.source,
                    user_id: String::new(),
                    content_digest: None,
                    sealed_path: None,
                })
                .await?;
            return Ok(version);
        }
        validate_model_version_source(&request.source)?;
        let model_id = request.model_id.clone().filter(|id| !id.is_empty());
        let source_model_id = request
            .source
            .strip_prefix("models:/")
            .filter(|rest| rest.starts_with("m-"));
        if let Some(source_model_id) = source_model_id
            && model_id.as_deref() != Some(source_model_id.trim_end_matches('/'))
        {
            return Err(RegistryError::InvalidParameter(format!(
                "Invalid model version source: '{}'. The model_id request parameter must identify the logged model in the source, '{}'.",
                request.source, source_model_id
            )));
        }
        let mut run_id = request.run_id.clone().unwrap_or_default();
        let mut storage_location = request.source.clone();
        if let Some(model_id) = &model_id {
            let logged_model = self.store.get_logged_model(model_id).await?;
            if run_id.is_empty() {
                run_id = logged_model.info.source_run_id.clone();
            }
            if source_model_id.is_some() {
                storage_location = logged_model.info.artifact_uri.clone();
            }
        }
        // A version copied from another (`models:/NAME/VERSION`, as `copy_model_version` sends) is stored where
        // that one is, as MLflow resolves it.
        if source_model_id.is_none()
            && let Some((source_name, source_version)) = request
                .source
                .strip_prefix("models:/")
                .and_then(|rest| rest.trim_end_matches('/').rsplit_once('/'))
                .filter(|(name, version)| !name.is_empty() && version.bytes().all(|b| b.is_ascii_digit()))
        {
            let original = self
                .get_model_version(source_name, source_version)
                .await
                .map_err(|error| {
                    RegistryError::InvalidParameter(format!(
                        "Unable to fetch model from model URI source artifact location '{}'.Error: {error}",
                        request.source
                    ))
                })?;
            storage_location = original.storage_location;
        }
        let mut sealed = None;
        if let Some(sealer) = &self.sealer {
            // The digest of what is there now: serving refuses the version if its files change later.
            match sealer.digest(&storage_location).await {
                Ok(found) => sealed = found,
                Err(reason) => {
                    tracing::warn!(source = %request.source, %reason, "the new version's files could not be read; it is registered without a digest");
                }
            }
        }
        let version = self
            .store
            .create_model_version(&NewModelVersion {
                name: request.name.clone(),
                source: request.source.clone(),
                run_id,
                run_link: request.run_link.unwrap_or_default(),
                description: request.description.unwrap_or_default(),
                tags: request.tags,
                model_id: model_id.clone(),
                storage_location,
                user_id: String::new(),
                content_digest: sealed.as_ref().and_then(|sealed| sealed.digest.clone()),
                sealed_path: sealed.map(|sealed| sealed.artifact_path),
            })
            .await?;
        if let Some(model_id) = &model_id {
            self.record_version_on_logged_model(model_id, &version).await?;
        }
        Ok(version)
    }

    async fn record_version_on_logged_model(&self, model_id: &str, version: &ModelVersion) -> RegistryResult<()> {
        let logged_model = self.store.get_logged_model(model_id).await?;
        let existing = logged_model.info.tags.iter().find(|tag| tag.key == MODEL_VERSIONS_TAG);
        let mut entries: Vec<serde_json::Value> = existing
            .and_then(|tag| serde_json::from_str(&tag.value).ok())
            .unwrap_or_default();
        entries.push(serde_json::json!({"name": version.name, "version": version.version_number}));
        // Written as MLflow writes it (Python's `json.dumps`), since clients compare the text.
        let tag = Tag::new(
            MODEL_VERSIONS_TAG,
            loopline_core::python_json::dumps(&serde_json::Value::Array(entries)),
        );
        Ok(self.store.set_logged_model_tags(model_id, &[tag]).await?)
    }

    /// Parses a version number sent as a string.
    pub fn parse_version_number(version: &str) -> RegistryResult<i64> {
        parse_version(version)
    }

    /// Gets a version.
    pub async fn get_model_version(&self, name: &str, version: &str) -> RegistryResult<ModelVersion> {
        Ok(self.store.get_model_version(name, parse_version(version)?).await?)
    }

    /// Where a client downloads a version from.
    pub async fn download_uri(&self, name: &str, version: &str) -> RegistryResult<String> {
        let model_version = self.get_model_version(name, version).await?;
        Ok(model_version.storage_location)
    }

    /// Moves a version between stages.
    pub async fn transition_stage(
        &self,
        name: &str,
        version: &str,
        stage: &str,
        archive_existing: bool,
    ) -> RegistryResult<ModelVersion> {
        let stage = normalize_stage(stage)?;
        Ok(self
            .store
            .transition_model_version_stage(name, parse_version(version)?, stage, archive_existing)
            .await?)
    }

    /// Newest version per stage.
    pub async fn latest_versions(&self, name: &str, stages: &[String]) -> RegistryResult<Vec<ModelVersion>> {
        let mut normalized = Vec::with_capacity(stages.len());
        for stage in stages {
            normalized.push(normalize_stage(stage)?.to_string());
        }
        Ok(self.store.get_latest_versions(name, &normalized).await?)
    }

    /// Points an alias at a version.
    pub async fn set_alias(&self, name: &str, alias: &str, version: &str) -> RegistryResult<()> {
        validate_alias(alias)?;
        let version = parse_version(version)?;
        if let Some(gate) = &self.alias_gate {
            self.store.get_model_version(name, version).await?;
            gate.admit(name, alias, version)
                .await
                .map_err(RegistryError::InvalidParameter)?;
        }
        Ok(self.store.set_alias(name, alias, version).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_and_aliases_follow_mlflow_rules() {
        assert_eq!(normalize_stage("production").unwrap(), "Production");
        assert!(normalize_stage("prod").is_err());
        assert!(validate_alias("champion").is_ok());
        assert!(validate_alias("latest").is_err());
        assert!(validate_alias("v3").is_err());
        assert!(validate_alias("a/b").is_err());
        assert_eq!(parse_version("3").unwrap(), 3);
        assert!(parse_version("x").is_err());
    }
}
