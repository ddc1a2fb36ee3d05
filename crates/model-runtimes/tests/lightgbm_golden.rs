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

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 300, failure_persistence: None, ..Default::default() })]

    /// Real model files with some of their numbers replaced by hostile ones (huge counts and indices, negative
    /// and non-finite values): each is refused with a reason or loads and predicts, never panicking.
    #[test]
    fn model_files_with_hostile_numbers_never_panic(
        file in proptest::prop_oneof![
            proptest::strategy::Just("binary_categorical.txt"),
            proptest::strategy::Just("multiclass.txt"),
            proptest::strategy::Just("regression.txt"),
        ],
        replacements in proptest::collection::vec(
            (0usize..4000, proptest::prop_oneof![
                proptest::strategy::Just("18446744073709551615"),
                proptest::strategy::Just("4294967296"),
                proptest::strategy::Just("-1"),
                proptest::strategy::Just("nan"),
                proptest::strategy::Just("1e308"),
                proptest::strategy::Just("0"),
                proptest::strategy::Just("100000000"),
            ]),
            1..6,
        ),
    ) {
        let text = std::fs::read_to_string(fixtures().join(file)).unwrap();
        let mut tokens: Vec<String> = text.split(' ').map(str::to_string).collect();
        for (position, value) in replacements {
            let index = position % tokens.len();
            // Keep the line structure: replace the number part of a token, after any `key=`.
            let token = &tokens[index];
            let (head, tail) = match token.split_once('=') {
                Some((key, rest)) => (format!("{key}="), rest.to_string()),
                None => (String::new(), token.clone()),
            };
            let newline = if tail.ends_with('\n') { "\n" } else { "" };
            tokens[index] = format!("{head}{value}{newline}");
        }
        let mutated = tokens.join(" ");
        if let Ok(model) = LightgbmModel::parse(&mutated) {
            let row = vec![0.5; model.features().min(1 << 16)];
            if row.len() == model.features() {
                let _ = model.predict_raw(&row);
            }
        }
    }
}
