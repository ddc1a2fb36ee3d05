//! Stored float32 vectors, one flat array.

use crate::distance::Distance;
use crate::hnsw::{Scorer, Space};

/// Vectors of one dimension, prepared for their distance (unit length for cosine), numbered from 0.
#[derive(Debug, Clone)]
pub struct FloatVectors {
    dim: usize,
    distance: Distance,
    data: Vec<f32>,
}

impl FloatVectors {
    /// No vectors yet.
    pub fn new(dim: usize, distance: Distance) -> Self {
        FloatVectors {
            dim,
            distance,
            data: Vec::new(),
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

    /// How many there are.
    pub fn len(&self) -> usize {
        self.data.len() / self.dim.max(1)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
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

    /// The vector numbered `node`.
    #[inline]
    pub fn get(&self, node: u32) -> &[f32] {
        let start = node as usize * self.dim;
        &self.data[start..start + self.dim]
    }

    /// The similarity of a prepared query to vector `node`.
    #[inline]
    pub fn similarity_to(&self, query: &[f32], node: u32) -> f32 {
        self.distance.similarity(query, self.get(node))
    }

    /// Appends the similarity of a prepared query to each of `nodes` to `out`, in order.
    #[inline]
    pub fn similarities(&self, query: &[f32], nodes: &[u32], out: &mut Vec<f32>) {
        crate::distance::similarities(self.distance, query, &self.data, nodes, out);
    }

    /// A walk's scorer for a prepared query.
    pub fn scorer<'a>(&'a self, query: &'a [f32]) -> QueryScorer<'a> {
        QueryScorer { vectors: self, query }
    }

    /// The flat array of components, for storage.
    pub(crate) fn data(&self) -> &[f32] {
        &self.data
    }

    /// Vectors from a stored flat array (already prepared), checked.
    pub(crate) fn from_data(dim: usize, distance: Distance, data: Vec<f32>) -> Result<Self, String> {
        if dim == 0 || !data.len().is_multiple_of(dim) {
            return Err("the vectors' data is not a whole number of vectors".into());
        }
        Ok(FloatVectors { dim, distance, data })
    }

    /// Bytes the vectors take.
    pub fn memory_bytes(&self) -> usize {
        self.data.len() * 4
    }
}

impl Space for FloatVectors {
    #[inline]
    fn between(&self, a: u32, b: u32) -> f32 {
        self.distance.similarity(self.get(a), self.get(b))
    }

    #[inline]
    fn between_many(&self, a: u32, nodes: &[u32], out: &mut Vec<f32>) {
        self.similarities(self.get(a), nodes, out);
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
