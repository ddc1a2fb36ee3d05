//! Nearest-neighbour search over a segment, with a planner for filters.
//!
//! A filter is checked *inside* the graph walk (refused points are walked through but not returned), which
//! keeps recall when a fair share of points pass. When few pass, the walk would wander the whole graph
//! looking for them, so the planner first estimates how many pass: exactly, from the payload indexes when
//! the filter's `must` conditions are indexed (their candidate lists, intersected, checked against the
//! whole filter), or from a sample of points otherwise. Below the full-scan threshold the passing points are
//! scored exactly, so recall is 1 however selective the filter; above it the walk keeps `ef` accepted points,
//! looking at about `ef / selectivity` nodes on the way.

use crate::filter::{Condition, Filter};
use crate::hnsw::Scored;
use crate::point_id::PointId;
use crate::segment::{NodeView, Segment, SegmentError, VectorSpace};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Points sampled to estimate how many pass an unindexed filter (enough to tell 1% from 10%; each costs a
/// filter evaluation on every query).
const SAMPLE: usize = 256;
/// What a walk costs per unit of `ef`, in exactly scored vectors: a walk scores about 20 vectors per unit
/// of `ef`, but scoring passing points one after another also evaluates the filter and tests each point, and
/// measured on 100,000 x 384 a filter passing 10% was answered 4 times faster by the walk at ef 64 than by
/// scoring its 10,000 points.
const WALK_COST_PER_EF: f64 = 5.0;
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
    /// After an int8 walk, how many of its best candidates are rescored on the originals (Qdrant's
    /// `quantization.rescore` and `oversampling`).
    pub rescore: Rescore,
}

/// Which candidates of an int8 walk are rescored on the original vectors.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Rescore {
    /// Every candidate the walk kept (`ef` of them): the best recall for the walk.
    #[default]
    All,
    /// The best `limit x factor` by their int8 score (Qdrant's `oversampling`; at least `limit`).
    Oversampled(f64),
    /// None: int8 scores are returned (Qdrant's `rescore: false`).
    Off,
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
        crate::segment::check_magnitude(query.vector, || "query".into())?;
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
            // Points an indexed condition of the filter lets through, as a bit per point number.
            let marked = filter.and_then(|filter| self.marked(filter));
            let selectivity = match (filter, &marked) {
                (None, _) => 1.0,
                (Some(filter), marked) if marked.as_ref().is_none_or(|(_, count)| *count <= threshold) => {
                    match self.indexed_candidates(filter, threshold) {
                        Some(candidates) => {
                            let passing = candidates.into_iter().filter(|&node| accept(node));
                            let found = exact(space, &vector, passing, wanted);
                            crate::segment::check_reads()?;
                            return Ok((self.hits(space, found, query), Plan::Exact));
                        }
                        None => self.sampled_selectivity(filter),
                    }
                }
                (Some(_), Some((_, count))) => *count as f64 / self.ids.len().max(1) as f64,
                (Some(filter), None) => self.sampled_selectivity(filter),
            };
            let bits = marked.map(|(bits, _)| bits);
            let passes = |node: u32| {
                bits.as_ref()
                    .is_none_or(|bits| bits[node as usize / 64] & (1 << (node % 64)) != 0)
                    && accept(node)
            };
            // `ef` counts accepted points, so a walk looks at about `ef / selectivity` nodes, each scoring its
            // links (about WALK_COST_PER_EF vectors per unit of `ef` unfiltered). Scoring the passing points
            // directly is cheaper when they are fewer than that, or under the full-scan threshold.
            let ef = query.ef.unwrap_or(DEFAULT_EF).max(wanted);
            let passing = self.len() as f64 * selectivity;
            let walk_cost = WALK_COST_PER_EF * ef as f64 / selectivity.max(1e-9);
            if passing <= threshold as f64 || passing <= walk_cost {
                let found = match &bits {
                    Some(bits) => exact(space, &vector, set_bits(bits).filter(|&node| accept(node)), wanted),
                    None => exact(
                        space,
                        &vector,
                        (0..self.ids.len() as u32).filter(|&node| accept(node)),
                        wanted,
                    ),
                };
                (found, Plan::Exact)
            } else {
                (
                    walk(space, &vector, ef, wanted, (query.use_int8, query.rescore), &passes),
                    Plan::Graph(ef),
                )
            }
        };
        crate::segment::check_reads()?;
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
        crate::segment::check_magnitude(vector, || "query".into())?;
        let mut prepared = vector.to_vec();
        space.params.distance.prepare(&mut prepared);
        let live = nodes.iter().copied().filter(|&node| {
            (node as usize) < self.ids.len() && !self.deleted[node as usize] && space.present[node as usize]
        });
        let found = exact(space, &prepared, live, nodes.len());
        crate::segment::check_reads()?;
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
        space.present[node as usize].then(|| space.vectors.get(node).into_owned())
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

    /// For the filter's indexed `must` condition with the fewest candidates: a bit per point number set for
    /// its candidates, and how many there are (so the walk tests a bit before the whole filter).
    fn marked(&self, filter: &Filter) -> Option<(Vec<u64>, usize)> {
        let (index, test, count) = filter
            .must
            .iter()
            .filter_map(|condition| match condition {
                Condition::Field { key, test } => {
                    let index = self.indexes.values().find(|index| index.serves(key, test))?;
                    Some((index, test, index.count(test)?))
                }
                _ => None,
            })
            .min_by_key(|(_, _, count)| *count)?;
        let mut bits = vec![0u64; self.ids.len().div_ceil(64)];
        index.mark(test, &mut bits);
        Some((bits, count))
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

/// The numbers of the set bits, in order.
fn set_bits(bits: &[u64]) -> impl Iterator<Item = u32> + '_ {
    bits.iter().enumerate().flat_map(|(index, &word)| {
        let mut rest = word;
        std::iter::from_fn(move || {
            if rest == 0 {
                return None;
            }
            let bit = rest.trailing_zeros();
            rest &= rest - 1;
            Some(index as u32 * 64 + bit)
        })
    })
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

/// Walks the graph (on the int8 copy when asked and present, then rescoring its best candidates on the
/// originals) and keeps the `wanted` best.
fn walk(
    space: &VectorSpace,
    vector: &[f32],
    ef: usize,
    wanted: usize,
    (use_int8, rescore): (bool, Rescore),
    accept: &impl Fn(u32) -> bool,
) -> Vec<Scored> {
    let mut found = match space.int8.as_ref().filter(|_| use_int8) {
        Some(int8) => {
            let coded = int8.query(vector);
            let mut found = space.graph.search(&int8.scorer(&coded), ef, accept);
            match rescore {
                Rescore::All => {}
                Rescore::Oversampled(factor) => {
                    found.truncate(((wanted as f64 * factor).ceil() as usize).max(wanted));
                }
                Rescore::Off => {
                    found.truncate(wanted);
                    return found;
                }
            }
            let nodes: Vec<u32> = found.iter().map(|scored| scored.node).collect();
            let mut exact = Vec::with_capacity(nodes.len());
            space.vectors.similarities(vector, &nodes, &mut exact);
            for (scored, similarity) in found.iter_mut().zip(exact) {
                scored.similarity = similarity;
            }
            found.sort_unstable_by(|a, b| b.cmp(a));
            found
        }
        None => space.graph.search(&space.vectors.scorer(vector), ef, accept),
    };
    found.truncate(wanted);
    found
}
