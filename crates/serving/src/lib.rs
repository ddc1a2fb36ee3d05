//! Online serving: models answer the Open Inference Protocol v2 (JSON and binary tensors) and the MLflow
//! scoring protocol, with inputs checked against the model signature, requests packed into batches by a
//! per-model task, and Prometheus metrics.

pub mod batching;
pub mod catalog;
pub mod conform;
pub mod metrics;
pub mod oip;
pub mod routes;
pub mod runner;
pub mod scoring;

pub use catalog::{Catalog, CatalogError, FixedCatalog, LoadingCatalog, ModelSource, Served};
pub use metrics::Metrics;
pub use routes::ServingState;
pub use runner::{ModelRunner, RunnerConfig};
