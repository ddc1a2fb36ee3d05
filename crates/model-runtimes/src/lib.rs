//! Model backends for serving and batch inference: native XGBoost models (JSON and UBJSON files, in
//! XGBoost's single-precision arithmetic) and LightGBM text models (double precision), both equal to the
//! libraries' own predictions, and ONNX models through ONNX Runtime loaded at run time. [`load_model`] picks
//! the backend for an MLflow model directory.

pub mod flavors;
pub mod lightgbm;
pub mod onnx;
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
        Ok(Some(model)) => Ok(LoadedModel {
            model: Arc::new(model),
            descriptor,
        }),
        Err(message) => Err(LoadError::Model(message)),
        Ok(None) => Err(LoadError::Unsupported(format!(
            "{}: flavors {:?} need the Python model worker, which this build does not have yet; models served \
             natively are XGBoost models, LightGBM boosters and ONNX models",
            directory.display(),
            descriptor.flavor_names()
        ))),
    }
}
