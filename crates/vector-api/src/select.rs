//! Pieces of requests shared by several routes: point ids, point selectors, which payload keys and
//! vectors to return, points to upsert, and how a stored point is written out.

use crate::envelope::QdrantError;
use loopline_vector_index::filter::KeyPath;
use loopline_vector_index::{Filter, Point, PointId, Segment};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// Most points one request may name or write.
pub(crate) const MAX_POINTS: usize = 100_000;

/// Reads a list of point ids.
pub(crate) fn ids(value: &Value, at: &str) -> Result<Vec<PointId>, QdrantError> {
    let items = value
        .as_array()
        .ok_or_else(|| QdrantError::format(format!("{at}: a list of point ids is expected")))?;
    if items.len() > MAX_POINTS {
        return Err(QdrantError::format(format!("{at}: more than {MAX_POINTS} ids")));
    }
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            PointId::from_json(item).map_err(|message| QdrantError::format(format!("{at}[{index}]: {message}")))
        })
        .collect()
}

/// An optional filter at `key` of a body.
pub(crate) fn filter(body: &Map<String, Value>, key: &str) -> Result<Option<Filter>, QdrantError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => Filter::from_json(value, key).map(Some).map_err(QdrantError::format),
    }
}

/// The points a write names: `points` (ids) or `filter`, resolved to the live ids now.
pub(crate) fn selected(body: &Map<String, Value>, segment: &Segment) -> Result<Vec<PointId>, QdrantError> {
    if let Some(value) = body.get("points").filter(|value| !value.is_null()) {
        return ids(value, "points");
    }
    match filter(body, "filter")? {
        Some(filter) => Ok(segment
            .matching(Some(&filter))
            .into_iter()
            .map(|node| segment.record(node, false).id)
            .collect()),
        None => Err(QdrantError::format(
            "either 'points' (a list of ids) or 'filter' is required",
        )),
    }
}

/// Which payload keys to return.
#[derive(Debug, Clone)]
pub(crate) enum WithPayload {
    None,
    All,
    Include(Vec<String>),
    Exclude(Vec<String>),
}

impl WithPayload {
    pub(crate) fn parse(value: Option<&Value>, default: bool) -> Result<Self, QdrantError> {
        let keys = |value: &Value, at: &str| -> Result<Vec<String>, QdrantError> {
            let items = value
                .as_array()
                .ok_or_else(|| QdrantError::format(format!("{at}: a list of keys is expected")))?;
            items
                .iter()
                .map(|item| {
                    item.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| QdrantError::format(format!("{at}: keys are strings")))
                })
                .collect()
        };
        Ok(match value {
            None | Some(Value::Null) => {
                if default {
                    WithPayload::All
                } else {
                    WithPayload::None
                }
            }
            Some(Value::Bool(true)) => WithPayload::All,
            Some(Value::Bool(false)) => WithPayload::None,
            Some(list @ Value::Array(_)) => WithPayload::Include(keys(list, "with_payload")?),
            Some(Value::Object(map)) => match (map.get("include"), map.get("exclude")) {
                (Some(list), None) => WithPayload::Include(keys(list, "with_payload.include")?),
                (None, Some(list)) => WithPayload::Exclude(keys(list, "with_payload.exclude")?),
                _ => {
                    return Err(QdrantError::format(
                        "with_payload: an object holds 'include' or 'exclude'",
                    ));
                }
            },
            Some(_) => {
                return Err(QdrantError::format(
                    "with_payload: true, false, a list of keys, or include/exclude",
                ));
            }
        })
    }

    fn apply(&self, payload: &Value) -> Value {
        let object = payload.as_object().cloned().unwrap_or_default();
        match self {
            WithPayload::None => Value::Null,
            WithPayload::All => Value::Object(object),
            // Keys are paths (`a.b`, `arr[].v`, `"x.y"`): what they reach is kept, or left out, with the
            // objects and arrays around it.
            WithPayload::Include(keys) => {
                let (whole, mut kept) = (Value::Object(object), Value::Object(Map::new()));
                for key in keys {
                    if let Ok(path) = KeyPath::parse(key) {
                        path.copy_into(&whole, &mut kept);
                    }
                }
                kept
            }
            WithPayload::Exclude(keys) => {
                let mut rest = Value::Object(object);
                for key in keys {
                    if let Ok(path) = KeyPath::parse(key) {
                        path.remove_from(&mut rest);
                    }
                }
                rest
            }
        }
    }
}

/// Which vectors to return.
#[derive(Debug, Clone)]
pub(crate) enum WithVector {
    None,
    All,
    Named(Vec<String>),
}

impl WithVector {
    pub(crate) fn parse(value: Option<&Value>) -> Result<Self, QdrantError> {
        Ok(match value {
            None | Some(Value::Null) | Some(Value::Bool(false)) => WithVector::None,
            Some(Value::Bool(true)) => WithVector::All,
            Some(Value::Array(items)) => WithVector::Named(
                items
                    .iter()
                    .map(|item| {
                        item.as_str()
                            .map(str::to_string)
                            .ok_or_else(|| QdrantError::format("with_vector: names are strings"))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Some(_) => {
                return Err(QdrantError::format(
                    "with_vector: true, false or a list of vector names",
                ));
            }
        })
    }
}

/// A stored point as Qdrant writes a record (`score` and `version` added for scored points).
pub(crate) fn record(
    segment: &Segment,
    node: u32,
    payload: &WithPayload,
    vector: &WithVector,
    score: Option<f32>,
) -> Value {
    let wants_vectors = !matches!(vector, WithVector::None);
    let stored = segment.record(node, wants_vectors);
    let vector_json = if wants_vectors {
        let unnamed = segment.vector_params().count() == 1 && segment.vector_params().all(|(name, _)| name.is_empty());
        if unnamed {
            stored.vectors.get("").map_or(Value::Null, |vector| json!(vector))
        } else {
            let chosen: Map<String, Value> = stored
                .vectors
                .iter()
                .filter(|(name, _)| match vector {
                    WithVector::Named(names) => names.contains(name),
                    _ => true,
                })
                .map(|(name, values)| (name.clone(), json!(values)))
                .collect();
            Value::Object(chosen)
        }
    } else {
        Value::Null
    };
    let mut out = json!({
        "id": stored.id.to_json(),
        "payload": payload.apply(&stored.payload),
        "vector": vector_json,
        "shard_key": null,
        "order_value": null,
    });
    if let Some(score) = score {
        out["version"] = json!(stored.version);
        // Accepted vectors keep every distance finite; fusion scores are finite by construction. Should one
        // not be, JSON has no infinity: the nearest float stands in (never a null a client cannot read).
        out["score"] = json!(if score.is_finite() {
            score
        } else {
            f32::MAX.copysign(score)
        });
    }
    out
}

/// One vector from JSON: a list of numbers (anything else, such as a sparse or multi-vector, is refused).
pub(crate) fn dense(value: &Value, at: &str) -> Result<Vec<f32>, QdrantError> {
    match value {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(index, item)| match item.as_f64() {
                Some(number) if number.is_finite() && number.abs() <= f64::from(f32::MAX) => Ok(number as f32),
                _ => Err(QdrantError::format(format!(
                    "{at}[{index}]: vector components are finite numbers"
                ))),
            })
            .collect(),
        Value::Object(map) if map.contains_key("indices") => Err(QdrantError::wrong_input(format!(
            "{at}: sparse vectors are not supported"
        ))),
        _ => Err(QdrantError::format(format!("{at}: a vector is a list of numbers"))),
    }
}

/// A point's vectors: one unnamed list, or an object of named lists.
fn vectors(value: &Value, at: &str) -> Result<BTreeMap<String, Vec<f32>>, QdrantError> {
    match value {
        Value::Array(_) => Ok(BTreeMap::from([(String::new(), dense(value, at)?)])),
        Value::Object(map) => map
            .iter()
            .map(|(name, vector)| Ok((name.clone(), dense(vector, &format!("{at}.{name}"))?)))
            .collect(),
        _ => Err(QdrantError::format(format!(
            "{at}: a vector list or an object of named vectors"
        ))),
    }
}

/// The points of an upsert: `{"points": [...]}` or `{"batch": {"ids", "vectors", "payloads"}}`.
/// Payloads are moved out of the body, not copied: a body of large payloads is held once.
pub(crate) fn upsert_points(body: &mut Map<String, Value>) -> Result<Vec<Point>, QdrantError> {
    let payload_of = |value: Option<Value>, at: &str| match value {
        None | Some(Value::Null) => Ok(Value::Null),
        Some(object @ Value::Object(_)) => Ok(object),
        Some(_) => Err(QdrantError::format(format!("{at}: a payload is a JSON object"))),
    };
    if let Some(list) = body.get_mut("points") {
        let items = list
            .as_array_mut()
            .ok_or_else(|| QdrantError::format("points: a list of points is expected"))?;
        if items.len() > MAX_POINTS {
            return Err(QdrantError::format(format!(
                "points: more than {MAX_POINTS} points in one request"
            )));
        }
        return items
            .iter_mut()
            .enumerate()
            .map(|(index, item)| {
                let at = format!("points[{index}]");
                let id = item
                    .get("id")
                    .ok_or_else(|| QdrantError::format(format!("{at}: missing field `id`")))?;
                let id =
                    PointId::from_json(id).map_err(|message| QdrantError::format(format!("{at}.id: {message}")))?;
                let vector = item
                    .get("vector")
                    .ok_or_else(|| QdrantError::format(format!("{at}: missing field `vector`")))?;
                Ok(Point {
                    id,
                    vectors: vectors(vector, &format!("{at}.vector"))?,
                    payload: payload_of(item.get_mut("payload").map(Value::take), &format!("{at}.payload"))?,
                })
            })
            .collect();
    }
    let batch = body
        .get_mut("batch")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| QdrantError::format("an upsert holds 'points' or 'batch'"))?;
    let ids = ids(batch.get("ids").unwrap_or(&Value::Null), "batch.ids")?;
    let mut named: BTreeMap<String, Vec<Vec<f32>>> = BTreeMap::new();
    match batch.get("vectors") {
        Some(Value::Array(list)) => {
            let parsed = list
                .iter()
                .enumerate()
                .map(|(index, vector)| dense(vector, &format!("batch.vectors[{index}]")))
                .collect::<Result<Vec<_>, _>>()?;
            named.insert(String::new(), parsed);
        }
        Some(Value::Object(map)) => {
            for (name, list) in map {
                let list = list
                    .as_array()
                    .ok_or_else(|| QdrantError::format(format!("batch.vectors.{name}: a list of vectors")))?;
                let parsed = list
                    .iter()
                    .enumerate()
                    .map(|(index, vector)| dense(vector, &format!("batch.vectors.{name}[{index}]")))
                    .collect::<Result<Vec<_>, _>>()?;
                named.insert(name.clone(), parsed);
            }
        }
        _ => {
            return Err(QdrantError::format(
                "batch.vectors: a list of vectors or an object of named lists",
            ));
        }
    }
    if let Some((name, list)) = named.iter().find(|(_, list)| list.len() != ids.len()) {
        return Err(QdrantError::format(format!(
            "batch.vectors{}: {} vectors for {} ids",
            if name.is_empty() {
                String::new()
            } else {
                format!(".{name}")
            },
            list.len(),
            ids.len()
        )));
    }
    let payloads = match batch.get_mut("payloads") {
        None | Some(Value::Null) => vec![Value::Null; ids.len()],
        Some(Value::Array(list)) if list.len() == ids.len() => list
            .iter_mut()
            .enumerate()
            .map(|(index, payload)| payload_of(Some(payload.take()), &format!("batch.payloads[{index}]")))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(QdrantError::format("batch.payloads: one payload per id")),
    };
    Ok(ids
        .into_iter()
        .zip(payloads)
        .enumerate()
        .map(|(index, (id, payload))| Point {
            id,
            vectors: named
                .iter()
                .map(|(name, list)| (name.clone(), list[index].clone()))
                .collect(),
            payload,
        })
        .collect())
}
