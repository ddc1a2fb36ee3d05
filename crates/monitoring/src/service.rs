//! The monitoring service: monitors created, listed, read and deleted; reference profiles set per model
//! version; alerts acknowledged and silenced; business figures posted; and the background task that
//! evaluates every monitor's due windows (`runner.rs`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use loopline_artifact_store::ArtifactStore;
use loopline_core::time::now_millis;
use loopline_metadata_store::{MetadataStore, MonitorEvent, MonitorRecord, MonitorUpdate, ReferenceRecord, StoreError};
use loopline_tabular::DatasetProfile;
use serde_json::{Value, json};

use crate::estimation::EstimationReference;
use crate::figures::Figures;

/// The artifact a training run logs (at its artifact root) for its registered versions to take as their
/// reference: `mlflow.log_artifact("loopline-reference.json")` with a `loopline profile` (or
/// `loopline monitor reference`) document.
pub const RUN_ARTIFACT_REFERENCE: &str = "loopline-reference.json";
/// Points of an isotonic map (fits keep only the ends of its flat runs).
pub const MAX_CALIBRATION_POINTS: usize = 200_000;
/// The largest reference document.
pub const MAX_REFERENCE_BYTES: usize = 64 << 20;

/// Where a reference document keeps its performance-estimation fit, beside the profile's fields.
pub const ESTIMATION_KEY: &str = "performance_estimation";
use crate::spec::{MonitorSpec, SpecError, check_name};
use crate::state::MonitorState;

/// Why a monitoring request failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MonitorError {
    /// The request is wrong; `field` names what to fix.
    #[error("{field}: {message}")]
    Invalid {
        /// The field at fault.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The monitor (or what it names) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// It exists already, or changed meanwhile.
    #[error("{0}")]
    Conflict(String),
    /// Storage or the prediction log failed.
    #[error("{0}")]
    Internal(String),
}

impl From<SpecError> for MonitorError {
    fn from(error: SpecError) -> Self {
        MonitorError::Invalid {
            field: error.field,
            message: error.message,
        }
    }
}

impl From<StoreError> for MonitorError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(message) => MonitorError::NotFound(message),
            StoreError::AlreadyExists(message) | StoreError::Conflict(message) => MonitorError::Conflict(message),
            StoreError::InvalidParameter(message) => MonitorError::Invalid {
                field: "request".into(),
                message,
            },
            other => MonitorError::Internal(other.to_string()),
        }
    }
}

pub(crate) fn invalid(field: &str, message: impl Into<String>) -> MonitorError {
    MonitorError::Invalid {
        field: field.to_string(),
        message: message.into(),
    }
}

/// Service settings.
#[derive(Debug, Clone, Copy)]
pub struct MonitoringConfig {
    /// How often every monitor is looked at.
    pub tick: Duration,
    /// Windows evaluated per monitor per look (a long backlog is worked off over several).
    pub windows_per_run: usize,
}

impl Default for MonitoringConfig {
    fn default() -> Self {
        MonitoringConfig {
            tick: Duration::from_secs(30),
            windows_per_run: 48,
        }
    }
}

/// A reference as parsed once.
type ParsedReference = Arc<(DatasetProfile, Option<EstimationReference>)>;
/// Parsed references by (model, version), stamped with (set time, document size).
type ReferenceCache = BTreeMap<(String, String), ((i64, usize), ParsedReference)>;
/// References kept parsed (parsing a large profile costs more than the rest of a small window).
const REFERENCE_CACHE: usize = 64;

/// The newest figures of a monitor, for `/metrics`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Latest {
    pub figures: Figures,
    pub firing: Vec<String>,
}

/// Monitors over the prediction log.
pub struct Monitoring {
    pub(crate) store: Arc<dyn MetadataStore>,
    pub(crate) artifacts: Arc<dyn ArtifactStore>,
    pub(crate) deployments: Option<Arc<loopline_deployments::Manager>>,
    pub(crate) log: Option<Arc<loopline_serving::PredictionLog>>,
    pub(crate) http: reqwest::Client,
    pub(crate) config: MonitoringConfig,
    pub(crate) latest: Mutex<BTreeMap<String, Latest>>,
    /// One evaluation at a time in this process (replicas are kept apart by revisions).
    pub(crate) run_lock: tokio::sync::Mutex<()>,
    /// Parsed references by (model, version), with the time they were set and their size (a new one replaces them).
    references: Mutex<ReferenceCache>,
    /// The monitors' own runtime, at a lower CPU priority (see `background`), once started.
    pub(crate) background: std::sync::OnceLock<tokio::runtime::Handle>,
    /// The registry's quality gate, asked before an action moves an alias.
    pub(crate) alias_gate: std::sync::OnceLock<Arc<dyn loopline_model_registry::AliasGate>>,
}

pub(crate) fn parse_record(record: &MonitorRecord) -> Result<(MonitorSpec, MonitorState), MonitorError> {
    let spec: MonitorSpec = serde_json::from_str(&record.spec).map_err(|e| {
        MonitorError::Internal(format!(
            "monitor '{}' has an unreadable specification: {e}",
            record.name
        ))
    })?;
    let state: MonitorState = serde_json::from_str(&record.state)
        .map_err(|e| MonitorError::Internal(format!("monitor '{}' has an unreadable state: {e}", record.name)))?;
    Ok((spec, state))
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("monitor documents serialise: this is a bug")
}

pub(crate) fn monitor_event(monitor: &str, kind: &str, actor: &str, message: String, details: Value) -> MonitorEvent {
    MonitorEvent {
        event_id: 0,
        monitor: monitor.to_string(),
        timestamp_ms: now_millis(),
        kind: kind.to_string(),
        actor: actor.to_string(),
        message,
        details: details.to_string(),
    }
}

impl Monitoring {
    /// A service over these stores; `deployments` enables rollback actions, `log` flushing before runs.
    pub fn new(
        store: Arc<dyn MetadataStore>,
        artifacts: Arc<dyn ArtifactStore>,
        deployments: Option<Arc<loopline_deployments::Manager>>,
        log: Option<Arc<loopline_serving::PredictionLog>>,
        config: MonitoringConfig,
    ) -> Arc<Monitoring> {
        Arc::new(Monitoring {
            store,
            artifacts,
            deployments,
            log,
            http: crate::notify::client(),
            config,
            latest: Mutex::new(BTreeMap::new()),
            run_lock: tokio::sync::Mutex::new(()),
            references: Mutex::new(BTreeMap::new()),
            background: std::sync::OnceLock::new(),
            alias_gate: std::sync::OnceLock::new(),
        })
    }

    /// Makes alias moves by monitor actions ask the registry's quality gate first, as every other move does.
    pub fn set_alias_gate(&self, gate: Arc<dyn loopline_model_registry::AliasGate>) {
        let _ = self.alias_gate.set(gate);
    }

    /// Starts the background task that evaluates due windows and delivers notifications, on the monitors' own
    /// runtime (see `background`).
    pub fn start(self: &Arc<Monitoring>) {
        let tick = self.config.tick;
        match crate::background::start(Self::ticking(Arc::downgrade(self), tick)) {
            Some(handle) => {
                let _ = self.background.set(handle);
            }
            // Without a runtime of their own, monitors tick on the server's.
            None => {
                tokio::spawn(Self::ticking(Arc::downgrade(self), tick));
            }
        }
    }

    /// Looks at every monitor every `tick`, until the service is gone.
    async fn ticking(service: std::sync::Weak<Monitoring>, tick: Duration) {
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let Some(service) = service.upgrade() else {
                return;
            };
            service.run_all().await;
        }
    }

    /// Looks at every monitor, each in a task of its own so that one monitor's failure (even a panic) stops
    /// neither the others nor the next tick.
    async fn run_all(self: &Arc<Monitoring>) {
        let records = match self.store.list_monitors().await {
            Ok(records) => records,
            Err(error) => {
                tracing::warn!(%error, "monitors could not be listed");
                return;
            }
        };
        for record in records {
            let service = self.clone();
            let name = record.name.clone();
            let outcome = tokio::spawn(async move { service.run(&name, false).await }).await;
            match outcome {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => tracing::warn!(monitor = %record.name, %error, "monitor evaluation failed"),
                Err(error) => {
                    tracing::error!(monitor = %record.name, %error, "monitor evaluation stopped; this is a bug")
                }
            }
        }
    }

    /// The registered model whose log a monitor reads, and the version its reference defaults to.
    pub(crate) async fn target(&self, spec: &MonitorSpec) -> Result<(String, Option<String>), MonitorError> {
        if let Some(deployment) = &spec.deployment {
            let record = match self.store.get_deployment(deployment).await {
                Ok(record) => record,
                Err(StoreError::NotFound(_)) => {
                    return Err(invalid("deployment", format!("there is no deployment '{deployment}'")));
                }
                Err(other) => return Err(other.into()),
            };
            let deployment_spec: loopline_deployments::DeploymentSpec = serde_json::from_str(&record.spec)
                .map_err(|e| MonitorError::Internal(format!("deployment '{deployment}' is unreadable: {e}")))?;
            let target =
                loopline_deployments::spec::Target::parse(&deployment_spec.model).map_err(MonitorError::Internal)?;
            let stable = serde_json::from_str::<Value>(&record.state)
                .ok()
                .and_then(|state| state["stable"].as_str().map(str::to_string));
            return Ok((target.name().to_string(), stable));
        }
        let model = spec.model.clone().unwrap_or_default();
        if let Err(error) = self.store.get_registered_model(&model).await {
            return Err(match error {
                StoreError::NotFound(_) => invalid("model", format!("there is no registered model '{model}'")),
                other => other.into(),
            });
        }
        let Some(alias) = &spec.alias else {
            return Ok((model, None));
        };
        match self.store.get_model_version_by_alias(&model, alias).await {
            Ok(version) => Ok((model, Some(version.version.to_string()))),
            Err(StoreError::NotFound(_)) => Err(invalid("alias", format!("model '{model}' has no alias '{alias}'"))),
            Err(other) => Err(other.into()),
        }
    }

    /// A version's reference profile, when set.
    pub(crate) async fn reference_of(
        &self,
        model: &str,
        version: &str,
    ) -> Result<Option<DatasetProfile>, MonitorError> {
        Ok(self.stored_reference(model, version).await?.map(|(profile, _)| profile))
    }

    /// A version's reference profile and, when it was fitted, its performance-estimation reference.
    pub(crate) async fn stored_reference(
        &self,
        model: &str,
        version: &str,
    ) -> Result<Option<(DatasetProfile, Option<EstimationReference>)>, MonitorError> {
        let unreadable = |e: serde_json::Error| {
            MonitorError::Internal(format!("the reference of {model} version {version} is unreadable: {e}"))
        };
        match self.store.get_reference(model, version).await {
            Ok(record) => {
                let key = (model.to_string(), version.to_string());
                let cached = self
                    .references
                    .lock()
                    .expect("reference cache lock: this is a bug")
                    .get(&key)
                    .cloned();
                let stamp = (record.set_time, record.profile.len());
                if let Some((cached_stamp, parsed)) = cached
                    && cached_stamp == stamp
                {
                    return Ok(Some((parsed.0.clone(), parsed.1.clone())));
                }
                let mut document: Value = serde_json::from_str(&record.profile).map_err(unreadable)?;
                let estimation = match document.as_object_mut().and_then(|o| o.remove(ESTIMATION_KEY)) {
                    Some(fitted) => Some(serde_json::from_value(fitted).map_err(unreadable)?),
                    None => None,
                };
                let profile: DatasetProfile = serde_json::from_value(document).map_err(unreadable)?;
                let mut references = self.references.lock().expect("reference cache lock: this is a bug");
                if references.len() >= REFERENCE_CACHE {
                    references.clear();
                }
                references.insert(key, (stamp, Arc::new((profile.clone(), estimation.clone()))));
                Ok(Some((profile, estimation)))
            }
            Err(StoreError::NotFound(_)) => self.reference_from_run(model, version).await,
            Err(other) => Err(other.into()),
        }
    }

    /// The reference a version's training run logged as the artifact [`RUN_ARTIFACT_REFERENCE`], stored as the
    /// version's reference (source `run-artifact`) the first time it is found.
    async fn reference_from_run(
        &self,
        model: &str,
        version: &str,
    ) -> Result<Option<(DatasetProfile, Option<EstimationReference>)>, MonitorError> {
        let Ok(number) = version.parse::<i64>() else {
            return Ok(None);
        };
        let Ok(found) = self.store.get_model_version(model, number).await else {
            return Ok(None);
        };
        if found.run_id.is_empty() {
            return Ok(None);
        }
        let Ok(run) = self.store.get_run(&found.run_id).await else {
            return Ok(None);
        };
        let Some(root) = run
            .info
            .artifact_uri
            .strip_prefix("mlflow-artifacts:")
            .map(|rest| rest.trim_start_matches('/').to_string())
        else {
            return Ok(None);
        };
        let Ok(path) = loopline_artifact_store::ArtifactPath::parse(&format!("{root}/{RUN_ARTIFACT_REFERENCE}")) else {
            return Ok(None);
        };
        let Ok(download) = self.artifacts.get(&path).await else {
            return Ok(None);
        };
        use futures::TryStreamExt;
        let mut body = Vec::new();
        let mut chunks = download.body;
        while let Some(chunk) = chunks
            .try_next()
            .await
            .map_err(|e| MonitorError::Internal(format!("the run's reference could not be read: {e}")))?
        {
            if body.len() + chunk.len() > MAX_REFERENCE_BYTES {
                return Err(invalid(
                    RUN_ARTIFACT_REFERENCE,
                    "the run's reference is larger than 64 MiB",
                ));
            }
            body.extend_from_slice(&chunk);
        }
        match self.set_reference(model, version, &body, "run-artifact").await {
            Ok(_) => {}
            Err(MonitorError::Invalid { field, message }) => {
                tracing::warn!(model, version, %field, %message, "the reference logged by the training run is unusable");
                return Ok(None);
            }
            Err(other) => return Err(other),
        }
        Box::pin(self.stored_reference(model, version)).await
    }

    /// Checks named columns against the reference of the version being served, when it has one.
    async fn check_columns(&self, spec: &MonitorSpec, model: &str, version: Option<&str>) -> Result<(), MonitorError> {
        let Some(version) = version else {
            return Ok(());
        };
        let Some(reference) = self.reference_of(model, version).await? else {
            return Ok(());
        };
        let known = |column: &str| reference.column(column).is_some();
        for (index, column) in spec.columns.iter().flatten().enumerate() {
            if !known(column) {
                return Err(invalid(
                    &format!("columns[{index}]"),
                    format!("model '{model}' version {version} has no column '{column}' in its reference profile"),
                ));
            }
        }
        for column in spec.drift.columns.keys() {
            if !known(column) {
                return Err(invalid(
                    &format!("drift.columns.{column}"),
                    format!("model '{model}' has no column '{column}'"),
                ));
            }
        }
        for (index, rule) in spec.alerts.iter().enumerate() {
            if let Some(column) = crate::figures::figure_column(&rule.figure)
                && !known(column)
            {
                return Err(invalid(
                    &format!("alerts[{index}].figure"),
                    format!("model '{model}' has no column '{column}'"),
                ));
            }
        }
        Ok(())
    }

    /// Creates a monitor from a JSON body holding `name` and the specification.
    pub async fn create(&self, body: &[u8], actor: &str) -> Result<Value, MonitorError> {
        let mut fields: serde_json::Map<String, Value> =
            serde_json::from_slice(body).map_err(|e| invalid("body", format!("not a JSON object: {e}")))?;
        let name = match fields.remove("name") {
            Some(Value::String(name)) => name,
            _ => return Err(invalid("name", "give the monitor a name")),
        };
        check_name(&name)?;
        let spec = MonitorSpec::parse(&serde_json::to_vec(&fields).unwrap_or_default())?;
        let (model, version) = self.target(&spec).await?;
        self.check_columns(&spec, &model, version.as_deref()).await?;
        let now = now_millis();
        let start = spec.start_ms.unwrap_or(now);
        let state = match (spec.window.seconds, spec.window.predictions) {
            (Some(seconds), _) => {
                let length = seconds as i64 * 1000;
                MonitorState {
                    next_key: start - start.rem_euclid(length),
                    ..MonitorState::default()
                }
            }
            _ => MonitorState {
                cursor: crate::window_data::LogCursor {
                    file: format!("part-{start:013}"),
                    offset: 0,
                },
                ..MonitorState::default()
            },
        };
        let event = monitor_event(
            &name,
            "created",
            actor,
            format!("monitor '{name}' created on model '{model}'"),
            json!({"spec": spec.redacted()}),
        );
        let record = self
            .store
            .create_monitor(&name, &to_json(&spec), &to_json(&state), &event)
            .await?;
        self.describe(&record).await
    }

    /// Every monitor, described.
    pub async fn list(&self) -> Result<Vec<Value>, MonitorError> {
        let mut described = Vec::new();
        for record in self.store.list_monitors().await? {
            described.push(self.describe(&record).await?);
        }
        Ok(described)
    }

    /// One monitor with its alerts and newest windows.
    pub async fn status(&self, name: &str) -> Result<Value, MonitorError> {
        let record = self.store.get_monitor(name).await?;
        self.describe(&record).await
    }

    pub(crate) async fn describe(&self, record: &MonitorRecord) -> Result<Value, MonitorError> {
        let (spec, state) = parse_record(record)?;
        let windows = self.store.latest_monitor_windows(&record.name, 5).await?;
        let alerts: Vec<Value> = spec
            .alerts
            .iter()
            .map(|rule| {
                let rule_state = state.rules.get(&rule.name).cloned().unwrap_or_default();
                json!({"rule": rule.name, "figure": rule.figure, "severity": rule.severity, "state": rule_state})
            })
            .collect();
        let outbox: Vec<Value> = state
            .outbox
            .iter()
            .map(|o| json!({"channel": o.channel, "rule": o.notice.rule, "status": o.notice.status, "attempts": o.attempts, "last_error": o.last_error}))
            .collect();
        Ok(json!({
            "name": record.name,
            "spec": spec.redacted(),
            "revision": record.revision,
            "creation_time": record.creation_time,
            "last_update_time": record.last_update_time,
            "next_window": state.next_key,
            "alerts": alerts,
            "pending_notifications": outbox,
            "windows": windows.iter().map(crate::runner::window_json).collect::<Vec<_>>(),
        }))
    }

    /// Deletes a monitor with its windows and history.
    pub async fn delete(&self, name: &str) -> Result<(), MonitorError> {
        // Its windows' reports and sketches go too (after the monitor, best effort: a leftover is only disk).
        let mut directories = Vec::new();
        self.visit_windows(name, i64::MIN, |window| {
            directories.extend(crate::runner::window_directories(&window));
            Ok(true)
        })
        .await?;
        self.store.delete_monitor(name).await?;
        self.delete_reports(&directories).await;
        self.latest
            .lock()
            .expect("latest figures lock: this is a bug")
            .remove(name);
        Ok(())
    }

    /// Hands the monitor's stored windows from key `from_key` on to `visit`, in key order, a page at a time
    /// (so memory holds one page, whatever the count), until `visit` answers `false` or fails.
    pub(crate) async fn visit_windows(
        &self,
        name: &str,
        mut key: i64,
        mut visit: impl FnMut(loopline_metadata_store::MonitorWindow) -> Result<bool, MonitorError>,
    ) -> Result<(), MonitorError> {
        const PAGE: usize = 1_000;
        loop {
            let page = self.store.monitor_windows(name, key, PAGE).await?;
            let full = page.len() == PAGE;
            let Some(last) = page.last() else { return Ok(()) };
            key = last.window_key.saturating_add(1);
            for window in page {
                if !visit(window)? {
                    return Ok(());
                }
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// Window results from `from_key` on, oldest first.
    pub async fn windows(&self, name: &str, from_key: i64, limit: usize) -> Result<Vec<Value>, MonitorError> {
        self.store.get_monitor(name).await?;
        let windows = self.store.monitor_windows(name, from_key, limit.clamp(1, 1000)).await?;
        Ok(windows.iter().map(crate::runner::window_json).collect())
    }

    /// The `count` most recent windows (at most 1,000), oldest first.
    pub async fn newest_windows(&self, name: &str, count: usize) -> Result<Vec<Value>, MonitorError> {
        self.store.get_monitor(name).await?;
        if count == 0 {
            return Ok(Vec::new());
        }
        let mut windows = self.store.latest_monitor_windows(name, count.min(1000)).await?;
        windows.reverse();
        Ok(windows.iter().map(crate::runner::window_json).collect())
    }

    /// History entries after `after`, optionally of one kind.
    pub async fn events(
        &self,
        name: &str,
        after: i64,
        limit: usize,
        kind: Option<&str>,
    ) -> Result<Vec<Value>, MonitorError> {
        self.store.get_monitor(name).await?;
        let events = self.store.monitor_events(name, after, limit.clamp(1, 1000)).await?;
        Ok(events
            .into_iter()
            .filter(|e| kind.is_none_or(|k| e.kind == k))
            .map(|e| {
                json!({
                    "event_id": e.event_id, "timestamp_ms": e.timestamp_ms, "kind": e.kind, "actor": e.actor,
                    "message": e.message,
                    "details": serde_json::from_str::<Value>(&e.details).unwrap_or(Value::Null),
                })
            })
            .collect())
    }

    /// Changes a rule's state by hand (acknowledge, silence), recorded in the history.
    async fn change_rule(
        &self,
        name: &str,
        rule: &str,
        actor: &str,
        change: impl Fn(&mut crate::alerts::RuleState) -> Result<String, MonitorError>,
    ) -> Result<Value, MonitorError> {
        let _running = self.run_lock.lock().await;
        let record = self.store.get_monitor(name).await?;
        let (spec, mut state) = parse_record(&record)?;
        if !spec.alerts.iter().any(|r| r.name == rule) {
            return Err(MonitorError::NotFound(format!(
                "monitor '{name}' has no alert rule '{rule}'"
            )));
        }
        let rule_state = state.rules.entry(rule.to_string()).or_default();
        let (kind, message) = (change(rule_state)?, format!("{actor} changed alert '{rule}'"));
        let details = json!({"rule": rule, "state": rule_state});
        let events = [monitor_event(name, &kind, actor, message, details)];
        let update = MonitorUpdate {
            spec: &record.spec,
            state: &to_json(&state),
            windows: &[],
            events: &events,
        };
        let record = self.store.update_monitor(name, record.revision, &update).await?;
        self.describe(&record).await
    }

    /// Acknowledges a firing alert.
    pub async fn acknowledge(&self, name: &str, rule: &str, actor: &str) -> Result<Value, MonitorError> {
        self.change_rule(name, rule, actor, |state| {
            if state.status != crate::alerts::AlertStatus::Firing {
                return Err(MonitorError::Conflict(format!("alert '{rule}' is not firing")));
            }
            state.acknowledged_by = Some(actor.to_string());
            Ok("alert_acknowledged".to_string())
        })
        .await
    }

    /// Holds back a rule's notifications until `until_ms` (0 lifts the silence).
    pub async fn silence(&self, name: &str, rule: &str, until_ms: i64, actor: &str) -> Result<Value, MonitorError> {
        if until_ms > crate::spec::LATEST_TIME_MS {
            return Err(invalid("until_ms", "must be before 2100"));
        }
        self.change_rule(name, rule, actor, |state| {
            if until_ms <= 0 {
                state.silenced_until_ms = None;
                state.silenced_by = None;
                return Ok("alert_unsilenced".to_string());
            }
            state.silenced_until_ms = Some(until_ms);
            state.silenced_by = Some(actor.to_string());
            Ok("alert_silenced".to_string())
        })
        .await
    }

    /// Records a business figure for the window holding `timestamp_ms` (time windows) or window `window_key`.
    pub async fn post_business(
        &self,
        name: &str,
        metric: &str,
        value: f64,
        window_key: Option<i64>,
        timestamp_ms: Option<i64>,
    ) -> Result<Value, MonitorError> {
        if metric.is_empty()
            || metric.len() > 200
            || !metric.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(invalid("name", "use 1 to 200 letters, digits, '.', '_' or '-'"));
        }
        if !value.is_finite() {
            return Err(invalid("value", "must be a finite number"));
        }
        let _running = self.run_lock.lock().await;
        let record = self.store.get_monitor(name).await?;
        let (spec, mut state) = parse_record(&record)?;
        let valid_time = |t: i64| (0..=crate::spec::LATEST_TIME_MS).contains(&t);
        if window_key.is_some_and(|k| !valid_time(k)) || timestamp_ms.is_some_and(|t| !valid_time(t)) {
            return Err(invalid(
                "window",
                "give a window number or time from 0 to 2100 (ms since the epoch)",
            ));
        }
        let key = match (window_key, timestamp_ms, spec.window.seconds) {
            (Some(key), _, _) => key,
            (None, Some(time), Some(seconds)) => time - time.rem_euclid(seconds as i64 * 1000),
            (None, None, Some(seconds)) => {
                let now = now_millis();
                now - now.rem_euclid(seconds as i64 * 1000)
            }
            (None, _, None) => return Err(invalid("window", "count windows need the window number in 'window'")),
        };
        state.post_business(key, metric, value);
        // A window already evaluated takes the figure at once; the newest one is judged by the rules again.
        let mut changes = crate::runner::Changes::default();
        let evaluated = self
            .store
            .monitor_windows(name, key, 1)
            .await?
            .into_iter()
            .find(|w| w.window_key == key);
        if let Some(window) = evaluated {
            let figures: Figures = serde_json::from_str::<Value>(&window.figures)
                .ok()
                .and_then(|stored| serde_json::from_value(stored["figures"].clone()).ok())
                .unwrap_or_default();
            let result = crate::runner::Evaluated { window, figures }.with_business(&state);
            if state.last_key == Some(key) {
                let (model, _) = self.target(&spec).await?;
                self.apply_rules(name, &spec, &model, &mut state, &result, true, &mut changes)
                    .await;
            }
            changes.windows.push(result.window);
        }
        let update = MonitorUpdate {
            spec: &record.spec,
            state: &to_json(&state),
            windows: &changes.windows,
            events: &changes.events,
        };
        self.store.update_monitor(name, record.revision, &update).await?;
        Ok(json!({"window": key, "name": metric, "value": value, "window_evaluated": !changes.windows.is_empty()}))
    }

    /// Sets a model version's reference profile (the `loopline profile` format).
    pub async fn set_reference(
        &self,
        model: &str,
        version: &str,
        body: &[u8],
        source: &str,
    ) -> Result<Value, MonitorError> {
        let mut document: Value =
            serde_json::from_slice(body).map_err(|e| invalid("profile", format!("not a Loopline profile: {e}")))?;
        let estimation = match document.as_object_mut().and_then(|o| o.remove(ESTIMATION_KEY)) {
            Some(fitted) => {
                let fitted: EstimationReference = serde_json::from_value(fitted)
                    .map_err(|e| invalid(ESTIMATION_KEY, format!("not a performance-estimation fit: {e}")))?;
                check_estimation(&fitted)?;
                Some(fitted)
            }
            None => None,
        };
        let profile: DatasetProfile =
            serde_json::from_value(document).map_err(|e| invalid("profile", format!("not a Loopline profile: {e}")))?;
        if profile.format != loopline_tabular::profile::PROFILE_FORMAT {
            return Err(invalid(
                "format",
                format!(
                    "is '{}'; write it with `loopline profile` ({})",
                    profile.format,
                    loopline_tabular::profile::PROFILE_FORMAT
                ),
            ));
        }
        check_profile(&profile)?;
        let number: i64 = version
            .parse()
            .map_err(|_| invalid("version", format!("'{version}' is not a version number")))?;
        if let Err(error) = self.store.get_model_version(model, number).await {
            return Err(match error {
                StoreError::NotFound(_) => MonitorError::NotFound(format!("model '{model}' has no version {version}")),
                other => other.into(),
            });
        }
        let mut stored = serde_json::to_value(&profile).map_err(|e| MonitorError::Internal(e.to_string()))?;
        if let (Some(fitted), Some(fields)) = (&estimation, stored.as_object_mut()) {
            fields.insert(ESTIMATION_KEY.to_string(), json!(fitted));
        }
        let record = ReferenceRecord {
            name: model.to_string(),
            version: number.to_string(),
            profile: stored.to_string(),
            source: source.to_string(),
            set_time: now_millis(),
        };
        self.store.set_reference(&record).await?;
        Ok(
            json!({"model": model, "version": record.version, "rows": profile.rows, "columns": profile.columns.len(), "source": source}),
        )
    }

    /// A model version's reference profile.
    pub async fn get_reference(&self, model: &str, version: &str) -> Result<Value, MonitorError> {
        let record = self.store.get_reference(model, version).await?;
        Ok(json!({
            "model": record.name, "version": record.version, "source": record.source, "set_time": record.set_time,
            "profile": serde_json::from_str::<Value>(&record.profile).unwrap_or(Value::Null),
        }))
    }
}

/// A profile is consistent enough to compare with: unique column names, kept values within the profile's
/// limits, quantiles and kept values ascending, ranges in order.
fn check_profile(profile: &DatasetProfile) -> Result<(), MonitorError> {
    use loopline_tabular::profile::{CATEGORY_LIMIT, EXACT_VALUES_LIMIT, QUANTILE_POINTS};
    if profile.columns.is_empty() || profile.columns.len() > crate::spec::MAX_COLUMNS {
        return Err(invalid(
            "columns",
            format!("a profile has 1 to {} columns", crate::spec::MAX_COLUMNS),
        ));
    }
    let ascending = |values: &[f64]| values.iter().all(|v| v.is_finite()) && values.windows(2).all(|w| w[0] <= w[1]);
    let mut names = std::collections::BTreeSet::new();
    for (index, column) in profile.columns.iter().enumerate() {
        let field = format!("columns[{index}]");
        if column.name.is_empty() || column.name.len() > crate::spec::MAX_TEXT || column.name.contains('\0') {
            return Err(invalid(&field, "a column needs a printable name"));
        }
        if !names.insert(column.name.as_str()) {
            return Err(invalid(&field, format!("column '{}' appears twice", column.name)));
        }
        if let Some(numeric) = &column.numeric {
            if numeric.quantiles.len() > QUANTILE_POINTS || !ascending(&numeric.quantiles) {
                return Err(invalid(
                    &format!("{field}.numeric.quantiles"),
                    format!("at most {QUANTILE_POINTS} finite values, ascending"),
                ));
            }
            if numeric
                .values
                .as_ref()
                .is_some_and(|v| v.len() > EXACT_VALUES_LIMIT || !ascending(v))
            {
                return Err(invalid(
                    &format!("{field}.numeric.values"),
                    format!("at most {EXACT_VALUES_LIMIT} finite values, ascending"),
                ));
            }
            if let (Some(low), Some(high)) = (numeric.min, numeric.max)
                && (low > high || low.is_nan() || high.is_nan())
            {
                return Err(invalid(&format!("{field}.numeric.min"), "min is above max"));
            }
            if numeric.std.is_some_and(|std| std < 0.0 || std.is_nan()) {
                return Err(invalid(&format!("{field}.numeric.std"), "must not be negative"));
            }
        }
        if let Some(categorical) = &column.categorical
            && categorical.counts.len() > CATEGORY_LIMIT
        {
            return Err(invalid(
                &format!("{field}.categorical.counts"),
                format!("at most {CATEGORY_LIMIT} labels"),
            ));
        }
    }
    Ok(())
}

/// A performance-estimation fit is usable: a bounded isotonic map, ascending, with values that are
/// probabilities, and finite non-negative spreads.
fn check_estimation(fitted: &EstimationReference) -> Result<(), MonitorError> {
    let field = ESTIMATION_KEY;
    let (xs, ys) = (&fitted.calibration_x, &fitted.calibration_y);
    if xs.len() != ys.len() || xs.len() > MAX_CALIBRATION_POINTS {
        return Err(invalid(
            &format!("{field}.calibration_x"),
            "needs as many values as calibration_y",
        ));
    }
    let probability = |v: &f64| v.is_finite() && (0.0..=1.0).contains(v);
    if !xs.windows(2).all(|w| w[0] < w[1]) || !xs.iter().all(probability) || !ys.iter().all(probability) {
        return Err(invalid(
            &format!("{field}.calibration_x"),
            "must be strictly ascending probabilities",
        ));
    }
    if !ys.windows(2).all(|w| w[0] <= w[1]) {
        return Err(invalid(
            &format!("{field}.calibration_y"),
            "an isotonic map never falls",
        ));
    }
    if fitted.calibrated == xs.is_empty() {
        return Err(invalid(
            &format!("{field}.calibrated"),
            "a calibrated fit has its isotonic map, and only then",
        ));
    }
    let spreads = [fitted.accuracy_std, fitted.roc_auc_std, fitted.roc_auc_fraction];
    if !spreads.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)) {
        return Err(invalid(
            &format!("{field}.accuracy_std"),
            "spreads and fractions lie between 0 and 1",
        ));
    }
    Ok(())
}
