//! `loopline profile`, `drift` and `validate` as a user runs them: exit codes 0/1/2, outputs, and clear messages for
//! bad input (never a panic).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn loopline(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loopline"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn write(directory: &Path, name: &str, contents: &str) -> PathBuf {
    let path = directory.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// `rows` rows of x (numbers shifted by `shift`) and colour (labels).
fn table(rows: usize, shift: f64, colours: &[&str]) -> String {
    let mut csv = String::from("x,colour\n");
    for i in 0..rows {
        let x = ((i * 7919) % rows) as f64 / rows as f64 * 10.0 + shift;
        csv.push_str(&format!("{x},{}\n", colours[i % colours.len()]));
    }
    csv
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn drift_exit_codes_say_whether_the_data_moved() {
    let directory = tempfile::tempdir().unwrap();
    let reference = write(
        directory.path(),
        "ref.csv",
        &table(2000, 0.0, &["red", "green", "blue"]),
    );
    let same = write(
        directory.path(),
        "same.csv",
        &table(1500, 0.0, &["red", "green", "blue"]),
    );
    let moved = write(
        directory.path(),
        "moved.csv",
        &table(1500, 5.0, &["red", "red", "blue", "black"]),
    );
    let json = directory.path().join("report.json");
    let html = directory.path().join("report.html");

    let output = loopline(&[
        "drift",
        "--reference",
        path_str(&reference),
        "--current",
        path_str(&same),
    ]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("no drift"), "{stdout}");

    let output = loopline(&[
        "drift",
        "--reference",
        path_str(&reference),
        "--current",
        path_str(&moved),
        "--json",
        path_str(&json),
        "--html",
        path_str(&html),
    ]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("DRIFT DETECTED"), "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["dataset_drift"], true);
    assert_eq!(report["columns"][0]["method"], "wasserstein");
    assert_eq!(report["columns"][1]["method"], "jensenshannon");
    let findings = report["findings"].as_array().unwrap();
    assert!(
        findings
            .iter()
            .any(|f| f["check"] == "new_categories" && f["message"].as_str().unwrap().contains("black"))
    );
    assert!(findings.iter().any(|f| f["check"] == "out_of_reference_range"));
    // table() repeats its rows' values with period `rows`: every row is distinct.
    assert!(!findings.iter().any(|f| f["check"] == "duplicate_rows"));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!doctype html>") && page.contains("<svg") && page.contains("Dataset drift detected"));
    assert!(!page.contains("<script") && !page.contains("http://") && !page.contains("https://"));

    // A profile stands in for the reference and gives the same verdicts.
    let profile = directory.path().join("ref.profile.json");
    let output = loopline(&["profile", path_str(&reference), "-o", path_str(&profile)]);
    assert_eq!(output.status.code(), Some(0), "{:?}", text(&output));
    let from_profile = directory.path().join("from-profile.json");
    let output = loopline(&[
        "drift",
        "--reference",
        path_str(&profile),
        "--current",
        path_str(&moved),
        "--json",
        path_str(&from_profile),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let again: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&from_profile).unwrap()).unwrap();
    for column in 0..2 {
        assert_eq!(
            again["columns"][column]["drifted"],
            report["columns"][column]["drifted"]
        );
    }
}

#[test]
fn overrides_choose_methods_and_thresholds_per_column() {
    let directory = tempfile::tempdir().unwrap();
    let reference = write(directory.path(), "ref.csv", &table(2000, 0.0, &["a", "b"]));
    let current = write(directory.path(), "cur.csv", &table(2000, 0.3, &["a", "b"]));
    let json = directory.path().join("r.json");
    let output = loopline(&[
        "drift",
        "--reference",
        path_str(&reference),
        "--current",
        path_str(&current),
        "--method",
        "x=psi",
        "--threshold",
        "x=0.9",
        "--columns",
        "x",
        "--json",
        path_str(&json),
    ]);
    assert_eq!(output.status.code(), Some(0), "{:?}", text(&output));
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["columns"].as_array().unwrap().len(), 1);
    assert_eq!(report["columns"][0]["method"], "psi");
    assert_eq!(report["columns"][0]["threshold"], 0.9);

    let output = loopline(&[
        "drift",
        "--reference",
        path_str(&reference),
        "--current",
        path_str(&current),
        "--method",
        "magic",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output).1.contains("unknown method 'magic'"));
}

#[test]
fn bad_input_exits_2_with_a_message_naming_the_problem() {
    let directory = tempfile::tempdir().unwrap();
    let d = directory.path();
    let good = write(d, "good.csv", &table(100, 0.0, &["a", "b"]));
    let cases: Vec<(PathBuf, &str)> = vec![
        (write(d, "empty.csv", "x,colour\n"), "has no rows"),
        (
            write(d, "nulls.csv", "x,colour\n,a\n,b\n"),
            "column 'x' is entirely null in the current data",
        ),
        (
            write(d, "nan.csv", "x,colour\nNaN,a\ninf,b\n"),
            "no finite values in the current data",
        ),
        (write(d, "mixed.csv", "x,colour\n1,a\n2,b\nthree,a\n"), "mixes types"),
        (
            write(d, "renamed.csv", "y,colour\n1,a\n"),
            "lacks reference columns [\"x\"]",
        ),
        (
            write(d, "retyped.csv", "x,colour\n1,7\n2,8\n"),
            "column 'colour' is Utf8 in the reference but Int64",
        ),
        (
            write(d, "garbage.parquet", "not parquet"),
            "is not a readable Parquet file",
        ),
        (d.join("missing.csv"), "missing.csv"),
    ];
    for (current, expected) in cases {
        let output = loopline(&["drift", "--reference", path_str(&good), "--current", path_str(&current)]);
        let (stdout, stderr) = text(&output);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{}: {stdout}\n{stderr}",
            current.display()
        );
        assert!(
            stderr.contains(expected),
            "{}: expected {expected:?} in {stderr}",
            current.display()
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let output = loopline(&[
        "drift",
        "--reference",
        path_str(&good),
        "--current",
        path_str(&good),
        "--columns",
        "nope",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output).1.contains("\"nope\""));
    let output = loopline(&["drift", "--current", path_str(&good)]);
    assert_eq!(output.status.code(), Some(2), "a usage error");
    let profile = write(d, "bad.profile.json", "{\"format\": \"something-else\"}");
    let output = loopline(&["drift", "--reference", path_str(&profile), "--current", path_str(&good)]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output).1.contains("is not a Loopline profile"));
}

#[test]
fn validate_exit_codes_follow_the_suite() {
    let directory = tempfile::tempdir().unwrap();
    let d = directory.path();
    let data = write(d, "data.csv", "id,city\n1,oslo\n2,paris\n3,\n");
    let passing = write(
        d,
        "pass.json",
        r#"{"name": "s", "expectations": [{"type": "expect_column_values_to_be_unique", "kwargs": {"column": "id"}},
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "city", "mostly": 0.6}}]}"#,
    );
    let failing = write(
        d,
        "fail.json",
        r#"{"name": "s", "expectations": [{"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "city", "value_set": ["oslo"]}}]}"#,
    );
    let unknown = write(
        d,
        "unknown.json",
        r#"{"name": "s", "expectations": [{"type": "expect_the_unexpected", "kwargs": {}}]}"#,
    );
    let json = d.join("result.json");
    let output = loopline(&["validate", path_str(&data), "--suite", path_str(&passing)]);
    assert_eq!(output.status.code(), Some(0), "{:?}", text(&output));
    let output = loopline(&[
        "validate",
        path_str(&data),
        "--suite",
        path_str(&failing),
        "--json",
        path_str(&json),
    ]);
    assert_eq!(output.status.code(), Some(1), "{:?}", text(&output));
    let result: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(
        result["results"][0]["result"]["partial_unexpected_list"],
        serde_json::json!(["paris"])
    );
    let output = loopline(&["validate", path_str(&data), "--suite", path_str(&unknown)]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output).1.contains("expect_the_unexpected"));
    let output = loopline(&[
        "validate",
        path_str(&d.join("absent.csv")),
        "--suite",
        path_str(&passing),
    ]);
    assert_eq!(output.status.code(), Some(2));
}
