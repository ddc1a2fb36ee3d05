//! The model registry service: registered models, versions linked to logged models and runs, stages and
//! aliases, with MLflow's validation and side effects.

mod error;
mod service;

pub use error::{RegistryError, RegistryResult};
pub use service::{AliasGate, ContentSealer, CreateModelVersion, RegistryService, Sealed, normalize_stage};
