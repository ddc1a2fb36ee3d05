//! One deployment in memory: its stored record, the route table requests read (swapped whole, so a request
//! keeps the versions it started with), the window of what each version did on the current step, and live
//! bandit posteriors. Requests see it through the serving crate's [`Deployment`] trait.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use loopline_metadata_store::DeploymentRecord;
use loopline_model_runtime_api::{Tensor, TensorData};
use loopline_serving::dispatch::{Deployment, Observation, Route, StickyKey};
use loopline_serving::{CatalogError, LoadingCatalog, Served};
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::routing::{key_point, pick_by_share, thompson};
use crate::spec::{DeploymentSpec, Policy, Sticky, Target};
use crate::state::{DeploymentState, Phase};
use crate::window::Window;

/// The versions requests go to now.
pub struct Table {
    /// Versions with their shares; the stable version first.
    pub arms: Vec<(Served, f64)>,
    /// The mirrored version and share.
    pub shadow: Option<(Served, f64)>,
    /// Thompson sampling instead of shares.
    pub bandit: bool,
}

/// Totals since the server started, per version (for metrics).
#[derive(Debug, Default, Clone)]
pub struct Totals {
    /// Answered.
    pub success: u64,
    /// Failed.
    pub failure: u64,
    /// Latency sum, seconds.
    pub seconds: f64,
    /// Mirrored requests (shadow).
    pub mirrored: u64,
}

/// What identifies a step: a new key starts a new window. Without a rollout the stable version is the step, so a
/// rollback to the previous version starts a fresh window instead of showing the replaced version's figures.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct StepKey(String, Option<(String, usize, bool)>);

fn step_key(state: &DeploymentState) -> StepKey {
    StepKey(
        state.stable.clone(),
        state
            .rollout
            .as_ref()
            .map(|r| (r.id.clone(), r.step, r.phase == Phase::Running)),
    )
}

/// Request ids recently answered by bandit deployments, so rewards find their version.
#[derive(Default)]
pub struct Ledger {
    by_id: HashMap<String, (String, String)>,
    order: VecDeque<String>,
}

const LEDGER_SIZE: usize = 200_000;

impl Ledger {
    /// Remembers that `request_id` was answered by `version` of `deployment`.
    pub fn insert(&mut self, request_id: &str, deployment: &str, version: &str) {
        if self
            .by_id
            .insert(request_id.to_string(), (deployment.to_string(), version.to_string()))
            .is_none()
        {
            self.order.push_back(request_id.to_string());
        }
        while self.order.len() > LEDGER_SIZE {
            if let Some(old) = self.order.pop_front() {
                self.by_id.remove(&old);
            }
        }
    }

    /// The deployment and version that answered `request_id`.
    pub fn find(&self, request_id: &str) -> Option<(String, String)> {
        self.by_id.get(request_id).cloned()
    }
}

/// Mutable parts, under one lock.
pub struct Inner {
    /// As stored.
    pub record: DeploymentRecord,
    /// Parsed spec.
    pub spec: DeploymentSpec,
    /// Parsed state.
    pub state: DeploymentState,
    step: StepKey,
}

/// One deployment.
pub struct Live {
    /// Its name.
    pub name: String,
    /// The registered model.
    pub model: String,
    /// Loads its versions with its runtime settings.
    pub catalog: LoadingCatalog,
    /// Record, spec, state.
    pub inner: RwLock<Inner>,
    table: RwLock<Result<Arc<Table>, String>>,
    /// The revision the route table was built from.
    built: std::sync::atomic::AtomicI64,
    /// This step's observations.
    pub window: Mutex<Window>,
    /// Since start, per version.
    pub totals: Mutex<HashMap<String, Totals>>,
    posteriors: Mutex<(Vec<(f64, f64)>, bool)>,
    rng: Option<Mutex<StdRng>>,
    ledger: Arc<Mutex<Ledger>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The numbers a prediction contributes to distributions: the first output's elements (text hashed).
pub fn prediction_values(outputs: &[Tensor]) -> Vec<f64> {
    let Some(first) = outputs.first() else {
        return Vec::new();
    };
    match &first.data {
        TensorData::Bytes(values) => values
            .iter()
            .map(|v| key_point("", &String::from_utf8_lossy(v)))
            .collect(),
        data => (0..data.len()).filter_map(|i| data.number(i)).collect(),
    }
}

impl Live {
    /// A deployment from its stored record.
    pub fn new(
        record: DeploymentRecord,
        spec: DeploymentSpec,
        state: DeploymentState,
        catalog: LoadingCatalog,
        ledger: Arc<Mutex<Ledger>>,
    ) -> Result<Live, String> {
        let model = Target::parse(&spec.model)?.name().to_string();
        let rng = spec.routing_seed.map(|seed| Mutex::new(StdRng::seed_from_u64(seed)));
        let posteriors = state.rollout.as_ref().map(|r| r.bandit.clone()).unwrap_or_default();
        Ok(Live {
            name: record.name.clone(),
            model,
            catalog,
            inner: RwLock::new(Inner {
                step: step_key(&state),
                record,
                spec,
                state,
            }),
            table: RwLock::new(Err("the deployment is starting".to_string())),
            built: std::sync::atomic::AtomicI64::new(-1),
            window: Mutex::new(Window::default()),
            totals: Mutex::new(HashMap::new()),
            posteriors: Mutex::new((posteriors, false)),
            rng,
            ledger,
        })
    }

    /// Reads the parts under the lock.
    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes a newly stored record; a new step starts a new window.
    pub fn adopt(&self, record: DeploymentRecord, spec: DeploymentSpec, state: DeploymentState) {
        let mut inner = self.inner.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if record.revision < inner.record.revision {
            return;
        }
        let step = step_key(&state);
        if step != inner.step {
            *lock(&self.window) = Window::default();
        }
        let rollout_changed = inner.state.rollout.as_ref().map(|r| &r.id) != state.rollout.as_ref().map(|r| &r.id);
        if rollout_changed || !lock(&self.posteriors).1 {
            *lock(&self.posteriors) = (
                state.rollout.as_ref().map(|r| r.bandit.clone()).unwrap_or_default(),
                false,
            );
        }
        *inner = Inner {
            record,
            spec,
            state,
            step,
        };
    }

    /// Whether the route table predates the state (another replica, or a reader, brought a newer record).
    pub fn table_is_stale(&self) -> bool {
        self.built.load(std::sync::atomic::Ordering::SeqCst) != self.read().record.revision || self.table().is_err()
    }

    /// Installs a route table built from record `revision` (or the reason there is none).
    pub fn install(&self, revision: i64, table: Result<Table, String>) {
        self.built.store(revision, std::sync::atomic::Ordering::SeqCst);
        *self.table.write().unwrap_or_else(std::sync::PoisonError::into_inner) = table.map(Arc::new);
    }

    /// The route table now.
    pub fn table(&self) -> Result<Arc<Table>, String> {
        self.table
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Bandit posteriors changed by rewards since last stored, if any (and marks them stored).
    pub fn take_posteriors(&self) -> Option<Vec<(f64, f64)>> {
        let mut posteriors = lock(&self.posteriors);
        if !posteriors.1 {
            return None;
        }
        posteriors.1 = false;
        Some(posteriors.0.clone())
    }

    /// The live posteriors.
    pub fn posteriors(&self) -> Vec<(f64, f64)> {
        lock(&self.posteriors).0.clone()
    }

    /// Feeds a reward to the arm serving `version`.
    pub fn reward(&self, version: &str, reward: f64) -> bool {
        let arm = {
            let inner = self.read();
            let Some(rollout) = &inner.state.rollout else {
                return false;
            };
            if version == inner.state.stable {
                Some(0)
            } else {
                rollout.candidates.iter().position(|c| c == version).map(|i| i + 1)
            }
        };
        let mut posteriors = lock(&self.posteriors);
        match arm.and_then(|arm| posteriors.0.get_mut(arm)) {
            Some((alpha, beta)) => {
                *alpha += reward;
                *beta += 1.0 - reward;
                posteriors.1 = true;
                true
            }
            None => false,
        }
    }

    fn uniform(&self) -> f64 {
        match &self.rng {
            Some(rng) => rand::Rng::random::<f64>(&mut *lock(rng)),
            None => rand::random::<f64>(),
        }
    }
}

impl Deployment for Live {
    fn model(&self) -> &str {
        &self.model
    }

    fn stable_version(&self) -> String {
        self.read().state.stable.clone()
    }

    fn sticky(&self) -> Option<StickyKey> {
        self.read().spec.sticky.as_ref().map(|sticky| match sticky {
            Sticky::Header(name) => StickyKey::Header(name.to_ascii_lowercase()),
            Sticky::Column(name) => StickyKey::Column(name.clone()),
        })
    }

    fn route(&self, key: Option<&str>) -> Result<Route, CatalogError> {
        let table = self.table().map_err(|reason| {
            CatalogError::NotReady(format!("deployment '{}' cannot serve yet: {reason}", self.name))
        })?;
        let index = if table.arms.len() == 1 {
            0
        } else if table.bandit {
            let posteriors = self.posteriors();
            match &self.rng {
                Some(rng) => thompson(&mut *lock(rng), &posteriors),
                None => thompson(&mut rand::rng(), &posteriors),
            }
            .min(table.arms.len() - 1)
        } else {
            let shares: Vec<f64> = table.arms.iter().map(|(_, share)| *share).collect();
            let point = match key {
                Some(key) => key_point(&self.name, key),
                None => self.uniform(),
            };
            pick_by_share(&shares, point)
        };
        let primary = table.arms[index].0.clone();
        let fallback = (index != 0).then(|| table.arms[0].0.clone());
        let shadow = table
            .shadow
            .as_ref()
            .filter(|(_, share)| *share >= 1.0 || self.uniform() < *share)
            .map(|(served, _)| served.clone());
        Ok(Route {
            primary,
            fallback,
            shadow,
        })
    }

    fn observe(&self, observation: &Observation<'_>) {
        let values = observation.outputs.map(prediction_values).unwrap_or_default();
        let latency_ms = observation.latency.as_secs_f64() * 1000.0;
        lock(&self.window).observe(observation.version, observation.failed, latency_ms, &values);
        {
            let mut totals = lock(&self.totals);
            let totals = totals.entry(observation.version.to_string()).or_default();
            if observation.failed {
                totals.failure += 1;
            } else {
                totals.success += 1;
            }
            totals.seconds += observation.latency.as_secs_f64();
        }
        if matches!(self.read().spec.policy, Policy::Bandit { .. }) && !observation.failed {
            lock(&self.ledger).insert(observation.request_id, &self.name, observation.version);
        }
    }

    fn observe_shadow(&self, version: &str, primary: &[Tensor], shadow: Option<&[Tensor]>, latency: Duration) {
        let stable = prediction_values(primary);
        let shadow_values = shadow.map(prediction_values);
        lock(&self.window).observe_shadow(&stable, shadow_values.as_deref(), latency.as_secs_f64() * 1000.0);
        lock(&self.totals).entry(version.to_string()).or_default().mirrored += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Rollout;
    use async_trait::async_trait;
    use loopline_serving::{Metrics, ModelSource, RunnerConfig};

    struct NoModels;

    #[async_trait]
    impl ModelSource for NoModels {
        async fn resolve(&self, _: &str, _: Option<&str>) -> Result<String, CatalogError> {
            Err(CatalogError::NotFound("none".into()))
        }
        async fn fetch(&self, _: &str, _: &str) -> Result<loopline_serving::catalog::FetchedModel, CatalogError> {
            Err(CatalogError::NotFound("none".into()))
        }
    }

    fn record(revision: i64, state: &DeploymentState) -> DeploymentRecord {
        DeploymentRecord {
            name: "d".into(),
            spec: r#"{"model":"models:/m@champion"}"#.into(),
            state: serde_json::to_string(state).unwrap(),
            revision,
            creation_time: 1,
            last_update_time: 1,
        }
    }

    fn catalog() -> LoadingCatalog {
        LoadingCatalog::new(
            Arc::new(NoModels),
            RunnerConfig::default(),
            Arc::new(Metrics::default()),
            Duration::from_secs(1),
        )
    }

    fn settled(stable: &str) -> DeploymentState {
        DeploymentState {
            stable: stable.into(),
            previous: None,
            rollout: None,
            rollbacks: 0,
        }
    }

    #[tokio::test]
    async fn a_new_stable_version_without_a_rollout_starts_a_new_window() {
        let spec: DeploymentSpec = serde_json::from_str(r#"{"model":"models:/m@champion"}"#).unwrap();
        let live = Live::new(
            record(1, &settled("4")),
            spec.clone(),
            settled("4"),
            catalog(),
            Arc::default(),
        )
        .unwrap();
        live.window.lock().unwrap().observe("4", false, 1.0, &[1.0]);
        // The same state stored again (a tag, a guardrail change) keeps what the step has seen.
        live.adopt(record(2, &settled("4")), spec.clone(), settled("4"));
        assert_eq!(live.window.lock().unwrap().requests("4"), 1);
        // A rollback to the previous version: its figures start from nothing, version 4's are gone.
        live.adopt(record(3, &settled("2")), spec, settled("2"));
        assert_eq!(live.window.lock().unwrap().requests("4"), 0);
    }

    #[tokio::test]
    async fn an_older_record_never_replaces_a_newer_one() {
        let spec: DeploymentSpec = serde_json::from_str(r#"{"model":"models:/m@champion"}"#).unwrap();
        let warming = DeploymentState {
            stable: "1".into(),
            previous: None,
            rollout: Some(Rollout::begin(vec!["2".into()], "test", 0)),
            rollbacks: 0,
        };
        let mut running = warming.clone();
        running.rollout.as_mut().unwrap().phase = Phase::Running;
        let live = Live::new(
            record(1, &warming),
            spec.clone(),
            warming.clone(),
            catalog(),
            Arc::default(),
        )
        .unwrap();
        live.adopt(record(2, &running), spec.clone(), running.clone());
        live.window.lock().unwrap().observe("2", false, 1.0, &[1.0]);
        // A reader that fetched revision 1 before revision 2 was stored must not undo it (nor its window).
        live.adopt(record(1, &warming), spec, warming);
        assert_eq!(live.read().record.revision, 2);
        assert_eq!(live.read().state, running);
        assert_eq!(live.window.lock().unwrap().requests("2"), 1);
    }
}
