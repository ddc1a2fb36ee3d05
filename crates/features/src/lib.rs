//! Loopline's feature store: Feast-compatible definitions ([`definitions`]) and point-in-time correct training
//! sets ([`historical`]) computed as a partitioned sort-merge as-of join that spills to disk, so entity frames and
//! sources larger than memory work.

pub mod definitions;
pub mod diff;
pub mod error;
pub mod expression;
pub mod feast_registry;
pub mod historical;
pub mod keys;
pub mod materialize;
pub mod offline_write;
pub mod on_demand;
pub mod online;
pub mod online_read;
pub mod refs;
pub mod scratch;
pub mod time;
pub mod value_type;

pub use definitions::{Definitions, Entity, FeatureService, FeatureView, Field, Source};
pub use error::FeatureError;
pub use historical::{HistoricalRequest, HistoricalSummary, Progress, Silent, build_training_set, check_sources};
pub use refs::{FeatureSelection, Wanted, resolve};
pub use value_type::ValueType;
