//! Rows written through the API (`/push`, `/write-to-online-store`): a column-oriented `df` turned into
//! online rows of a view, each value checked against the feature's declared type.

use std::sync::Arc;

use arrow_array::{ArrayRef, StringArray};
use base64::Engine;
use loopline_features::online::{FeatureValue, Keyed, OnlineRow};
use loopline_features::online_read::EntityColumns;
use loopline_features::{Definitions, FeatureView, ValueType, keys, time};
use serde_json::Value;

/// Turns `df` (column -> values) into rows of `view`: its join keys, its source's timestamp column (and
/// created column when the source has one), and any of its features (absent features are null).
pub fn rows_for_view(definitions: &Definitions, view: &FeatureView, df: &[(String, Value)]) -> Result<Keyed, String> {
    let source = definitions.sources.get(&view.source).expect("definitions were checked");
    let rows = loopline_features::offline_write::df_rows(df)?;
    let get = |name: &str| df.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    let column = |name: &str| -> Result<&Vec<Value>, String> {
        get(name).and_then(Value::as_array).ok_or_else(|| {
            format!(
                "`df` lacks column `{name}`, which feature view `{}` needs; it has {:?}",
                view.name,
                df.iter().map(|(n, _)| n).collect::<Vec<_>>()
            )
        })
    };
    let mut key_map = Vec::new();
    for key in &view.join_keys {
        key_map.push((key.clone(), Value::Array(column(key)?.clone())));
    }
    let encoded = if view.join_keys.is_empty() {
        keys::encode(&[], rows)?
    } else {
        let entity = EntityColumns::from_json(&key_map)?;
        for (key, array) in view.join_keys.iter().zip(&entity.arrays) {
            loopline_features::online_read::check_key_kind(definitions, &view.entities, key, array)?;
        }
        keys::encode(&entity.arrays, rows)?
    };
    let times = parse_times(column(&source.timestamp_field)?, &source.timestamp_field)?;
    let created = match &source.created_timestamp_column {
        Some(name) if get(name).is_some() => Some(parse_times(column(name)?, name)?),
        _ => None,
    };
    // Every feature is required, as Feast requires it: a row missing one would wipe its stored value.
    let mut features = Vec::with_capacity(view.features.len());
    for field in &view.features {
        features.push((field.dtype, &field.name, column(&field.name)?));
    }
    let mut out = Vec::with_capacity(rows);
    for row in 0..rows {
        if arrow_array::Array::is_null(&encoded, row) {
            return Err(format!(
                "row {row} has no value for a join key of feature view `{}`",
                view.name
            ));
        }
        let event_time =
            times[row].ok_or_else(|| format!("row {row} has no `{}` (the event time)", source.timestamp_field))?;
        let mut values = Vec::with_capacity(features.len());
        for (dtype, name, column) in &features {
            values.push(value_of(*dtype, &column[row]).map_err(|e| format!("row {row}, feature `{name}`: {e}"))?);
        }
        out.push((
            encoded.value(row).to_vec(),
            OnlineRow {
                event_time,
                created_time: created.as_ref().and_then(|c| c[row]),
                values,
            },
        ));
    }
    Ok(out)
}

/// Times given as text (`2024-05-01 10:00:00+00:00`, RFC 3339; naive is UTC).
pub fn parse_times(values: &[Value], name: &str) -> Result<Vec<Option<i64>>, String> {
    let text: Vec<Option<&str>> = values
        .iter()
        .map(|v| match v {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s.as_str())),
            other => Err(format!(
                "`{name}` holds {other}; give times as text such as \"2024-05-01T10:00:00Z\""
            )),
        })
        .collect::<Result<_, _>>()?;
    let array: ArrayRef = Arc::new(StringArray::from(text));
    let nanos = time::to_nanos(&array).map_err(|e| format!("`{name}`: {e}"))?;
    Ok(nanos.iter().collect())
}

/// A JSON value as a feature of type `dtype`.
pub fn value_of(dtype: ValueType, value: &Value) -> Result<FeatureValue, String> {
    if value.is_null() {
        return Ok(FeatureValue::Null);
    }
    let wrong = || format!("{value} is not a {} value", dtype.name());
    Ok(match dtype {
        ValueType::Int32 | ValueType::Int64 => {
            let v = value.as_i64().ok_or_else(wrong)?;
            if dtype == ValueType::Int32 && i32::try_from(v).is_err() {
                return Err(wrong());
            }
            FeatureValue::Int(v)
        }
        ValueType::Float32 => {
            let wide = value.as_f64().ok_or_else(wrong)?;
            let narrow = wide as f32;
            if narrow.is_infinite() {
                return Err(format!("{value} is beyond the range of a Float32"));
            }
            FeatureValue::Float32(narrow)
        }
        ValueType::Float64 => FeatureValue::Float64(value.as_f64().ok_or_else(wrong)?),
        ValueType::String => FeatureValue::Text(value.as_str().ok_or_else(wrong)?.to_string()),
        ValueType::Bytes => FeatureValue::Bytes(
            base64::engine::general_purpose::STANDARD
                .decode(value.as_str().ok_or_else(wrong)?)
                .map_err(|_| format!("{value} is not base64, as bytes are written in JSON"))?,
        ),
        ValueType::Bool => FeatureValue::Bool(value.as_bool().ok_or_else(wrong)?),
        ValueType::UnixTimestamp => match value {
            Value::Number(n) => {
                FeatureValue::Time(n.as_i64().and_then(|s| s.checked_mul(1_000_000)).ok_or_else(wrong)?)
            }
            _ => {
                let nanos = parse_times(std::slice::from_ref(value), "value")?[0].ok_or_else(wrong)?;
                FeatureValue::Time(nanos.div_euclid(1_000))
            }
        },
    })
}
