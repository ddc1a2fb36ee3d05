//! Pipelines registered on a server: triggers (a schedule on a paused clock, a new dataset version, a new
//! model version, a monitor's retraining request) queue runs with their cause; runs are started up to the
//! concurrency limit, one at a time per pipeline, can be cancelled, and a run left behind by a stopped server
//! is marked failed with the reason when it starts again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use loopline_metadata_store::*;
use loopline_pipelines::data::Project;
use loopline_pipelines::datasets::DataError;
use loopline_pipelines::pipeline::service::{Cause, Clock, HooksFactory, PipelineService, PipelineSettings};
use loopline_pipelines::pipeline::{LoopHooks, ResolvedDataset, RunContext, Step};
use serde_json::{Value, json};

/// 2026-03-02 02:30 UTC.
const START_MS: i64 = 1_772_418_600_000;

struct PausedClock(AtomicI64);

impl Clock for PausedClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Pipelines here run commands only: any call to the server is a test failure.
struct NoServer;

#[async_trait]
impl LoopHooks for NoServer {
    async fn train_env(&self, _: &RunContext, _: &Step) -> Result<BTreeMap<String, String>, String> {
        Err("no server in this test".into())
    }
    async fn train_finished(&self, _: &RunContext, _: &Step, _: bool) -> Result<Value, String> {
        Err("no server in this test".into())
    }
    async fn dataset(&self, _: &str) -> Result<ResolvedDataset, String> {
        Err("no server in this test".into())
    }
    async fn model(&self, _: &str) -> Result<String, String> {
        Err("no server in this test".into())
    }
    async fn builtin(&self, _: &RunContext, _: &Step) -> Result<Value, String> {
        Err("no server in this test".into())
    }
    async fn finished(&self, _: &RunContext, _: &str) {}
}

impl HooksFactory for NoServer {
    fn hooks(&self, _: Arc<Project>) -> Result<Arc<dyn LoopHooks>, String> {
        Ok(Arc::new(NoServer))
    }
}

struct Setup {
    store: Arc<SqlStore>,
    clock: Arc<PausedClock>,
    root: PathBuf,
    _directory: tempfile::TempDir,
}

impl Setup {
    async fn new() -> Setup {
        let directory = tempfile::tempdir().unwrap();
        let root = directory.path().join("projects");
        std::fs::create_dir_all(&root).unwrap();
        let database = directory.path().join("loopline.db");
        let store = Arc::new(
            SqlStore::connect(&format!("sqlite:///{}", database.display()), "mlflow-artifacts:")
                .await
                .unwrap(),
        );
        Setup {
            store,
            clock: Arc::new(PausedClock(AtomicI64::new(START_MS))),
            root,
            _directory: directory,
        }
    }

    fn service(&self, replica: &str, concurrency: usize) -> Arc<PipelineService> {
        PipelineService::new(
            self.store.clone(),
            PipelineSettings {
                roots: vec![self.root.clone()],
                max_concurrent_runs: concurrency,
                tick: Duration::from_secs(3600),
                replica: replica.to_string(),
                stale_after: Duration::from_secs(120),
                loopline: PathBuf::from("/bin/false"),
                ray: None,
            },
            Arc::new(NoServer),
            self.clock.clone(),
        )
    }

    /// A project with a `loopline.yaml`.
    fn project(&self, name: &str, pipeline: &str) -> PathBuf {
        let directory = self.root.join(name);
        std::fs::create_dir_all(directory.join(".loopline")).unwrap();
        std::fs::write(directory.join("loopline.yaml"), pipeline).unwrap();
        directory
    }
}

async fn register(service: &PipelineService, name: &str, directory: &Path) -> PipelineRecord {
    service
        .register(json!({"name": name, "directory": directory}), "test", None)
        .await
        .unwrap()
}

async fn runs_of(store: &SqlStore, pipeline: &str) -> Vec<PipelineRunRecord> {
    store.pipeline_runs(Some(pipeline), 100).await.unwrap()
}

/// Marks every run of a pipeline as ended (as if a server had run them).
async fn finish_all(store: &SqlStore, pipeline: &str) {
    for run in runs_of(store, pipeline).await {
        if matches!(run.status.as_str(), "queued" | "running") {
            store
                .update_pipeline_run(&run.run_id, "succeeded", "{}", "replica-a", Some(1))
                .await
                .unwrap();
        }
    }
}

fn cause_of(run: &PipelineRunRecord) -> Value {
    serde_json::from_str(&run.cause).unwrap()
}

/// Waits (bounded) until the run has ended; returns it.
async fn ended(store: &SqlStore, run_id: &str) -> PipelineRunRecord {
    for _ in 0..1_200 {
        let run = store.get_pipeline_run(run_id).await.unwrap();
        if !matches!(run.status.as_str(), "queued" | "running") {
            return run;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("run {run_id} did not end");
}

async fn running(store: &SqlStore, run_id: &str) {
    for _ in 0..1_200 {
        let run = store.get_pipeline_run(run_id).await.unwrap();
        assert!(matches!(run.status.as_str(), "queued" | "running"), "{run:?}");
        if run.status == "running" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("run {run_id} did not start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_fires_once_when_its_time_comes_on_a_paused_clock() {
    let setup = Setup::new().await;
    let service = setup.service("replica-a", 2);
    let directory = setup.project(
        "nightly",
        "steps: {a: {run: 'echo hi'}}\ntriggers: [{schedule: '0 3 * * *'}]\n",
    );
    register(&service, "nightly", &directory).await;
    service.check_triggers().await.unwrap();
    assert!(runs_of(&setup.store, "nightly").await.is_empty());
    setup.clock.0.store(START_MS + 29 * 60_000, Ordering::SeqCst); // 02:59
    service.check_triggers().await.unwrap();
    assert!(runs_of(&setup.store, "nightly").await.is_empty());
    setup.clock.0.store(START_MS + 30 * 60_000, Ordering::SeqCst); // 03:00
    service.check_triggers().await.unwrap();
    let runs = runs_of(&setup.store, "nightly").await;
    assert_eq!(runs.len(), 1);
    assert_eq!(cause_of(&runs[0])["kind"], "schedule");
    assert_eq!(cause_of(&runs[0])["detail"], "schedule '0 3 * * *'");
    // The same minute checked again, and the rest of the day: nothing more.
    setup.clock.0.store(START_MS + 31 * 60_000, Ordering::SeqCst);
    service.check_triggers().await.unwrap();
    setup.clock.0.store(START_MS + 20 * 3_600_000, Ordering::SeqCst);
    service.check_triggers().await.unwrap();
    assert_eq!(runs_of(&setup.store, "nightly").await.len(), 1);
    // Next day at 03:00 (checked late, at 05:00): one run, not one per missed minute.
    finish_all(&setup.store, "nightly").await;
    setup
        .clock
        .0
        .store(START_MS + (24 + 2) * 3_600_000 + 30 * 60_000, Ordering::SeqCst);
    service.check_triggers().await.unwrap();
    assert_eq!(runs_of(&setup.store, "nightly").await.len(), 2);
}

fn dataset_version(name: &str, hash: &str) -> DatasetVersion {
    DatasetVersion {
        name: name.into(),
        version: 0,
        content_hash: hash.into(),
        size_bytes: 1,
        file_count: 1,
        row_count: None,
        table_schema: None,
        profile: None,
        lineage: None,
        source: "raw.csv".into(),
        description: String::new(),
        created_by: "test".into(),
        creation_time: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_dataset_version_and_a_retraining_request_each_start_a_run_naming_their_cause() {
    let setup = Setup::new().await;
    let service = setup.service("replica-a", 2);
    // What exists before registration starts nothing.
    setup
        .store
        .register_dataset_version(&dataset_version("raw", "aa"))
        .await
        .unwrap();
    let event = |kind: &str, details: Value| MonitorEvent {
        event_id: 0,
        monitor: "churn-live".into(),
        timestamp_ms: START_MS,
        kind: kind.into(),
        actor: "monitor".into(),
        message: format!("{kind} happened"),
        details: details.to_string(),
    };
    let monitor = setup
        .store
        .create_monitor("churn-live", "{}", "{}", &event("retraining_requested", json!({})))
        .await
        .unwrap();
    let directory = setup.project(
        "retrain",
        "steps: {a: {run: 'echo hi'}}\ntriggers: [{dataset: raw}, {alert: churn-live}, {model: churn}]\n",
    );
    register(&service, "retrain", &directory).await;
    service.check_triggers().await.unwrap();
    assert!(runs_of(&setup.store, "retrain").await.is_empty());

    setup
        .store
        .register_dataset_version(&dataset_version("raw", "bb"))
        .await
        .unwrap();
    service.check_triggers().await.unwrap();
    let runs = runs_of(&setup.store, "retrain").await;
    assert_eq!(runs.len(), 1);
    assert_eq!(cause_of(&runs[0])["kind"], "dataset");
    assert_eq!(cause_of(&runs[0])["source"], json!({"dataset": "raw", "version": 2}));
    // While that run waits, another version folds into it: the run reads the newest data when it starts.
    setup
        .store
        .register_dataset_version(&dataset_version("raw", "b2"))
        .await
        .unwrap();
    service.check_triggers().await.unwrap();
    assert_eq!(runs_of(&setup.store, "retrain").await.len(), 1);
    finish_all(&setup.store, "retrain").await;

    // An alert that fires without asking for retraining, and a request meant for another pipeline: nothing.
    let update = |events: Vec<MonitorEvent>, revision: i64| {
        let store = setup.store.clone();
        async move {
            store
                .update_monitor(
                    "churn-live",
                    revision,
                    &MonitorUpdate {
                        spec: "{}",
                        state: "{}",
                        windows: &[],
                        events: &events,
                    },
                )
                .await
                .unwrap()
        }
    };
    let monitor = update(
        vec![
            event("alert_firing", json!({})),
            event("retraining_requested", json!({"pipeline": "another"})),
        ],
        monitor.revision,
    )
    .await;
    service.check_triggers().await.unwrap();
    assert_eq!(runs_of(&setup.store, "retrain").await.len(), 1);
    update(
        vec![event(
            "retraining_requested",
            json!({"pipeline": "retrain", "model": "churn"}),
        )],
        monitor.revision,
    )
    .await;
    service.check_triggers().await.unwrap();
    let runs = runs_of(&setup.store, "retrain").await;
    assert_eq!(runs.len(), 2);
    let cause = cause_of(&runs[0]);
    assert_eq!(cause["kind"], "alert");
    assert_eq!(cause["source"]["monitor"], "churn-live");
    assert_eq!(cause["source"]["details"]["model"], "churn");
    service.check_triggers().await.unwrap();
    assert_eq!(runs_of(&setup.store, "retrain").await.len(), 2);
    // While that run is in progress, another retraining request folds into it; a new dataset version queues
    // one more run.
    assert!(
        setup
            .store
            .claim_pipeline_run(&runs[0].run_id, "replica-a")
            .await
            .unwrap()
    );
    let monitor = setup.store.get_monitor("churn-live").await.unwrap();
    update(vec![event("retraining_requested", json!({}))], monitor.revision).await;
    service.check_triggers().await.unwrap();
    assert_eq!(runs_of(&setup.store, "retrain").await.len(), 2);
    setup
        .store
        .register_dataset_version(&dataset_version("raw", "b3"))
        .await
        .unwrap();
    service.check_triggers().await.unwrap();
    assert_eq!(runs_of(&setup.store, "retrain").await.len(), 3);
    finish_all(&setup.store, "retrain").await;

    // Two replicas checking the same event: one run.
    let other = setup.service("replica-b", 2);
    setup
        .store
        .register_dataset_version(&dataset_version("raw", "cc"))
        .await
        .unwrap();
    let (a, b) = tokio::join!(service.check_triggers(), other.check_triggers());
    a.unwrap();
    b.unwrap();
    assert_eq!(runs_of(&setup.store, "retrain").await.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_start_within_the_limit_and_record_their_steps_and_logs() {
    let setup = Setup::new().await;
    let service = setup.service("replica-a", 1);
    let quick = setup.project(
        "quick",
        "steps:\n  make: {run: 'echo made-it && echo x > out.txt', outputs: [out.txt]}\n  use: {run: 'cat out.txt', inputs: [out.txt]}\n",
    );
    let slow = setup.project("slow", "steps: {wait: {run: 'sleep 30'}}\n");
    register(&service, "quick", &quick).await;
    register(&service, "slow", &slow).await;
    let first = service.queue("slow", Cause::default()).await.unwrap();
    service.tick().await.unwrap();
    running(&setup.store, &first.run_id).await;
    let second = service.queue("quick", Cause::default()).await.unwrap();
    // One run at a time on this server: the second waits.
    service.tick().await.unwrap();
    assert_eq!(
        setup.store.get_pipeline_run(&second.run_id).await.unwrap().status,
        "queued"
    );
    service.cancel(&first.run_id).await.unwrap();
    let cancelled = ended(&setup.store, &first.run_id).await;
    assert_eq!(cancelled.status, "cancelled");
    service.tick().await.unwrap();
    let done = ended(&setup.store, &second.run_id).await;
    assert_eq!(done.status, "succeeded", "{}", done.record);
    assert_eq!(done.owner, "replica-a");
    let record: Value = serde_json::from_str(&done.record).unwrap();
    let states: Vec<&str> = record["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["succeeded", "succeeded"]);
    let (text, next, finished) = service.log(&second.run_id, "make", 0).await.unwrap();
    assert!(text.contains("made-it"), "{text}");
    assert!(finished);
    let (rest, _, _) = service.log(&second.run_id, "make", next).await.unwrap();
    assert_eq!(rest, "");
    assert!(matches!(
        service.log(&second.run_id, "../../etc/passwd", 0).await,
        Err(DataError::NotFound(_))
    ));
    // A second run of the same pipeline reuses the cache: nothing runs again.
    let again = service.queue("quick", Cause::default()).await.unwrap();
    service.tick().await.unwrap();
    let again = ended(&setup.store, &again.run_id).await;
    let record: Value = serde_json::from_str(&again.record).unwrap();
    assert_eq!(record["steps"][0]["state"], "cached");
    // Cancelling what has ended is refused.
    assert!(matches!(
        service.cancel(&again.run_id).await,
        Err(DataError::Conflict(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_left_by_a_stopped_server_is_failed_with_the_reason_when_it_starts_again() {
    let setup = Setup::new().await;
    let first = setup.service("replica-a", 1);
    let directory = setup.project("slow", "steps: {wait: {run: 'sleep 30'}}\n");
    register(&first, "slow", &directory).await;
    let run = first.queue("slow", Cause::default()).await.unwrap();
    assert!(setup.store.claim_pipeline_run(&run.run_id, "replica-a").await.unwrap());
    // A run claimed by another replica that is still answering is left alone.
    let other = first.queue("slow", Cause::default()).await.unwrap();
    assert!(
        setup
            .store
            .claim_pipeline_run(&other.run_id, "replica-b")
            .await
            .unwrap()
    );
    drop(first);
    let restarted = setup.service("replica-a", 1);
    restarted.start().await;
    let failed = setup.store.get_pipeline_run(&run.run_id).await.unwrap();
    assert_eq!(failed.status, "failed");
    assert!(
        failed
            .record
            .contains("the server stopped while this run was in progress"),
        "{}",
        failed.record
    );
    assert!(failed.end_time.is_some());
    assert_eq!(
        setup.store.get_pipeline_run(&other.run_id).await.unwrap().status,
        "running"
    );
    // Once replica-b has been silent too long, its run is failed too.
    setup
        .clock
        .0
        .store(loopline_core::time::now_millis() + 121_000, Ordering::SeqCst);
    restarted.tick().await.unwrap();
    let stale = setup.store.get_pipeline_run(&other.run_id).await.unwrap();
    assert_eq!(stale.status, "failed");
    assert!(stale.record.contains("replica-b"), "{}", stale.record);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_is_refused_outside_the_allowed_roots_and_for_a_broken_pipeline() {
    let setup = Setup::new().await;
    let service = setup.service("replica-a", 1);
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("loopline.yaml"), "steps: {a: {run: x}}").unwrap();
    let refused = |request: Value| {
        let service = service.clone();
        async move {
            match service.register(request, "test", None).await {
                Err(DataError::Invalid(message)) => message,
                other => panic!("accepted: {other:?}"),
            }
        }
    };
    let message = refused(json!({"directory": outside.path()})).await;
    assert!(message.contains("outside the directories"), "{message}");
    let message = refused(json!({"directory": "relative/path"})).await;
    assert!(message.contains("not an absolute path"), "{message}");
    // A link inside the root pointing outside it is judged by where it leads.
    std::os::unix::fs::symlink(outside.path(), setup.root.join("link")).unwrap();
    let message = refused(json!({"directory": setup.root.join("link")})).await;
    assert!(message.contains("outside the directories"), "{message}");
    let cycle = setup.project("cycle", "steps: {a: {run: x, after: [b]}, b: {run: y, after: [a]}}");
    let message = refused(json!({"directory": cycle})).await;
    assert!(message.contains("cycle"), "{message}");
    let missing = setup.project("missing", "steps: {a: {run: x, inputs: [nowhere.csv]}}");
    let message = refused(json!({"directory": missing})).await;
    assert!(
        message.contains("step 'a', inputs: 'nowhere.csv' does not exist"),
        "{message}"
    );
    let message = refused(json!({"directory": cycle, "file": "../../etc/passwd"})).await;
    assert!(message.starts_with("file:"), "{message}");
    let message = refused(json!({"directory": cycle, "surprise": 1})).await;
    assert!(message.contains("unknown field"), "{message}");
    // Registered twice under one name: refused.
    let good = setup.project("good", "steps: {a: {run: x}}");
    register(&service, "good", &good).await;
    assert!(matches!(
        service
            .register(json!({"name": "good", "directory": good}), "test", None)
            .await,
        Err(DataError::Conflict(_))
    ));
    // A server without roots runs no pipelines.
    let disabled = PipelineService::new(
        setup.store.clone(),
        PipelineSettings {
            roots: Vec::new(),
            max_concurrent_runs: 1,
            tick: Duration::from_secs(3600),
            replica: "x".into(),
            stale_after: Duration::from_secs(120),
            loopline: PathBuf::from("/bin/false"),
            ray: None,
        },
        Arc::new(NoServer),
        setup.clock.clone(),
    );
    assert!(!disabled.enabled());
    match disabled.register(json!({"directory": good}), "test", None).await {
        Err(DataError::Invalid(message)) => assert!(message.contains("--pipeline-root"), "{message}"),
        other => panic!("accepted: {other:?}"),
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 200, failure_persistence: None, ..Default::default() })]

    /// Generated registrations (directories in and out of the root, through `..`, odd file names, parameters
    /// of any shape) are registered or refused as bad input, never anything else.
    #[test]
    fn generated_registrations_are_registered_or_refused(
        directory in proptest::prop_oneof![
            proptest::prelude::Just("good".to_string()),
            proptest::prelude::Just("good/../..".to_string()),
            proptest::prelude::Just("/".to_string()),
            "[a-z./]{0,12}",
        ],
        file in proptest::prop_oneof![
            proptest::prelude::Just("loopline.yaml".to_string()),
            "[a-z./\\\\]{0,16}",
        ],
        name in proptest::option::of("[a-zA-Z0-9_./ -]{0,20}"),
        params in proptest::collection::btree_map("[a-z.]{1,6}", proptest::prelude::any::<i64>(), 0..3),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let setup = Setup::new().await;
            setup.project("good", "params: {lr: 1}\nsteps: {a: {run: 'echo ${lr}'}}");
            let service = setup.service("replica-a", 1);
            let directory = if directory.starts_with('/') { directory } else { setup.root.join(&directory).display().to_string() };
            let mut request = json!({"directory": directory, "file": file, "params": params});
            if let Some(name) = name {
                request["name"] = json!(name);
            }
            match service.register(request, "test", None).await {
                Ok(record) => assert!(!record.name.is_empty()),
                Err(DataError::Invalid(message)) => assert!(!message.is_empty()),
                Err(other) => panic!("neither registered nor refused as bad input: {other:?}"),
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_stays_inside_its_root_whatever_is_above_it_or_changes_after_registration() {
    let setup = Setup::new().await;
    let service = setup.service("replica-a", 2);
    // A repository around the root: the registered directory is the project, never the repository's top.
    std::fs::create_dir_all(setup.root.parent().unwrap().join(".git")).unwrap();
    let directory = setup.root.join("bare");
    std::fs::create_dir_all(&directory).unwrap();
    std::fs::write(
        directory.join("loopline.yaml"),
        "steps: {a: {run: 'pwd > where.txt', outputs: [where.txt]}}",
    )
    .unwrap();
    register(&service, "bare", &directory).await;
    let run = service.queue("bare", Cause::default()).await.unwrap();
    service.tick().await.unwrap();
    assert_eq!(ended(&setup.store, &run.run_id).await.status, "succeeded");
    let written = std::fs::read_to_string(directory.join("where.txt")).unwrap();
    assert_eq!(Path::new(written.trim()), directory.canonicalize().unwrap());
    assert!(!setup.root.parent().unwrap().join(".loopline").exists());
    assert!(!setup.root.parent().unwrap().join("where.txt").exists());

    // The directory swapped for a link leading out: runs are refused, and a run already queued fails.
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(
        outside.path().join("loopline.yaml"),
        "steps: {a: {run: 'touch escaped'}}",
    )
    .unwrap();
    let queued = service.queue("bare", Cause::default()).await.unwrap();
    std::fs::rename(&directory, setup.root.join("bare.old")).unwrap();
    std::os::unix::fs::symlink(outside.path(), &directory).unwrap();
    match service.queue("bare", Cause::default()).await {
        Err(DataError::Invalid(message)) => assert!(message.contains("outside the directories"), "{message}"),
        other => panic!("queued: {other:?}"),
    }
    service.tick().await.unwrap();
    let failed = ended(&setup.store, &queued.run_id).await;
    assert_eq!(failed.status, "failed");
    assert!(failed.record.contains("outside the directories"), "{}", failed.record);
    assert!(!outside.path().join("escaped").exists());

    // A server whose roots no longer include a registered project runs none of it.
    let good = setup.project("good", "steps: {a: {run: 'touch ran'}}");
    register(&service, "good", &good).await;
    let narrowed = PipelineService::new(
        setup.store.clone(),
        PipelineSettings {
            roots: vec![setup.root.join("elsewhere")],
            max_concurrent_runs: 1,
            tick: Duration::from_secs(3600),
            replica: "replica-a".into(),
            stale_after: Duration::from_secs(120),
            loopline: PathBuf::from("/bin/false"),
            ray: None,
        },
        Arc::new(NoServer),
        setup.clock.clone(),
    );
    std::fs::create_dir_all(setup.root.join("elsewhere")).unwrap();
    assert!(matches!(
        narrowed.queue("good", Cause::default()).await,
        Err(DataError::Invalid(_))
    ));
    assert!(!good.join("ran").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_files_that_lead_out_or_are_not_files_are_refused_and_undeclared_parameters_too() {
    let setup = Setup::new().await;
    let service = setup.service("replica-a", 2);
    let directory = setup.project("p", "params: {lr: 1}\nsteps: {a: {run: 'echo ${lr}'}}");
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("evil.yaml"), "steps: {a: {run: 'touch escaped'}}").unwrap();
    std::os::unix::fs::symlink(outside.path().join("evil.yaml"), directory.join("out.yaml")).unwrap();
    let refused = |file: &str| {
        let service = service.clone();
        let request = json!({"directory": directory, "file": file, "name": "x"});
        async move {
            match service.register(request, "test", None).await {
                Err(DataError::Invalid(message)) => message,
                other => panic!("accepted: {other:?}"),
            }
        }
    };
    assert!(refused("out.yaml").await.contains("leads outside"));
    // A FIFO would block whoever opened it: refused without opening it.
    assert!(
        std::process::Command::new("mkfifo")
            .arg(directory.join("fifo.yaml"))
            .status()
            .unwrap()
            .success()
    );
    assert!(refused("fifo.yaml").await.contains("not a regular file"));
    let message = service
        .register(json!(["p", directory, "loopline.yaml"]), "test", None)
        .await
        .unwrap_err()
        .to_string();
    assert!(message.contains("JSON object"), "{message}");
    register(&service, "p", &directory).await;
    let cause = Cause {
        params: [("nope".to_string(), json!(1))].into(),
        ..Cause::default()
    };
    match service.queue("p", cause).await {
        Err(DataError::Invalid(message)) => assert!(message.contains("'nope' is not a parameter"), "{message}"),
        other => panic!("queued: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_outlive_a_new_registration_and_two_pipelines_on_one_directory_take_turns() {
    let setup = Setup::new().await;
    let service = setup.service("replica-a", 2);
    // The step outlives any wait below (the test cancels it): a loaded machine cannot make it end first.
    let directory = setup.project("shared", "steps: {slow: {run: 'echo started; sleep 600'}}");
    std::fs::write(directory.join("other.yaml"), "steps: {quick: {run: 'echo quick'}}").unwrap();
    register(&service, "one", &directory).await;
    service
        .register(
            json!({"name": "two", "directory": directory, "file": "other.yaml"}),
            "test",
            None,
        )
        .await
        .unwrap();
    let first = service.queue("one", Cause::default()).await.unwrap();
    service.tick().await.unwrap();
    running(&setup.store, &first.run_id).await;
    let second = service.queue("two", Cause::default()).await.unwrap();
    service.tick().await.unwrap();
    // The second pipeline's run waits for the directory instead of failing on its lock.
    assert_eq!(
        setup.store.get_pipeline_run(&second.run_id).await.unwrap().status,
        "queued"
    );
    // Registered again with another file, the running run's logs are still there.
    service
        .register(
            json!({"name": "one", "directory": directory, "file": "other.yaml"}),
            "test",
            Some("one"),
        )
        .await
        .unwrap();
    let mut text = String::new();
    for _ in 0..2_400 {
        text = service.log(&first.run_id, "slow", 0).await.unwrap().0;
        if text.contains("started\n") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(text.contains("started"), "{text}");
    let (beyond, next, _) = service.log(&first.run_id, "slow", u64::MAX).await.unwrap();
    assert_eq!(beyond, "");
    assert!(next <= text.len() as u64);
    service.cancel(&first.run_id).await.unwrap();
    ended(&setup.store, &first.run_id).await;
    service.tick().await.unwrap();
    assert_eq!(ended(&setup.store, &second.run_id).await.status, "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_kills_what_a_crashed_run_left_running_and_ends_its_steps() {
    let setup = Setup::new().await;
    let service = setup.service("replica-a", 1);
    let directory = setup.project(
        "crashed",
        "steps: {slow: {run: 'sleep 300'}, after: {run: x, after: [slow]}}",
    );
    register(&service, "crashed", &directory).await;
    let run = service.queue("crashed", Cause::default()).await.unwrap();
    assert!(setup.store.claim_pipeline_run(&run.run_id, "replica-a").await.unwrap());
    // What a server killed with -9 leaves: the step's process group, its pid file and a status saying running.
    let canonical = directory.canonicalize().unwrap();
    let run_directory = canonical.join(".loopline/pipeline-runs").join(&run.run_id);
    std::fs::create_dir_all(&run_directory).unwrap();
    let mut leftover = std::process::Command::new("sleep");
    leftover.arg("300").current_dir(&canonical);
    std::os::unix::process::CommandExt::process_group(&mut leftover, 0);
    let mut leftover = leftover.spawn().unwrap();
    std::fs::write(run_directory.join("slow.pid"), leftover.id().to_string()).unwrap();
    std::fs::write(
        run_directory.join("status.json"),
        json!({"steps": [{"name": "slow", "state": "running"}, {"name": "after", "state": "pending"}]}).to_string(),
    )
    .unwrap();
    drop(service);
    setup.service("replica-a", 1).start().await;
    let status = leftover.wait().unwrap();
    assert!(!status.success(), "the leftover step was killed");
    let failed = setup.store.get_pipeline_run(&run.run_id).await.unwrap();
    assert_eq!(failed.status, "failed");
    let record: Value = serde_json::from_str(&failed.record).unwrap();
    assert_eq!(record["steps"][0]["state"], "failed");
    assert_eq!(record["steps"][1]["state"], "skipped");
    assert!(!run_directory.join("slow.pid").exists());
}
