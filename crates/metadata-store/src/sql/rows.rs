//! Row decoding and the batched loads that assemble entities from their child tables.

use crate::entities::{Metric, Tag};
use crate::error::StoreResult;
use crate::search::SqlBuilder;
use sqlx::Row;
use sqlx::any::AnyRow;
use std::collections::HashMap;

/// The columns of one result row, by name, from either connection kind: sqlx's pool or the SQLite reader.
pub(super) trait Columns {
    /// A text column.
    fn text(&self, column: &str) -> StoreResult<String>;
    /// A nullable text column.
    fn optional_text(&self, column: &str) -> StoreResult<Option<String>>;
    /// An integer column.
    fn integer(&self, column: &str) -> StoreResult<i64>;
    /// A nullable integer column.
    fn optional_integer(&self, column: &str) -> StoreResult<Option<i64>>;
    /// A floating-point column.
    fn real(&self, column: &str) -> StoreResult<f64>;
}

impl Columns for AnyRow {
    fn text(&self, column: &str) -> StoreResult<String> {
        Ok(self.try_get::<String, _>(column)?)
    }
    fn optional_text(&self, column: &str) -> StoreResult<Option<String>> {
        Ok(self.try_get::<Option<String>, _>(column)?)
    }
    fn integer(&self, column: &str) -> StoreResult<i64> {
        Ok(self.try_get::<i64, _>(column)?)
    }
    fn optional_integer(&self, column: &str) -> StoreResult<Option<i64>> {
        Ok(self.try_get::<Option<i64>, _>(column)?)
    }
    fn real(&self, column: &str) -> StoreResult<f64> {
        Ok(self.try_get::<f64, _>(column)?)
    }
}

/// Reads a text column.
pub(super) fn text(row: &(impl Columns + ?Sized), column: &str) -> StoreResult<String> {
    row.text(column)
}

/// Reads an integer column.
pub(super) fn integer(row: &(impl Columns + ?Sized), column: &str) -> StoreResult<i64> {
    row.integer(column)
}

/// Reads a nullable integer column.
pub(super) fn optional_integer(row: &(impl Columns + ?Sized), column: &str) -> StoreResult<Option<i64>> {
    row.optional_integer(column)
}

/// Reads a nullable text column.
pub(super) fn optional_text(row: &(impl Columns + ?Sized), column: &str) -> StoreResult<Option<String>> {
    row.optional_text(column)
}

/// Decodes a stored metric value (NaN is stored as 0 with `is_nan = 1`).
pub(super) fn metric_value(row: &(impl Columns + ?Sized)) -> StoreResult<f64> {
    if integer(row, "is_nan")? != 0 {
        return Ok(f64::NAN);
    }
    row.real("value")
}

/// A metric from a row with `key, value, is_nan, timestamp, step`.
pub(super) fn metric(row: &(impl Columns + ?Sized)) -> StoreResult<Metric> {
    Ok(Metric {
        key: text(row, "key")?,
        value: metric_value(row)?,
        timestamp: integer(row, "timestamp")?,
        step: integer(row, "step")?,
        dataset_name: None,
        dataset_digest: None,
        model_id: None,
        run_id: None,
    })
}

/// Splits a value for storage: NaN cannot live in a SQLite REAL column.
pub(super) fn stored_metric_value(value: f64) -> (f64, i64) {
    if value.is_nan() { (0.0, 1) } else { (value, 0) }
}

/// Loads `(owner, key, value)` rows of a child table for many owners at once, grouped by owner.
pub(super) async fn load_key_values<'e, E>(
    executor: E,
    dialect: super::Dialect,
    table: &str,
    owner_column: &str,
    owners: &[String],
) -> StoreResult<HashMap<String, Vec<Tag>>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let mut grouped: HashMap<String, Vec<Tag>> = HashMap::new();
    if owners.is_empty() {
        return Ok(grouped);
    }
    let mut builder = SqlBuilder::new(format!(
        "SELECT {owner_column} AS owner, key, value FROM {table} WHERE {owner_column} IN "
    ));
    builder.push_text_list(owners);
    builder.push(" ORDER BY key");
    let rows = super::built_query(&builder, dialect).fetch_all(executor).await?;
    for row in rows {
        grouped.entry(text(&row, "owner")?).or_default().push(Tag {
            key: text(&row, "key")?,
            value: text(&row, "value")?,
        });
    }
    Ok(grouped)
}
