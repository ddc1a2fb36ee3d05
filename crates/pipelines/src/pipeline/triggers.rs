//! Triggers of registered pipelines: a cron schedule, a new dataset version, a new version of a registered
//! model, and a monitor's retraining request. Each pipeline keeps a cursor per trigger; moving it and queueing
//! the run it causes is decided through the pipeline's revision, so of several replicas one starts the run.
//! A trigger that fires while a run of the pipeline is queued starts nothing more (the queued run reads the
//! newest data when it starts), nor does a retraining request while a run is in progress.

use std::sync::Arc;

use loopline_metadata_store::{PipelineRecord, StoreError};
use serde_json::{Value, json};

use super::schedule::Schedule;
use super::service::{Cause, PipelineService, TriggerState};
use super::spec::Trigger;
use crate::datasets::DataError;

/// Monitor events read per check.
const EVENTS_PER_CHECK: usize = 200;

impl PipelineService {
    /// Where each trigger starts from: now, and the newest dataset version, model version and monitor event
    /// (what happened before registration starts nothing).
    pub(super) async fn initial_state(&self, triggers: &[Trigger]) -> Result<TriggerState, DataError> {
        let mut state = TriggerState {
            schedule_checked_ms: self.clock.now_ms(),
            ..TriggerState::default()
        };
        for trigger in triggers {
            match trigger {
                Trigger::Schedule(_) => {}
                Trigger::Dataset(name) => {
                    state.datasets.insert(name.clone(), self.newest_dataset(name).await?);
                }
                Trigger::Model(name) => {
                    state.models.insert(name.clone(), self.newest_model(name).await?);
                }
                Trigger::Alert(monitor) => {
                    state.alerts.insert(monitor.clone(), self.last_event(monitor).await?);
                }
            }
        }
        Ok(state)
    }

    async fn newest_dataset(&self, name: &str) -> Result<i64, DataError> {
        match self.store.latest_dataset_version(name).await {
            Ok(version) => Ok(version.version),
            Err(StoreError::NotFound(_)) => Ok(0),
            Err(other) => Err(other.into()),
        }
    }

    async fn newest_model(&self, name: &str) -> Result<i64, DataError> {
        match self.store.get_latest_versions(name, &[]).await {
            Ok(versions) => Ok(versions
                .iter()
                .filter_map(|v| v.version.parse::<i64>().ok())
                .max()
                .unwrap_or(0)),
            Err(StoreError::NotFound(_) | StoreError::InvalidParameter(_)) => Ok(0),
            Err(other) => Err(other.into()),
        }
    }

    async fn last_event(&self, monitor: &str) -> Result<i64, DataError> {
        let mut last = 0;
        loop {
            let events = self.store.monitor_events(monitor, last, EVENTS_PER_CHECK).await?;
            match events.last() {
                Some(event) => last = event.event_id,
                None => return Ok(last),
            }
            if events.len() < EVENTS_PER_CHECK {
                return Ok(last);
            }
        }
    }

    /// Checks every pipeline's triggers and queues the runs they cause.
    pub async fn check_triggers(self: &Arc<Self>) -> Result<(), DataError> {
        for pipeline in self.store.list_pipelines().await? {
            if let Err(error) = self.check_pipeline(&pipeline).await {
                tracing::warn!(pipeline = %pipeline.name, %error, "checking the pipeline's triggers");
            }
        }
        Ok(())
    }

    async fn check_pipeline(&self, pipeline: &PipelineRecord) -> Result<(), DataError> {
        let spec: super::service::PipelineSpec =
            serde_json::from_str(&pipeline.spec).map_err(|e| DataError::Internal(e.to_string()))?;
        if spec.triggers.is_empty() {
            return Ok(());
        }
        let before: TriggerState = serde_json::from_str(&pipeline.state).unwrap_or_default();
        let mut state = before.clone();
        let mut causes = Vec::new();
        let now = self.clock.now_ms();
        for trigger in &spec.triggers {
            match trigger {
                Trigger::Schedule(text) => {
                    let schedule = Schedule::parse(text).map_err(DataError::Internal)?;
                    if schedule
                        .next_after(before.schedule_checked_ms)
                        .is_some_and(|due| due <= now)
                    {
                        causes.push(cause(
                            "schedule",
                            format!("schedule '{text}'"),
                            json!({"schedule": text}),
                        ));
                    }
                    state.schedule_checked_ms = now;
                }
                Trigger::Dataset(name) => {
                    let newest = self.newest_dataset(name).await?;
                    if newest > before.datasets.get(name).copied().unwrap_or(0) {
                        causes.push(cause(
                            "dataset",
                            format!("new dataset version {name}@{newest}"),
                            json!({"dataset": name, "version": newest}),
                        ));
                    }
                    state.datasets.insert(name.clone(), newest);
                }
                Trigger::Model(name) => {
                    let newest = self.newest_model(name).await?;
                    if newest > before.models.get(name).copied().unwrap_or(0) {
                        causes.push(cause(
                            "model",
                            format!("new version {newest} of registered model '{name}'"),
                            json!({"model": name, "version": newest}),
                        ));
                    }
                    state.models.insert(name.clone(), newest);
                }
                Trigger::Alert(monitor) => {
                    let after = before.alerts.get(monitor).copied().unwrap_or(0);
                    let events = self.store.monitor_events(monitor, after, EVENTS_PER_CHECK).await?;
                    let request = events.iter().rev().find(|event| {
                        event.kind == "retraining_requested"
                            && serde_json::from_str::<Value>(&event.details).is_ok_and(|details| {
                                details["pipeline"].is_null() || details["pipeline"] == pipeline.name.as_str()
                            })
                    });
                    if let Some(event) = request {
                        causes.push(cause(
                            "alert",
                            format!("monitor '{monitor}': {}", event.message),
                            json!({
                                "monitor": monitor,
                                "event_id": event.event_id,
                                "details": serde_json::from_str::<Value>(&event.details).unwrap_or(Value::Null),
                            }),
                        ));
                    }
                    if let Some(last) = events.last() {
                        state.alerts.insert(monitor.clone(), last.event_id);
                    }
                }
            }
        }
        if state == before {
            return Ok(());
        }
        let text = serde_json::to_string(&state).map_err(|e| DataError::Internal(e.to_string()))?;
        match self
            .store
            .update_pipeline(&pipeline.name, pipeline.revision, &pipeline.spec, &text)
            .await
        {
            Ok(_) => {}
            // Another replica moved the cursors first: it queues the runs.
            Err(StoreError::Conflict(_)) => return Ok(()),
            Err(other) => return Err(other.into()),
        }
        // A run already waiting reads the newest data when it starts, so triggers fold into it; a retraining
        // request also folds into a run in progress (the alert asks for what that run is doing).
        let active: Vec<_> = self
            .store
            .active_pipeline_runs()
            .await?
            .into_iter()
            .filter(|r| r.pipeline == pipeline.name)
            .collect();
        if let Some(waiting) = active.iter().find(|r| r.status == "queued") {
            tracing::info!(pipeline = %pipeline.name, run = %waiting.run_id, "trigger folded into the queued run");
            return Ok(());
        }
        if !active.is_empty() && causes.iter().all(|c| c.kind == "alert") {
            tracing::info!(pipeline = %pipeline.name, "retraining request folded into the run in progress");
            return Ok(());
        }
        // Several events at once start one run, whose cause names them all.
        if let Some(first) = causes.first().cloned() {
            let mut combined = first;
            if causes.len() > 1 {
                combined.detail = causes.iter().map(|c| c.detail.as_str()).collect::<Vec<_>>().join("; ");
                combined.source = Value::Array(causes.iter().map(|c| c.source.clone()).collect());
            }
            let run = self.queue(&pipeline.name, combined).await?;
            tracing::info!(pipeline = %pipeline.name, run = %run.run_id, cause = %run.cause, "pipeline run triggered");
        }
        Ok(())
    }
}

fn cause(kind: &str, detail: String, source: Value) -> Cause {
    Cause {
        kind: kind.to_string(),
        detail,
        source,
        ..Cause::default()
    }
}
