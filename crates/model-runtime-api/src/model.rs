//! The backend trait: a loaded model that turns a batch of input tensors into output tensors.

use crate::tensor::DataType;

/// Why a prediction failed, which decides what the caller is told.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PredictError {
    /// The input does not fit the model (the caller's fault: 400).
    #[error("{0}")]
    Input(String),
    /// The backend cannot answer now (a worker restarting: 503).
    #[error("{0}")]
    Unavailable(String),
    /// The backend failed (500).
    #[error("{0}")]
    Internal(String),
}

/// One input or output as model metadata describes it; `-1` marks a free dimension.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorMetadata {
    /// Its name.
    pub name: String,
    /// Its element type.
    pub datatype: DataType,
    /// Its shape.
    pub shape: Vec<i64>,
}

/// What a loaded model tells clients about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelMetadata {
    /// `<framework>_<format>`, e.g. `xgboost_ubj`, `onnxruntime_onnx`.
    pub platform: String,
    /// Inputs.
    pub inputs: Vec<TensorMetadata>,
    /// Outputs.
    pub outputs: Vec<TensorMetadata>,
}

/// A loaded model. `predict` is called from blocking threads, possibly from several at once.
pub trait Model: Send + Sync {
    /// The model's inputs and outputs.
    fn metadata(&self) -> &ModelMetadata;

    /// Predicts a batch: input tensors whose first dimension is the row; outputs with the same number of rows.
    fn predict(&self, inputs: &[crate::tensor::Tensor]) -> Result<Vec<crate::tensor::Tensor>, PredictError>;

    /// The longest one `predict` call may take, for backends that can stop a call that runs over (the Python
    /// worker is stopped and restarted, as `mlflow models serve --timeout` stops its workers); in-process
    /// backends finish what they started and ignore it.
    fn limit_call_time(&self, _limit: Option<std::time::Duration>) {}
}
