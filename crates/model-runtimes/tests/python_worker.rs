//! Models that only Python can load run in a worker process: a scikit-learn pipeline pickled by
//! mlflow.sklearn predicts what mlflow.pyfunc predicts; a model's own ValueError is the caller's 400; a worker
//! that dies mid-request answers "unavailable" and the next request is served by a new worker; 2-D and
//! multi-output results come back as tensors. Needs a Python with mlflow (LOOPLINE_PYTHON or the project venv).

use std::path::Path;
use std::process::Command;

use loopline_model_runtime_api::{DataType, PredictError, Tensor, TensorData};
use loopline_model_runtimes::load_model;

fn python() -> String {
    if let Ok(python) = std::env::var("LOOPLINE_PYTHON") {
        return python;
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    assert!(
        venv.is_file(),
        "set LOOPLINE_PYTHON or create the project venv (scripts/test.sh does)"
    );
    venv.display().to_string()
}

fn make_models(directory: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/make_pyfunc_models.py");
    let status = Command::new(python()).arg(script).arg(directory).status().unwrap();
    assert!(status.success(), "the model generator failed");
}

fn column(name: &str, values: Vec<f64>) -> Tensor {
    Tensor::new(name, DataType::Fp64, vec![values.len()], TensorData::F64(values)).unwrap()
}

#[test]
fn python_models_predict_crash_and_recover() {
    let directory = tempfile::tempdir().unwrap();
    make_models(directory.path());
    // The worker runs the interpreter the generator ran: LOOPLINE_PYTHON or the project venv.
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(directory.path().join("expected.json")).unwrap()).unwrap();

    let sklearn = load_model(&directory.path().join("sklearn")).unwrap();
    assert_eq!(sklearn.model.metadata().platform, "sklearn_python");
    let inputs: Vec<Tensor> = ["a", "b", "c"]
        .iter()
        .map(|name| {
            column(
                name,
                expected["inputs"][name]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap())
                    .collect(),
            )
        })
        .collect();
    let outputs = sklearn.model.predict(&inputs).unwrap();
    let want: Vec<i64> = expected["sklearn"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(outputs[0].data, TensorData::Int(want));

    let doubler = load_model(&directory.path().join("doubler")).unwrap();
    let doubled = doubler.model.predict(&[column("x", vec![1.5, 2.0])]).unwrap();
    assert_eq!(
        (doubled[0].name.as_str(), &doubled[0].data),
        ("doubled", &TensorData::F64(vec![3.0, 4.0]))
    );
    let refused = doubler.model.predict(&[column("x", vec![-1.0])]).unwrap_err();
    assert!(
        matches!(&refused, PredictError::Input(m) if m.contains("x must not be negative")),
        "{refused:?}"
    );
    let crashed = doubler.model.predict(&[column("x", vec![13.0])]).unwrap_err();
    assert!(
        matches!(&crashed, PredictError::Unavailable(m) if m.contains("being restarted")),
        "{crashed:?}"
    );
    let again = doubler.model.predict(&[column("x", vec![5.0])]).unwrap();
    assert_eq!(again[0].data, TensorData::F64(vec![10.0]), "a new worker answers");
    // A call that never returns is stopped at the limit, with its worker; the next call gets a new worker.
    doubler
        .model
        .limit_call_time(Some(std::time::Duration::from_millis(500)));
    let hung = doubler.model.predict(&[column("x", vec![7.0])]).unwrap_err();
    assert!(
        matches!(&hung, PredictError::Unavailable(m) if m.contains("longer than the 500ms limit")),
        "{hung:?}"
    );
    let after = doubler.model.predict(&[column("x", vec![6.0])]).unwrap();
    assert_eq!(
        after[0].data,
        TensorData::F64(vec![12.0]),
        "a new worker answers after the stopped call"
    );

    let two = load_model(&directory.path().join("two_outputs")).unwrap();
    let matrix = Tensor::new(
        "input",
        DataType::Fp64,
        vec![2, 2],
        TensorData::F64(vec![1.0, 2.0, 3.0, 4.0]),
    )
    .unwrap();
    let outputs = two.model.predict(&[matrix]).unwrap();
    assert_eq!(outputs[0].data, TensorData::F64(vec![3.0, 7.0]));
    assert_eq!(
        (outputs[1].name.as_str(), outputs[1].shape.as_slice()),
        ("scaled", &[2usize, 2][..])
    );
    assert_eq!(outputs[1].data, TensorData::F64(vec![10.0, 20.0, 30.0, 40.0]));
}

#[test]
fn a_model_python_cannot_load_reports_why() {
    let directory = tempfile::tempdir().unwrap();
    std::fs::write(
        directory.path().join("MLmodel"),
        "flavors:\n  python_function: {loader_module: no_such_module_anywhere}\n",
    )
    .unwrap();
    let error = load_model(directory.path())
        .err()
        .expect("the model cannot load")
        .to_string();
    assert!(
        error.contains("could not load the model") && error.contains("no_such_module_anywhere"),
        "{error}"
    );
}

#[test]
fn workers_run_confined_without_the_servers_environment() {
    let directory = tempfile::tempdir().unwrap();
    make_models(directory.path());
    // This test process has CARGO_* variables (cargo sets them): none may reach the worker.
    assert!(std::env::vars().any(|(name, _)| name.starts_with("CARGO")));
    std::fs::write(directory.path().join("secret.txt"), "secret").unwrap();
    let inspector = load_model(&directory.path().join("inspector")).unwrap();
    let outputs = inspector.model.predict(&[column("x", vec![1.0])]).unwrap();
    let value = |name: &str| {
        let output = outputs.iter().find(|tensor| tensor.name == name).unwrap();
        output.data.number(0).unwrap()
    };
    assert_eq!(value("leaked"), 0.0, "the server's environment reached the worker");
    assert_eq!(value("open_files"), 1024.0, "the open-files limit is not applied");
    assert_eq!(
        value("private_home"),
        1.0,
        "HOME and TMPDIR are not the worker's private directory"
    );
    assert_eq!(
        value("own_group"),
        1.0,
        "the worker is not the leader of its own process group"
    );
    if loopline_model_runtimes::worker_sandbox::landlock_enforced() {
        assert_eq!(
            value("wrote_outside"),
            0.0,
            "the worker wrote outside its private directory"
        );
        assert!(!directory.path().join("escape.txt").exists());
        assert_eq!(
            value("read_outside"),
            0.0,
            "the worker read a file outside its model and Python"
        );
    } else {
        // Without Landlock in the kernel the rest of the confinement still holds (checked above).
        eprintln!("this kernel does not enforce Landlock: the file-system part of the sandbox is not checked");
    }
}
