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
pub mod xgboost;

use std::path::Path;
use std::sync::Arc;

use loopline_model_runtime_api::{DescriptorError, Model, ModelDescriptor};

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
}

/// A model ready to predict, with the descriptor it came from.
#[derive(Clone)]
pub struct LoadedModel {
    /// The backend.
    pub model: Arc<dyn Model>,
    /// The `MLmodel` it was loaded from.
    pub descriptor: ModelDescriptor,
}

/// Loads the MLflow model in `directory` with the first backend that serves it.
pub fn load_model(directory: &Path) -> Result<LoadedModel, LoadError> {
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
