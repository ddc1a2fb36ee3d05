//! Distance functions and their kernels.
//!
//! The kernels run through `pulp`, which finds the CPU's vector instructions once (AVX2 and FMA where there
//! are, the baseline otherwise) and calls code compiled for them, safely; each sums four registers of lanes
//! at a time, the tail past the last whole register on its own. Inside the index every distance
//! is a *similarity* (higher is closer) so one search loop serves them all: dot products as they are, Euclidean
//! distances negated and squared (no square root in the walk), Manhattan negated. [`Distance::score`] turns a
//! similarity back into the score Qdrant reports.

use serde::{Deserialize, Serialize};

/// How closeness between two vectors is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Distance {
    /// Cosine similarity; vectors are normalised to unit length when stored, so it is their dot product.
    Cosine,
    /// Dot product.
    Dot,
    /// Euclidean distance (lower is closer).
    Euclid,
    /// Manhattan (L1) distance (lower is closer).
    Manhattan,
}

/// AVX2 with FMA when the CPU has it, found once. The kernels run compiled for it through `pulp`'s safe
/// dispatch, else on the baseline. Not AVX-512 (which the embeddings' matrix kernels use): the benchmark's
/// figures were measured on AVX2, and a first run with AVX-512 was slower (12,500 queries a second against
/// 15,400 at 100,000 × 384, on a machine not quiet enough to be sure); a 384-dimensional dot product is only
/// six AVX-512 steps.
#[cfg(target_arch = "x86_64")]
static AVX2: std::sync::LazyLock<Option<pulp::x86::V3>> = std::sync::LazyLock::new(pulp::x86::V3::try_new);

/// Runs a kernel on the best instructions found (see [`AVX2`]).
#[inline(always)]
pub(crate) fn dispatch<Op: pulp::WithSimd>(op: Op) -> Op::Output {
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = *AVX2 {
        return pulp::Simd::vectorize(simd, op);
    }
    pulp::Simd::vectorize(pulp::Scalar::new(), op)
}

impl Distance {
    /// The similarity of two vectors (higher is closer).
    #[inline]
    pub fn similarity(self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Distance::Cosine | Distance::Dot => dot(a, b),
            Distance::Euclid => -l2_squared(a, b),
            Distance::Manhattan => -l1(a, b),
        }
    }

    /// The score reported to callers for a similarity: the similarity itself for cosine and dot, the distance
    /// for Euclid and Manhattan.
    pub fn score(self, similarity: f32) -> f32 {
        match self {
            Distance::Cosine | Distance::Dot => similarity,
            Distance::Euclid => (-similarity).max(0.0).sqrt(),
            Distance::Manhattan => -similarity,
        }
    }

    /// The similarity for a score given by a caller (a score threshold).
    pub fn similarity_of_score(self, score: f32) -> f32 {
        match self {
            Distance::Cosine | Distance::Dot => score,
            // No distance is negative: a negative threshold lets nothing through.
            Distance::Euclid if score < 0.0 => f32::INFINITY,
            Distance::Euclid => -(score * score),
            Distance::Manhattan => -score,
        }
    }

    /// Whether a higher score is better (cosine, dot) or a lower one (distances).
    pub fn higher_is_better(self) -> bool {
        matches!(self, Distance::Cosine | Distance::Dot)
    }

    /// Prepares a vector for storage or search: unit length for cosine (a zero vector stays zero).
    pub fn prepare(self, vector: &mut [f32]) {
        if self == Distance::Cosine {
            let norm = dot(vector, vector).sqrt();
            if norm > 0.0 {
                let inverse = 1.0 / norm;
                vector.iter_mut().for_each(|value| *value *= inverse);
            }
        }
    }
}

/// Folds `term` of each pair of components into `N` independent sums (a shape the compiler turns into
/// vector instructions), answering the sums and the tail past the last whole block summed on its own.
#[inline(always)]
pub(crate) fn fold_lanes<A: Copy, T, const N: usize>(a: &[A], b: &[A], term: impl Fn(A, A) -> T) -> ([T; N], T)
where
    T: Copy + Default + std::ops::AddAssign + std::iter::Sum,
{
    debug_assert_eq!(a.len(), b.len());
    let mut lanes = [T::default(); N];
    let (a_chunks, b_chunks) = (a.chunks_exact(N), b.chunks_exact(N));
    let tail: T = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(x, y)| term(*x, *y))
        .sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for lane in 0..N {
            lanes[lane] += term(x[lane], y[lane]);
        }
    }
    (lanes, tail)
}

/// Which sum a kernel computes.
#[derive(Clone, Copy)]
enum Sum {
    Dot,
    SquaredDifference,
    AbsoluteDifference,
}

/// A kernel run through `pulp`: `with_simd` is inlined into a function compiled for the CPU's vector
/// instructions (AVX2 and FMA, or the baseline).
struct Kernel<'a> {
    a: &'a [f32],
    b: &'a [f32],
    sum: Sum,
}

impl pulp::WithSimd for Kernel<'_> {
    type Output = f32;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) -> f32 {
        sum_with(simd, self.a, self.b, self.sum)
    }
}

/// One sum over two vectors, four registers of lanes at a time.
#[inline(always)]
fn sum_with<S: pulp::Simd>(simd: S, a: &[f32], b: &[f32], sum: Sum) -> f32 {
    let (a_head, a_tail) = S::as_simd_f32s(a);
    let (b_head, b_tail) = S::as_simd_f32s(b);
    let step = |x: S::f32s, y: S::f32s, total: S::f32s| match sum {
        Sum::Dot => simd.mul_add_f32s(x, y, total),
        Sum::SquaredDifference => {
            let difference = simd.sub_f32s(x, y);
            simd.mul_add_f32s(difference, difference, total)
        }
        Sum::AbsoluteDifference => simd.add_f32s(simd.abs_f32s(simd.sub_f32s(x, y)), total),
    };
    let zero = simd.splat_f32s(0.0);
    let mut totals = [zero; 4];
    let (a_blocks, b_blocks) = (a_head.chunks_exact(4), b_head.chunks_exact(4));
    let (a_rest, b_rest) = (a_blocks.remainder(), b_blocks.remainder());
    for (x, y) in a_blocks.zip(b_blocks) {
        for register in 0..4 {
            totals[register] = step(x[register], y[register], totals[register]);
        }
    }
    for (x, y) in a_rest.iter().zip(b_rest) {
        totals[0] = step(*x, *y, totals[0]);
    }
    let total = simd.add_f32s(simd.add_f32s(totals[0], totals[1]), simd.add_f32s(totals[2], totals[3]));
    let tail: f32 = a_tail
        .iter()
        .zip(b_tail)
        .map(|(x, y)| match sum {
            Sum::Dot => x * y,
            Sum::SquaredDifference => (x - y) * (x - y),
            Sum::AbsoluteDifference => (x - y).abs(),
        })
        .sum();
    simd.reduce_sum_f32s(total) + tail
}

/// Asks the CPU to start loading the cache line at `address` (a hint: nothing is read or checked).
#[inline(always)]
pub(crate) fn prefetch<T>(address: &T) {
    // pulp's token for SSE (part of every x86-64) offers the instruction safely.
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = *AVX2 {
        simd.sse
            ._mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>((address as *const T).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}

/// Bytes in a cache line.
pub(crate) const CACHE_LINE: usize = 64;

/// Cache lines of each float row asked for ahead of scoring.
const PREFETCH_LINES: usize = 4;

/// Asks the CPU to start loading all of `values` (see [`prefetch`]).
#[inline(always)]
pub(crate) fn prefetch_all<T>(values: &[T]) {
    let stride = (CACHE_LINE / std::mem::size_of::<T>().max(1)).max(1);
    values.iter().step_by(stride).for_each(prefetch);
}

/// The similarities of one query to many rows of a flat array, in one dispatch, every row's first cache
/// lines asked for before the first is summed.
struct ManyKernel<'a> {
    query: &'a [f32],
    data: &'a [f32],
    nodes: &'a [u32],
    distance: Distance,
    out: &'a mut Vec<f32>,
}

impl pulp::WithSimd for ManyKernel<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        let dim = self.query.len();
        let row = |node: u32| &self.data[node as usize * dim..(node as usize + 1) * dim];
        // The first lines of every row at once (all 24 lines of a 384-dimensional row for each of 32 rows
        // would stall on the CPU's few line-fill buffers; measured, four lines a row was best).
        for &node in self.nodes {
            prefetch_all(&row(node)[..(PREFETCH_LINES * CACHE_LINE / 4).min(dim)]);
        }
        for &node in self.nodes {
            let similarity = match self.distance {
                Distance::Cosine | Distance::Dot => sum_with(simd, self.query, row(node), Sum::Dot),
                Distance::Euclid => -sum_with(simd, self.query, row(node), Sum::SquaredDifference),
                Distance::Manhattan => -sum_with(simd, self.query, row(node), Sum::AbsoluteDifference),
            };
            self.out.push(similarity);
        }
    }
}

/// Appends to `out` the similarity of `query` to each of `nodes`, rows of `dim = query.len()` components in
/// `data`.
pub(crate) fn similarities(distance: Distance, query: &[f32], data: &[f32], nodes: &[u32], out: &mut Vec<f32>) {
    out.reserve(nodes.len());
    dispatch(ManyKernel {
        query,
        data,
        nodes,
        distance,
        out,
    });
}

#[inline(always)]
fn fold(a: &[f32], b: &[f32], sum: Sum) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    dispatch(Kernel { a, b, sum })
}

/// The dot product of two vectors of the same length.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    fold(a, b, Sum::Dot)
}

/// The squared Euclidean distance of two vectors of the same length.
#[inline]
pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    fold(a, b, Sum::SquaredDifference)
}

/// The Manhattan distance of two vectors of the same length.
#[inline]
pub fn l1(a: &[f32], b: &[f32]) -> f32 {
    fold(a, b, Sum::AbsoluteDifference)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive(distance: Distance, a: &[f32], b: &[f32]) -> f64 {
        let pairs = a.iter().zip(b).map(|(x, y)| (f64::from(*x), f64::from(*y)));
        match distance {
            Distance::Cosine | Distance::Dot => pairs.map(|(x, y)| x * y).sum(),
            Distance::Euclid => -pairs.map(|(x, y)| (x - y) * (x - y)).sum::<f64>(),
            Distance::Manhattan => -pairs.map(|(x, y)| (x - y).abs()).sum::<f64>(),
        }
    }

    proptest! {
        #[test]
        fn kernels_agree_with_the_definitions(
            pairs in proptest::collection::vec((-10f32..10.0, -10f32..10.0), 0..100)
        ) {
            let (a, b): (Vec<f32>, Vec<f32>) = pairs.into_iter().unzip();
            for distance in [Distance::Dot, Distance::Euclid, Distance::Manhattan] {
                let expected = naive(distance, &a, &b);
                let got = f64::from(distance.similarity(&a, &b));
                prop_assert!((got - expected).abs() <= 1e-3 * (1.0 + expected.abs()), "{distance:?}: {got} vs {expected}");
            }
        }
    }

    proptest! {
        #[test]
        fn many_rows_score_as_one_row_at_a_time(
            rows in proptest::collection::vec(proptest::collection::vec(-10f32..10.0, 13), 1..20),
            picks in proptest::collection::vec(0usize..100, 0..30),
        ) {
            let data: Vec<f32> = rows.concat();
            let nodes: Vec<u32> = picks.iter().map(|pick| (pick % rows.len()) as u32).collect();
            for distance in [Distance::Dot, Distance::Euclid, Distance::Manhattan] {
                let mut out = vec![7.0];
                similarities(distance, &rows[0], &data, &nodes, &mut out);
                prop_assert_eq!(out.len(), nodes.len() + 1);
                for (node, got) in nodes.iter().zip(&out[1..]) {
                    prop_assert_eq!(*got, distance.similarity(&rows[0], &rows[*node as usize]));
                }
            }
        }
    }

    #[test]
    fn scores_turn_back_into_similarities() {
        assert_eq!(Distance::Euclid.score(-25.0), 5.0);
        assert_eq!(Distance::Euclid.similarity_of_score(5.0), -25.0);
        assert_eq!(Distance::Manhattan.score(-3.0), 3.0);
        assert_eq!(Distance::Cosine.score(0.5), 0.5);
        let mut vector = [3.0, 4.0];
        Distance::Cosine.prepare(&mut vector);
        assert_eq!(vector, [0.6, 0.8]);
        let mut zero = [0.0, 0.0];
        Distance::Cosine.prepare(&mut zero);
        assert_eq!(zero, [0.0, 0.0]);
    }
}
