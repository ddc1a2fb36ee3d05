//! Nearest-neighbour search over a segment, with a planner for filters.
//!
//! A filter is checked *inside* the graph walk (refused points are walked through but not returned), which
//! keeps recall when a fair share of points pass. When few pass, the walk would wander the whole graph
//! looking for them, so the planner first estimates how many pass: exactly, from the payload indexes when
//! the filter's `must` conditions are indexed (their candidate lists, intersected, checked against the
//! whole filter), or from a sample of points otherwise. Below the full-scan threshold the passing points are
//! scored exactly, so recall is 1 however selective the filter; above it the walk's `ef` is widened in
//! proportion to how many points the filter refuses.

use crate::filter::{Condition, Filter};
use crate::hnsw::Scored;
use crate::point_id::PointId;
use crate::segment::{NodeView, Segment, SegmentError, VectorSpace};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Points sampled to estimate how many pass an unindexed filter.
const SAMPLE: usize = 1_000;
/// The most `ef` is widened for a selective filter.
const MAX_EF_WIDENING: f64 = 16.0;
/// `ef` when the caller gives none (Qdrant uses `ef_construct`).
pub const DEFAULT_EF: usize = 100;

/// A nearest-neighbour query.
#[derive(Debug, Clone)]
pub struct Query<'a> {
    /// The vector name ("" for the unnamed one).
    pub using: &'a str,
    /// The query vector.
    pub vector: &'a [f32],
    /// How many results.
    pub limit: usize,
    /// How many of the best to skip.
    pub offset: usize,
    /// Which points may be returned.
    pub filter: Option<&'a Filter>,
    /// Candidates kept during the walk (`hnsw_ef`).
    pub ef: Option<usize>,
    /// Score every passing point instead of walking the graph.
    pub exact: bool,
    /// Leave out results scoring worse than this (Qdrant's score: similarity, or distance for Euclid and
    /// Manhattan).
    pub score_threshold: Option<f32>,
    /// Walk on the int8 copy when there is one (then rescore on the originals).
    pub use_int8: bool,
}

/// One result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    /// The point's number in the segment.
    pub node: u32,
    /// Its id.
    pub id: PointId,
    /// Its score as Qdrant reports it.
    pub score: f32,
}

/// How a query was answered (for tests and the planner's report).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Every passing point scored.
    Exact,
    /// The graph walked with this `ef`.
    Graph(usize),
}

impl Segment {
    /// The best points for a query, best first.
    pub fn search(&self, query: &Query<'_>) -> Result<Vec<Hit>, SegmentError> {
        Ok(self.search_with_plan(query)?.0)
    }

    /// The best points for a query and how they were found.
    pub fn search_with_plan(&self, query: &Query<'_>) -> Result<(Vec<Hit>, Plan), SegmentError> {
        let space = self
            .spaces
            .get(query.using)
            .ok_or_else(|| SegmentError::UnknownVector {
                field: "using".into(),
                name: query.using.to_string(),
            })?;
        if query.vector.len() != space.params.size {
            return Err(SegmentError::WrongDimension {
                field: "query".into(),
                expected: space.params.size,
                got: query.vector.len(),
            });
        }
        if let Some(bad) = query.vector.iter().position(|value| !value.is_finite()) {
            return Err(SegmentError::NotFinite {
                field: "query".into(),
                index: bad,
            });
        }
        let mut vector = query.vector.to_vec();
        space.params.distance.prepare(&mut vector);
        let wanted = query.limit.saturating_add(query.offset);
        if wanted == 0 || self.is_empty() {
            return Ok((Vec::new(), Plan::Exact));
        }
        let bytes_per_vector = space.params.size * 4;
        let threshold = space.params.full_scan_threshold_kb.saturating_mul(1024) / bytes_per_vector.max(1);
        let accept = |node: u32| {
            !self.deleted[node as usize]
                && space.present[node as usize]
                && query
                    .filter
                    .is_none_or(|filter| filter.matches(&NodeView { segment: self, node }))
        };
        let filter = query.filter.filter(|filter| !filter.is_empty());
        let (found, plan) = if query.exact || self.len() <= threshold {
            let nodes = match filter {
                Some(filter) => self.matching(Some(filter)),
                None => self.by_id.values().copied().collect(),
            };
            (
                exact(
                    space,
                    &vector,
                    nodes.into_iter().filter(|&node| space.present[node as usize]),
                    wanted,
                ),
                Plan::Exact,
            )
        } else {
            let selectivity = match filter {
                None => 1.0,
                Some(filter) => match self.indexed_candidates(filter, threshold) {
                    Some(candidates) => {
                        let passing = candidates.into_iter().filter(|&node| accept(node));
                        return Ok((
                            self.hits(space, exact(space, &vector, passing, wanted), query),
                            Plan::Exact,
                        ));
                    }
                    None => self.sampled_selectivity(filter),
                },
            };
            if (self.len() as f64 * selectivity) <= threshold as f64 {
                let passing = (0..self.ids.len() as u32).filter(|&node| accept(node));
                (exact(space, &vector, passing, wanted), Plan::Exact)
            } else {
                let base = query.ef.unwrap_or(DEFAULT_EF).max(wanted);
                let widening = (1.0 / selectivity.max(1e-9)).min(MAX_EF_WIDENING);
                let ef = ((base as f64) * widening).ceil() as usize;
                (
                    walk(space, &vector, ef, wanted, query.use_int8, &accept),
                    Plan::Graph(ef),
                )
            }
        };
        Ok((self.hits(space, found, query), plan))
    }

    /// Scores the given live points exactly against a query vector, best first (how an outer query ranks
    /// what its prefetches found).
    pub fn rescore(&self, using: &str, vector: &[f32], nodes: &[u32]) -> Result<Vec<Hit>, SegmentError> {
        let space = self.spaces.get(using).ok_or_else(|| SegmentError::UnknownVector {
            field: "using".into(),
            name: using.to_string(),
        })?;
        if vector.len() != space.params.size {
            return Err(SegmentError::WrongDimension {
                field: "query".into(),
                expected: space.params.size,
                got: vector.len(),
            });
        }
        let mut prepared = vector.to_vec();
        space.params.distance.prepare(&mut prepared);
        let live = nodes.iter().copied().filter(|&node| {
            (node as usize) < self.ids.len() && !self.deleted[node as usize] && space.present[node as usize]
        });
        let found = exact(space, &prepared, live, nodes.len());
        let distance = space.params.distance;
        Ok(found
            .into_iter()
            .map(|scored| Hit {
                node: scored.node,
                id: self.ids[scored.node as usize],
                score: distance.score(scored.similarity),
            })
            .collect())
    }

    /// A live point's stored vector of a name.
    pub fn vector_of(&self, using: &str, id: PointId) -> Option<Vec<f32>> {
        let node = self.node_of(id)?;
        let space = self.spaces.get(using)?;
        space.present[node as usize].then(|| space.vectors.get(node).to_vec())
    }

    /// Whether a higher score is better for a vector name (false for distances, and for unknown names).
    pub fn higher_is_better(&self, using: &str) -> bool {
        self.spaces
            .get(using)
            .is_some_and(|space| space.params.distance.higher_is_better())
    }

    /// Turns scored nodes (best first) into hits, applying the threshold and the offset.
    fn hits(&self, space: &VectorSpace, found: Vec<Scored>, query: &Query<'_>) -> Vec<Hit> {
        let distance = space.params.distance;
        let floor = query.score_threshold.map(|score| distance.similarity_of_score(score));
        found
            .into_iter()
            .filter(|scored| floor.is_none_or(|floor| scored.similarity >= floor))
            .skip(query.offset)
            .take(query.limit)
            .map(|scored| Hit {
                node: scored.node,
                id: self.ids[scored.node as usize],
                score: distance.score(scored.similarity),
            })
            .collect()
    }

    /// The points that may pass, from payload indexes: the smallest candidate list among the filter's
    /// indexed `must` conditions, when one is at most `limit` long.
    fn indexed_candidates(&self, filter: &Filter, limit: usize) -> Option<Vec<u32>> {
        filter
            .must
            .iter()
            .filter_map(|condition| match condition {
                Condition::Field { key, test } => self
                    .indexes
                    .values()
                    .find(|index| index.serves(key, test))
                    .and_then(|index| index.candidates(test, limit)),
                Condition::HasId(ids) if ids.len() <= limit => {
                    let mut nodes: Vec<u32> = ids.iter().filter_map(|id| self.node_of(*id)).collect();
                    nodes.sort_unstable();
                    Some(nodes)
                }
                Condition::Filter(inner) => self.indexed_candidates(inner, limit),
                _ => None,
            })
            .min_by_key(Vec::len)
    }

    /// The share of live points passing a filter, from a sample of points drawn by a fixed hash (not a
    /// stride, which can fall in step with a pattern in the ids and see none of a category).
    fn sampled_selectivity(&self, filter: &Filter) -> f64 {
        let written = self.ids.len() as u64;
        let (mut seen, mut passed) = (0usize, 0usize);
        for draw in 0..(SAMPLE * 4) as u64 {
            if seen >= SAMPLE || written == 0 {
                break;
            }
            let node = (mix(draw) % written) as u32;
            if self.deleted[node as usize] {
                continue;
            }
            seen += 1;
            if filter.matches(&NodeView { segment: self, node }) {
                passed += 1;
            }
        }
        if seen == 0 {
            1.0
        } else {
            (passed as f64 + 0.5) / (seen as f64 + 0.5)
        }
    }
}

/// A well-spread 64-bit hash (splitmix64's finaliser).
fn mix(value: u64) -> u64 {
    let mut x = value.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The `wanted` best of `nodes` by exact similarity, best first.
fn exact(space: &VectorSpace, vector: &[f32], nodes: impl Iterator<Item = u32>, wanted: usize) -> Vec<Scored> {
    let mut best: BinaryHeap<Reverse<Scored>> = BinaryHeap::with_capacity(wanted + 1);
    for node in nodes {
        let scored = Scored {
            similarity: space.vectors.similarity_to(vector, node),
            node,
        };
        if best.len() < wanted {
            best.push(Reverse(scored));
        } else if best.peek().is_some_and(|worst| scored > worst.0) {
            best.pop();
            best.push(Reverse(scored));
        }
    }
    let mut found: Vec<Scored> = best.into_iter().map(|reverse| reverse.0).collect();
    found.sort_unstable_by(|a, b| b.cmp(a));
    found
}

/// Walks the graph (on the int8 copy when asked and present, then rescoring every candidate on the
/// originals) and keeps the `wanted` best.
fn walk(
    space: &VectorSpace,
    vector: &[f32],
    ef: usize,
    wanted: usize,
    use_int8: bool,
    accept: &impl Fn(u32) -> bool,
) -> Vec<Scored> {
    let mut found = match space.int8.as_ref().filter(|_| use_int8) {
        Some(int8) => {
            let coded = int8.query(vector);
            let mut found = space.graph.search(&|node| int8.similarity(&coded, node), ef, accept);
            for scored in &mut found {
                scored.similarity = space.vectors.similarity_to(vector, scored.node);
            }
            found.sort_unstable_by(|a, b| b.cmp(a));
            found
        }
        None => space
            .graph
            .search(&|node| space.vectors.similarity_to(vector, node), ef, accept),
    };
    found.truncate(wanted);
    found
}
