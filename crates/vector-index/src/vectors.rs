//! Stored float32 vectors: one flat array in memory, or (a vector's `on_disk` setting) the rows of the last
//! checkpoint in a file read a row at a time, with only the rows written since in memory.

use crate::distance::Distance;
use crate::flat::Flat;
use crate::hnsw::{Scorer, Space};
use std::borrow::Cow;
use std::cell::RefCell;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

thread_local! {
    /// The first read of a vector file that failed on this thread since the last [`take_read_failure`]: a
    /// search runs on one thread, so each request sees its own failures and no other's.
    static READ_FAILURE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Takes (and clears) this thread's first failed read of a vector file since the last call.
pub fn take_read_failure() -> Option<String> {
    READ_FAILURE.with(|failure| failure.borrow_mut().take())
}

/// Rows kept in a file (the first `rows` of a segment's vectors), as a checkpoint wrote them.
#[derive(Debug, Clone)]
pub(crate) struct DiskRows {
    pub(crate) file: Arc<File>,
    /// The file's name in the collection's directory.
    pub(crate) name: String,
    pub(crate) rows: usize,
    /// CRC-32 of the rows' bytes.
    pub(crate) checksum: u32,
}

/// Vectors of one dimension, prepared for their distance (unit length for cosine), numbered from 0.
#[derive(Debug, Clone)]
pub struct FloatVectors {
    dim: usize,
    distance: Distance,
    /// The rows after those on disk (all of them without a file).
    data: Flat<f32>,
    disk: Option<DiskRows>,
}

impl FloatVectors {
    /// No vectors yet.
    pub fn new(dim: usize, distance: Distance) -> Self {
        FloatVectors {
            dim,
            distance,
            data: Flat::new(),
            disk: None,
        }
    }

    /// Their dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Their distance.
    pub fn distance(&self) -> Distance {
        self.distance
    }

    /// Rows on disk.
    fn on_disk(&self) -> usize {
        self.disk.as_ref().map_or(0, |disk| disk.rows)
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.on_disk() + self.data.len() / self.dim.max(1)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends a vector of the right dimension, prepared for the distance here; answers its number.
    pub fn push(&mut self, vector: &[f32]) -> u32 {
        debug_assert_eq!(vector.len(), self.dim);
        let number = self.len() as u32;
        let start = self.data.len();
        self.data.extend_from_slice(vector);
        self.distance.prepare(&mut self.data[start..]);
        number
    }

    /// Appends a vector already prepared for the distance (a stored one, copied); answers its number.
    pub(crate) fn push_prepared(&mut self, vector: &[f32]) -> u32 {
        debug_assert_eq!(vector.len(), self.dim);
        let number = self.len() as u32;
        self.data.extend_from_slice(vector);
        number
    }

    /// The vector numbered `node` (read from the file when it is on disk).
    #[inline]
    pub fn get(&self, node: u32) -> Cow<'_, [f32]> {
        let on_disk = self.on_disk();
        if (node as usize) < on_disk {
            let mut row = vec![0.0; self.dim];
            self.read_row(node, &mut row);
            Cow::Owned(row)
        } else {
            let start = (node as usize - on_disk) * self.dim;
            Cow::Borrowed(&self.data[start..start + self.dim])
        }
    }

    /// Reads row `node` of the file into `row`; a failed read leaves zeros and is logged and remembered on
    /// this thread (see [`take_read_failure`]).
    fn read_row(&self, node: u32, row: &mut [f32]) -> bool {
        match self.try_read_row(node, row) {
            Ok(()) => true,
            Err(message) => {
                row.fill(0.0);
                tracing::error!("{message}");
                READ_FAILURE.with(|failure| {
                    failure.borrow_mut().get_or_insert(message);
                });
                false
            }
        }
    }

    fn try_read_row(&self, node: u32, row: &mut [f32]) -> Result<(), String> {
        let Some(disk) = &self.disk else {
            return Err(format!("vector {node} has no file"));
        };
        let mut bytes = vec![0u8; self.dim * 4];
        let offset = node as u64 * (self.dim as u64 * 4);
        disk.file
            .read_exact_at(&mut bytes, offset)
            .map_err(|error| format!("reading vector {node} from {}: {error}", disk.name))?;
        for (value, chunk) in row.iter_mut().zip(bytes.chunks_exact(4)) {
            *value = f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        Ok(())
    }

    /// The vector numbered `node`, or why its file could not be read (for copies that must not hold zeros
    /// in place of a vector: compaction).
    pub(crate) fn try_get(&self, node: u32) -> Result<Cow<'_, [f32]>, String> {
        let on_disk = self.on_disk();
        if (node as usize) < on_disk {
            let mut row = vec![0.0; self.dim];
            self.try_read_row(node, &mut row)?;
            Ok(Cow::Owned(row))
        } else {
            Ok(self.get(node))
        }
    }

    /// The similarity of a prepared query to vector `node`.
    #[inline]
    pub fn similarity_to(&self, query: &[f32], node: u32) -> f32 {
        let on_disk = self.on_disk();
        if (node as usize) < on_disk {
            let mut row = vec![0.0; self.dim];
            if !self.read_row(node, &mut row) {
                return f32::NEG_INFINITY;
            }
            self.distance.similarity(query, &row)
        } else {
            let start = (node as usize - on_disk) * self.dim;
            self.distance.similarity(query, &self.data[start..start + self.dim])
        }
    }

    /// Appends the similarity of a prepared query to each of `nodes` to `out`, in order.
    #[inline]
    pub fn similarities(&self, query: &[f32], nodes: &[u32], out: &mut Vec<f32>) {
        if self.disk.is_none() {
            crate::distance::similarities(self.distance, query, &self.data, nodes, out);
            return;
        }
        let on_disk = self.on_disk();
        let mut row = vec![0.0; self.dim];
        out.reserve(nodes.len());
        for &node in nodes {
            let similarity = if (node as usize) < on_disk {
                if self.read_row(node, &mut row) {
                    self.distance.similarity(query, &row)
                } else {
                    f32::NEG_INFINITY
                }
            } else {
                let start = (node as usize - on_disk) * self.dim;
                self.distance.similarity(query, &self.data[start..start + self.dim])
            };
            out.push(similarity);
        }
    }

    /// A walk's scorer for a prepared query.
    pub fn scorer<'a>(&'a self, query: &'a [f32]) -> QueryScorer<'a> {
        QueryScorer { vectors: self, query }
    }

    /// Calls `each` with the rows from number `from` on, in order, a run of whole rows at a time (at most a
    /// few MiB read from the file at once). Stops at the first failed read.
    pub(crate) fn for_each_run(
        &self,
        from: usize,
        mut each: impl FnMut(&[f32]) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let on_disk = self.on_disk();
        if let Some(disk) = &self.disk
            && from < on_disk
        {
            let rows_per_run = ((4 << 20) / (self.dim * 4)).max(1);
            let mut bytes = Vec::new();
            let mut values = Vec::new();
            let mut row = from;
            while row < on_disk {
                let rows = rows_per_run.min(on_disk - row);
                bytes.resize(rows * self.dim * 4, 0);
                disk.file.read_exact_at(&mut bytes, (row * self.dim * 4) as u64)?;
                values.clear();
                values.extend(
                    bytes
                        .chunks_exact(4)
                        .map(|chunk| f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]])),
                );
                each(&values)?;
                row += rows;
            }
        }
        let skip = from.saturating_sub(on_disk) * self.dim;
        if skip < self.data.len() {
            each(&self.data[skip..])?;
        }
        Ok(())
    }

    /// The rows on disk, when there are some.
    pub(crate) fn disk(&self) -> Option<&DiskRows> {
        self.disk.as_ref()
    }

    /// Serves rows `0..rows.rows` from a file that holds them (a checkpoint just wrote every row there), and
    /// drops those from memory.
    pub(crate) fn move_to_disk(&mut self, rows: DiskRows) {
        debug_assert_eq!(rows.rows, self.len());
        let keep_from = (rows.rows - self.on_disk()) * self.dim;
        self.data.drain_front(keep_from);
        self.disk = Some(rows);
    }

    /// Vectors from a stored flat array (already prepared), checked.
    pub(crate) fn from_data(dim: usize, distance: Distance, data: Flat<f32>) -> Result<Self, String> {
        if dim == 0 || !data.len().is_multiple_of(dim) {
            return Err("the vectors' data is not a whole number of vectors".into());
        }
        let mut vectors = FloatVectors::new(dim, distance);
        vectors.data = data;
        Ok(vectors)
    }

    /// Vectors whose rows are all in a file.
    pub(crate) fn from_disk(dim: usize, distance: Distance, rows: DiskRows) -> Self {
        let mut vectors = FloatVectors::new(dim, distance);
        vectors.disk = Some(rows);
        vectors
    }

    /// Bytes the vectors take in memory.
    pub fn memory_bytes(&self) -> usize {
        self.data.len() * 4
    }

    /// Bytes of vectors read from a file instead.
    pub fn disk_bytes(&self) -> usize {
        self.on_disk() * self.dim * 4
    }
}

impl Space for FloatVectors {
    #[inline]
    fn between(&self, a: u32, b: u32) -> f32 {
        self.similarity_to(&self.get(a), b)
    }

    #[inline]
    fn between_many(&self, a: u32, nodes: &[u32], out: &mut Vec<f32>) {
        self.similarities(&self.get(a), nodes, out);
    }
}

/// A prepared query scored against stored vectors.
pub struct QueryScorer<'a> {
    vectors: &'a FloatVectors,
    query: &'a [f32],
}

impl Scorer for QueryScorer<'_> {
    #[inline]
    fn score(&self, node: u32) -> f32 {
        self.vectors.similarity_to(self.query, node)
    }

    #[inline]
    fn score_many(&self, nodes: &[u32], out: &mut Vec<f32>) {
        self.vectors.similarities(self.query, nodes, out);
    }
}
