//! The tracking service: one method per MLflow tracking operation, validating input and applying MLflow's
//! semantics before calling the metadata store.

use crate::error::{TrackingError, TrackingResult};
use crate::run_names::generate_run_name;
use crate::uris::validate_artifact_location;
use crate::validation::*;
use loopline_metadata_store::*;
use std::sync::Arc;

/// Tracking operations over a metadata store.
#[derive(Clone)]
pub struct TrackingService {
    store: Arc<dyn MetadataStore>,
}

/// A run to start, as the client describes it.
#[derive(Debug, Clone, Default)]
pub struct StartRun {
    /// Experiment id; "0" when absent.
    pub experiment_id: Option<String>,
    /// User; "" when absent.
    pub user_id: Option<String>,
    /// Name; generated when absent.
    pub run_name: Option<String>,
    /// Start time; now when absent.
    pub start_time: Option<i64>,
    /// Tags.
    pub tags: Vec<Tag>,
}

impl TrackingService {
    /// Wraps a store.
    pub fn new(store: Arc<dyn MetadataStore>) -> Self {
        Self { store }
    }

    /// The underlying store.
    pub fn store(&self) -> &Arc<dyn MetadataStore> {
        &self.store
    }

    /// Creates an experiment after checking its name, location and tags.
    pub async fn create_experiment(
        &self,
        name: &str,
        artifact_location: Option<&str>,
        tags: &[Tag],
    ) -> TrackingResult<String> {
        validate_experiment_name(name)?;
        let location = artifact_location.filter(|location| !location.is_empty());
        if let Some(location) = location {
            validate_artifact_location(location)?;
        }
        validate_tags(tags, MAX_EXPERIMENT_TAG_VALUE_LENGTH)?;
        Ok(self.store.create_experiment(name, location, tags).await?)
    }

    /// Renames an experiment.
    pub async fn rename_experiment(&self, experiment_id: &str, new_name: &str) -> TrackingResult<()> {
        validate_experiment_name(new_name)?;
        Ok(self.store.rename_experiment(experiment_id, new_name).await?)
    }

    /// Sets an experiment tag.
    pub async fn set_experiment_tag(&self, experiment_id: &str, tag: &Tag) -> TrackingResult<()> {
        validate_tags(std::slice::from_ref(tag), MAX_EXPERIMENT_TAG_VALUE_LENGTH)?;
        Ok(self.store.set_experiment_tag(experiment_id, tag).await?)
    }

    /// Starts a run, generating a name when the client gave none and keeping `mlflow.runName` in sync.
    pub async fn create_run(&self, request: StartRun) -> TrackingResult<Run> {
        validate_tags(&request.tags, MAX_RUN_TAG_VALUE_LENGTH)?;
        let tag_name = request
            .tags
            .iter()
            .find(|tag| tag.key == "mlflow.runName")
            .map(|tag| tag.value.clone());
        let run_name = request
            .run_name
            .filter(|name| !name.is_empty())
            .or(tag_name)
            .unwrap_or_else(generate_run_name);
        let new_run = NewRun {
            experiment_id: request
                .experiment_id
                .filter(|id| !id.is_empty())
                .unwrap_or_else(|| "0".to_string()),
            user_id: request.user_id.unwrap_or_default(),
            run_name,
            start_time: request.start_time.unwrap_or_else(loopline_core::time::now_millis),
            tags: request.tags,
        };
        Ok(self.store.create_run(&new_run).await?)
    }

    /// Updates a run's status, end time or name.
    pub async fn update_run(&self, run_id: &str, update: RunUpdate) -> TrackingResult<RunInfo> {
        if let Some(status) = &update.status
            && RunStatus::parse(status).is_none()
        {
            return Err(TrackingError::InvalidParameter(format!(
                "Invalid run status '{status}': expected RUNNING, SCHEDULED, FINISHED, FAILED or KILLED"
            )));
        }
        let update = RunUpdate {
            status: update
                .status
                .as_deref()
                .and_then(RunStatus::parse)
                .map(|status| status.as_str().to_string()),
            ..update
        };
        Ok(self.store.update_run(run_id, &update).await?)
    }

    /// Logs a batch of metrics, params and tags.
    pub async fn log_batch(&self, run_id: &str, batch: LogBatch) -> TrackingResult<()> {
        validate_batch(&batch)?;
        if batch.metrics.is_empty() && batch.params.is_empty() && batch.tags.is_empty() {
            self.store.get_run(run_id).await?;
            return Ok(());
        }
        Ok(self.store.log_owned_batch(run_id, batch).await?)
    }

    /// Creates a logged model, copying nothing from the run (the client sends the params it wants).
    pub async fn create_logged_model(&self, new_model: NewLoggedModel) -> TrackingResult<LoggedModel> {
        validate_tags(&new_model.tags, MAX_RUN_TAG_VALUE_LENGTH)?;
        for param in &new_model.params {
            validate_key("parameter", &param.key)?;
            validate_length("Param value", &param.key, &param.value, MAX_PARAM_VALUE_LENGTH)?;
        }
        // As MLflow: the source run is recorded as given (it may live on another server), and a model created
        // without a name gets a generated one of its own.
        const BAD_CHARACTERS: [char; 6] = ['/', ':', '.', '%', '"', '\''];
        if new_model.name.contains(BAD_CHARACTERS) {
            return Err(TrackingError::InvalidParameter(format!(
                "Invalid model name ('{}') provided. Model name must be a non-empty string and cannot contain the \
                 following characters: ('/', ':', '.', '%', '\"', \"'\")",
                new_model.name
            )));
        }
        let new_model = NewLoggedModel {
            name: if new_model.name.is_empty() {
                crate::run_names::generate_run_name()
            } else {
                new_model.name
            },
            ..new_model
        };
        Ok(self.store.create_logged_model(&new_model).await?)
    }

    /// Finalises a logged model's status.
    pub async fn finalize_logged_model(&self, model_id: &str, status: &str) -> TrackingResult<LoggedModel> {
        let status = match status {
            "LOGGED_MODEL_READY" | "2" => "LOGGED_MODEL_READY",
            "LOGGED_MODEL_UPLOAD_FAILED" | "3" => "LOGGED_MODEL_UPLOAD_FAILED",
            "LOGGED_MODEL_PENDING" | "1" => "LOGGED_MODEL_PENDING",
            other => {
                return Err(TrackingError::InvalidParameter(format!(
                    "Invalid logged model status '{other}': expected LOGGED_MODEL_READY or LOGGED_MODEL_UPLOAD_FAILED"
                )));
            }
        };
        Ok(self.store.set_logged_model_status(model_id, status).await?)
    }
}
