//! The writes a collection takes, in the form they are logged and replayed: every id already resolved
//! (a delete by filter is logged as the ids it matched), so replaying a log gives the same points.

use crate::payload_index::FieldType;
use crate::point_id::PointId;
use crate::segment::{MAX_PAYLOAD_DEPTH, Point, Segment, SegmentError, Staged, json_depth};
use crate::storage::codec::{DecodeError, Reader, Writer};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A write.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    /// Writes points, replacing those with the same ids.
    Upsert(Vec<Point>),
    /// Deletes points.
    Delete(Vec<PointId>),
    /// Sets payload keys on points (at `key`, a dotted path of objects, when given), keeping the others.
    SetPayload {
        /// The points.
        ids: Vec<PointId>,
        /// The keys and values.
        payload: Map<String, Value>,
        /// Where in the payload to set them.
        key: Option<String>,
    },
    /// Replaces points' payloads.
    OverwritePayload {
        /// The points.
        ids: Vec<PointId>,
        /// The new payload.
        payload: Map<String, Value>,
    },
    /// Removes keys (dotted paths) from points' payloads.
    DeletePayload {
        /// The points.
        ids: Vec<PointId>,
        /// The keys.
        keys: Vec<String>,
    },
    /// Empties points' payloads.
    ClearPayload(Vec<PointId>),
    /// Indexes a payload field.
    CreateIndex {
        /// The key.
        key: String,
        /// Its type.
        field_type: FieldType,
    },
    /// Drops a payload index.
    DropIndex(String),
}

/// An operation the segment refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OperationError {
    /// Bad points.
    #[error(transparent)]
    Points(#[from] SegmentError),
    /// A payload change names a point that does not exist.
    #[error("No point with id {0} found")]
    NoPoint(PointId),
    /// A bad index key.
    #[error("{0}")]
    BadKey(String),
}

impl Segment {
    /// Checks an operation without applying it (so a refused one is never logged).
    pub fn check(&self, operation: &Operation) -> Result<(), OperationError> {
        match operation {
            Operation::Upsert(points) => Ok(self.validate(points, "points")?),
            Operation::Delete(_) | Operation::DropIndex(_) => Ok(()),
            Operation::SetPayload { ids, key, payload } => {
                let steps = match key {
                    Some(key) => object_keys(key)?.len(),
                    None => 0,
                };
                if steps + json_depth(&Value::Object(payload.clone())) > MAX_PAYLOAD_DEPTH {
                    return Err(SegmentError::PayloadTooDeep {
                        field: "payload".into(),
                    }
                    .into());
                }
                self.all_exist(ids)
            }
            Operation::OverwritePayload { ids, payload } => {
                if json_depth(&Value::Object(payload.clone())) > MAX_PAYLOAD_DEPTH {
                    return Err(SegmentError::PayloadTooDeep {
                        field: "payload".into(),
                    }
                    .into());
                }
                self.all_exist(ids)
            }
            Operation::DeletePayload { ids, .. } | Operation::ClearPayload(ids) => self.all_exist(ids),
            Operation::CreateIndex { key, .. } => crate::filter::KeyPath::parse(key)
                .map(|_| ())
                .map_err(OperationError::BadKey),
        }
    }

    fn all_exist(&self, ids: &[PointId]) -> Result<(), OperationError> {
        match ids.iter().find(|id| self.node_of(**id).is_none()) {
            Some(missing) => Err(OperationError::NoPoint(*missing)),
            None => Ok(()),
        }
    }

    /// Applies a checked operation as write number `version`.
    pub fn apply(&mut self, operation: Operation, version: u64) -> Result<(), OperationError> {
        if let Some(staged) = self.apply_staged(operation, version)? {
            self.link_staged(&staged);
        }
        Ok(())
    }

    /// Applies a checked operation as write number `version`, an upsert without its graph links (answered
    /// for [`Segment::link_staged`]).
    pub fn apply_staged(&mut self, operation: Operation, version: u64) -> Result<Option<Staged>, OperationError> {
        self.check(&operation)?;
        match operation {
            Operation::Upsert(points) => return Ok(Some(self.stage_upsert(points, version, "points")?)),
            Operation::Delete(ids) => {
                self.delete(&ids);
            }
            Operation::SetPayload { ids, payload, key } => {
                let path = match key {
                    Some(key) => object_keys(&key)?,
                    None => Vec::new(),
                };
                for id in ids {
                    if let Some(node) = self.node_of(id) {
                        self.update_payload(node, version, |map| {
                            let mut target = map;
                            for step in &path {
                                let entry = target.entry(step.clone()).or_insert_with(|| Value::Object(Map::new()));
                                if !entry.is_object() {
                                    *entry = Value::Object(Map::new());
                                }
                                let Value::Object(inner) = entry else { return };
                                target = inner;
                            }
                            for (name, value) in &payload {
                                target.insert(name.clone(), value.clone());
                            }
                        });
                    }
                }
            }
            Operation::OverwritePayload { ids, payload } => {
                for id in ids {
                    if let Some(node) = self.node_of(id) {
                        self.update_payload(node, version, |map| *map = payload.clone());
                    }
                }
            }
            Operation::DeletePayload { ids, keys } => {
                for id in ids {
                    if let Some(node) = self.node_of(id) {
                        self.update_payload(node, version, |map| {
                            let mut payload = Value::Object(std::mem::take(map));
                            keys.iter().for_each(|key| remove_key(&mut payload, key));
                            if let Value::Object(changed) = payload {
                                *map = changed;
                            }
                        })
                    }
                }
            }
            Operation::ClearPayload(ids) => {
                for id in ids {
                    if let Some(node) = self.node_of(id) {
                        self.update_payload(node, version, Map::clear);
                    }
                }
            }
            Operation::CreateIndex { key, field_type } => {
                self.create_index(&key, field_type).map_err(OperationError::BadKey)?
            }
            Operation::DropIndex(key) => {
                self.drop_index(&key);
            }
        }
        Ok(None)
    }
}

/// The object keys of a `set_payload` key path (`a.b."c.d"`); array steps are refused.
fn object_keys(key: &str) -> Result<Vec<String>, OperationError> {
    let path =
        crate::filter::KeyPath::parse(key).map_err(|message| OperationError::BadKey(format!("key: {message}")))?;
    path.steps()
        .iter()
        .map(|step| match step {
            crate::filter::path::Step::Key(name) => Ok(name.clone()),
            _ => Err(OperationError::BadKey(format!(
                "key: '{key}' steps into an array; set_payload sets object keys only (a.b.c)"
            ))),
        })
        .collect()
}

/// Removes what a key path reaches (`a.b`, `arr[].v`, `"x.y"`); a key that is not a valid path, but is a
/// top-level key as written, is removed as such.
fn remove_key(payload: &mut Value, key: &str) {
    match crate::filter::KeyPath::parse(key) {
        Ok(path) => path.remove_from(payload),
        Err(_) => {
            if let Value::Object(map) = payload {
                map.remove(key);
            }
        }
    }
}

impl Operation {
    /// The operation's bytes in the log.
    pub(crate) fn encode(&self, out: &mut Writer) {
        let ids = |out: &mut Writer, ids: &[PointId]| {
            out.len(ids.len());
            ids.iter().for_each(|id| out.id(*id));
        };
        match self {
            Operation::Upsert(points) => {
                out.u8(1);
                out.len(points.len());
                for point in points {
                    out.id(point.id);
                    out.json(&point.payload);
                    out.len(point.vectors.len());
                    for (name, vector) in &point.vectors {
                        out.str(name);
                        out.f32s(vector);
                    }
                }
            }
            Operation::Delete(list) => {
                out.u8(2);
                ids(out, list);
            }
            Operation::SetPayload {
                ids: list,
                payload,
                key,
            } => {
                out.u8(3);
                ids(out, list);
                out.json(&Value::Object(payload.clone()));
                out.json(&key.clone().map_or(Value::Null, Value::String));
            }
            Operation::OverwritePayload { ids: list, payload } => {
                out.u8(4);
                ids(out, list);
                out.json(&Value::Object(payload.clone()));
            }
            Operation::DeletePayload { ids: list, keys } => {
                out.u8(5);
                ids(out, list);
                out.len(keys.len());
                keys.iter().for_each(|key| out.str(key));
            }
            Operation::ClearPayload(list) => {
                out.u8(6);
                ids(out, list);
            }
            Operation::CreateIndex { key, field_type } => {
                out.u8(7);
                out.str(key);
                out.str(field_type.name());
            }
            Operation::DropIndex(key) => {
                out.u8(8);
                out.str(key);
            }
        }
    }

    /// Reads an operation back from its bytes.
    pub(crate) fn decode(input: &mut Reader<'_>) -> Result<Self, DecodeError> {
        fn ids(input: &mut Reader<'_>) -> Result<Vec<PointId>, DecodeError> {
            let count = input.len(9)?;
            (0..count).map(|_| input.id()).collect()
        }
        fn object(input: &mut Reader<'_>) -> Result<Map<String, Value>, DecodeError> {
            match input.json()? {
                Value::Object(map) => Ok(map),
                _ => Err(DecodeError("a payload is not an object".into())),
            }
        }
        Ok(match input.u8()? {
            1 => {
                let count = input.len(9)?;
                let mut points = Vec::with_capacity(count);
                for _ in 0..count {
                    let id = input.id()?;
                    let payload = input.json()?;
                    let vectors = input.len(16)?;
                    let mut named = BTreeMap::new();
                    for _ in 0..vectors {
                        let name = input.str()?;
                        named.insert(name, input.f32s()?);
                    }
                    points.push(Point {
                        id,
                        vectors: named,
                        payload,
                    });
                }
                Operation::Upsert(points)
            }
            2 => Operation::Delete(ids(input)?),
            3 => {
                let list = ids(input)?;
                let payload = object(input)?;
                let key = match input.json()? {
                    Value::String(key) => Some(key),
                    _ => None,
                };
                Operation::SetPayload {
                    ids: list,
                    payload,
                    key,
                }
            }
            4 => {
                let list = ids(input)?;
                Operation::OverwritePayload {
                    ids: list,
                    payload: object(input)?,
                }
            }
            5 => {
                let list = ids(input)?;
                let count = input.len(8)?;
                let keys = (0..count).map(|_| input.str()).collect::<Result<_, _>>()?;
                Operation::DeletePayload { ids: list, keys }
            }
            6 => Operation::ClearPayload(ids(input)?),
            7 => {
                let key = input.str()?;
                let name = input.str()?;
                let field_type =
                    FieldType::from_name(&name).ok_or_else(|| DecodeError(format!("unknown index type {name}")))?;
                Operation::CreateIndex { key, field_type }
            }
            8 => Operation::DropIndex(input.str()?),
            tag => return Err(DecodeError(format!("unknown operation {tag}"))),
        })
    }
}
