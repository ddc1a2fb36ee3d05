//! Online feature lookups in Feast's shape: entity columns in, one column per feature out (values, statuses
//! and event times), all views of the request read from the store in one exchange.

use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray};
#[cfg(test)]
use serde_json::Map;
use serde_json::{Value, json};

use crate::definitions::Definitions;
use crate::expression::{Kind, Scalar};
use crate::keys;
use crate::online::{FeatureValue, OnlineError, OnlineStore};
use crate::refs::{DerivedInput, FeatureSelection};

/// The most entity rows one lookup may ask for.
pub const MAX_ENTITY_ROWS: usize = 100_000;
/// The most entity columns one lookup may carry.
pub const MAX_ENTITY_COLUMNS: usize = 64;
/// The most values one answer may hold (rows x columns, entity columns included): an answer is built whole.
pub const MAX_ANSWER_CELLS: usize = 1_000_000;

/// A JSON object read with its keys in the order written (serde_json's map sorts them).
#[derive(Debug, Default, Clone)]
pub struct Ordered(pub Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Ordered, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Ordered, A::Error> {
                let mut pairs = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, Value>()? {
                    pairs.push((key, value));
                }
                Ok(Ordered(pairs))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// Entity columns of a request, as Arrow arrays (integers, text or booleans).
#[derive(Debug)]
pub struct EntityColumns {
    /// Column names, in request order.
    pub names: Vec<String>,
    /// The request's values, kept to echo them back.
    pub values: Vec<Vec<Value>>,
    /// The same values as arrays.
    pub arrays: Vec<ArrayRef>,
    /// Rows.
    pub rows: usize,
}

/// A lookup that cannot be answered as asked (a 4xx), or a store failure.
#[derive(Debug)]
pub enum LookupError {
    /// The request is wrong; the message says how.
    Request(String),
    /// The store failed.
    Store(OnlineError),
}

impl EntityColumns {
    /// Reads Feast's `entities` object: join key -> list of values, all lists of one length (in request
    /// order, which the answer keeps).
    pub fn from_json(entities: &[(String, Value)]) -> Result<EntityColumns, String> {
        EntityColumns::with_request_fields(entities, &[])
    }

    /// As [`EntityColumns::from_json`], where the columns named in `request_fields` are values for on-demand
    /// features rather than keys: they are read as their fields' types later, so any JSON values pass here.
    pub fn with_request_fields(entities: &[(String, Value)], request_fields: &[&str]) -> Result<EntityColumns, String> {
        if entities.is_empty() {
            return Err("`entities` is empty; give each join key's values, e.g. {\"driver_id\": [1001, 1002]}".into());
        }
        if entities.len() > MAX_ENTITY_COLUMNS {
            return Err(format!("more than {MAX_ENTITY_COLUMNS} entity columns"));
        }
        let mut names = Vec::new();
        let mut values = Vec::new();
        let mut arrays = Vec::new();
        let mut rows = None;
        for (name, column) in entities {
            if names.contains(name) {
                return Err(format!("entity column `{name}` is given twice"));
            }
            let Value::Array(items) = column else {
                return Err(format!("entity column `{name}` must be a list of values"));
            };
            if items.len() > MAX_ENTITY_ROWS {
                return Err(format!("entity column `{name}` has more than {MAX_ENTITY_ROWS} values"));
            }
            if *rows.get_or_insert(items.len()) != items.len() {
                return Err(format!(
                    "entity column `{name}` has {} values where others have {}",
                    items.len(),
                    rows.unwrap_or(0)
                ));
            }
            arrays.push(match column_array(&format!("entity column `{name}`"), items) {
                Ok(array) => array,
                Err(_) if request_fields.contains(&name.as_str()) => {
                    Arc::new(arrow_array::NullArray::new(items.len())) as ArrayRef
                }
                Err(message) => return Err(message),
            });
            names.push(name.clone());
            values.push(items.clone());
        }
        Ok(EntityColumns {
            names,
            values,
            arrays,
            rows: rows.unwrap_or(0),
        })
    }
}

/// JSON values as the Arrow array they read as: integers (floats when any has a fraction), text or booleans;
/// `label` names the column in messages.
pub(crate) fn column_array(label: &str, items: &[Value]) -> Result<ArrayRef, String> {
    // Each value of the column's kind, null as missing; another kind refuses the column.
    fn all<'a, T>(
        label: &str,
        items: &'a [Value],
        pick: impl Fn(&'a Value) -> Option<T>,
    ) -> Result<Vec<Option<T>>, String> {
        items
            .iter()
            .map(|v| match v {
                Value::Null => Ok(None),
                other => pick(other).map(Some).ok_or_else(|| {
                    format!("{label} mixes types; give all its values as numbers, all as text or all as booleans")
                }),
            })
            .collect()
    }
    Ok(match items.iter().find(|v| !v.is_null()) {
        // A request field may hold fractions; a key column that does is refused where it is used as a key.
        Some(Value::Number(_)) if items.iter().any(|v| v.is_number() && v.as_i64().is_none()) => {
            Arc::new(Float64Array::from(all(label, items, Value::as_f64)?))
        }
        None | Some(Value::Number(_)) => Arc::new(Int64Array::from(all(label, items, Value::as_i64)?)),
        Some(Value::String(_)) => Arc::new(StringArray::from(all(label, items, Value::as_str)?)),
        Some(Value::Bool(_)) => Arc::new(BooleanArray::from(all(label, items, Value::as_bool)?)),
        Some(_) => return Err(format!("{label} holds lists or objects; keys are integers or text")),
    })
}

/// Looks the features up and answers in Feast's shape: entity columns first, then the features.
pub async fn lookup(
    store: &dyn OnlineStore,
    definitions: &Definitions,
    selection: &FeatureSelection,
    entities: &EntityColumns,
) -> Result<Value, LookupError> {
    let columns = entities.names.len()
        + selection.views.iter().map(|v| v.features.len()).sum::<usize>()
        + selection.derived.len();
    if entities.rows.saturating_mul(columns) > MAX_ANSWER_CELLS {
        return Err(LookupError::Request(format!(
            "{} rows x {columns} columns is more than the {MAX_ANSWER_CELLS} values one answer holds; ask for fewer \
             entities at a time, or leave out entity columns the features do not use",
            entities.rows
        )));
    }
    let mut wanted = Vec::with_capacity(selection.views.len());
    for view in &selection.views {
        let mut columns = Vec::with_capacity(view.view.join_keys.len());
        for key in &view.view.join_keys {
            let position = entities.names.iter().position(|n| n == key).ok_or_else(|| {
                LookupError::Request(format!(
                    "feature view `{}` is keyed by `{key}`, which `entities` lacks; it has {:?}",
                    view.view.name, entities.names
                ))
            })?;
            if entities.arrays[position].data_type() == &arrow_schema::DataType::Float64 {
                return Err(LookupError::Request(format!(
                    "entity column `{key}` holds numbers that are not whole; keys are integers or text"
                )));
            }
            check_key_kind(definitions, &view.view.entities, key, &entities.arrays[position])
                .map_err(LookupError::Request)?;
            columns.push(entities.arrays[position].clone());
        }
        let encoded = keys::encode(&columns, entities.rows).map_err(LookupError::Request)?;
        // A null key can match nothing: it is looked up as an impossible key.
        let keys: Vec<Vec<u8>> = (0..entities.rows)
            .map(|i| {
                if arrow_array::Array::is_null(&encoded, i) {
                    vec![0xff]
                } else {
                    encoded.value(i).to_vec()
                }
            })
            .collect();
        wanted.push((view.view.storage_name(), keys));
    }
    let found = store
        .read(&definitions.project, &wanted)
        .await
        .map_err(LookupError::Store)?;

    let request = request_values(selection, entities)?;
    let epoch = "1970-01-01T00:00:00Z";
    // As Feast answers: the join keys of the views read, in request order; request fields and other columns
    // are not echoed.
    let mut names: Vec<String> = Vec::new();
    let mut results: Vec<Value> = Vec::new();
    for (name, values) in entities.names.iter().zip(&entities.values) {
        if selection.views.iter().any(|v| v.view.join_keys.contains(name)) {
            names.push(name.clone());
            results.push(json!({
                "values": values,
                "statuses": vec!["PRESENT"; entities.rows],
                "event_timestamps": vec![epoch; entities.rows],
            }));
        }
    }
    // Stored columns the on-demand features read, kept by name as they are answered.
    let read: std::collections::HashSet<&str> = selection
        .derived
        .iter()
        .flat_map(|d| d.inputs.iter())
        .filter_map(|i| match i {
            DerivedInput::Column(column, _) => Some(column.as_str()),
            DerivedInput::Request(..) => None,
        })
        .collect();
    let mut columns: Vec<(&str, Vec<FeatureValue>)> = Vec::new();
    for (view, rows) in selection.views.iter().zip(found) {
        // Each row's event time is written once for all the view's features.
        let row_times: Vec<Value> = rows
            .iter()
            .map(|row| {
                Value::from(
                    row.as_ref()
                        .map_or_else(|| epoch.to_string(), |r| rfc3339(r.event_time)),
                )
            })
            .collect();
        for (feature, output) in &view.features {
            let position = view
                .view
                .features
                .iter()
                .position(|f| &f.name == feature)
                .expect("resolved");
            if read.contains(output.as_str()) {
                let cells = rows
                    .iter()
                    .map(|row| {
                        row.as_ref()
                            .and_then(|r| r.values.get(position))
                            .cloned()
                            .unwrap_or(FeatureValue::Null)
                    })
                    .collect();
                columns.push((output.as_str(), cells));
            }
            if crate::refs::is_hidden(output) {
                continue;
            }
            let mut values = Vec::with_capacity(entities.rows);
            let mut statuses = Vec::with_capacity(entities.rows);
            let mut times = Vec::with_capacity(entities.rows);
            for (row, time) in rows.iter().zip(&row_times) {
                match row {
                    Some(row) => {
                        values.push(row.values.get(position).map_or(Value::Null, FeatureValue::to_json));
                        statuses.push("PRESENT");
                    }
                    None => {
                        values.push(Value::Null);
                        statuses.push("NOT_FOUND");
                    }
                }
                times.push(time.clone());
            }
            names.push(output.clone());
            results.push(json!({"values": values, "statuses": statuses, "event_timestamps": times}));
        }
    }
    // On-demand features come last, PRESENT with no event time, as Feast computes them.
    let mut slots = Vec::new();
    for derived in &selection.derived {
        // Where each input slot reads from, found once for all rows.
        let sources: Vec<Slot> = derived
            .inputs
            .iter()
            .map(|input| match input {
                DerivedInput::Column(column, kind) => columns
                    .iter()
                    .position(|(name, _)| name == column)
                    .map_or(Slot::Missing, |at| Slot::Stored(at, *kind)),
                DerivedInput::Request(field, _) => request
                    .iter()
                    .position(|(name, _)| name == field)
                    .map_or(Slot::Missing, Slot::Request),
            })
            .collect();
        let mut values = Vec::with_capacity(entities.rows);
        for row in 0..entities.rows {
            slots.clear();
            for source in &sources {
                slots.push(match source {
                    Slot::Stored(at, kind) => Scalar::from_feature(&columns[*at].1[row], *kind),
                    Slot::Request(at) => request[*at].1[row].clone(),
                    Slot::Missing => Scalar::Null,
                });
            }
            values.push(
                derived
                    .expression
                    .evaluate(&slots)
                    .into_feature(derived.dtype)
                    .to_json(),
            );
        }
        names.push(derived.output.clone());
        results.push(json!({
            "values": values,
            "statuses": vec!["PRESENT"; entities.rows],
            "event_timestamps": vec![epoch; entities.rows],
        }));
    }
    Ok(json!({"metadata": {"feature_names": names}, "results": results}))
}

/// Where one input of an on-demand feature is read from.
enum Slot {
    Stored(usize, Kind),
    Request(usize),
    Missing,
}

/// The most expression steps one lookup may evaluate (rows x the sizes of the on-demand features' expressions).
pub const MAX_EVALUATION_STEPS: usize = 20_000_000;

/// The request fields on-demand features read, as values of their declared types.
fn request_values(
    selection: &FeatureSelection,
    entities: &EntityColumns,
) -> Result<Vec<(String, Vec<Scalar>)>, LookupError> {
    let missing: Vec<&String> = selection
        .request_fields
        .iter()
        .map(|(f, _)| f)
        .filter(|f| !entities.names.contains(f))
        .collect();
    if !missing.is_empty() {
        return Err(LookupError::Request(format!(
            "the on-demand features asked for read request fields {missing:?}; send them in `entities` beside the \
             join keys, one value per row"
        )));
    }
    let steps: usize = selection.derived.iter().map(|d| d.expression.size).sum();
    if steps.saturating_mul(entities.rows) > MAX_EVALUATION_STEPS {
        return Err(LookupError::Request(format!(
            "{} rows x {steps} expression steps is more than the {MAX_EVALUATION_STEPS} one lookup computes; ask \
             for fewer entities or fewer on-demand features at a time",
            entities.rows
        )));
    }
    let mut request = Vec::with_capacity(selection.request_fields.len());
    for (field, dtype) in &selection.request_fields {
        let kind = Kind::of(*dtype).expect("checked when defined");
        let position = entities.names.iter().position(|n| n == field).expect("checked above");
        let cells = entities.values[position]
            .iter()
            .map(|value| {
                Scalar::from_json(value, kind)
                    .map(|v| v.narrowed(*dtype))
                    .map_err(|e| format!("request field `{field}`: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(LookupError::Request)?;
        request.push((field.clone(), cells));
    }
    Ok(request)
}

/// Refuses an entity column whose values are not of the entity's declared type (a key of another type could
/// never match: it would be written where no read finds it, or read where nothing was written).
pub fn check_key_kind(
    definitions: &Definitions,
    view_entities: &[String],
    key: &str,
    column: &ArrayRef,
) -> Result<(), String> {
    let Some(declared) = entity_type(definitions, view_entities, key) else {
        return Ok(());
    };
    let kind = keys::KeyKind::of(column.data_type());
    let expected = declared.key_kind().filter(|k| *k != keys::KeyKind::Bytes);
    if expected.is_some() && kind != expected && column.null_count() < column.len() {
        return Err(format!(
            "entity column `{key}` must hold {} values (the entity's value_type is {})",
            expected.map(|k| k.label()).unwrap_or("other"),
            declared.name()
        ));
    }
    Ok(())
}

fn entity_type(definitions: &Definitions, entities: &[String], key: &str) -> Option<crate::ValueType> {
    entities
        .iter()
        .filter_map(|e| definitions.entities.get(e))
        .find(|e| e.join_keys.iter().any(|k| k == key))
        .and_then(|e| e.value_type)
}

/// RFC 3339 in UTC with `Z`, fractional digits only when non-zero (3, 6 or 9), as Feast writes event times.
pub fn rfc3339(nanos: i64) -> String {
    let seconds = nanos.div_euclid(1_000_000_000);
    let fraction = nanos.rem_euclid(1_000_000_000);
    let days = seconds.div_euclid(86_400);
    let in_day = seconds.rem_euclid(86_400);
    let (year, month, day) = loopline_core::time::civil_date(days);
    let base = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        in_day / 3600,
        (in_day / 60) % 60,
        in_day % 60
    );
    if fraction == 0 {
        format!("{base}Z")
    } else if fraction % 1_000_000 == 0 {
        format!("{base}.{:03}Z", fraction / 1_000_000)
    } else if fraction % 1_000 == 0 {
        format!("{base}.{:06}Z", fraction / 1_000)
    } else {
        format!("{base}.{fraction:09}Z")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_times_are_written_as_feast_writes_them() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_714_557_600_000_000_000), "2024-05-01T10:00:00Z");
        assert_eq!(rfc3339(1_714_557_600_500_000_000), "2024-05-01T10:00:00.500Z");
        assert_eq!(rfc3339(1_714_557_600_000_001_000), "2024-05-01T10:00:00.000001Z");
        assert_eq!(rfc3339(1_714_557_600_000_000_007), "2024-05-01T10:00:00.000000007Z");
        assert_eq!(rfc3339(-1_000_000_000), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339(951_782_400_000_000_000), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn entity_columns_must_agree_in_length_and_type() {
        let parse = |text: &str| {
            let map: Map<String, Value> = serde_json::from_str(text).unwrap();
            EntityColumns::from_json(&map.into_iter().collect::<Vec<_>>())
        };
        assert_eq!(parse(r#"{"driver_id": [1, null, 3]}"#).unwrap().rows, 3);
        assert!(
            parse(r#"{"a": [1], "b": [1, 2]}"#)
                .unwrap_err()
                .contains("has 2 values")
        );
        assert!(parse(r#"{"a": [1, "x"]}"#).unwrap_err().contains("mixes types"));
        assert_eq!(
            parse(r#"{"a": [1, 1.5]}"#).unwrap().arrays[0].data_type(),
            &arrow_schema::DataType::Float64
        );
        assert!(parse(r#"{"a": 1}"#).unwrap_err().contains("must be a list"));
        assert!(parse(r#"{}"#).unwrap_err().contains("empty"));
    }
}
