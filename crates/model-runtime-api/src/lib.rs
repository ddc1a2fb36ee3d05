//! What every model backend shares: the MLflow model descriptor (`MLmodel`) with its flavors and signature,
//! read safely (files it names must stay inside the model directory).

pub mod descriptor;
pub mod signature;

pub use descriptor::{DescriptorError, ModelDescriptor};
pub use signature::{ColumnSpec, ColumnType, ParamSpec, Schema, Signature, TensorSpec};
