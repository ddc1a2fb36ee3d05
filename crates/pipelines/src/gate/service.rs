//! Gates on the server: policies per registered model, evaluations of a version (and of the champion, on
//! the same dataset version) with their evidence stored, the registry's question "may this version take
//! this alias?", and overrides with a reason.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use loopline_artifact_store::{ArtifactPath, ArtifactStore};
use loopline_metadata_store::{GateEvaluation, GateOverride, GatePolicyRecord, MetadataStore, StoreError};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use super::decide::{GateSubject, decide};
use super::evaluate::{GateModel, evaluate};
use super::policy::GatePolicy;
use crate::data::ContentId;
use crate::datasets::{DataError, OBJECTS_PREFIX};

/// Slice columns an evaluation may group by.
const MAX_SLICE_COLUMNS: usize = 20;
/// Values of one slice column reported (the rest are left out).
const MAX_SLICE_VALUES: usize = 1_000;

/// What an evaluate step asks for.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EvaluationRequest {
    /// The evaluation data, `name@version`.
    dataset: String,
    /// The truth's column.
    target: String,
    #[serde(default)]
    task: Option<super::policy::Task>,
    #[serde(default)]
    positive_label: Option<String>,
    #[serde(default)]
    exclude: Vec<String>,
    /// Columns whose values are slices.
    #[serde(default)]
    slices: Vec<String>,
}

/// Loads registered versions for evaluation.
#[async_trait]
pub trait ModelProvider: Send + Sync {
    /// A version, loaded.
    async fn load(&self, name: &str, version: i64) -> Result<GateModel, String>;
}

/// Gates.
pub struct GateService {
    store: Arc<dyn MetadataStore>,
    artifacts: Arc<dyn ArtifactStore>,
    models: Arc<dyn ModelProvider>,
    scratch: PathBuf,
}

impl GateService {
    /// The service; evaluation tables are copied into `scratch`.
    pub fn new(
        store: Arc<dyn MetadataStore>,
        artifacts: Arc<dyn ArtifactStore>,
        models: Arc<dyn ModelProvider>,
        scratch: PathBuf,
    ) -> Arc<GateService> {
        Arc::new(GateService {
            store,
            artifacts,
            models,
            scratch,
        })
    }

    /// Sets a registered model's policy (checked first).
    pub async fn set_policy(&self, name: &str, policy: Value, actor: &str) -> Result<GatePolicyRecord, DataError> {
        self.store.get_registered_model(name).await?;
        let parsed = GatePolicy::parse(policy).map_err(DataError::Invalid)?;
        let (dataset, version) = parsed.dataset_version();
        self.store.get_dataset_version(dataset, version).await?;
        let text = serde_json::to_string(&parsed).map_err(|e| DataError::Internal(e.to_string()))?;
        Ok(self.store.set_gate_policy(name, &text, actor).await?)
    }

    /// A model's policy.
    pub async fn policy(&self, name: &str) -> Result<(GatePolicyRecord, GatePolicy), DataError> {
        let record = self.store.get_gate_policy(name).await?;
        let value: Value = serde_json::from_str(&record.policy).map_err(|e| DataError::Internal(e.to_string()))?;
        let policy = GatePolicy::parse(value).map_err(DataError::Internal)?;
        Ok((record, policy))
    }

    /// Removes a model's policy.
    pub async fn delete_policy(&self, name: &str) -> Result<(), DataError> {
        self.store.get_gate_policy(name).await?;
        Ok(self.store.delete_gate_policy(name).await?)
    }

    /// Evaluates a version (and the champion, on the same rows) against the policy; stores the evidence.
    pub async fn evaluate(&self, name: &str, version: i64, actor: &str) -> Result<GateEvaluation, DataError> {
        let (record, policy) = self.policy(name).await?;
        let (dataset, dataset_version) = policy.dataset_version();
        let data = self.store.get_dataset_version(dataset, dataset_version).await?;
        let table = self.table(&data.content_hash, &data.source).await?;
        let candidate_version = self.store.get_model_version(name, version).await?;
        let champion_version = self.champion(name, &policy).await?.filter(|v| *v != version);
        let candidate = self.models.load(name, version).await.map_err(DataError::Invalid)?;
        let champion = match champion_version {
            Some(v) => Some(
                self.models
                    .load(name, v)
                    .await
                    .map_err(|e| DataError::Invalid(format!("the champion (version {v}): {e}")))?,
            ),
            None => None,
        };
        let subject = GateSubject {
            name: name.to_string(),
            version,
            champion_version,
            dataset: policy.dataset.clone(),
            dataset_hash: data.content_hash.clone(),
        };
        let judged = policy.clone();
        let (passed, evidence) = tokio::task::spawn_blocking(move || -> Result<(bool, Value), String> {
            let source = loopline_tabular::TableSource::open(&table).map_err(|e| e.to_string())?;
            let candidate_result = evaluate(&candidate, &source, &judged).map_err(|e| format!("the candidate: {e}"))?;
            let champion_result = match &champion {
                Some(model) => Some((
                    evaluate(model, &source, &judged).map_err(|e| format!("the champion: {e}"))?,
                    model.size_bytes,
                )),
                None => None,
            };
            Ok(decide(
                &judged,
                &subject,
                (&candidate_result, candidate.size_bytes),
                champion_result.as_ref().map(|(e, size)| (e, *size)),
            ))
        })
        .await
        .map_err(|e| DataError::Internal(format!("the evaluation stopped: {e}")))?
        .map_err(DataError::Invalid)?;
        let mut evidence = evidence;
        // What the verdict is tied to: the exact policy text and this version's identity (a model deleted
        // and registered again has new versions with the same numbers).
        evidence["policy_hash"] = Value::from(blake3::hash(record.policy.as_bytes()).to_hex().to_string());
        evidence["version_created"] = Value::from(candidate_version.creation_timestamp);
        let stored = self
            .store
            .record_gate_evaluation(&GateEvaluation {
                evaluation_id: 0,
                name: name.to_string(),
                version,
                policy_revision: record.revision,
                passed,
                evidence: evidence.to_string(),
                created_by: actor.to_string(),
                created_time: 0,
            })
            .await?;
        Ok(stored)
    }

    /// Evaluates a version over a dataset version without judging it (a pipeline's evaluate step): metrics
    /// overall and per value of each slice column.
    pub async fn evaluate_only(&self, name: &str, version: i64, request: Value) -> Result<Value, DataError> {
        let request: EvaluationRequest = serde_json::from_value(request)
            .map_err(|e| DataError::Invalid(format!("the evaluation request is not valid: {e}")))?;
        if request.slices.len() > MAX_SLICE_COLUMNS {
            return Err(DataError::Invalid(format!(
                "slices: at most {MAX_SLICE_COLUMNS} columns, not {}",
                request.slices.len()
            )));
        }
        let policy = GatePolicy::parse(serde_json::json!({
            "dataset": request.dataset,
            "target": request.target,
            "task": request.task,
            "positive_label": request.positive_label,
            "exclude": request.exclude,
            "slices": request.slices.iter().map(|column| serde_json::json!({
                "column": column, "metric": "accuracy", "max_drop": 0.0, "min_rows": 1,
            })).collect::<Vec<_>>(),
        }))
        .map_err(DataError::Invalid)?;
        let (dataset, dataset_version) = policy.dataset_version();
        let data = self.store.get_dataset_version(dataset, dataset_version).await?;
        let table = self.table(&data.content_hash, &data.source).await?;
        self.store.get_model_version(name, version).await?;
        let model = self.models.load(name, version).await.map_err(DataError::Invalid)?;
        let judged = policy.clone();
        let evaluation = tokio::task::spawn_blocking(move || -> Result<_, String> {
            let source = loopline_tabular::TableSource::open(&table).map_err(|e| e.to_string())?;
            evaluate(&model, &source, &judged).map(|evaluation| (evaluation, model.size_bytes))
        })
        .await
        .map_err(|e| DataError::Internal(format!("the evaluation stopped: {e}")))?
        .map_err(DataError::Invalid)?;
        let (evaluation, size_bytes) = evaluation;
        let mut slices = serde_json::Map::new();
        for column in &request.slices {
            let Some(values) = evaluation.side.get(column) else {
                continue;
            };
            let mut groups: std::collections::BTreeMap<&str, Vec<usize>> = std::collections::BTreeMap::new();
            for (row, value) in values.iter().enumerate() {
                if groups.len() < MAX_SLICE_VALUES || groups.contains_key(value.as_str()) {
                    groups.entry(value).or_default().push(row);
                }
            }
            let judged: Vec<Value> = groups
                .into_iter()
                .map(|(value, rows)| {
                    serde_json::json!({
                        "value": value,
                        "rows": rows.len(),
                        "metrics": evaluation.outcomes.select(&rows).metrics(),
                    })
                })
                .collect();
            slices.insert(column.clone(), Value::Array(judged));
        }
        Ok(serde_json::json!({
            "name": name,
            "version": version,
            "dataset": policy.dataset,
            "dataset_hash": data.content_hash,
            "task": evaluation.task,
            "rows": evaluation.outcomes.len(),
            "metrics": super::decide::figures(&evaluation, size_bytes),
            "slices": slices,
        }))
    }

    /// The evaluation table as a local file (copied once per content into the scratch directory, with the
    /// extension of the file it was added from so its format is known).
    async fn table(&self, hash: &str, source: &str) -> Result<PathBuf, DataError> {
        let id = ContentId::parse(hash).map_err(DataError::Internal)?;
        if id.is_directory() {
            return Err(DataError::Invalid(
                "the evaluation dataset is a directory; a gate evaluates one table file".into(),
            ));
        }
        let extension = std::path::Path::new(source)
            .extension()
            .and_then(|e| e.to_str())
            .filter(|e| ["csv", "tsv", "parquet", "arrow", "feather", "ipc", "arrows"].contains(e))
            .ok_or_else(|| {
                DataError::Invalid(format!(
                    "the evaluation dataset ({source}) is not a CSV, Parquet or Arrow file"
                ))
            })?;
        let target = self.scratch.join(format!("{}.{extension}", id.hex()));
        if target.is_file() {
            return Ok(target);
        }
        tokio::fs::create_dir_all(&self.scratch)
            .await
            .map_err(|e| DataError::Internal(format!("creating {}: {e}", self.scratch.display())))?;
        let path = ArtifactPath::parse(&format!("{OBJECTS_PREFIX}/{}", id.object_path()))
            .map_err(|e| DataError::Internal(e.to_string()))?;
        let mut download = self
            .artifacts
            .get(&path)
            .await
            .map_err(|e| DataError::Internal(e.to_string()))?;
        let staged = self.scratch.join(format!(".{}", uuid::Uuid::new_v4().simple()));
        let mut file = tokio::fs::File::create(&staged)
            .await
            .map_err(|e| DataError::Internal(e.to_string()))?;
        let mut hasher = blake3::Hasher::new();
        while let Some(chunk) = download.body.next().await {
            let chunk = chunk.map_err(|e| DataError::Internal(e.to_string()))?;
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(|e| DataError::Internal(e.to_string()))?;
        }
        file.flush().await.map_err(|e| DataError::Internal(e.to_string()))?;
        if hasher.finalize().to_hex().as_str() != id.hex() {
            let _ = tokio::fs::remove_file(&staged).await;
            return Err(DataError::Internal(format!(
                "the stored evaluation data {id} is damaged"
            )));
        }
        tokio::fs::rename(&staged, &target)
            .await
            .map_err(|e| DataError::Internal(e.to_string()))?;
        Ok(target)
    }

    /// The version the first protected alias names, if any.
    async fn champion(&self, name: &str, policy: &GatePolicy) -> Result<Option<i64>, DataError> {
        match self
            .store
            .get_model_version_by_alias(name, &policy.protected_aliases[0])
            .await
        {
            Ok(champion) => Ok(champion.version.parse::<i64>().ok()),
            Err(StoreError::NotFound(_) | StoreError::InvalidParameter(_)) => Ok(None),
            Err(other) => Err(other.into()),
        }
    }

    /// A gated model may not be renamed (to or from): its policy and evidence are kept under its name.
    pub async fn admit_rename(&self, name: &str, new_name: &str) -> Result<(), String> {
        for model in [name, new_name] {
            match self.store.get_gate_policy(model).await {
                Ok(_) => {
                    return Err(format!(
                        "Registered model '{model}' has a quality gate policy; delete it before renaming \
                         (DELETE /api/loopline/v1/registered-models/{model}/gate-policy)"
                    ));
                }
                Err(StoreError::NotFound(_)) => {}
                Err(other) => return Err(other.to_string()),
            }
        }
        Ok(())
    }

    /// Whether `version` may take `alias`: yes unless the model has a policy protecting the alias and the
    /// version's newest evaluation under the current policy did not pass (or there is none).
    pub async fn admit(&self, name: &str, alias: &str, version: i64) -> Result<(), String> {
        let (record, policy) = match self.policy(name).await {
            Ok(found) => found,
            Err(DataError::NotFound(_)) => return Ok(()),
            Err(other) => return Err(other.to_string()),
        };
        if !policy.protected_aliases.iter().any(|a| a == alias) {
            return Ok(());
        }
        let newest = self
            .store
            .gate_evaluations(name, version, 20)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .find(|e| e.policy_revision == record.revision);
        let policy_hash = blake3::hash(record.policy.as_bytes()).to_hex().to_string();
        let created = self
            .store
            .get_model_version(name, version)
            .await
            .map_err(|e| e.to_string())?
            .creation_timestamp;
        let compares = !policy.no_regression.is_empty() || policy.mcnemar_alpha.is_some() || !policy.slices.is_empty();
        let champion = self.champion(name, &policy).await.map_err(|e| e.to_string())?;
        let newest = newest.filter(|e| {
            let evidence: Value = serde_json::from_str(&e.evidence).unwrap_or_default();
            evidence["policy_hash"] == policy_hash.as_str() && evidence["version_created"] == created
        });
        match newest {
            Some(evaluation) if evaluation.passed => {
                let evidence: Value = serde_json::from_str(&evaluation.evidence).unwrap_or_default();
                let judged_against = evidence["champion_version"].as_i64();
                if compares && champion.is_some_and(|c| c != version) && judged_against != champion {
                    return Err(format!(
                        "Alias '{alias}' of '{name}' is protected by a quality gate and version {version} passed it \
                         against version {}, not the current champion (version {}). Run it again: \
                         POST /api/loopline/v1/registered-models/{name}/versions/{version}/gate",
                        judged_against.map_or("none".to_string(), |v| v.to_string()),
                        champion.unwrap_or_default()
                    ));
                }
                Ok(())
            }
            Some(evaluation) => {
                let evidence: Value = serde_json::from_str(&evaluation.evidence).unwrap_or_default();
                let failed: Vec<String> = evidence["failed"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|f| f.as_str().map(str::to_string))
                    .collect();
                Err(format!(
                    "Alias '{alias}' of '{name}' is protected by a quality gate and version {version} failed it: {}. \
                     Evidence: GET /api/loopline/v1/registered-models/{name}/versions/{version}/gate",
                    failed.join("; ")
                ))
            }
            None => Err(format!(
                "Alias '{alias}' of '{name}' is protected by a quality gate and version {version} has not passed it \
                 (no evaluation under policy revision {}). Run it: POST /api/loopline/v1/registered-models/{name}/versions/{version}/gate",
                record.revision
            )),
        }
    }

    /// Moves an alias without a passing gate, recording who and why.
    pub async fn override_alias(
        &self,
        name: &str,
        alias: &str,
        version: i64,
        reason: &str,
        actor: &str,
    ) -> Result<GateOverride, DataError> {
        let reason = reason.trim();
        if reason.len() < 3 || reason.len() > 2_000 {
            return Err(DataError::Invalid(
                "an override needs a reason (3 to 2000 characters)".into(),
            ));
        }
        let reserved = alias.eq_ignore_ascii_case("latest")
            || (alias.len() > 1 && alias.starts_with(['v', 'V']) && alias[1..].chars().all(|c| c.is_ascii_digit()));
        let shaped = !alias.is_empty()
            && alias.len() <= 255
            && alias.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if reserved || !shaped {
            return Err(DataError::Invalid(format!("'{alias}' is not a valid alias")));
        }
        self.store.get_model_version(name, version).await?;
        self.store.set_alias(name, alias, version).await?;
        Ok(self
            .store
            .record_gate_override(&GateOverride {
                override_id: 0,
                name: name.to_string(),
                alias: alias.to_string(),
                version,
                reason: reason.to_string(),
                created_by: actor.to_string(),
                created_time: 0,
            })
            .await?)
    }

    /// Newest evaluations of a version.
    pub async fn evaluations(&self, name: &str, version: i64) -> Result<Vec<GateEvaluation>, DataError> {
        Ok(self.store.gate_evaluations(name, version, 20).await?)
    }

    /// Newest overrides of a model.
    pub async fn overrides(&self, name: &str) -> Result<Vec<GateOverride>, DataError> {
        Ok(self.store.gate_overrides(name, 100).await?)
    }
}
