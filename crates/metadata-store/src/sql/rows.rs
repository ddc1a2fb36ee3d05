//! Row decoding and the batched loads that assemble entities from their child tables.

use crate::entities::{Metric, Tag};
use crate::error::StoreResult;
use crate::search::SqlBuilder;
use sqlx::Row;
use sqlx::any::AnyRow;
use std::collections::HashMap;

/// Reads a text column.
pub(super) fn text(row: &AnyRow, column: &str) -> StoreResult<String> {
    Ok(row.try_get::<String, _>(column)?)
}

/// Reads an integer column.
pub(super) fn integer(row: &AnyRow, column: &str) -> StoreResult<i64> {
    Ok(row.try_get::<i64, _>(column)?)
}

/// Reads a nullable integer column.
pub(super) fn optional_integer(row: &AnyRow, column: &str) -> StoreResult<Option<i64>> {
    Ok(row.try_get::<Option<i64>, _>(column)?)
}

/// Reads a nullable text column.
pub(super) fn optional_text(row: &AnyRow, column: &str) -> StoreResult<Option<String>> {
    Ok(row.try_get::<Option<String>, _>(column)?)
}

/// Decodes a stored metric value (NaN is stored as 0 with `is_nan = 1`).
pub(super) fn metric_value(row: &AnyRow) -> StoreResult<f64> {
    if integer(row, "is_nan")? != 0 {
        return Ok(f64::NAN);
    }
    Ok(row.try_get::<f64, _>("value")?)
}

/// A metric from a row with `key, value, is_nan, timestamp, step`.
pub(super) fn metric(row: &AnyRow) -> StoreResult<Metric> {
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
