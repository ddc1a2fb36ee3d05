//! Predictions equal XGBoost's own (the golden files from `tests/fixtures/make_xgboost_fixtures.py`) for every
//! objective, from the JSON and the UBJSON file alike, including rows with missing values.

use std::path::PathBuf;

use loopline_model_runtimes::xgboost::XgboostModel;
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/xgboost")
}

fn close(actual: f32, expected: f64, what: &str) {
    let tolerance = 1e-6 * expected.abs().max(1.0);
    assert!(
        (actual as f64 - expected).abs() <= tolerance,
        "{what}: {actual} != {expected}"
    );
}

#[test]
fn predictions_equal_xgboost() {
    let expected: Value = serde_json::from_slice(&std::fs::read(fixtures().join("expected.json")).unwrap()).unwrap();
    let rows: Vec<f32> = expected["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().map_or(f32::NAN, |x| x as f32))
        })
        .collect();
    let models = expected["models"].as_object().unwrap();
    assert_eq!(models.len(), 6);
    for (name, outputs) in models {
        for extension in ["json", "ubj", "xgb-from-json", "xgb-from-ubj"] {
            let model = match extension.strip_prefix("xgb-from-") {
                // MLflow's `model.xgb`: the format is told by the content.
                Some(original) => {
                    let copy = tempfile::Builder::new().suffix(".xgb").tempfile().unwrap();
                    std::fs::copy(fixtures().join(format!("{name}.{original}")), copy.path()).unwrap();
                    XgboostModel::load(copy.path()).unwrap()
                }
                None => XgboostModel::load(&fixtures().join(format!("{name}.{extension}"))).unwrap(),
            };
            let margins = model.predict_margins(&rows).unwrap();
            let predictions = model.predict(&rows).unwrap();
            let want_margins: Vec<f64> = outputs["margins"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
                .collect();
            let want_predictions: Vec<f64> = outputs["predictions"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
                .collect();
            assert_eq!(margins.len(), want_margins.len(), "{name}.{extension}");
            assert_eq!(predictions.len(), want_predictions.len(), "{name}.{extension}");
            for (i, (got, want)) in margins.iter().zip(&want_margins).enumerate() {
                close(*got, *want, &format!("{name}.{extension} margin {i}"));
            }
            for (i, (got, want)) in predictions.iter().zip(&want_predictions).enumerate() {
                close(*got, *want, &format!("{name}.{extension} prediction {i}"));
            }
        }
    }
}

#[test]
fn bad_models_and_inputs_are_refused_with_reasons() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("broken.json");
    std::fs::write(&path, br#"{"learner": {}}"#).unwrap();
    let message = XgboostModel::load(&path).unwrap_err().to_string();
    assert!(message.contains("missing field learner_model_param"), "{message}");
    std::fs::write(&path, b"\x00\x01garbage").unwrap();
    assert!(XgboostModel::load(&path).unwrap_err().to_string().contains("not JSON"));
    let binary = directory.path().join("model.xgb");
    std::fs::write(&binary, b"\x00\x01garbage").unwrap();
    assert!(
        XgboostModel::load(&binary)
            .unwrap_err()
            .to_string()
            .contains("invalid UBJSON")
    );
    assert!(
        XgboostModel::load(&directory.path().join("absent.json"))
            .unwrap_err()
            .to_string()
            .contains("cannot read")
    );
    let model = XgboostModel::load(&fixtures().join("regression.json")).unwrap();
    assert_eq!(model.features(), 8);
    let error = model.predict(&[1.0; 9]).unwrap_err().to_string();
    assert!(
        error.contains("9 values do not make whole rows of 8 features"),
        "{error}"
    );
}
