//! Running pipelines on local processes: unchanged steps skipped and their outputs restored, a changed input
//! or parameter rerunning exactly what is downstream of it, retries, timeouts, cancellation, and a failing
//! step stopping what depends on it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use loopline_pipelines::data::Project;
use loopline_pipelines::pipeline::executor::LocalExecutor;
use loopline_pipelines::pipeline::{Observer, Pipeline, RunOptions, RunRecord, Runner, StepState, Unobserved};
use tokio_util::sync::CancellationToken;

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// How many times each step's command ran (each appends its name to `runs.txt`, outside the outputs).
fn runs(root: &Path) -> Vec<String> {
    std::fs::read_to_string(root.join("runs.txt"))
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

const PIPELINE: &str = r#"
params:
  scale: 2
steps:
  prepare:
    run: echo prepare >> runs.txt && mkdir -p out && tr a-z A-Z < raw.txt > out/prepared.txt
    inputs: [raw.txt]
    outputs: [out/prepared.txt]
  features:
    run: echo features >> runs.txt && mkdir -p feats && cp out/prepared.txt feats/f1 && echo ${scale} > feats/f2
    inputs: [out/prepared.txt]
    params: [scale]
    outputs: [feats]
  report:
    run: echo report >> runs.txt && cat feats/f1 feats/f2 notes.txt > report.txt
    inputs: [feats, notes.txt]
    outputs: [report.txt]
"#;

struct Setup {
    _directory: tempfile::TempDir,
    root: PathBuf,
    runner: Runner,
}

fn setup(loopline: &str) -> Setup {
    let directory = tempfile::tempdir().unwrap();
    let root = directory.path().to_path_buf();
    std::fs::create_dir(root.join(".git")).unwrap();
    write(&root.join("raw.txt"), "hello\n");
    write(&root.join("notes.txt"), "notes\n");
    let project = Arc::new(Project::find(&root).unwrap());
    let runner = Runner::new(project, Arc::new(LocalExecutor), PathBuf::from(loopline));
    Setup {
        _directory: directory,
        root,
        runner,
    }
}

fn options(run_id: &str) -> RunOptions {
    RunOptions {
        jobs: 2,
        run_id: run_id.into(),
        cause: "test".into(),
        ..RunOptions::default()
    }
}

fn run(setup: &Setup, text: &str, options: &RunOptions) -> RunRecord {
    let pipeline = Pipeline::parse(text, "p").unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime
        .block_on(
            setup
                .runner
                .run(&pipeline, options, &CancellationToken::new(), &Unobserved),
        )
        .unwrap()
}

fn states(record: &RunRecord) -> Vec<(String, StepState)> {
    record.steps.iter().map(|s| (s.name.clone(), s.state.clone())).collect()
}

fn state(record: &RunRecord, step: &str) -> StepState {
    record.steps.iter().find(|s| s.name == step).unwrap().state.clone()
}

#[test]
fn unchanged_steps_are_skipped_and_changes_rerun_exactly_what_is_downstream() {
    let setup = setup("loopline");
    let first = run(&setup, PIPELINE, &options("r1"));
    assert_eq!(first.status, "succeeded", "{:?}", states(&first));
    assert_eq!(runs(&setup.root), ["prepare", "features", "report"]);
    assert_eq!(
        std::fs::read_to_string(setup.root.join("report.txt")).unwrap(),
        "HELLO\n2\nnotes\n"
    );

    let second = run(&setup, PIPELINE, &options("r2"));
    assert!(
        second.steps.iter().all(|s| s.state == StepState::Cached),
        "{:?}",
        states(&second)
    );
    assert_eq!(runs(&setup.root).len(), 3);

    // A changed input of the last step reruns only it.
    write(&setup.root.join("notes.txt"), "new notes\n");
    let third = run(&setup, PIPELINE, &options("r3"));
    assert_eq!(
        states(&third),
        [
            ("prepare".into(), StepState::Cached),
            ("features".into(), StepState::Cached),
            ("report".into(), StepState::Succeeded)
        ]
    );
    // A changed parameter reruns the step that reads it, and what reads its outputs.
    let third_runs = runs(&setup.root).len();
    run(&setup, &PIPELINE.replace("scale: 2", "scale: 3"), &options("r4"));
    assert_eq!(runs(&setup.root)[third_runs..], ["features", "report"]);
    assert_eq!(
        std::fs::read_to_string(setup.root.join("report.txt")).unwrap(),
        "HELLO\n3\nnew notes\n"
    );
    // Going back to an earlier state is a cache hit: outputs are restored, nothing runs.
    let before = runs(&setup.root).len();
    let back = run(&setup, PIPELINE, &options("r5"));
    assert!(
        back.steps.iter().all(|s| s.state == StepState::Cached),
        "{:?}",
        states(&back)
    );
    assert_eq!(runs(&setup.root).len(), before);
    assert_eq!(
        std::fs::read_to_string(setup.root.join("report.txt")).unwrap(),
        "HELLO\n2\nnew notes\n"
    );
    // Deleted outputs come back from the cache.
    std::fs::remove_dir_all(setup.root.join("feats")).unwrap();
    let restored = run(&setup, PIPELINE, &options("r6"));
    assert_eq!(state(&restored, "features"), StepState::Cached);
    assert_eq!(std::fs::read_to_string(setup.root.join("feats/f2")).unwrap(), "2\n");
    // --force reruns the step named; its output is unchanged, so nothing downstream runs.
    let forced = RunOptions {
        force: ["prepare".to_string()].into(),
        ..options("r7")
    };
    let before = runs(&setup.root).len();
    let after_force = run(&setup, PIPELINE, &forced);
    assert_eq!(runs(&setup.root)[before..], ["prepare"]);
    assert_eq!(state(&after_force, "features"), StepState::Cached);
    // The run's state is on disk for `pipeline status`.
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(setup.root.join(".loopline/pipeline-runs/r7/status.json")).unwrap())
            .unwrap();
    assert_eq!(status["status"], "succeeded");
    assert_eq!(status["steps"][0]["state"], "succeeded");
}

#[test]
fn retries_timeouts_and_failures_stop_what_depends_on_them() {
    let setup = setup("loopline");
    let text = r#"
steps:
  flaky:
    run: echo flaky >> runs.txt && test -f attempted || (touch attempted && exit 3)
    retries: 2
    retry_backoff_seconds: 0
    cache: false
  slow:
    run: sleep 30
    timeout_seconds: 1
  after_slow:
    run: echo never >> runs.txt
    after: [slow]
  broken:
    run: exit 7
  after_broken:
    run: echo never >> runs.txt
    after: [broken]
"#;
    let record = run(&setup, text, &options("r1"));
    assert_eq!(record.status, "failed");
    assert_eq!(state(&record, "flaky"), StepState::Succeeded);
    assert_eq!(runs(&setup.root), ["flaky", "flaky"]);
    assert_eq!(
        state(&record, "slow"),
        StepState::Failed("it ran past its timeout of 1 s".into())
    );
    assert_eq!(
        state(&record, "after_slow"),
        StepState::Skipped("'slow' did not succeed".into())
    );
    assert_eq!(state(&record, "broken"), StepState::Failed("exited with code 7".into()));
    assert_eq!(
        state(&record, "after_broken"),
        StepState::Skipped("'broken' did not succeed".into())
    );
    let log = std::fs::read_to_string(setup.root.join(".loopline/pipeline-runs/r1/flaky.log")).unwrap();
    assert!(log.is_empty(), "{log}");
}

#[test]
fn a_failing_validation_stops_the_run() {
    // The validate step runs `LOOPLINE validate DATA --suite SUITE`: here a stand-in that reports a broken
    // expectation as the real command does (exit code 1).
    let setup = setup("/bin/false");
    write(&setup.root.join("data.csv"), "x\n1\n");
    write(&setup.root.join("suite.json"), "{}");
    let text = r#"
steps:
  check:
    kind: validate
    with: {data: data.csv, suite: suite.json}
  train:
    run: echo train >> runs.txt
    after: [check]
"#;
    let record = run(&setup, text, &options("r1"));
    let StepState::Failed(message) = state(&record, "check") else {
        panic!("{:?}", states(&record))
    };
    assert!(message.contains("broke an expectation"), "{message}");
    assert_eq!(
        state(&record, "train"),
        StepState::Skipped("'check' did not succeed".into())
    );
    assert!(runs(&setup.root).is_empty());
}

struct CancelWhenRunning {
    token: CancellationToken,
    seen: Mutex<Vec<String>>,
}

impl Observer for CancelWhenRunning {
    fn state(&self, step: &str, state: &StepState) {
        self.seen.lock().unwrap().push(format!("{step}: {state:?}"));
        if step == "long" && matches!(state, StepState::Running(_)) {
            self.token.cancel();
        }
    }
    fn line(&self, _step: &str, _text: &str) {}
}

#[test]
fn a_cancelled_run_stops_its_steps_and_starts_no_more() {
    let setup = setup("loopline");
    let pipeline = Pipeline::parse(
        "steps: {long: {run: sleep 60}, next: {run: echo next >> runs.txt, after: [long]}}",
        "p",
    )
    .unwrap();
    let token = CancellationToken::new();
    let observer = CancelWhenRunning {
        token: token.clone(),
        seen: Mutex::new(Vec::new()),
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let record = runtime
        .block_on(setup.runner.run(&pipeline, &options("r1"), &token, &observer))
        .unwrap();
    assert_eq!(record.status, "cancelled");
    assert_eq!(
        state(&record, "long"),
        StepState::Skipped("the run was cancelled".into())
    );
    assert!(matches!(state(&record, "next"), StepState::Skipped(_)));
    assert!(runs(&setup.root).is_empty());
}

#[test]
fn problems_are_found_before_anything_runs() {
    let setup = setup("loopline");
    let pipeline = Pipeline::parse(
        "steps: {a: {run: echo a >> runs.txt}, b: {run: echo b, inputs: [missing.csv]}}",
        "p",
    )
    .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let error = runtime
        .block_on(
            setup
                .runner
                .run(&pipeline, &options("r1"), &CancellationToken::new(), &Unobserved),
        )
        .unwrap_err();
    assert_eq!(
        error,
        "step 'b', inputs: 'missing.csv' does not exist and no step writes it"
    );
    write(&setup.root.join("d.csv"), "y\n1\n");
    let needs_server = Pipeline::parse(
        "steps: {e: {kind: register, with: {model: m, from: 'runs:/abc/model'}}}",
        "p",
    )
    .unwrap();
    let error = runtime
        .block_on(
            setup
                .runner
                .run(&needs_server, &options("r2"), &CancellationToken::new(), &Unobserved),
        )
        .unwrap_err();
    assert!(error.contains("needs a Loopline server"), "{error}");
    assert!(runs(&setup.root).is_empty());
}

#[test]
fn a_step_ends_with_everything_it_started() {
    let setup = setup("loopline");
    let record = run(
        &setup,
        "steps: {bg: {run: 'sleep 300 & echo $! > bg.pid', cache: false}}",
        &options("r1"),
    );
    assert_eq!(state(&record, "bg"), StepState::Succeeded);
    let pid = std::fs::read_to_string(setup.root.join("bg.pid"))
        .unwrap()
        .trim()
        .to_string();
    // Gone, or a zombie waiting for its reaper: not running.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let running = stat
        .rsplit(')')
        .next()
        .is_some_and(|rest| !rest.trim_start().starts_with('Z'));
    assert!(stat.is_empty() || !running, "the background child still runs: {stat}");
}

#[test]
fn outputs_are_cleared_before_a_step_runs_and_runs_do_not_overlap() {
    let setup = setup("loopline");
    let text =
        "params: {p: a}\nsteps: {s: {run: 'mkdir -p out && echo ${p} > out/${p}.txt', params: [p], outputs: [out]}}";
    run(&setup, text, &options("r1"));
    run(&setup, &text.replace("p: a", "p: b"), &options("r2"));
    let mut files: Vec<String> = std::fs::read_dir(setup.root.join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(
        files,
        ["b.txt"],
        "a file of the earlier run was kept as this run's output"
    );
    // While another run holds the project, a second one is refused before anything runs.
    let lock = std::fs::File::create(setup.root.join(".loopline/pipeline.lock")).unwrap();
    lock.lock().unwrap();
    let pipeline = Pipeline::parse(text, "p").unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let error = runtime
        .block_on(
            setup
                .runner
                .run(&pipeline, &options("r3"), &CancellationToken::new(), &Unobserved),
        )
        .unwrap_err();
    assert!(error.contains("another pipeline run is in progress"), "{error}");
}

#[test]
fn outputs_in_a_folder_that_links_out_of_the_project_are_never_cleared() {
    let setup = setup("loopline");
    let outside = tempfile::tempdir().unwrap();
    write(&outside.path().join("o.txt"), "KEEP\n");
    write(&outside.path().join("sub/k.txt"), "KEEP\n");
    std::os::unix::fs::symlink(outside.path(), setup.root.join("link")).unwrap();
    let pipeline = Pipeline::parse("steps: {a: {run: 'true', outputs: [link/o.txt, link/sub/]}}", "p").unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let outcome = runtime.block_on(
        setup
            .runner
            .run(&pipeline, &options("r1"), &CancellationToken::new(), &Unobserved),
    );
    let message = match outcome {
        Err(error) => error,
        Ok(record) => match state(&record, "a") {
            StepState::Failed(message) => message,
            other => panic!("the step was not refused: {other:?}"),
        },
    };
    assert!(message.contains("outputs must stay inside the project"), "{message}");
    assert_eq!(std::fs::read_to_string(outside.path().join("o.txt")).unwrap(), "KEEP\n");
    assert_eq!(
        std::fs::read_to_string(outside.path().join("sub/k.txt")).unwrap(),
        "KEEP\n"
    );
    // A link deeper in the path, and one into the project's .git, are refused the same way.
    std::fs::create_dir(setup.root.join("real")).unwrap();
    std::os::unix::fs::symlink(outside.path(), setup.root.join("real/inner")).unwrap();
    std::os::unix::fs::symlink(setup.root.join(".git"), setup.root.join("hooks")).unwrap();
    for output in ["real/inner/o.txt", "hooks/pre-commit"] {
        let text = format!("steps: {{a: {{run: 'true', outputs: [{output}]}}}}");
        let pipeline = Pipeline::parse(&text, "p").unwrap();
        let outcome = runtime.block_on(setup.runner.run(
            &pipeline,
            &options("r2"),
            &CancellationToken::new(),
            &Unobserved,
        ));
        let refused = match outcome {
            Err(error) => error.contains("outputs must stay inside"),
            Ok(record) => matches!(state(&record, "a"), StepState::Failed(m) if m.contains("outputs must stay inside")),
        };
        assert!(refused, "{output} was not refused");
    }
    assert_eq!(std::fs::read_to_string(outside.path().join("o.txt")).unwrap(), "KEEP\n");
}
