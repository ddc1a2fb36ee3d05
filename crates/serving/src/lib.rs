//! Online serving: models answer the Open Inference Protocol v2 (JSON and binary tensors) and the MLflow
//! scoring protocol, with inputs checked against the model signature, requests packed into batches by a
//! per-model task, Prometheus metrics, and a sampled prediction log with feedback.

pub mod batching;
pub mod body_budget;
pub mod catalog;
pub mod conform;
pub mod dispatch;
pub mod feature_join;
pub mod log_browse;
pub mod log_encoding;
pub mod log_reader;
pub mod metrics;
pub mod oip;
mod oip_json_data;
pub mod parquet_parts;
pub mod prediction_log;
pub mod python_json;
pub mod routes;
pub mod runner;
pub mod scoring;

pub use catalog::{Catalog, CatalogError, FixedCatalog, LoadingCatalog, ModelSource, Served};
pub use metrics::Metrics;
pub use prediction_log::{LogConfig, PredictionLog};
pub use routes::ServingState;
pub use runner::{ModelRunner, RunnerConfig};
