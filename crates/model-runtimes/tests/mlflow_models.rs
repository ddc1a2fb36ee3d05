//! MLflow model directories saved by mlflow 3.17.2's xgboost and lightgbm flavors predict what
//! `mlflow.pyfunc.load_model(...).predict(...)` returned for them (golden files from
//! `tests/fixtures/make_mlflow_fixtures.py`): labels for classifiers, values for regressors and boosters, one
//! column per class for a multi-class booster, with a missing value in the first row.

use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch};
use loopline_model_runtime_api::tensor::tensors_from_batch;
use loopline_model_runtime_api::{DataType, Model, ModelDescriptor, TensorData};
use loopline_model_runtimes::flavors::NativeTreeModel;
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mlflow")
}

fn inputs(expected: &Value, reversed: bool) -> RecordBatch {
    let names: Vec<String> = expected["inputs"]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    let rows = expected["inputs"]["data"].as_array().unwrap();
    let mut columns: Vec<(String, ArrayRef)> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let values: Vec<Option<f64>> = rows.iter().map(|row| row[i].as_f64()).collect();
            (name.clone(), Arc::new(Float64Array::from(values)) as ArrayRef)
        })
        .collect();
    if reversed {
        columns.reverse();
    }
    RecordBatch::try_from_iter(columns).unwrap()
}

#[test]
fn predictions_equal_mlflow_pyfunc() {
    let expected: Value = serde_json::from_slice(&std::fs::read(fixtures().join("expected.json")).unwrap()).unwrap();
    for (name, want) in expected["models"].as_object().unwrap() {
        let descriptor = ModelDescriptor::load(&fixtures().join(name)).unwrap();
        let model = NativeTreeModel::load(&descriptor)
            .unwrap()
            .unwrap_or_else(|| panic!("{name} is served natively"));
        // Columns are matched by name, so their order in the input does not matter.
        for reversed in [false, true] {
            let tensors = tensors_from_batch(&inputs(&expected, reversed)).unwrap();
            let outputs = model.predict(&tensors).unwrap();
            assert_eq!(outputs.len(), 1);
            let output = &outputs[0];
            assert_eq!(output.shape[0], 30, "{name}");
            let width = output.shape.get(1).copied().unwrap_or(1);
            let values: Vec<f64> = want["values"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
                .collect();
            assert_eq!(width, values.len() / 30, "{name}");
            match (&output.data, want["dtype"].as_str().unwrap()) {
                (TensorData::Int(got), "int64") => {
                    assert_eq!(output.datatype, DataType::Int64);
                    assert_eq!(got.iter().map(|v| *v as f64).collect::<Vec<_>>(), values, "{name}");
                }
                (TensorData::F32(got), "float32") => {
                    for (g, w) in got.iter().zip(&values) {
                        assert!((*g as f64 - w).abs() <= 1e-6 * w.abs().max(1.0), "{name}: {g} != {w}");
                    }
                }
                (TensorData::F64(got), "float64") => {
                    for (g, w) in got.iter().zip(&values) {
                        assert!((g - w).abs() <= 1e-9 * w.abs().max(1.0), "{name}: {g} != {w}");
                    }
                }
                (other, dtype) => panic!("{name}: {other:?} where mlflow gave {dtype}"),
            }
        }
    }
}

#[test]
fn inputs_that_do_not_fit_are_refused_by_name() {
    let descriptor = ModelDescriptor::load(&fixtures().join("xgb_regressor")).unwrap();
    let model = NativeTreeModel::load(&descriptor).unwrap().unwrap();
    assert_eq!(model.feature_names(), ["f0", "f1", "f2", "f3", "f4"]);
    let partial =
        RecordBatch::try_from_iter(vec![("f0", Arc::new(Float64Array::from(vec![1.0])) as ArrayRef)]).unwrap();
    let error = model
        .predict(&tensors_from_batch(&partial).unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("lacks 4 of the model's 5 features") && error.contains("\"f1\""),
        "{error}"
    );
    let text: ArrayRef = Arc::new(arrow_array::StringArray::from(vec!["x"]));
    let columns: Vec<(String, ArrayRef)> = (0..5)
        .map(|i| {
            (
                format!("f{i}"),
                if i == 3 {
                    text.clone()
                } else {
                    Arc::new(Float64Array::from(vec![1.0])) as ArrayRef
                },
            )
        })
        .collect();
    let error = model
        .predict(&tensors_from_batch(&RecordBatch::try_from_iter(columns).unwrap()).unwrap())
        .unwrap_err()
        .to_string();
    assert!(error.contains("input 'f3' holds BYTES, not numbers"), "{error}");
}
