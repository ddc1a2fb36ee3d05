//! The metadata store: per-domain storage traits, their SQL implementation for SQLite (embedded default)
//! and PostgreSQL (for replicas), migrations, and the search-filter compiler.

pub mod access;
pub mod entities;
pub mod error;
pub mod features;
pub mod gateway;
pub mod queries;
pub mod search;
pub mod sql;
pub mod traits;

pub use access::*;
pub use entities::*;
pub use error::{StoreError, StoreResult};
pub use features::*;
pub use gateway::*;
pub use queries::*;
pub use sql::SqlStore;
pub use traits::*;
