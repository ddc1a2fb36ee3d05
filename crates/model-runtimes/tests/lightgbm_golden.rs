//! Predictions equal LightGBM's own (golden files from `tests/fixtures/make_lightgbm_fixtures.py`): binary,
//! categorical splits (including a category never seen in training), zero-as-missing, multi-class softmax and
//! one-vs-all, regression, Poisson and random-forest averaging, on rows with missing values.

use std::path::PathBuf;

use loopline_model_runtimes::lightgbm::LightgbmModel;
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lightgbm")
}

fn flat(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
        .collect()
}

#[test]
fn predictions_equal_lightgbm() {
    let expected: Value = serde_json::from_slice(&std::fs::read(fixtures().join("expected.json")).unwrap()).unwrap();
    let rows: Vec<f64> = expected["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap_or(f64::NAN)))
        .collect();
    let models = expected["models"].as_object().unwrap();
    assert_eq!(models.len(), 8);
    for (name, outputs) in models {
        let model = LightgbmModel::load(&fixtures().join(format!("{name}.txt"))).unwrap();
        for (got, want, what) in [
            (model.predict_raw(&rows).unwrap(), flat(&outputs["raw"]), "raw"),
            (
                model.predict(&rows).unwrap(),
                flat(&outputs["predictions"]),
                "prediction",
            ),
        ] {
            assert_eq!(got.len(), want.len(), "{name} {what}");
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-9 * w.abs().max(1.0),
                    "{name} {what} {i}: {g} != {w}"
                );
            }
        }
    }
}

#[test]
fn bad_models_and_inputs_are_refused_with_reasons() {
    assert!(
        LightgbmModel::parse("hello")
            .unwrap_err()
            .to_string()
            .contains("'tree' header")
    );
    let text = std::fs::read_to_string(fixtures().join("regression.txt")).unwrap();
    let broken = text.replacen("left_child=", "left_child=99 ", 1);
    assert!(
        LightgbmModel::parse(&broken)
            .unwrap_err()
            .to_string()
            .contains("differ in length")
    );
    let model = LightgbmModel::parse(&text).unwrap();
    assert_eq!(model.features(), 6);
    assert!(
        model
            .predict(&[0.0; 7])
            .unwrap_err()
            .to_string()
            .contains("7 values do not make whole rows of 6")
    );
    let linear = text.replacen("is_linear=0", "is_linear=1", 1);
    assert!(
        LightgbmModel::parse(&linear)
            .unwrap_err()
            .to_string()
            .contains("linear trees")
    );
}
