//! `MLmodel` files written by mlflow 3.17.2 (XGBoost classifier, LightGBM booster, a pyfunc with tensors and
//! parameters) read back, and hostile descriptors refused.

use std::path::{Path, PathBuf};

use loopline_model_runtime_api::{ColumnType, ModelDescriptor, Schema};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .unwrap()
}

#[test]
fn reads_what_mlflow_writes() {
    let directory = Path::new("/models/xgb");
    let xgboost = ModelDescriptor::parse(directory, &fixture("xgboost-classifier.MLmodel")).unwrap();
    assert_eq!(xgboost.flavor_names(), vec!["python_function", "xgboost"]);
    assert_eq!(
        xgboost.flavor_field("xgboost", "model_class"),
        Some("xgboost.sklearn.XGBClassifier")
    );
    assert_eq!(xgboost.flavor_field("xgboost", "model_format"), Some("ubj"));
    assert_eq!(
        xgboost.flavor_data("xgboost").unwrap(),
        Some(directory.join("model.ubj"))
    );
    let signature = xgboost.signature().unwrap();
    let Some(Schema::Columns(columns)) = &signature.inputs else {
        panic!("column inputs")
    };
    let names: Vec<&str> = columns.iter().map(|c| c.name.as_deref().unwrap()).collect();
    assert_eq!(names, vec!["a", "b", "c", "d"]);
    assert!(columns.iter().all(|c| c.kind == ColumnType::Double && c.required));
    let Some(Schema::Tensors(outputs)) = &signature.outputs else {
        panic!("tensor outputs")
    };
    assert_eq!(
        (outputs[0].dtype.as_str(), outputs[0].shape.as_slice()),
        ("int64", &[-1][..])
    );
    assert_eq!(xgboost.field("mlflow_version").and_then(|v| v.as_str()), Some("3.17.2"));

    let lightgbm = ModelDescriptor::parse(directory, &fixture("lightgbm-booster.MLmodel")).unwrap();
    assert_eq!(
        lightgbm.flavor_field("lightgbm", "model_class"),
        Some("lightgbm.basic.Booster")
    );

    let tensors = ModelDescriptor::parse(directory, &fixture("pyfunc-tensor.MLmodel")).unwrap();
    let signature = tensors.signature().unwrap();
    let Some(Schema::Tensors(inputs)) = &signature.inputs else {
        panic!("tensor inputs")
    };
    assert_eq!(
        (inputs[0].name.as_deref(), inputs[0].shape.as_slice()),
        (Some("image"), &[-1, 28, 28][..])
    );
    assert_eq!(signature.params[0].name, "temperature");
    assert_eq!(signature.params[0].default, serde_json::json!(0.5));
}

#[test]
fn refuses_descriptors_that_are_not_models_or_point_outside() {
    let directory = Path::new("/models/m");
    assert!(
        ModelDescriptor::parse(directory, "just: text")
            .unwrap_err()
            .contains("no 'flavors'")
    );
    assert!(
        ModelDescriptor::parse(directory, "flavors: [unclosed")
            .unwrap_err()
            .contains("not YAML")
    );
    let bad_signature = "flavors: {}\nsignature:\n  inputs: 'not json'\n";
    assert!(
        ModelDescriptor::parse(directory, bad_signature)
            .unwrap_err()
            .contains("inputs are not a schema")
    );
    for hostile in ["../../etc/passwd", "/etc/passwd", "data/../../x", "a\\b", ""] {
        let text = format!("flavors:\n  xgboost:\n    data: '{hostile}'\n");
        let model = ModelDescriptor::parse(directory, &text).unwrap();
        let error = model.flavor_data("xgboost").unwrap_err().to_string();
        assert!(
            error.contains("not a path inside the model directory"),
            "{hostile}: {error}"
        );
    }
    let missing = tempfile::tempdir().unwrap();
    assert!(
        ModelDescriptor::load(missing.path())
            .unwrap_err()
            .to_string()
            .contains("cannot read")
    );
}
