//! Scalar int8 quantisation: each component stored as one byte on a grid spanning the data's range (its
//! 0.5% and 99.5% quantiles, so a few outliers do not waste the grid), a quarter of float32's memory. The
//! graph walk scores on the bytes; the best candidates are then rescored on the original vectors.
//!
//! With `x = low + step * q`, a dot product expands to
//! `d * low^2 + low * step * (sum(qx) + sum(qy)) + step^2 * sum(qx * qy)`: the first two terms are kept per
//! vector (its *correction*), so scoring two vectors is one integer dot product and two additions. Euclidean
//! and Manhattan distances need only the byte differences.
//!
//! A new grid is put through zero: `low` is a whole number `z` of steps below it, so `x = step * (q - z)`
//! and `sum(x * y) = step^2 * (sum(qx * w) - z * sum(w))` with `w = qy - z`, the query's codes shifted once
//! per query. A walk then reads no correction: one cache line less for each of the thousands of vectors it
//! scores, most of them far apart in memory (grids stored before this have their corrections used as before).

use crate::distance::Distance;
use crate::flat::Flat;

/// Values sampled to place the grid.
const SAMPLE: usize = 200_000;
const LANES: usize = 32;

/// Quantised vectors, numbered like the float vectors they were made from.
#[derive(Debug, Clone)]
pub struct Int8Vectors {
    dim: usize,
    distance: Distance,
    low: f32,
    step: f32,
    codes: Flat<u8>,
    corrections: Vec<f32>,
    /// The code of zero when the grid passes through it (see the module's notes).
    zero: Option<i16>,
}

/// A query on the same grid.
#[derive(Debug, Clone)]
pub struct Int8Query {
    codes: Vec<u8>,
    correction: f32,
    /// On a grid through zero: the codes less the code of zero, and the similarity's part that depends on the
    /// query alone (`-step^2 * z * sum(w)`).
    centred: Option<(Vec<i16>, f32)>,
}

/// The most a code of zero may lie outside the grid's 256 codes and still be used: shifted query codes stay
/// within 510, so each product of a code and a shifted code fits an `i16` pair sum and 32 lanes of `i32` hold
/// the sums of 65,536 dimensions.
const ZERO_REACH: i32 = 255;

/// The most dimensions scored on a grid through zero: every product is at most 255 x 510 in size, so the
/// sum of this many fits an `i32` (more are scored with their corrections).
const CENTRED_MAX_DIM: usize = 16_384;
/// Rows of codes asked for ahead of the row being summed. Asking for all of a node's unseen neighbours at
/// once (up to 32 rows of six lines at 384 dimensions) runs out of the CPU's outstanding-miss buffers, and
/// the later requests wait; a window of whole rows keeps them busy without that. Measured on 1,000,000 x
/// 384 int8 walks (one thread, docs/vectors.md "The graph"): 2 rows +0-5%, 4 rows +5-15%, 6-8 rows +10-20%
/// over all at once, 12 rows less.
const ROWS_AHEAD: usize = 8;

/// The code of zero on a grid, when it is a whole number of steps from `low` (within rounding) and near.
fn zero_code(low: f32, step: f32) -> Option<i16> {
    let steps = -low / step;
    let zero = steps.round();
    (within_reach(zero) && (steps - zero).abs() <= 1e-3).then_some(zero as i16)
}

/// Whether a code of zero is near enough to the grid to be used (see [`ZERO_REACH`]).
fn within_reach(zero: f32) -> bool {
    (-ZERO_REACH as f32..=(255 + ZERO_REACH) as f32).contains(&zero)
}

impl Int8Vectors {
    /// A grid fitted to `vectors` (already prepared for `distance`), with no vectors stored yet. When they hold
    /// more than [`SAMPLE`] values, whole vectors evenly spread over them are read, not the first ones (a
    /// collection whose early vectors differ from its later ones got a grid that fitted only the early ones).
    pub fn fit<'a>(dim: usize, distance: Distance, vectors: impl Iterator<Item = &'a [f32]>) -> Self {
        let rows: Vec<&[f32]> = vectors.collect();
        let wanted = (SAMPLE / dim.max(1)).max(1);
        let every = rows.len().div_ceil(wanted).max(1);
        let mut sample: Vec<f32> = Vec::new();
        for vector in rows.iter().step_by(every) {
            sample.extend(vector.iter().copied().filter(|value| value.is_finite()));
        }
        let (low, high) = if sample.is_empty() {
            (-1.0, 1.0)
        } else {
            sample.sort_unstable_by(f32::total_cmp);
            let at = |fraction: f64| sample[((sample.len() - 1) as f64 * fraction).round() as usize];
            (at(0.005), at(0.995))
        };
        let step = if high > low { (high - low) / 255.0 } else { 1.0 / 255.0 };
        // Through zero when zero is near the range: moved by less than half a step.
        let zero = (-low / step).round();
        let low = if within_reach(zero) { -zero * step } else { low };
        Int8Vectors {
            dim,
            distance,
            low,
            step,
            codes: Flat::new(),
            corrections: Vec::new(),
            zero: zero_code(low, step),
        }
    }

    fn encode_into(&self, vector: &[f32], codes: &mut Vec<u8>) -> f32 {
        let mut total = 0u64;
        for value in vector {
            let code = ((value - self.low) / self.step).round().clamp(0.0, 255.0) as u8;
            total += u64::from(code);
            codes.push(code);
        }
        match self.distance {
            Distance::Cosine | Distance::Dot => {
                self.dim as f32 * self.low * self.low / 2.0 + self.low * self.step * total as f32
            }
            Distance::Euclid | Distance::Manhattan => 0.0,
        }
    }

    /// Appends a prepared vector; answers its number.
    pub fn push(&mut self, vector: &[f32]) -> u32 {
        let number = self.corrections.len() as u32;
        let mut codes = Vec::with_capacity(self.dim);
        let correction = self.encode_into(vector, &mut codes);
        self.codes.extend_from_slice(&codes);
        self.corrections.push(correction);
        number
    }

    /// A prepared query put on the grid.
    pub fn query(&self, vector: &[f32]) -> Int8Query {
        let mut codes = Vec::with_capacity(self.dim);
        let correction = self.encode_into(vector, &mut codes);
        self.with_codes(codes, correction)
    }

    /// A query of codes already on the grid.
    fn with_codes(&self, codes: Vec<u8>, correction: f32) -> Int8Query {
        let centred = match (self.zero, self.distance) {
            (Some(zero), Distance::Cosine | Distance::Dot) if self.dim <= CENTRED_MAX_DIM => {
                let shifted: Vec<i16> = codes.iter().map(|&code| i16::from(code) - zero).collect();
                let total: i64 = shifted.iter().map(|&value| i64::from(value)).sum();
                Some((
                    shifted,
                    -(self.step * self.step) * (f64::from(zero) * total as f64) as f32,
                ))
            }
            _ => None,
        };
        Int8Query {
            codes,
            correction,
            centred,
        }
    }

    #[inline(always)]
    fn codes_of(&self, node: u32) -> &[u8] {
        let start = node as usize * self.dim;
        &self.codes[start..start + self.dim]
    }

    /// The approximate similarity of a query to vector `node`.
    #[inline]
    pub fn similarity(&self, query: &Int8Query, node: u32) -> f32 {
        let mut out = Vec::with_capacity(1);
        self.similarities(query, &[node], &mut out);
        out[0]
    }

    /// Appends the approximate similarity of a query to each of `nodes` to `out`, in order, in one dispatch
    /// to the CPU's vector instructions, every node's codes asked for before the first is summed.
    pub fn similarities(&self, query: &Int8Query, nodes: &[u32], out: &mut Vec<f32>) {
        out.reserve(nodes.len());
        crate::distance::dispatch(CodeKernel {
            vectors: self,
            query,
            nodes,
            out,
        });
    }

    /// A walk's scorer for a query on the grid.
    pub fn scorer<'a>(&'a self, query: &'a Int8Query) -> Int8Scorer<'a> {
        Int8Scorer { vectors: self, query }
    }

    /// The similarity of codes on the grid (with their correction) to node `node`'s.
    #[inline(always)]
    fn between_codes(&self, codes: &[u8], correction: f32, node: u32) -> f32 {
        let stored = self.codes_of(node);
        match self.distance {
            Distance::Cosine | Distance::Dot => {
                correction + self.corrections[node as usize] + self.step * self.step * dot_u8(codes, stored) as f32
            }
            Distance::Euclid => -(self.step * self.step) * l2_u8(codes, stored) as f32,
            Distance::Manhattan => -self.step * l1_u8(codes, stored) as f32,
        }
    }

    /// Stored node `node` as a query.
    fn as_query(&self, node: u32) -> Int8Query {
        self.with_codes(self.codes_of(node).to_vec(), self.corrections[node as usize])
    }

    /// The grid and codes, for storage: low, step, codes, corrections.
    pub(crate) fn to_parts(&self) -> (f32, f32, &[u8], &[f32]) {
        (self.low, self.step, self.codes.as_slice(), &self.corrections)
    }

    /// Quantised vectors from stored parts, checked.
    pub(crate) fn from_parts(
        dim: usize,
        distance: Distance,
        low: f32,
        step: f32,
        codes: Flat<u8>,
        corrections: Vec<f32>,
    ) -> Result<Self, String> {
        if codes.len() != corrections.len() * dim || !low.is_finite() || !step.is_finite() || step <= 0.0 {
            return Err("the int8 vectors do not match their grid".into());
        }
        Ok(Int8Vectors {
            dim,
            distance,
            low,
            step,
            codes,
            corrections,
            zero: zero_code(low, step),
        })
    }

    /// How many vectors are stored.
    pub fn len(&self) -> usize {
        self.corrections.len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.corrections.is_empty()
    }

    /// Bytes the codes and corrections take.
    pub fn memory_bytes(&self) -> usize {
        self.codes.len() + self.corrections.len() * 4
    }
}

/// Folds `term` of each pair of codes into 32 independent integer sums.
#[inline(always)]
fn fold_u8(a: &[u8], b: &[u8], term: impl Fn(u8, u8) -> u32) -> u32 {
    let (lanes, tail) = crate::distance::fold_lanes::<u8, u32, LANES>(a, b, term);
    lanes.iter().sum::<u32>() + tail
}

/// The many-node kernel run through `pulp` (see `distance::ManyKernel`).
struct CodeKernel<'a> {
    vectors: &'a Int8Vectors,
    query: &'a Int8Query,
    nodes: &'a [u32],
    out: &'a mut Vec<f32>,
}

impl pulp::WithSimd for CodeKernel<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        // Whole rows, a window of them ahead of the one being summed (see ROWS_AHEAD).
        let codes = |node: u32| self.vectors.codes_of(node);
        for &node in self.nodes.iter().take(ROWS_AHEAD) {
            crate::distance::prefetch_all(codes(node));
        }
        let ask_ahead = |index: usize| {
            if let Some(&next) = self.nodes.get(index + ROWS_AHEAD) {
                crate::distance::prefetch_all(codes(next));
            }
        };
        match &self.query.centred {
            Some((shifted, constant)) => {
                let scale = self.vectors.step * self.vectors.step;
                for (index, &node) in self.nodes.iter().enumerate() {
                    ask_ahead(index);
                    let dot = dot_u8_i16(codes(node), shifted);
                    self.out.push(constant + scale * dot as f32);
                }
            }
            None => {
                for (index, &node) in self.nodes.iter().enumerate() {
                    ask_ahead(index);
                    self.out.push(
                        self.vectors
                            .between_codes(&self.query.codes, self.query.correction, node),
                    );
                }
            }
        }
    }
}

/// The graph of a vector whose originals are on disk is built on the codes (reading two rows from a file
/// for every comparison would make building a thousand times slower).
impl crate::hnsw::Space for Int8Vectors {
    #[inline]
    fn between(&self, a: u32, b: u32) -> f32 {
        self.between_codes(self.codes_of(a), self.corrections[a as usize], b)
    }

    #[inline]
    fn between_many(&self, a: u32, nodes: &[u32], out: &mut Vec<f32>) {
        self.similarities(&self.as_query(a), nodes, out);
    }
}

/// A query on the grid scored against the stored codes.
pub struct Int8Scorer<'a> {
    vectors: &'a Int8Vectors,
    query: &'a Int8Query,
}

impl crate::hnsw::Scorer for Int8Scorer<'_> {
    #[inline]
    fn score(&self, node: u32) -> f32 {
        self.vectors.similarity(self.query, node)
    }

    #[inline]
    fn score_many(&self, nodes: &[u32], out: &mut Vec<f32>) {
        self.vectors.similarities(self.query, nodes, out);
    }
}

#[inline(always)]
fn dot_u8(a: &[u8], b: &[u8]) -> u32 {
    fold_u8(a, b, |x, y| u32::from(x) * u32::from(y))
}

/// The dot product of codes and shifted query codes, as one plain integer sum: the compiler vectorises it
/// into pairs of products summed per step (`pmaddwd`), which hand-made lanes here defeat
/// ([`CENTRED_MAX_DIM`] bounds the total).
#[inline(always)]
fn dot_u8_i16(codes: &[u8], shifted: &[i16]) -> i32 {
    debug_assert_eq!(codes.len(), shifted.len());
    codes
        .iter()
        .zip(shifted)
        .map(|(&code, &value)| i32::from(code) * i32::from(value))
        .sum()
}

#[inline(always)]
fn l2_u8(a: &[u8], b: &[u8]) -> u32 {
    fold_u8(a, b, |x, y| {
        let difference = u32::from(x.abs_diff(y));
        difference * difference
    })
}

#[inline(always)]
fn l1_u8(a: &[u8], b: &[u8]) -> u32 {
    fold_u8(a, b, |x, y| u32::from(x.abs_diff(y)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hnsw::Space;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn quantised_similarities_stay_close_to_the_real_ones(
            rows in proptest::collection::vec(proptest::collection::vec(-1f32..1.0, 48), 2..20)
        ) {
            for distance in [Distance::Dot, Distance::Euclid, Distance::Manhattan] {
                let mut quantised = Int8Vectors::fit(48, distance, rows.iter().map(Vec::as_slice));
                for row in &rows {
                    quantised.push(row);
                }
                let query = quantised.query(&rows[0]);
                for (node, row) in rows.iter().enumerate() {
                    let exact = distance.similarity(&rows[0], row);
                    let approximate = quantised.similarity(&query, node as u32);
                    // Each component is off by at most half a step (2/255/2 here, more for clamped outliers).
                    let bound = match distance {
                        Distance::Manhattan => 48.0 * 0.05,
                        _ => 48.0 * 0.05 + 0.05 * exact.abs(),
                    };
                    prop_assert!((exact - approximate).abs() <= bound, "{distance:?}: {exact} vs {approximate}");
                }
            }
        }
    }

    /// The similarity the grid stands for: the dot product of the vectors its codes decode to.
    fn decoded_dot(vectors: &Int8Vectors, a: &[u8], b: &[u8]) -> f64 {
        let decode = |code: u8| f64::from(vectors.low) + f64::from(vectors.step) * f64::from(code);
        a.iter().zip(b).map(|(&x, &y)| decode(x) * decode(y)).sum()
    }

    proptest! {
        #[test]
        fn grids_through_zero_and_stored_grids_score_what_their_codes_decode_to(
            rows in proptest::collection::vec(proptest::collection::vec(-3f32..2.0, 70), 2..12),
            shift in -0.3f32..0.3,
        ) {
            let fitted = {
                let mut vectors = Int8Vectors::fit(70, Distance::Dot, rows.iter().map(Vec::as_slice));
                rows.iter().for_each(|row| { vectors.push(row); });
                vectors
            };
            prop_assert!(fitted.zero.is_some());
            // A grid as stored before grids went through zero: the same codes, `low` off the steps.
            let (low, step, codes, corrections) = fitted.to_parts();
            let moved_low = low + step * (0.37 + shift);
            let offset = f64::from(moved_low - low);
            let stored = Int8Vectors::from_parts(70, Distance::Dot, moved_low, step, Flat::from_vec(codes.to_vec()),
                corrections.iter().zip(0..).map(|(&correction, node)| {
                    let total: f64 = codes[node * 70..(node + 1) * 70].iter().map(|&code| f64::from(code)).sum();
                    (f64::from(correction) + 70.0 * (f64::from(moved_low).powi(2) - f64::from(low).powi(2)) / 2.0
                        + offset * f64::from(step) * total) as f32
                }).collect()).unwrap();
            prop_assert!(stored.zero.is_none());
            for vectors in [&fitted, &stored] {
                let query = vectors.query(&rows[0]);
                let mut scores = Vec::new();
                let nodes: Vec<u32> = (0..rows.len() as u32).collect();
                vectors.similarities(&query, &nodes, &mut scores);
                for (node, score) in nodes.iter().zip(&scores) {
                    let expected = decoded_dot(vectors, &query.codes, vectors.codes_of(*node));
                    prop_assert!((f64::from(*score) - expected).abs() <= 1e-3 * (1.0 + expected.abs()),
                        "node {node}: {score} vs {expected}");
                    let pair = vectors.between(0, *node);
                    let expected = decoded_dot(vectors, vectors.codes_of(0), vectors.codes_of(*node));
                    prop_assert!((f64::from(pair) - expected).abs() <= 1e-3 * (1.0 + expected.abs()));
                }
            }
        }
    }

    #[test]
    fn a_grid_fits_vectors_from_the_whole_collection_not_only_the_first() {
        // 256 small vectors first, then 844 a hundred times larger, at 1,024 dimensions: 200,000 values are
        // the first 195 vectors alone.
        let rows: Vec<Vec<f32>> = (0..1_100)
            .map(|i| {
                let scale = if i < 256 { 1.0 } else { 100.0 };
                (0..1_024)
                    .map(|j| scale * ((((i * 31 + j * 17) % 101) as f32) / 50.0 - 1.0))
                    .collect()
            })
            .collect();
        let vectors = Int8Vectors::fit(1_024, Distance::Dot, rows.iter().map(Vec::as_slice));
        let high = vectors.low + 255.0 * vectors.step;
        assert!(vectors.low < -90.0 && high > 90.0, "grid {} .. {high}", vectors.low);
    }

    #[test]
    fn a_grid_far_from_zero_keeps_its_range() {
        let rows: Vec<Vec<f32>> = (0..50)
            .map(|i| (0..16).map(|j| 1000.0 + ((i * j) % 7) as f32).collect())
            .collect();
        let vectors = Int8Vectors::fit(16, Distance::Dot, rows.iter().map(Vec::as_slice));
        assert!(vectors.zero.is_none());
        assert!((vectors.low - 1000.0).abs() < 0.1, "{}", vectors.low);
    }

    #[test]
    fn a_quarter_of_the_memory() {
        let rows: Vec<Vec<f32>> = (0..100)
            .map(|i| (0..384).map(|j| ((i * j) % 17) as f32 / 17.0).collect())
            .collect();
        let mut quantised = Int8Vectors::fit(384, Distance::Dot, rows.iter().map(Vec::as_slice));
        rows.iter().for_each(|row| {
            quantised.push(row);
        });
        assert_eq!(quantised.memory_bytes(), 100 * (384 + 4));
        assert!(quantised.memory_bytes() * 100 <= 100 * 384 * 4 * 30);
    }
}
