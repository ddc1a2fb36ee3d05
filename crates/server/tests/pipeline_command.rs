//! `loopline pipeline run` as a user runs it: built-in validate and profile steps through the real binary,
//! a broken expectation stopping the run (exit 1), a second run fully cached, and a bad file refused before
//! anything runs (exit 2, naming the step).

use std::path::Path;
use std::process::{Command, Output};

fn loopline(directory: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loopline"))
        .args(args)
        .current_dir(directory)
        .env("NO_COLOR", "1")
        .output()
        .expect("the binary runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

const PIPELINE: &str = r#"
steps:
  check:
    kind: validate
    with: {data: data.csv, suite: suite.json}
  profile:
    kind: profile
    with: {data: data.csv, output: reports/profile.json}
    after: [check]
  train:
    run: echo trained > model.txt
    inputs: [data.csv]
    outputs: [model.txt]
    after: [check]
"#;

#[test]
fn validation_gates_the_run_and_a_second_run_is_cached() {
    let directory = tempfile::tempdir().unwrap();
    let root = directory.path();
    std::fs::create_dir(root.join(".git")).unwrap();
    std::fs::write(root.join("loopline.yaml"), PIPELINE).unwrap();
    std::fs::write(root.join("data.csv"), "id,city\n1,oslo\n2,\n3,oslo\n").unwrap();
    let suite = |mostly: f64| {
        format!(
            r#"{{"name": "s", "expectations": [{{"type": "expect_column_values_to_not_be_null", "kwargs": {{"column": "city", "mostly": {mostly}}}}}]}}"#
        )
    };
    std::fs::write(root.join("suite.json"), suite(0.9)).unwrap();

    let failed = loopline(root, &["pipeline", "run"]);
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
    assert!(
        text(&failed).contains("step 'check' failed: the data broke an expectation"),
        "{}",
        text(&failed)
    );
    assert!(
        text(&failed).contains("skipped: 'check' did not succeed"),
        "{}",
        text(&failed)
    );
    assert!(!root.join("model.txt").exists());

    std::fs::write(root.join("suite.json"), suite(0.5)).unwrap();
    let passed = loopline(root, &["pipeline", "run"]);
    assert_eq!(passed.status.code(), Some(0), "{}", text(&passed));
    assert!(text(&passed).contains("3 ran, 0 cached"), "{}", text(&passed));
    let profile: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("reports/profile.json")).unwrap()).unwrap();
    assert_eq!(profile["rows"], 3);

    let cached = loopline(root, &["pipeline", "run"]);
    assert!(text(&cached).contains("0 ran, 3 cached"), "{}", text(&cached));
    let status = loopline(root, &["pipeline", "status"]);
    assert_eq!(status.status.code(), Some(0));
    assert!(
        text(&status).contains("train                    cached"),
        "{}",
        text(&status)
    );
}

#[test]
fn bad_pipelines_are_refused_before_anything_runs() {
    let directory = tempfile::tempdir().unwrap();
    let root = directory.path();
    std::fs::write(
        root.join("cycle.yaml"),
        "steps: {a: {run: x, after: [b]}, b: {run: y, after: [a]}}",
    )
    .unwrap();
    let output = loopline(root, &["pipeline", "run", "cycle.yaml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output).contains("cycle"), "{}", text(&output));
    std::fs::write(
        root.join("missing.yaml"),
        "steps: {a: {run: touch ran, inputs: [nowhere.csv]}}",
    )
    .unwrap();
    let output = loopline(root, &["pipeline", "run", "missing.yaml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output).contains("step 'a', inputs: 'nowhere.csv' does not exist"),
        "{}",
        text(&output)
    );
    assert!(!root.join("ran").exists());
    // A file that never ends is refused once past the size a pipeline file may have.
    let endless = loopline(root, &["pipeline", "show", "/dev/zero"]);
    assert_eq!(endless.status.code(), Some(2));
    assert!(text(&endless).contains("larger than"), "{}", text(&endless));
    let output = loopline(root, &["pipeline", "run", "missing.yaml", "--param", "x=1"]);
    assert!(
        text(&output).contains("'x' is given a value but is not a parameter"),
        "{}",
        text(&output)
    );
}

#[test]
fn output_cut_short_by_a_closed_pipe_ends_quietly_instead_of_panicking() {
    let directory = tempfile::tempdir().unwrap();
    std::fs::write(directory.path().join("loopline.yaml"), PIPELINE).unwrap();
    // A pipe whose reader is gone before the command writes: its first line meets a closed pipe.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output = Command::new(env!("CARGO_BIN_EXE_loopline"))
        .args(["pipeline", "show"])
        .current_dir(directory.path())
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(141), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
