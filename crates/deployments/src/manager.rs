//! The deployments of a server: commands from the API (create, update, promote, roll back, delete), the
//! controller that follows aliases, warms candidates, steps rollouts and rolls back on a guardrail breach,
//! and the route tables requests read. Every change is stored with its revision and audit events before it
//! takes effect, so a restarted server (or another replica) resumes from the stored state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use loopline_core::time::now_millis;
use loopline_metadata_store::{DeploymentEvent, DeploymentRecord, MetadataStore, StoreError};
use loopline_serving::dispatch::{Deployment, Deployments};
use loopline_serving::{Catalog, LoadingCatalog, Metrics, ModelSource, RunnerConfig};
use serde_json::{Value, json};

use crate::controller::started;
use crate::live::{Ledger, Live, Table};
use crate::spec::{DeploymentSpec, Policy, Target, check_name};
use crate::state::{self, DeploymentState, Rollout, plan};
use crate::window::agreement;

/// Why a command was refused.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// Bad input (400).
    #[error("{0}")]
    Invalid(String),
    /// No such deployment (404).
    #[error("{0}")]
    NotFound(String),
    /// Conflicts with the deployment's state (409).
    #[error("{0}")]
    Conflict(String),
    /// Storage failed (500).
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for CommandError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(m) => CommandError::NotFound(m),
            StoreError::AlreadyExists(m) | StoreError::Conflict(m) => CommandError::Conflict(m),
            StoreError::InvalidParameter(m) => CommandError::Invalid(m),
            other => CommandError::Internal(other.to_string()),
        }
    }
}

/// Settings shared by every deployment.
#[derive(Clone)]
pub struct ManagerConfig {
    /// Runtime settings a spec does not override.
    pub runner: RunnerConfig,
    /// How often the controller looks at every deployment.
    pub tick: Duration,
}

/// The server's deployments.
pub struct Manager {
    pub(crate) store: Arc<dyn MetadataStore>,
    source: Arc<dyn ModelSource>,
    metrics: Arc<Metrics>,
    config: ManagerConfig,
    pub(crate) live: RwLock<HashMap<String, Arc<Live>>>,
    pub(crate) ledger: Arc<Mutex<Ledger>>,
    /// Commands and controller passes run one at a time.
    pub(crate) serial: tokio::sync::Mutex<()>,
}

pub(crate) fn event(deployment: &str, kind: &str, actor: &str, message: String, details: Value) -> DeploymentEvent {
    DeploymentEvent {
        event_id: 0,
        deployment: deployment.to_string(),
        timestamp_ms: now_millis(),
        kind: kind.to_string(),
        actor: actor.to_string(),
        message,
        details: details.to_string(),
    }
}

fn parse(record: &DeploymentRecord) -> Result<(DeploymentSpec, DeploymentState), String> {
    let spec = serde_json::from_str(&record.spec).map_err(|e| format!("stored spec unreadable: {e}"))?;
    let state = serde_json::from_str(&record.state).map_err(|e| format!("stored state unreadable: {e}"))?;
    Ok((spec, state))
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "{}".to_string())
}

impl Manager {
    /// Deployments over `store`, loading versions through `source`.
    pub fn new(
        store: Arc<dyn MetadataStore>,
        source: Arc<dyn ModelSource>,
        metrics: Arc<Metrics>,
        config: ManagerConfig,
    ) -> Arc<Manager> {
        Arc::new(Manager {
            store,
            source,
            metrics,
            config,
            live: RwLock::new(HashMap::new()),
            ledger: Arc::new(Mutex::new(Ledger::default())),
            serial: tokio::sync::Mutex::new(()),
        })
    }

    /// Loads every stored deployment (their stable versions warm before this returns), then runs the
    /// controller every tick until the manager is dropped.
    pub async fn start(self: &Arc<Manager>) {
        self.tick().await;
        let weak = Arc::downgrade(self);
        let every = self.config.tick;
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(every);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval.tick().await;
            loop {
                interval.tick().await;
                let Some(manager) = weak.upgrade() else { return };
                manager.tick().await;
            }
        });
    }

    fn runner_config(&self, spec: &DeploymentSpec) -> RunnerConfig {
        let mut config = self.config.runner;
        if let Some(rows) = spec.runtime.max_batch_rows {
            config.batching.max_batch_rows = rows;
        }
        if let Some(wait) = spec.runtime.max_batch_wait_ms {
            config.batching.max_wait = Duration::from_millis(wait);
        }
        if let Some(concurrency) = spec.runtime.concurrency {
            config.concurrency = concurrency;
        }
        if let Some(seconds) = spec.runtime.timeout_seconds {
            config.timeout = Some(Duration::from_secs(seconds));
        }
        config
    }

    pub(crate) fn get_live(&self, name: &str) -> Option<Arc<Live>> {
        self.live
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// The in-memory deployment for `record`, created (or re-created when its runtime changed) as needed. A
    /// replacement gets its route table before it takes over, so requests never find it unready.
    pub(crate) async fn live_for(&self, record: &DeploymentRecord) -> Result<Arc<Live>, String> {
        let (spec, state) = parse(record)?;
        let existing = self.get_live(&record.name);
        if let Some(live) = &existing {
            // A deployment deleted and created again under the same name (by another replica) starts afresh.
            let same =
                live.read().spec.runtime == spec.runtime && live.read().record.creation_time == record.creation_time;
            if same {
                // Only a newer record replaces what is held: a reader that fetched the record just before a
                // change was stored must not take the deployment back to the older state.
                if record.revision > live.read().record.revision {
                    live.adopt(record.clone(), spec, state);
                }
                return Ok(live.clone());
            }
        }
        let catalog = LoadingCatalog::new(
            self.source.clone(),
            self.runner_config(&spec),
            self.metrics.clone(),
            Duration::from_secs(10),
        );
        let live = Arc::new(Live::new(record.clone(), spec, state, catalog, self.ledger.clone())?);
        if existing.is_some() {
            // Built before it replaces the one requests use now.
            self.rebuild(&live).await;
        }
        self.live
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(record.name.clone(), live.clone());
        Ok(live)
    }

    /// Builds the route table from the stored state: every version in the plan loaded first.
    pub(crate) async fn rebuild(&self, live: &Live) {
        let (spec, state, revision) = {
            let inner = live.read();
            (inner.spec.clone(), inner.state.clone(), inner.record.revision)
        };
        let planned = plan(&spec, &state);
        let mut arms = Vec::new();
        for (index, (version, share)) in planned.arms.iter().enumerate() {
            match live.catalog.get(&live.model, Some(version)).await {
                Ok(served) => arms.push((served, *share)),
                Err(error) if index == 0 => {
                    live.install(
                        revision,
                        Err(format!("its stable version {version} is not ready: {error}")),
                    );
                    return;
                }
                Err(error) => {
                    tracing::warn!(deployment = live.name, version, %error, "a candidate is not ready; the stable version takes its share");
                    arms[0].1 += share;
                }
            }
        }
        let shadow = match &planned.shadow {
            Some((version, share)) => live
                .catalog
                .get(&live.model, Some(version))
                .await
                .ok()
                .map(|served| (served, *share)),
            None => None,
        };
        if let Some(previous) = state.previous.as_ref().filter(|p| p.until_ms > now_millis()) {
            // Kept warm for an instant switch back.
            let _ = live.catalog.get(&live.model, Some(&previous.version)).await;
        }
        live.install(
            revision,
            Ok(Table {
                arms,
                shadow,
                bandit: planned.bandit,
            }),
        );
        // Versions no longer planned (nor kept warm) are unloaded; requests still holding one finish on it.
        let mut keep = planned.versions();
        if let Some(previous) = state.previous.as_ref().filter(|p| p.until_ms > now_millis()) {
            keep.push(previous.version.clone());
        }
        live.catalog.retain(&live.model, &keep);
    }

    /// Checks the model a spec names and returns its registered model and the version it resolves to now.
    async fn resolve(&self, target: &Target) -> Result<String, CommandError> {
        match target {
            Target::Alias { name, alias } => {
                self.store
                    .get_registered_model(name)
                    .await
                    .map_err(|_| CommandError::Invalid(format!("registered model '{name}' does not exist")))?;
                let version = self.store.get_model_version_by_alias(name, alias).await.map_err(|_| {
                    CommandError::Invalid(format!(
                        "registered model '{name}' has no alias '{alias}'; set it first (mlflow's set_registered_model_alias)"
                    ))
                })?;
                Ok(version.version)
            }
            Target::Version { name, version } => {
                self.check_version(name, version).await?;
                Ok(version.clone())
            }
        }
    }

    async fn check_version(&self, name: &str, version: &str) -> Result<(), CommandError> {
        let number: i64 = version
            .parse()
            .map_err(|_| CommandError::Invalid(format!("'{version}' is not a version number")))?;
        self.store
            .get_model_version(name, number)
            .await
            .map(|_| ())
            .map_err(|_| CommandError::Invalid(format!("registered model '{name}' has no version {version}")))
    }

    /// Loads a version with the deployment's runtime settings, as a readiness check before it takes traffic.
    async fn warm(&self, catalog: &LoadingCatalog, model: &str, version: &str) -> Result<(), CommandError> {
        catalog
            .get(model, Some(version))
            .await
            .map(|_| ())
            .map_err(|e| CommandError::Invalid(format!("version {version} of '{model}' cannot be served: {e}")))
    }

    /// Creates a deployment; its stable version is loaded before it is stored.
    pub async fn create(&self, name: &str, spec: DeploymentSpec, actor: &str) -> Result<Value, CommandError> {
        check_name(name).map_err(CommandError::Invalid)?;
        let target = spec.validate().map_err(CommandError::Invalid)?;
        let _serial = self.serial.lock().await;
        if self.get_live(name).is_some() || self.store.get_deployment(name).await.is_ok() {
            return Err(CommandError::Conflict(format!("deployment '{name}' already exists")));
        }
        let stable = self.resolve(&target).await?;
        let named = spec.policy.named_versions();
        for version in &named {
            self.check_version(target.name(), version).await?;
        }
        let catalog = LoadingCatalog::new(
            self.source.clone(),
            self.runner_config(&spec),
            self.metrics.clone(),
            Duration::from_secs(10),
        );
        self.warm(&catalog, target.name(), &stable).await?;
        let now = now_millis();
        let candidates: Vec<String> = named.into_iter().filter(|v| *v != stable).collect();
        let rollout =
            (!candidates.is_empty()).then(|| Rollout::begin(candidates.clone(), "created with an experiment", now));
        let state = DeploymentState {
            stable: stable.clone(),
            previous: None,
            rollout,
            rollbacks: 0,
        };
        let created = event(
            name,
            "created",
            actor,
            format!(
                "deployment created on {} (version {stable}) with a {} policy",
                spec.model,
                spec.policy.name()
            ),
            json!({"model": spec.model, "stable": stable, "candidates": candidates}),
        );
        let record = self
            .store
            .create_deployment(name, &to_json(&spec), &to_json(&state), &created)
            .await?;
        let live = self.live_for(&record).await.map_err(CommandError::Internal)?;
        self.advance(&live, now_millis()).await;
        Ok(self.describe(&live))
    }

    /// Replaces a deployment's spec. Changing the model or policy while a rollout runs is refused (409).
    pub async fn update(
        &self,
        name: &str,
        spec: DeploymentSpec,
        expected_revision: Option<i64>,
        actor: &str,
    ) -> Result<Value, CommandError> {
        let target = spec.validate().map_err(CommandError::Invalid)?;
        let _serial = self.serial.lock().await;
        let record = self.store.get_deployment(name).await?;
        if let Some(expected) = expected_revision
            && expected != record.revision
        {
            return Err(CommandError::Conflict(format!(
                "deployment '{name}' is at revision {} but the update was based on {expected}; read it again",
                record.revision
            )));
        }
        let (old_spec, mut state) = parse(&record).map_err(CommandError::Internal)?;
        if Target::parse(&old_spec.model)
            .map(|t| t.name().to_string())
            .ok()
            .as_deref()
            != Some(target.name())
        {
            return Err(CommandError::Invalid(format!(
                "a deployment keeps its registered model ({}); create another deployment for '{}'",
                old_spec.model,
                target.name()
            )));
        }
        let moving = spec.model != old_spec.model || spec.policy != old_spec.policy;
        if moving && let Some(rollout) = &state.rollout {
            return Err(CommandError::Conflict(format!(
                "deployment '{name}' is rolling out version {} (started {}); promote or roll it back before changing its model or policy",
                rollout.candidates.join(", "),
                rollout.trigger
            )));
        }
        let wanted = self.resolve(&target).await?;
        let named = spec.policy.named_versions();
        for version in &named {
            self.check_version(target.name(), version).await?;
        }
        let now = now_millis();
        let mut events = vec![event(
            name,
            "updated",
            actor,
            format!("spec updated: model {}, {} policy", spec.model, spec.policy.name()),
            json!({"model": spec.model, "policy": spec.policy.name()}),
        )];
        let candidates: Vec<String> = named.into_iter().filter(|v| *v != state.stable).collect();
        if state.rollout.is_none() && !candidates.is_empty() && spec.policy != old_spec.policy {
            events.push(started(name, actor, &candidates, "an experiment was configured"));
            state.rollout = Some(Rollout::begin(candidates, "an experiment was configured", now));
        } else if state.rollout.is_none() && wanted != state.stable && matches!(target, Target::Version { .. }) {
            let trigger = format!("the deployment was pointed at version {wanted}");
            events.push(started(name, actor, std::slice::from_ref(&wanted), &trigger));
            state.rollout = Some(Rollout::begin(vec![wanted], &trigger, now));
        }
        let record = self
            .store
            .update_deployment(name, record.revision, &to_json(&spec), &to_json(&state), &events)
            .await?;
        let live = self.live_for(&record).await.map_err(CommandError::Internal)?;
        self.advance(&live, now_millis()).await;
        Ok(self.describe(&live))
    }

    /// Ends the rollout with `version` (or its only candidate) as the stable version.
    pub async fn promote(&self, name: &str, version: Option<&str>, actor: &str) -> Result<Value, CommandError> {
        let _serial = self.serial.lock().await;
        let live = self.stored_live(name).await?;
        let (mut spec, mut state, revision) = {
            let inner = live.read();
            (inner.spec.clone(), inner.state.clone(), inner.record.revision)
        };
        let Some(rollout) = state.rollout.clone() else {
            return Err(CommandError::Conflict(format!(
                "deployment '{name}' has no rollout to promote; it serves version {}",
                state.stable
            )));
        };
        let winner = match version {
            Some(v) if v == state.stable || rollout.candidates.iter().any(|c| c == v) => v.to_string(),
            Some(v) => {
                return Err(CommandError::Invalid(format!(
                    "version {v} is not part of the rollout (stable {}, candidates {})",
                    state.stable,
                    rollout.candidates.join(", ")
                )));
            }
            None if rollout.candidates.len() == 1 => rollout.candidates[0].clone(),
            None => {
                return Err(CommandError::Invalid(format!(
                    "the rollout has several candidates ({}); name the version to promote",
                    rollout.candidates.join(", ")
                )));
            }
        };
        self.warm(&live.catalog, &live.model, &winner).await?;
        let figures = self.figures(&live);
        state::complete(&spec, &mut state, &winner, now_millis());
        let mut events = vec![event(
            name,
            "promoted",
            actor,
            format!("version {winner} promoted to stable"),
            figures,
        )];
        self.point_model_at(&live, &mut spec, &winner, actor, &mut events)
            .await?;
        self.store_change(&live, revision, &spec, &state, events).await
    }

    /// Rolls back: ends the rollout, or returns to the previous version. Routing and the registry move
    /// together: an alias the deployment follows is pointed back at the restored version.
    pub async fn rollback(&self, name: &str, reason: Option<&str>, actor: &str) -> Result<Value, CommandError> {
        let _serial = self.serial.lock().await;
        let live = self.stored_live(name).await?;
        let reason = reason.unwrap_or("rolled back by hand").to_string();
        self.roll_back(&live, &reason, actor, json!({})).await
    }

    pub(crate) async fn roll_back(
        &self,
        live: &Live,
        reason: &str,
        actor: &str,
        details: Value,
    ) -> Result<Value, CommandError> {
        let (mut spec, mut state, revision) = {
            let inner = live.read();
            (inner.spec.clone(), inner.state.clone(), inner.record.revision)
        };
        let from: Vec<String> = match &state.rollout {
            Some(rollout) => rollout.candidates.clone(),
            None => vec![state.stable.clone()],
        };
        let Some(restored) = state::roll_back(&mut state) else {
            return Err(CommandError::Conflict(format!(
                "deployment '{}' has nothing to roll back to: no rollout is under way and no earlier version is recorded",
                live.name
            )));
        };
        self.warm(&live.catalog, &live.model, &restored).await?;
        let mut details = details;
        if let Some(map) = details.as_object_mut() {
            map.insert("from".into(), json!(from));
            map.insert("to".into(), json!(restored));
            map.insert("figures".into(), self.figures(live));
        }
        let mut events = vec![event(
            &live.name,
            "rolled_back",
            actor,
            format!("rolled back from {} to version {restored}: {reason}", from.join(", ")),
            details,
        )];
        self.point_model_at(live, &mut spec, &restored, actor, &mut events)
            .await?;
        self.store_change(live, revision, &spec, &state, events).await
    }

    /// After a promotion or rollback, the registry (a followed alias) or the spec (an explicit version) names
    /// the version that now serves, so the controller does not start the same rollout again.
    pub(crate) async fn point_model_at(
        &self,
        live: &Live,
        spec: &mut DeploymentSpec,
        version: &str,
        actor: &str,
        events: &mut Vec<DeploymentEvent>,
    ) -> Result<(), CommandError> {
        match Target::parse(&spec.model).map_err(CommandError::Internal)? {
            Target::Alias { name, alias } => {
                let current = self.store.get_model_version_by_alias(&name, &alias).await.ok();
                if current.map(|v| v.version).as_deref() != Some(version) {
                    let number: i64 = version
                        .parse()
                        .map_err(|_| CommandError::Internal(version.to_string()))?;
                    self.store.set_alias(&name, &alias, number).await?;
                    events.push(event(
                        &live.name,
                        "alias_moved",
                        actor,
                        format!("alias '{alias}' of '{name}' pointed at version {version}"),
                        json!({"alias": alias, "version": version}),
                    ));
                }
            }
            Target::Version { name, .. } => spec.model = format!("models:/{name}/{version}"),
        }
        Ok(())
    }

    async fn store_change(
        &self,
        live: &Live,
        revision: i64,
        spec: &DeploymentSpec,
        state: &DeploymentState,
        events: Vec<DeploymentEvent>,
    ) -> Result<Value, CommandError> {
        let record = self
            .store
            .update_deployment(&live.name, revision, &to_json(spec), &to_json(state), &events)
            .await?;
        let live = self.live_for(&record).await.map_err(CommandError::Internal)?;
        self.rebuild(&live).await;
        Ok(self.describe(&live))
    }

    async fn stored_live(&self, name: &str) -> Result<Arc<Live>, CommandError> {
        let record = self.store.get_deployment(name).await?;
        self.live_for(&record).await.map_err(CommandError::Internal)
    }

    /// Deletes a deployment.
    pub async fn delete(&self, name: &str) -> Result<(), CommandError> {
        let _serial = self.serial.lock().await;
        self.store.delete_deployment(name).await?;
        self.live
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(name);
        Ok(())
    }

    /// One deployment with its live figures.
    pub async fn get(&self, name: &str) -> Result<Value, CommandError> {
        let live = self.stored_live(name).await?;
        if live.table_is_stale() {
            self.rebuild(&live).await;
        }
        Ok(self.describe(&live))
    }

    /// Every deployment.
    pub async fn list(&self) -> Result<Vec<Value>, CommandError> {
        let mut listed = Vec::new();
        for record in self.store.list_deployments().await? {
            if let Ok(live) = self.live_for(&record).await {
                listed.push(self.describe(&live));
            }
        }
        Ok(listed)
    }

    /// The audit trail after event `after`.
    pub async fn events(&self, name: &str, after: i64, limit: usize) -> Result<Vec<Value>, CommandError> {
        self.store.get_deployment(name).await?;
        let events = self.store.deployment_events(name, after, limit).await?;
        Ok(events
            .into_iter()
            .map(|e| {
                json!({
                    "id": e.event_id,
                    "timestamp_ms": e.timestamp_ms,
                    "kind": e.kind,
                    "actor": e.actor,
                    "message": e.message,
                    "details": serde_json::from_str::<Value>(&e.details).unwrap_or(Value::Null),
                })
            })
            .collect())
    }

    /// What each version did on the current step.
    pub(crate) fn figures(&self, live: &Live) -> Value {
        let window = live.window.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let versions: serde_json::Map<String, Value> = window
            .versions
            .iter()
            .map(|(version, w)| {
                (
                    version.clone(),
                    json!({
                        "requests": w.requests,
                        "failures": w.failures,
                        "error_rate": w.error_rate(),
                        "p50_ms": w.latency_ms.quantile(0.5),
                        "p99_ms": w.latency_ms.quantile(0.99),
                    }),
                )
            })
            .collect();
        let mut figures = json!({"versions": versions});
        if window.shadow.mirrored > 0 {
            figures["shadow"] = json!({
                "mirrored": window.shadow.mirrored,
                "failures": window.shadow.failures,
                "agreement": agreement(&window.shadow),
                "p99_ms": window.shadow.latency_ms.quantile(0.99),
                "divergence": loopline_drift_statistics::distances::kolmogorov_smirnov_statistic(
                    window.shadow.stable_predictions.values(),
                    window.shadow.shadow_predictions.values(),
                ).ok(),
            });
        }
        figures
    }

    /// The deployment as the API shows it.
    fn describe(&self, live: &Live) -> Value {
        let inner = live.read();
        let planned = plan(&inner.spec, &inner.state);
        let shares: serde_json::Map<String, Value> = planned
            .arms
            .iter()
            .map(|(v, share)| (v.clone(), json!(share)))
            .collect();
        let rollout = inner.state.rollout.as_ref().map(|r| {
            let mut value = json!({
                "id": r.id,
                "candidates": r.candidates,
                "phase": r.phase,
                "step": r.step,
                "step_started_ms": r.step_started_ms,
                "started_ms": r.started_ms,
                "trigger": r.trigger,
            });
            if let Policy::Canary { steps, .. } = &inner.spec.policy {
                value["steps"] = json!(steps);
            }
            if planned.bandit {
                value["posteriors"] = json!(live.posteriors());
            }
            value
        });
        let ready = live.table().err();
        json!({
            "name": live.name,
            "revision": inner.record.revision,
            "spec": inner.spec,
            "stable_version": inner.state.stable,
            "previous": inner.state.previous,
            "rollout": rollout,
            "rollbacks": inner.state.rollbacks,
            "shares": shares,
            "shadow": planned.shadow.map(|(v, share)| json!({"version": v, "share": share})),
            "ready": ready.is_none(),
            "not_ready_reason": ready,
            "current_step": self.figures(live),
            "creation_time": inner.record.creation_time,
            "last_update_time": inner.record.last_update_time,
        })
    }
}

impl Deployments for Manager {
    fn find(&self, name: &str) -> Option<Arc<dyn Deployment>> {
        self.get_live(name).map(|live| live as Arc<dyn Deployment>)
    }

    fn reward(&self, request_id: &str, reward: f64) -> bool {
        let found = self
            .ledger
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .find(request_id);
        match found {
            Some((deployment, version)) => self
                .get_live(&deployment)
                .is_some_and(|live| live.reward(&version, reward)),
            None => false,
        }
    }

    fn render_metrics(&self, out: &mut String) {
        crate::metrics::render(
            &self
                .live
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .values()
                .cloned()
                .collect::<Vec<_>>(),
            out,
        );
    }
}
