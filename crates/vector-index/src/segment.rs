//! A set of points held in memory: ids, vectors (one space per vector name, each with its own graph and
//! optional int8 copy), payloads and payload indexes. Points are numbered densely in the order they are
//! written; an upsert of an existing id writes a new number and leaves a tombstone on the old one, which
//! [`Segment::compacted`] sweeps away.

use crate::distance::Distance;
use crate::filter::{Filter, KeyPath, PointView};
use crate::hnsw::{Graph, HnswParams};
use crate::payload_index::{FieldIndex, FieldType};
use crate::point_id::PointId;
use crate::quantize::Int8Vectors;
use crate::vectors::FloatVectors;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// How one named vector is stored and searched.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorParams {
    /// Dimension.
    pub size: usize,
    /// Distance.
    pub distance: Distance,
    /// Graph parameters.
    pub hnsw: HnswParams,
    /// Below this many kilobytes of vectors to look at, search is exact instead of walking the graph
    /// (Qdrant's `full_scan_threshold`).
    pub full_scan_threshold_kb: usize,
    /// Keep an int8 copy and walk the graph on it, rescoring on the originals.
    pub int8: bool,
    /// Keep the originals in a file, read a row at a time, instead of memory (Qdrant's `on_disk`): only the
    /// rows written since the last checkpoint stay in memory. With int8, the graph is built on the codes.
    pub on_disk: bool,
}

/// Largest vector dimension accepted (Qdrant's limit).
pub const MAX_DIMENSION: usize = 65_536;

/// A point to write.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Its id.
    pub id: PointId,
    /// Its vectors by name ("" for the unnamed one).
    pub vectors: BTreeMap<String, Vec<f32>>,
    /// Its payload (an object, or null for none).
    pub payload: Value,
}

/// A write or query the segment refused, naming what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    /// A vector of the wrong length.
    #[error("{field}: wrong vector dimension: expected {expected}, got {got}")]
    WrongDimension {
        /// Where it was.
        field: String,
        /// The collection's dimension.
        expected: usize,
        /// The vector's.
        got: usize,
    },
    /// A NaN or infinite component.
    #[error("{field}: vectors may not hold NaN or infinite values (component {index})")]
    NotFinite {
        /// Where it was.
        field: String,
        /// Which component.
        index: usize,
    },
    /// A vector so large that distances to it overflow float32.
    #[error("{field}: the vector's values are too large (its squared length passes float32's range / 4)")]
    TooLarge {
        /// Where it was.
        field: String,
    },
    /// A vector name the collection does not have.
    #[error("{field}: the collection has no vector named '{name}'")]
    UnknownVector {
        /// Where it was.
        field: String,
        /// The name.
        name: String,
    },
    /// A point without a vector the collection requires.
    #[error("{field}: the point has no vector '{name}'")]
    MissingVector {
        /// Where it was.
        field: String,
        /// The name.
        name: String,
    },
    /// A payload that is not a JSON object.
    #[error("{field}: a payload is a JSON object")]
    PayloadNotObject {
        /// Where it was.
        field: String,
    },
    /// A payload nested deeper than [`MAX_PAYLOAD_DEPTH`].
    #[error("{field}: payloads nest at most {MAX_PAYLOAD_DEPTH} levels deep")]
    PayloadTooDeep {
        /// Where it was.
        field: String,
    },
    /// Stored vectors could not be read from their file (the disk, not the request).
    #[error("the collection's vectors could not be read from disk: {message}")]
    Storage {
        /// What failed.
        message: String,
    },
}

/// Refuses a vector whose squared length passes a quarter of float32's range: any distance between two
/// accepted vectors then stays finite (a squared Euclidean distance is at most four times the larger one).
pub(crate) fn check_magnitude(vector: &[f32], field: impl FnOnce() -> String) -> Result<(), SegmentError> {
    let squared: f64 = vector.iter().map(|value| f64::from(*value) * f64::from(*value)).sum();
    if squared > f64::from(f32::MAX) / 4.0 {
        return Err(SegmentError::TooLarge { field: field() });
    }
    Ok(())
}

/// Deepest nesting of arrays and objects a stored payload may have (what is stored must read back under
/// the JSON reader's own limit of 128).
pub const MAX_PAYLOAD_DEPTH: usize = 64;

/// How deeply a JSON value nests (a scalar is 0).
pub fn json_depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(json_depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(json_depth).max().unwrap_or(0),
        _ => 0,
    }
}

pub(crate) struct VectorSpace {
    pub(crate) params: VectorParams,
    pub(crate) vectors: FloatVectors,
    pub(crate) present: Vec<bool>,
    pub(crate) graph: Graph,
    pub(crate) int8: Option<Int8Vectors>,
    /// Vectors present when the int8 grid was last fitted.
    pub(crate) fitted_at: usize,
}

impl VectorSpace {
    /// Links `nodes` into the graph: on the int8 codes when the originals are on disk, else on the originals.
    fn link(&self, nodes: &[u32], threads: usize) {
        match self.int8.as_ref().filter(|_| self.params.on_disk) {
            Some(int8) => self.graph.link_nodes(nodes, int8, threads),
            None => self.graph.link_nodes(nodes, &self.vectors, threads),
        }
    }
}

/// An error for a read of a vectors file that failed on this thread since the last check (or the start).
pub(crate) fn check_reads() -> Result<(), SegmentError> {
    match crate::vectors::take_read_failure() {
        Some(message) => Err(SegmentError::Storage { message }),
        None => Ok(()),
    }
}

/// The points.
pub struct Segment {
    pub(crate) spaces: BTreeMap<String, VectorSpace>,
    pub(crate) ids: Vec<PointId>,
    pub(crate) by_id: BTreeMap<PointId, u32>,
    pub(crate) payloads: Vec<Value>,
    pub(crate) versions: Vec<u64>,
    pub(crate) deleted: Vec<bool>,
    pub(crate) indexes: BTreeMap<String, FieldIndex>,
    pub(crate) threads: usize,
    /// Different for every segment made or read in this process, so a batch staged in one is never linked
    /// into its compacted successor (which linked every point itself).
    pub(crate) identity: u64,
}

/// A fresh segment identity.
pub(crate) fn next_identity() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Points an upsert wrote into a segment whose graph links are still to be made ([`Segment::link_staged`]).
#[derive(Debug)]
#[must_use = "staged points are found by graph searches only once linked"]
pub struct Staged {
    segment: u64,
    first: u32,
    end: u32,
}

/// A point as a filter sees it.
pub(crate) struct NodeView<'a> {
    pub(crate) segment: &'a Segment,
    pub(crate) node: u32,
}

impl PointView for NodeView<'_> {
    fn id(&self) -> Option<PointId> {
        Some(self.segment.ids[self.node as usize])
    }
    fn payload(&self) -> &Value {
        &self.segment.payloads[self.node as usize]
    }
    fn has_vector(&self, name: &str) -> bool {
        self.segment
            .spaces
            .get(name)
            .is_some_and(|space| space.present[self.node as usize])
    }
}

/// A stored point as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Its id.
    pub id: PointId,
    /// The version of the write that last changed it.
    pub version: u64,
    /// Its payload (an object, or null).
    pub payload: Value,
    /// Its vectors by name, as stored (unit length for cosine).
    pub vectors: BTreeMap<String, Vec<f32>>,
}

impl Segment {
    /// An empty segment with these vectors; linking uses up to `threads` threads.
    pub fn new(vectors: BTreeMap<String, VectorParams>, threads: usize) -> Self {
        let spaces = vectors
            .into_iter()
            .map(|(name, params)| {
                let space = VectorSpace {
                    vectors: FloatVectors::new(params.size, params.distance),
                    present: Vec::new(),
                    graph: Graph::new(params.hnsw),
                    int8: None,
                    fitted_at: 0,
                    params,
                };
                (name, space)
            })
            .collect();
        Segment {
            spaces,
            ids: Vec::new(),
            by_id: BTreeMap::new(),
            payloads: Vec::new(),
            versions: Vec::new(),
            deleted: Vec::new(),
            indexes: BTreeMap::new(),
            threads: threads.max(1),
            identity: next_identity(),
        }
    }

    /// The vectors' parameters by name.
    pub fn vector_params(&self) -> impl Iterator<Item = (&str, &VectorParams)> {
        self.spaces.iter().map(|(name, space)| (name.as_str(), &space.params))
    }

    /// Live points.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether there are no live points.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Point numbers written, live or not.
    pub fn written(&self) -> usize {
        self.ids.len()
    }

    /// The share of point numbers that are tombstones.
    pub fn deleted_fraction(&self) -> f64 {
        if self.ids.is_empty() {
            0.0
        } else {
            1.0 - self.len() as f64 / self.ids.len() as f64
        }
    }

    /// Checks a batch without writing anything: every vector named, of the right dimension and finite;
    /// every required vector present; payloads objects. `at` names the batch in errors (e.g. `points`).
    pub fn validate(&self, points: &[Point], at: &str) -> Result<(), SegmentError> {
        for (index, point) in points.iter().enumerate() {
            let field = |name: &str| {
                if name.is_empty() {
                    format!("{at}[{index}].vector")
                } else {
                    format!("{at}[{index}].vector.{name}")
                }
            };
            for (name, vector) in &point.vectors {
                let space = self.spaces.get(name).ok_or_else(|| SegmentError::UnknownVector {
                    field: field(name),
                    name: name.clone(),
                })?;
                if vector.len() != space.params.size {
                    return Err(SegmentError::WrongDimension {
                        field: field(name),
                        expected: space.params.size,
                        got: vector.len(),
                    });
                }
                if let Some(bad) = vector.iter().position(|value| !value.is_finite()) {
                    return Err(SegmentError::NotFinite {
                        field: field(name),
                        index: bad,
                    });
                }
                check_magnitude(vector, || field(name))?;
            }
            if self.spaces.len() == 1
                && let Some(name) = self.spaces.keys().next()
                && !point.vectors.contains_key(name)
            {
                return Err(SegmentError::MissingVector {
                    field: field(name),
                    name: name.clone(),
                });
            }
            if !(point.payload.is_object() || point.payload.is_null()) {
                return Err(SegmentError::PayloadNotObject {
                    field: format!("{at}[{index}].payload"),
                });
            }
            if json_depth(&point.payload) > MAX_PAYLOAD_DEPTH {
                return Err(SegmentError::PayloadTooDeep {
                    field: format!("{at}[{index}].payload"),
                });
            }
        }
        Ok(())
    }

    /// Writes points (replacing those with the same ids) after checking the whole batch, so a refused batch
    /// writes nothing; then links them into the graphs.
    pub fn upsert(&mut self, points: Vec<Point>, version: u64, at: &str) -> Result<(), SegmentError> {
        let staged = self.stage_upsert(points, version, at)?;
        self.link_staged(&staged);
        Ok(())
    }

    /// An upsert without its graph links: the points are stored, read back, counted, filtered and found by
    /// exact search at once; [`Segment::link_staged`] then links them through a shared reference, so a
    /// large batch does not hold the segment exclusively while it is linked.
    pub fn stage_upsert(&mut self, points: Vec<Point>, version: u64, at: &str) -> Result<Staged, SegmentError> {
        self.stage(points, version, at, false)
    }

    /// [`Segment::stage_upsert`] of vectors already `prepared` for their distance or not (a compaction copies
    /// stored ones: normalising a unit vector again can move its last bit).
    fn stage(&mut self, points: Vec<Point>, version: u64, at: &str, prepared: bool) -> Result<Staged, SegmentError> {
        self.validate(&points, at)?;
        let first = self.ids.len() as u32;
        for point in points {
            let node = self.ids.len() as u32;
            if let Some(old) = self.by_id.insert(point.id, node) {
                self.tombstone(old);
            }
            self.ids.push(point.id);
            self.versions.push(version);
            self.deleted.push(false);
            for (name, space) in &mut self.spaces {
                match point.vectors.get(name) {
                    Some(vector) if prepared => {
                        space.vectors.push_prepared(vector);
                        space.present.push(true);
                    }
                    Some(vector) => {
                        space.vectors.push(vector);
                        space.present.push(true);
                    }
                    None => {
                        space.vectors.push(&vec![0.0; space.params.size]);
                        space.present.push(false);
                    }
                }
            }
            for index in self.indexes.values_mut() {
                index.add(node, &point.payload);
            }
            self.payloads.push(point.payload);
        }
        let end = self.ids.len() as u32;
        for space in self.spaces.values_mut() {
            space.graph.reserve_nodes(end as usize);
            space.quantize(first, end);
        }
        Ok(Staged {
            segment: self.identity,
            first,
            end,
        })
    }

    /// Links staged points into the graphs (nothing when the segment has since been replaced by its
    /// compacted successor, which linked them itself).
    pub fn link_staged(&self, staged: &Staged) {
        if staged.segment != self.identity {
            return;
        }
        for space in self.spaces.values() {
            let end = staged.end.min(space.present.len() as u32);
            let nodes: Vec<u32> = (staged.first..end)
                .filter(|node| space.present[*node as usize])
                .collect();
            space.link(&nodes, self.threads);
        }
    }

    /// Links every stored vector that has no links yet (a checkpoint or snapshot taken while a batch was
    /// being linked holds it unlinked).
    pub(crate) fn link_unlinked(&self) {
        for space in self.spaces.values() {
            let present = (0..space.present.len() as u32)
                .filter(|node| space.present[*node as usize] && !self.deleted[*node as usize]);
            let nodes = space.graph.unlinked(present);
            space.link(&nodes, self.threads);
        }
    }

    /// Deletes points by id; answers how many existed.
    pub fn delete(&mut self, ids: &[PointId]) -> usize {
        let mut removed = 0;
        for id in ids {
            if let Some(node) = self.by_id.remove(id) {
                self.tombstone(node);
                removed += 1;
            }
        }
        removed
    }

    /// Marks a point number deleted and takes it out of the payload indexes.
    fn tombstone(&mut self, node: u32) {
        self.deleted[node as usize] = true;
        for index in self.indexes.values_mut() {
            index.remove(node, &self.payloads[node as usize]);
        }
    }

    /// The live point numbers passing `filter` (all live ones without one), in id order.
    pub fn matching(&self, filter: Option<&Filter>) -> Vec<u32> {
        self.by_id
            .values()
            .copied()
            .filter(|&node| filter.is_none_or(|filter| filter.matches(&NodeView { segment: self, node })))
            .collect()
    }

    /// Whether a point passes a filter.
    pub fn passes(&self, node: u32, filter: &Filter) -> bool {
        filter.matches(&NodeView { segment: self, node })
    }

    /// The number of a live point.
    pub fn node_of(&self, id: PointId) -> Option<u32> {
        self.by_id.get(&id).copied()
    }

    /// Changes a live point's payload in place with `change` (merge, overwrite, delete keys...).
    pub fn update_payload(&mut self, node: u32, version: u64, change: impl FnOnce(&mut Map<String, Value>)) {
        for index in self.indexes.values_mut() {
            index.remove(node, &self.payloads[node as usize]);
        }
        let payload = &mut self.payloads[node as usize];
        if !payload.is_object() {
            *payload = Value::Object(Map::new());
        }
        if let Value::Object(map) = payload {
            change(map);
        }
        self.versions[node as usize] = version;
        for index in self.indexes.values_mut() {
            index.add(node, &self.payloads[node as usize]);
        }
    }

    /// Reads a point back.
    pub fn record(&self, node: u32, with_vectors: bool) -> Record {
        let vectors = if with_vectors {
            self.spaces
                .iter()
                .filter(|(_, space)| space.present[node as usize])
                .map(|(name, space)| (name.clone(), space.vectors.get(node).into_owned()))
                .collect()
        } else {
            BTreeMap::new()
        };
        Record {
            id: self.ids[node as usize],
            version: self.versions[node as usize],
            payload: self.payloads[node as usize].clone(),
            vectors,
        }
    }

    /// Live points in id order from `from` (inclusive), passing `filter`: up to `limit` of them, and the id
    /// to start the next page from.
    pub fn scroll(&self, from: Option<PointId>, limit: usize, filter: Option<&Filter>) -> (Vec<u32>, Option<PointId>) {
        let mut page = Vec::new();
        let range = match from {
            Some(from) => self.by_id.range(from..),
            None => self.by_id.range(..),
        };
        for (id, &node) in range {
            if filter.is_some_and(|filter| !filter.matches(&NodeView { segment: self, node })) {
                continue;
            }
            if page.len() == limit {
                return (page, Some(*id));
            }
            page.push(node);
        }
        (page, None)
    }

    /// Builds (or rebuilds) an index of a payload field over every point written.
    pub fn create_index(&mut self, key: &str, field_type: FieldType) -> Result<(), String> {
        let path = KeyPath::parse(key)?;
        let mut index = FieldIndex::new(path, field_type);
        for (node, payload) in self.payloads.iter().enumerate() {
            if !self.deleted[node] {
                index.add(node as u32, payload);
            }
        }
        self.indexes.insert(key.to_string(), index);
        Ok(())
    }

    /// Drops a payload index; answers whether there was one.
    pub fn drop_index(&mut self, key: &str) -> bool {
        self.indexes.remove(key).is_some()
    }

    /// The payload indexes: key, type and points indexed.
    pub fn payload_schema(&self) -> impl Iterator<Item = (&str, FieldType, usize)> {
        self.indexes
            .iter()
            .map(|(key, index)| (key.as_str(), index.field_type(), index.points()))
    }

    /// A new segment holding only the live points, renumbered in id order, graphs rebuilt; an error when a
    /// vector kept on disk cannot be read (never a copy with zeros in its place).
    pub fn compacted(&self) -> Result<Segment, SegmentError> {
        let params = self
            .spaces
            .iter()
            .map(|(name, space)| (name.clone(), space.params.clone()))
            .collect();
        let mut fresh = Segment::new(params, self.threads);
        for (key, index) in &self.indexes {
            let _ = fresh.create_index(key, index.field_type());
        }
        let mut points = Vec::with_capacity(self.by_id.len());
        for (&id, &node) in &self.by_id {
            let mut vectors = BTreeMap::new();
            for (name, space) in &self.spaces {
                if space.present[node as usize] {
                    let vector = space
                        .vectors
                        .try_get(node)
                        .map_err(|message| SegmentError::Storage { message })?;
                    vectors.insert(name.clone(), vector.into_owned());
                }
            }
            points.push(Point {
                id,
                vectors,
                payload: self.payloads[node as usize].clone(),
            });
        }
        let versions: Vec<u64> = self.by_id.values().map(|&node| self.versions[node as usize]).collect();
        let staged = fresh.stage(points, 0, "points", true)?;
        fresh.link_staged(&staged);
        fresh.versions = versions;
        Ok(fresh)
    }

    /// An error when a read of stored vectors from their file failed on this thread since the last check
    /// (those vectors read as zeros, and scored as the worst match). A request checks once before it starts,
    /// to forget what an earlier one on the same thread left, and once at its end.
    pub fn check_reads(&self) -> Result<(), SegmentError> {
        check_reads()
    }

    /// Bytes of float vectors per vector name that are read from files rather than held in memory.
    pub fn disk_bytes(&self) -> BTreeMap<String, usize> {
        self.spaces
            .iter()
            .map(|(name, space)| (name.clone(), space.vectors.disk_bytes()))
            .collect()
    }

    /// Bytes of on-disk vectors' rows held in memory since the last checkpoint.
    pub(crate) fn rows_in_memory_for_disk(&self) -> usize {
        self.spaces
            .values()
            .filter(|space| space.params.on_disk)
            .map(|space| space.vectors.memory_bytes())
            .sum()
    }

    /// Bytes held in memory per vector name: float vectors, int8 copy, graph links.
    pub fn memory(&self) -> BTreeMap<String, (usize, usize, usize)> {
        self.spaces
            .iter()
            .map(|(name, space)| {
                let int8 = space.int8.as_ref().map_or(0, Int8Vectors::memory_bytes);
                (
                    name.clone(),
                    (space.vectors.memory_bytes(), int8, space.graph.memory_bytes()),
                )
            })
            .collect()
    }
}

impl VectorSpace {
    /// Keeps the int8 copy in step: refits the grid each time the vectors have doubled (up to 65,536 of
    /// them, after which the grid stays), otherwise encodes the new ones.
    fn quantize(&mut self, first: u32, end: u32) {
        if !self.params.int8 {
            return;
        }
        let present = self.present.iter().filter(|present| **present).count();
        let refit = self.int8.is_none() || (present >= 2 * self.fitted_at && self.fitted_at < 65_536);
        if refit {
            let stride = (present / 1_000).max(1);
            let sample: Vec<_> = (0..self.vectors.len() as u32)
                .filter(|node| self.present[*node as usize])
                .step_by(stride)
                .map(|node| self.vectors.get(node))
                .collect();
            let mut int8 = Int8Vectors::fit(self.params.size, self.params.distance, sample.iter().map(|row| &**row));
            for node in 0..self.vectors.len() as u32 {
                int8.push(&self.vectors.get(node));
            }
            self.int8 = Some(int8);
            self.fitted_at = present.max(1);
        } else if let Some(int8) = &mut self.int8 {
            for node in first..end {
                int8.push(&self.vectors.get(node));
            }
        }
    }
}
