//! `loopline predict` over a CSV input with MLflow model directories saved by mlflow 3.17.2: the Parquet output
//! holds pyfunc's predictions in input order; unusable models and URIs exit 2 with a reason.

use std::path::PathBuf;
use std::process::Command;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../model-runtimes/tests/fixtures/mlflow")
}

fn predict(model: &str, input: &std::path::Path, output: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_loopline"))
        .args([
            "predict",
            "-m",
            model,
            "-i",
            input.to_str().unwrap(),
            "-o",
            output.to_str().unwrap(),
        ])
        .env_remove("MLFLOW_TRACKING_URI")
        .output()
        .unwrap()
}

#[test]
fn predicts_a_table_in_input_order() {
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("expected.json")).unwrap()).unwrap();
    let directory = tempfile::tempdir().unwrap();
    let mut csv = expected["inputs"]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect::<Vec<_>>()
        .join(",");
    csv.push('\n');
    for row in expected["inputs"]["data"].as_array().unwrap() {
        let cells: Vec<String> = row
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().map(|x| format!("{x:?}")).unwrap_or_default())
            .collect();
        csv.push_str(&cells.join(","));
        csv.push('\n');
    }
    let input = directory.path().join("input.csv");
    std::fs::write(&input, csv).unwrap();
    let output = directory.path().join("out.parquet");
    let model = fixtures().join("lgb_booster");
    let status = predict(model.to_str().unwrap(), &input, &output);
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let file = std::fs::File::open(&output).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let got: Vec<f64> = reader
        .flat_map(|b| {
            b.unwrap()
                .column_by_name("prediction")
                .unwrap()
                .as_primitive::<Float64Type>()
                .values()
                .to_vec()
        })
        .collect();
    let want: Vec<f64> = expected["models"]["lgb_booster"]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_f64().unwrap())
        .collect();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-9 * w.abs().max(1.0), "{g} != {w}");
    }
}

#[test]
fn unusable_models_exit_2_with_a_reason() {
    let directory = tempfile::tempdir().unwrap();
    let input = directory.path().join("input.csv");
    std::fs::write(&input, "f0\n1\n").unwrap();
    let output = directory.path().join("out.parquet");
    for (model, reason) in [
        ("models:/churn@champion".to_string(), "set MLFLOW_TRACKING_URI"),
        (directory.path().display().to_string(), "has no MLmodel file"),
        (
            fixtures().join("xgb_regressor").display().to_string(),
            "lacks 4 of the model's 5 features",
        ),
    ] {
        let result = predict(&model, &input, &output);
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert_eq!(result.status.code(), Some(2), "{model}: {stderr}");
        assert!(stderr.contains(reason), "{model}: {stderr}");
        assert!(!output.exists(), "no partial output is left behind");
    }
}
