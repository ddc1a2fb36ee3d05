//! Tracking: experiments, runs, metrics, params, tags, datasets, logged models and traces. These services
//! enforce MLflow's validation rules and semantics on top of the storage traits; they know nothing of HTTP.

pub mod error;
pub mod run_names;
pub mod service;
pub mod uris;
pub mod validation;

pub use error::{TrackingError, TrackingResult};
pub use service::TrackingService;
