//! What every model backend shares: the MLflow model descriptor (`MLmodel`) with its flavors and signature,
//! read safely (files it names must stay inside the model directory), tensors, and the backend trait.

pub mod descriptor;
pub mod model;
pub mod signature;
pub mod tensor;
pub mod yaml_bounds;

pub use descriptor::{DescriptorError, ModelDescriptor};
pub use model::{Model, ModelMetadata, PredictError, TensorMetadata};
pub use signature::{ColumnSpec, ColumnType, ParamSpec, Schema, Signature, TensorSpec};
pub use tensor::{DataType, Tensor, TensorData};
