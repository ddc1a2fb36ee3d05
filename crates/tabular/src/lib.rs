//! Tabular data for Loopline: Arrow record batches read from Parquet, CSV and Arrow IPC files (streaming, with
//! column projection), schema comparison, per-column value collection and saved column profiles.
//!
//! Everything downstream (drift, validation, batch inference, prediction logs) shares these types so a column
//! means the same thing everywhere: numbers are `f64`, labels are strings, times are numbers of microseconds.

pub mod collect;
mod csv_schema;
pub mod error;
pub mod kind;
pub mod parquet_checks;
pub mod profile;
pub mod quantiles;
pub mod read;
pub mod rows;
pub mod schema;

pub use collect::{CategoricalValues, ColumnValues, NumericValues};
pub use error::TabularError;
pub use kind::ValueKind;
pub use profile::{ColumnProfile, DatasetProfile};
pub use read::{FileFormat, TableSource};
pub use schema::SchemaDiff;
