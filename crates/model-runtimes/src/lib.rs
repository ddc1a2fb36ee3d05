//! Model backends for serving and batch inference: native XGBoost models (JSON and UBJSON files, in
//! XGBoost's single-precision arithmetic) and LightGBM text models (double precision), both equal to the
//! libraries' own predictions, ONNX models through ONNX Runtime loaded at run time, and every other pyfunc
//! model in a supervised Python worker. [`load_model`] picks
//! the backend for an MLflow model directory.

pub mod flavors;
pub mod lightgbm;
pub mod onnx;
pub mod python;
pub mod ubjson;
pub mod worker_sandbox;
pub mod xgboost;

use std::path::Path;
use std::sync::Arc;

use loopline_model_runtime_api::{DescriptorError, Model, ModelDescriptor};

/// The most features a native model file may declare: the evaluators size one row by it (16M features is
/// far past any tree model, and a file that declares more is damaged or hostile).
pub const MAX_MODEL_FEATURES: usize = 1 << 24;
/// The most outputs (classes, targets) a native model file may declare.
pub const MAX_MODEL_OUTPUTS: usize = 1 << 16;

/// Why a model directory cannot be served.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LoadError {
    /// The directory or its `MLmodel` is unusable.
    #[error(transparent)]
    Descriptor(#[from] DescriptorError),
    /// A backend was chosen but could not read the model.
    #[error("{0}")]
    Model(String),
    /// No backend serves these flavors.
    #[error("{0}")]
    Unsupported(String),
    /// The model needs the Python worker, which this server's operator has not allowed.
    #[error("{0}")]
    PythonRefused(String),
}

/// A model ready to predict, with the descriptor it came from.
#[derive(Clone)]
pub struct LoadedModel {
    /// The backend.
    pub model: Arc<dyn Model>,
    /// The `MLmodel` it was loaded from.
    pub descriptor: ModelDescriptor,
}

/// Whether models that need the Python worker may be loaded. Loading one runs the model's own code (pickles,
/// `loader_module`, `code_paths`) on this host, so it is the operator's decision: `loopline serve -m` and
/// `loopline predict -m` name the model they run, `loopline server` serves whatever anyone registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PythonModels {
    /// Only native and ONNX models load; a Python model is refused with the reason.
    #[default]
    Refused,
    /// Python models load in the (sandboxed) worker.
    Allowed,
}

/// Loads the MLflow model in `directory` with the first backend that serves it, Python models included (for
/// commands where the operator named the model).
pub fn load_model(directory: &Path) -> Result<LoadedModel, LoadError> {
    load_model_with(directory, PythonModels::Allowed)
}

/// Loads the MLflow model in `directory`, loading Python models only when `python_models` allows it.
pub fn load_model_with(directory: &Path, python_models: PythonModels) -> Result<LoadedModel, LoadError> {
    let descriptor = ModelDescriptor::load(directory)?;
    match flavors::NativeTreeModel::load(&descriptor) {
        Ok(Some(model)) => {
            return Ok(LoadedModel {
                model: Arc::new(model),
                descriptor,
            });
        }
        Ok(None) => {}
        Err(flavors::NativeError::Descriptor(error)) => return Err(LoadError::Descriptor(error)),
        Err(flavors::NativeError::Model(message)) => return Err(LoadError::Model(message)),
    }
    let sessions = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    match onnx::OnnxModel::load(&descriptor, sessions) {
        Ok(Some(model)) => {
            return Ok(LoadedModel {
                model: Arc::new(model),
                descriptor,
            });
        }
        Err(message) => return Err(LoadError::Model(message)),
        Ok(None) => {}
    }
    if python_models == PythonModels::Refused && descriptor.flavor("python_function").is_some() {
        return Err(LoadError::PythonRefused(format!(
            "this model needs the Python worker (flavors {:?}), and loading it would run the model's own Python \
             code on this host; this server serves only native (XGBoost, LightGBM) and ONNX models unless its \
             operator starts it with --allow-python-models (LOOPLINE_ALLOW_PYTHON_MODELS=true), or serve it \
             alone with `loopline serve -m`",
            descriptor.flavor_names()
        )));
    }
    match python::PythonModel::load(&descriptor) {
        Ok(Some(model)) => Ok(LoadedModel {
            model: Arc::new(model),
            descriptor,
        }),
        Err(message) => Err(LoadError::Model(message)),
        Ok(None) => Err(LoadError::Unsupported(format!(
            "{}: flavors {:?} have no backend: native backends serve xgboost, lightgbm (Booster) and onnx models, \
             the Python worker any model with a python_function flavor",
            directory.display(),
            descriptor.flavor_names()
        ))),
    }
}

/// Project virtualenvs to look in for ONNX Runtime and Python: `.venv` in the working directory and in every
/// directory above the executable.
pub(crate) fn project_venvs() -> Vec<std::path::PathBuf> {
    let mut roots: Vec<std::path::PathBuf> = std::env::current_dir().into_iter().collect();
    if let Ok(executable) = std::env::current_exe() {
        roots.extend(executable.ancestors().skip(1).map(Path::to_path_buf));
    }
    roots
        .into_iter()
        .map(|root| root.join(".venv"))
        .filter(|venv| venv.is_dir())
        .collect()
}
