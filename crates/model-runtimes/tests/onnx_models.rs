//! ONNX exports (skl2onnx: logistic regression with ZipMap, random forest, gradient boosting, an MLP, a
//! scaler + one-hot pipeline with a text input; onnxmltools: XGBoost and LightGBM) saved by mlflow.onnx give
//! what Python onnxruntime gives for every output (golden files from `tests/fixtures/make_onnx_fixtures.py`).
//! Needs the onnxruntime shared library: `ORT_DYLIB_PATH` or the project venv that scripts/test.sh creates.

use std::path::PathBuf;

use loopline_model_runtime_api::{DataType, Tensor, TensorData};
use loopline_model_runtimes::load_model;
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx")
}

fn expected() -> Value {
    serde_json::from_slice(&std::fs::read(fixtures().join("expected.json")).unwrap()).unwrap()
}

fn numbers(value: &Value) -> Vec<f64> {
    value.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect()
}

fn column(name: &str, values: &Value) -> Tensor {
    let values = values.as_array().unwrap();
    let rows = values.len();
    match values[0] {
        Value::String(_) => Tensor::new(
            name,
            DataType::Bytes,
            vec![rows],
            TensorData::Bytes(values.iter().map(|v| v.as_str().unwrap().as_bytes().to_vec()).collect()),
        ),
        _ => Tensor::new(
            name,
            DataType::Fp64,
            vec![rows],
            TensorData::F64(numbers(&Value::Array(values.clone()))),
        ),
    }
    .unwrap()
}

fn as_f64(data: &TensorData) -> Vec<f64> {
    (0..data.len()).map(|i| data.number(i).unwrap()).collect()
}

#[test]
fn predictions_equal_python_onnxruntime() {
    let expected = expected();
    let matrix: Vec<Vec<f64>> = expected["matrix"].as_array().unwrap().iter().map(numbers).collect();
    let rows = matrix.len();
    for (name, outputs) in expected["models"].as_object().unwrap() {
        let loaded = load_model(&fixtures().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(loaded.model.metadata().platform, "onnxruntime_onnx");
        let inputs = if name == "pipeline" {
            let table = expected["table"].as_object().unwrap();
            table
                .iter()
                .map(|(column_name, values)| column(column_name, values))
                .collect::<Vec<_>>()
        } else {
            // As a matrix (tritonclient's way) and as one column per feature (a DataFrame's way).
            let flat: Vec<f64> = matrix.iter().flatten().copied().collect();
            vec![Tensor::new("input", DataType::Fp64, vec![rows, 4], TensorData::F64(flat)).unwrap()]
        };
        let mut feeds = vec![inputs];
        if name != "pipeline" {
            feeds.push(
                (0..4)
                    .map(|j| {
                        let values: Vec<f64> = matrix.iter().map(|r| r[j]).collect();
                        Tensor::new(format!("f{j}"), DataType::Fp64, vec![rows], TensorData::F64(values)).unwrap()
                    })
                    .collect(),
            );
        }
        for feed in feeds {
            let got = loaded.model.predict(&feed).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(got.len(), outputs.as_object().unwrap().len(), "{name}");
            for tensor in &got {
                let want = &outputs[&tensor.name];
                let shape: Vec<usize> = want["shape"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_u64().unwrap() as usize)
                    .collect();
                assert_eq!(tensor.shape, shape, "{name}.{}", tensor.name);
                let values = numbers(&want["values"]);
                for (g, w) in as_f64(&tensor.data).iter().zip(&values) {
                    assert!(
                        (g - w).abs() <= 1e-6 * w.abs().max(1.0),
                        "{name}.{}: {g} != {w}",
                        tensor.name
                    );
                }
            }
        }
    }
}

#[test]
fn inputs_that_do_not_fit_are_refused() {
    let pipeline = load_model(&fixtures().join("pipeline")).unwrap();
    let age = Tensor::new("age", DataType::Fp64, vec![1], TensorData::F64(vec![30.0])).unwrap();
    let error = pipeline
        .model
        .predict(std::slice::from_ref(&age))
        .unwrap_err()
        .to_string();
    assert!(error.contains("lacks 'income'"), "{error}");
    let logistic = load_model(&fixtures().join("logistic")).unwrap();
    let narrow = Tensor::new(
        "input",
        DataType::Fp64,
        vec![1, 3],
        TensorData::F64(vec![1.0, 2.0, 3.0]),
    )
    .unwrap();
    let error = logistic.model.predict(&[narrow]).unwrap_err().to_string();
    assert!(error.contains("ONNX Runtime refused the input"), "{error}");
}
