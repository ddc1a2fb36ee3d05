//! The navigable small-world graph (Malkov and Yashunin's HNSW).
//!
//! Links are atomics so one graph can be searched while other threads add nodes to it, without `unsafe` and
//! without a lock on the read path: a node's link list is a count followed by its neighbours, written under
//! that node's lock and read with relaxed loads (a reader may see a list half updated, which only changes
//! which nodes it looks at next, never which ones exist). Layer 0 of every node sits in one flat array; the
//! few nodes with upper layers keep theirs in a box of their own.
//!
//! The graph knows nodes by their dense internal number and nothing about vectors: searching takes a
//! function from node to similarity with the query (higher is closer), and building takes a [`Space`] that
//! scores two stored nodes against each other. Deleted nodes stay in the graph, keeping it connected; the
//! caller's `accept` keeps them out of results.

mod insert;

pub use insert::Space;

use crate::visited::VisitedPool;
use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// How the graph is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HnswParams {
    /// Links per node on the upper layers (twice as many on layer 0).
    pub m: usize,
    /// Candidates considered when a node is linked.
    pub ef_construction: usize,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams {
            m: 16,
            ef_construction: 100,
        }
    }
}

/// What a walk needs of the stored vectors: each node's similarity to what is sought (higher is closer).
/// A closure from node to similarity is one; a scorer over a flat array scores a node's unseen neighbours
/// together, loading the next one's vector while it sums the current one.
pub trait Scorer {
    /// The similarity of one node.
    fn score(&self, node: u32) -> f32;

    /// Appends the similarity of each of `nodes` to `out`, in order.
    #[inline]
    fn score_many(&self, nodes: &[u32], out: &mut Vec<f32>) {
        out.extend(nodes.iter().map(|&node| self.score(node)));
    }
}

impl<F: Fn(u32) -> f32> Scorer for F {
    #[inline]
    fn score(&self, node: u32) -> f32 {
        self(node)
    }
}

/// The highest layer a node may get (a million nodes at m = 4 need about 10).
const MAX_LEVEL: usize = 16;
/// No entry point yet.
const NO_ENTRY: u64 = u64::MAX;

/// A node and its similarity to the query, ordered by similarity (then by node, for a total order).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    /// Similarity to the query (higher is closer).
    pub similarity: f32,
    /// Internal node number.
    pub node: u32,
}

impl Eq for Scored {}

impl Ord for Scored {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        self.similarity
            .total_cmp(&other.similarity)
            .then_with(|| other.node.cmp(&self.node))
    }
}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

/// The graph.
pub struct Graph {
    params: HnswParams,
    /// Link slots of one node on layer 0: the count, then up to 2m neighbours.
    base_stride: usize,
    base: Vec<AtomicU32>,
    /// Upper layers of nodes above layer 0: per layer the count, then up to m neighbours.
    upper: Vec<Box<[AtomicU32]>>,
    levels: Vec<u8>,
    locks: Vec<Mutex<()>>,
    /// `(level << 32) | node` of the entry point, or `NO_ENTRY`.
    entry: AtomicU64,
    /// Held by an insertion that raises the graph's top level.
    top: Mutex<()>,
    visited: VisitedPool,
}

impl Graph {
    /// An empty graph.
    pub fn new(params: HnswParams) -> Self {
        let params = HnswParams {
            m: params.m.max(2),
            ef_construction: params.ef_construction.max(params.m),
        };
        Graph {
            params,
            base_stride: 1 + 2 * params.m,
            base: Vec::new(),
            upper: Vec::new(),
            levels: Vec::new(),
            locks: Vec::new(),
            entry: AtomicU64::new(NO_ENTRY),
            top: Mutex::new(()),
            visited: VisitedPool::default(),
        }
    }

    /// The parameters it was built with.
    pub fn params(&self) -> HnswParams {
        self.params
    }

    /// Nodes in the graph (linked or reserved).
    pub fn len(&self) -> usize {
        self.levels.len()
    }

    /// Whether the graph has no nodes.
    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }

    /// Bytes the links take.
    pub fn memory_bytes(&self) -> usize {
        self.base.len() * 4
            + self.upper.iter().map(|layers| layers.len() * 4).sum::<usize>()
            + self.levels.len() * (1 + std::mem::size_of::<Mutex<()>>())
    }

    /// The graph as plain arrays, for storage: levels, layer-0 slots, upper-layer slots per node, entry.
    pub(crate) fn to_parts(&self) -> (Vec<u8>, Vec<u32>, Vec<Vec<u32>>, u64) {
        let base = self.base.iter().map(|slot| slot.load(Ordering::Acquire)).collect();
        let upper = self
            .upper
            .iter()
            .map(|layers| layers.iter().map(|slot| slot.load(Ordering::Acquire)).collect())
            .collect();
        (self.levels.clone(), base, upper, self.entry.load(Ordering::Acquire))
    }

    /// A graph from stored arrays, checked so that a damaged file cannot make a search index out of bounds.
    pub(crate) fn from_parts(
        params: HnswParams,
        levels: Vec<u8>,
        base: Vec<u32>,
        upper: Vec<Vec<u32>>,
        entry: u64,
    ) -> Result<Self, String> {
        let mut graph = Graph::new(params);
        let len = levels.len();
        if base.len() != len * graph.base_stride || upper.len() != len {
            return Err("the graph's link arrays do not match its node count".into());
        }
        let upper_stride = 1 + graph.params.m;
        for (node, layers) in upper.iter().enumerate() {
            if layers.len() != usize::from(levels[node]) * upper_stride || usize::from(levels[node]) > MAX_LEVEL {
                return Err(format!("node {node}'s upper layers do not match its level"));
            }
        }
        // Every link must lead to a node that has the layer it is on.
        let layer_lists = base
            .chunks(graph.base_stride)
            .map(|list| (0usize, list))
            .chain(upper.iter().flat_map(|layers| {
                layers
                    .chunks(upper_stride)
                    .enumerate()
                    .map(|(index, list)| (index + 1, list))
            }));
        for (layer, list) in layer_lists {
            let count = list[0] as usize;
            let out_of_bounds = count >= list.len()
                || list[1..=count]
                    .iter()
                    .any(|&neighbour| neighbour as usize >= len || usize::from(levels[neighbour as usize]) < layer);
            if out_of_bounds {
                return Err("a link list of the graph is out of bounds".into());
            }
        }
        if entry != NO_ENTRY {
            let (node, level) = (entry as u32 as usize, (entry >> 32) as usize);
            if node >= len || level != usize::from(levels[node]) {
                return Err("the graph's entry point is not one of its nodes".into());
            }
        }
        graph.base = base.into_iter().map(AtomicU32::new).collect();
        graph.upper = upper
            .into_iter()
            .map(|layers| layers.into_iter().map(AtomicU32::new).collect())
            .collect();
        graph.locks = (0..len).map(|_| Mutex::new(())).collect();
        graph.levels = levels;
        graph.entry = AtomicU64::new(entry);
        Ok(graph)
    }

    /// The layer a node gets: geometric with ratio 1/m, drawn from a hash of its number so a rebuild of the
    /// same nodes gives the same graph.
    fn level_for(&self, node: u32) -> usize {
        let mut x = u64::from(node).wrapping_add(0x9E37_79B9_7F4A_7C15);
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= x >> 31;
        let uniform = ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let level = (-uniform.ln() / (self.params.m as f64).ln()).floor();
        (level as usize).min(MAX_LEVEL)
    }

    /// Makes room for nodes up to `len` (exclusive), unlinked.
    pub(crate) fn reserve_nodes(&mut self, len: usize) {
        let first = self.levels.len();
        if len <= first {
            return;
        }
        self.base.resize_with(len * self.base_stride, || AtomicU32::new(0));
        for node in first..len {
            let level = self.level_for(node as u32);
            let slots = level * (1 + self.params.m);
            self.upper.push((0..slots).map(|_| AtomicU32::new(0)).collect());
            self.levels.push(level as u8);
            self.locks.push(Mutex::new(()));
        }
    }

    fn slots(&self, node: u32, layer: usize) -> &[AtomicU32] {
        if layer == 0 {
            let start = node as usize * self.base_stride;
            &self.base[start..start + self.base_stride]
        } else {
            let stride = 1 + self.params.m;
            let start = (layer - 1) * stride;
            &self.upper[node as usize][start..start + stride]
        }
    }

    /// Asks the CPU to start loading the link list of `node` on layer 0.
    #[inline]
    fn prefetch_links(&self, node: u32) {
        if let Some(slot) = self.base.get(node as usize * self.base_stride) {
            crate::distance::prefetch(slot);
        }
    }

    /// Which of `nodes` a walk may not reach: those no path on layer 0 leads to from the entry point (all of
    /// them while there is none). A checkpoint or snapshot taken while a batch was being linked holds some of
    /// its nodes without links, or linked among themselves with no link back from the rest yet (an island);
    /// a search over all links from the entry finds both.
    pub(crate) fn unlinked(&self, nodes: impl Iterator<Item = u32>) -> Vec<u32> {
        let len = self.len();
        let mut reached = vec![false; len];
        if let Some((entry, _)) = self.entry() {
            reached[entry as usize] = true;
            let mut stack = vec![entry];
            let mut buffer = Vec::with_capacity(self.base_stride);
            while let Some(node) = stack.pop() {
                self.neighbours(node, 0, &mut buffer);
                for &next in &buffer {
                    if let Some(mark) = reached.get_mut(next as usize)
                        && !*mark
                    {
                        *mark = true;
                        stack.push(next);
                    }
                }
            }
        }
        nodes
            .filter(|&node| (node as usize) < len && !reached[node as usize])
            .collect()
    }

    /// Copies the neighbours of `node` on `layer` into `out`.
    #[inline]
    pub(crate) fn neighbours(&self, node: u32, layer: usize, out: &mut Vec<u32>) {
        out.clear();
        let slots = self.slots(node, layer);
        let count = (slots[0].load(Ordering::Relaxed) as usize).min(slots.len() - 1);
        out.extend(slots[1..=count].iter().map(|slot| slot.load(Ordering::Relaxed)));
    }

    /// Replaces the neighbours of `node` on `layer` (its lock held by the caller).
    fn set_neighbours(&self, node: u32, layer: usize, neighbours: &[u32]) {
        let slots = self.slots(node, layer);
        let count = neighbours.len().min(slots.len() - 1);
        for (slot, neighbour) in slots[1..=count].iter().zip(neighbours) {
            slot.store(*neighbour, Ordering::Relaxed);
        }
        slots[0].store(count as u32, Ordering::Release);
    }

    fn entry(&self) -> Option<(u32, usize)> {
        let packed = self.entry.load(Ordering::Acquire);
        (packed != NO_ENTRY).then_some((packed as u32, (packed >> 32) as usize))
    }

    /// Walks down from the entry point to layer 0 greedily, then searches layer 0 with `ef` candidates,
    /// returning the best `ef` nodes that `accept` lets through, closest first. Nodes `accept` refuses are
    /// still walked through.
    pub fn search(&self, similarity: &impl Scorer, ef: usize, accept: &impl Fn(u32) -> bool) -> Vec<Scored> {
        let Some((entry, top)) = self.entry() else {
            return Vec::new();
        };
        let mut buffer = Vec::with_capacity(self.base_stride);
        let mut current = Scored {
            similarity: similarity.score(entry),
            node: entry,
        };
        for layer in (1..=top).rev() {
            current = self.greedy(similarity, current, layer, &mut buffer);
        }
        let mut found = self.search_layer(similarity, &[current], ef.max(1), 0, accept);
        found.sort_unstable_by(|a, b| b.cmp(a));
        found
    }

    /// Moves to a closer neighbour on `layer` while there is one.
    fn greedy(&self, similarity: &impl Scorer, mut current: Scored, layer: usize, buffer: &mut Vec<u32>) -> Scored {
        let mut scores = Vec::with_capacity(self.base_stride);
        loop {
            let mut moved = false;
            self.neighbours(current.node, layer, buffer);
            scores.clear();
            similarity.score_many(buffer, &mut scores);
            for (&neighbour, &score) in buffer.iter().zip(&scores) {
                if score > current.similarity {
                    current = Scored {
                        similarity: score,
                        node: neighbour,
                    };
                    moved = true;
                }
            }
            if !moved {
                return current;
            }
        }
    }

    /// The best-first search of one layer: up to `ef` accepted nodes (unordered).
    pub(crate) fn search_layer(
        &self,
        similarity: &impl Scorer,
        entries: &[Scored],
        ef: usize,
        layer: usize,
        accept: &impl Fn(u32) -> bool,
    ) -> Vec<Scored> {
        let mut visited = self.visited.take(self.len());
        let mut candidates = BinaryHeap::with_capacity(ef * 2);
        let mut results: BinaryHeap<std::cmp::Reverse<Scored>> = BinaryHeap::with_capacity(ef + 1);
        for entry in entries {
            if visited.insert(entry.node) {
                candidates.push(*entry);
                if accept(entry.node) {
                    results.push(std::cmp::Reverse(*entry));
                    if results.len() > ef {
                        results.pop();
                    }
                }
            }
        }
        let mut buffer = Vec::with_capacity(self.base_stride);
        let mut scores = Vec::with_capacity(self.base_stride);
        while let Some(candidate) = candidates.pop() {
            if results.len() >= ef
                && let Some(worst) = results.peek()
                && candidate.similarity < worst.0.similarity
            {
                break;
            }
            self.neighbours(candidate.node, layer, &mut buffer);
            // The next candidate's links load while this one's neighbours are scored.
            if layer == 0
                && let Some(next) = candidates.peek()
            {
                self.prefetch_links(next.node);
            }
            // Score the unseen neighbours in one pass before touching the heaps, so the loads of their
            // vectors overlap instead of each waiting behind heap work.
            buffer.retain(|&neighbour| visited.insert(neighbour));
            scores.clear();
            similarity.score_many(&buffer, &mut scores);
            for (&neighbour, &similarity) in buffer.iter().zip(&scores) {
                let score = Scored {
                    similarity,
                    node: neighbour,
                };
                let worth = results.len() < ef
                    || results
                        .peek()
                        .is_some_and(|worst| score.similarity > worst.0.similarity);
                if worth {
                    candidates.push(score);
                    if accept(neighbour) {
                        results.push(std::cmp::Reverse(score));
                        if results.len() > ef {
                            results.pop();
                        }
                    }
                }
            }
        }
        self.visited.give(visited);
        results.into_iter().map(|reverse| reverse.0).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distance::Distance;
    use crate::vectors::FloatVectors;

    fn vectors(count: u32) -> FloatVectors {
        let mut vectors = FloatVectors::new(4, Distance::Euclid);
        for node in 0..count {
            let x = node as f32;
            vectors.push(&[x.sin(), x.cos(), (x * 0.37).sin(), (x * 1.3).cos()]);
        }
        vectors
    }

    /// `count` vectors and their graph, built on one thread (so always the same graph).
    fn built(count: u32) -> (FloatVectors, Graph) {
        let space = vectors(count);
        let mut graph = Graph::new(HnswParams {
            m: 4,
            ef_construction: 32,
        });
        let all: Vec<u32> = (0..count).collect();
        graph.insert_nodes(&all, &space, 1);
        (space, graph)
    }

    #[test]
    fn an_island_of_nodes_linked_only_to_each_other_is_unlinked() {
        let (space, graph) = built(200);
        let entry = graph.entry().map(|(node, _)| node);
        let island: Vec<u32> = (0..200).filter(|&node| Some(node) != entry).take(2).collect();
        // Nothing outside leads in; the two lead to each other (and out), as a batch a snapshot caught
        // half linked.
        for node in 0..200 {
            let mut links = Vec::new();
            graph.neighbours(node, 0, &mut links);
            if !island.contains(&node) {
                links.retain(|other| !island.contains(other));
                graph.set_neighbours(node, 0, &links);
            }
        }
        for (&from, &to) in island.iter().zip(island.iter().rev()) {
            let mut links = Vec::new();
            graph.neighbours(from, 0, &mut links);
            links.retain(|&other| other != to);
            links.insert(0, to);
            links.truncate(8);
            graph.set_neighbours(from, 0, &links);
        }
        assert_eq!(graph.unlinked(0..200), island);
        graph.link_nodes(&island, &space, 1);
        assert!(graph.unlinked(0..200).is_empty());
    }

    #[test]
    fn a_node_nothing_leads_to_is_unlinked_and_linking_it_again_makes_it_reachable() {
        let (space, graph) = built(200);
        let entry = graph.entry().map(|(node, _)| node);
        let orphan = (0..200).find(|&node| Some(node) != entry).unwrap();
        assert!(graph.unlinked(0..200).is_empty());
        // Its own links stay; every link back to it goes (as when a snapshot caught it half linked).
        for node in 0..200 {
            let mut links = Vec::new();
            graph.neighbours(node, 0, &mut links);
            if links.contains(&orphan) {
                links.retain(|&other| other != orphan);
                graph.set_neighbours(node, 0, &links);
            }
        }
        assert_eq!(graph.unlinked(0..200), vec![orphan]);
        graph.link_nodes(&[orphan], &space, 1);
        assert!(graph.unlinked(0..200).is_empty());
        let query = space.get(orphan).to_vec();
        let found = graph.search(&|node| space.similarity_to(&query, node), 16, &|_| true);
        assert_eq!(found[0].node, orphan);
    }
}
