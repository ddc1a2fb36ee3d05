//! Drift between two sets of embedding vectors: maximum mean discrepancy (MMD) with a Gaussian (RBF)
//! kernel and a permutation p-value, and the Euclidean distance between the mean embeddings.
//!
//! MMD² is the biased (V-statistic) estimate `mean k(x, x') + mean k(y, y') − 2 mean k(x, y)`, which is
//! never negative. The kernel width is the median heuristic: the median Euclidean distance between all
//! pooled vectors (1 when that is 0). The kernel matrix is computed once; each permutation only re-sums it,
//! so cost is O((n + m)² · (dimension + permutations)) — callers sample large sets down first.

use crate::error::StatisticError;

/// Result of the MMD test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MmdResult {
    /// Biased MMD² estimate.
    pub mmd_squared: f64,
    /// Share of permutations (plus the observed split) with an MMD² at least as large.
    pub p_value: f64,
    /// Kernel width used.
    pub bandwidth: f64,
}

fn check_vectors(vectors: &[Vec<f64>], which: &'static str, dimension: Option<usize>) -> Result<usize, StatisticError> {
    let first = vectors.first().ok_or(StatisticError::Empty { which })?;
    let dimension = dimension.unwrap_or(first.len());
    if dimension == 0 {
        return Err(StatisticError::Empty { which });
    }
    for (position, vector) in vectors.iter().enumerate() {
        if vector.len() != dimension {
            return Err(StatisticError::LengthMismatch {
                reference: dimension,
                current: vector.len(),
            });
        }
        if let Some(value) = vector.iter().find(|value| !value.is_finite()) {
            return Err(StatisticError::NonFinite {
                which,
                value: *value,
                position,
            });
        }
    }
    Ok(dimension)
}

fn squared_distance(first: &[f64], second: &[f64]) -> f64 {
    first.iter().zip(second).map(|(a, b)| (a - b) * (a - b)).sum()
}

/// A small deterministic generator (xorshift64*), so a given seed always gives the same p-value.
struct Xorshift(u64);

impl Xorshift {
    fn next_below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % bound as u64) as usize
    }
}

/// MMD² of the split where `is_reference[i]` says which group pooled vector i belongs to.
fn mmd_squared(kernel: &[f64], size: usize, is_reference: &[bool], reference_count: usize) -> f64 {
    let current_count = size - reference_count;
    let (mut within_reference, mut within_current, mut across) = (0.0, 0.0, 0.0);
    for row in 0..size {
        for column in 0..size {
            let value = kernel[row * size + column];
            match (is_reference[row], is_reference[column]) {
                (true, true) => within_reference += value,
                (false, false) => within_current += value,
                _ => across += value,
            }
        }
    }
    let (reference_count, current_count) = (reference_count as f64, current_count as f64);
    (within_reference / (reference_count * reference_count) + within_current / (current_count * current_count)
        - across / (reference_count * current_count))
        .max(0.0)
}

/// The MMD test between reference and current embeddings, with `permutations` random re-splits of the
/// pooled vectors (seeded by `seed`) for the p-value.
pub fn maximum_mean_discrepancy(
    reference: &[Vec<f64>],
    current: &[Vec<f64>],
    permutations: usize,
    seed: u64,
) -> Result<MmdResult, StatisticError> {
    let dimension = check_vectors(reference, "reference", None)?;
    check_vectors(current, "current", Some(dimension))?;
    let pooled: Vec<&Vec<f64>> = reference.iter().chain(current).collect();
    let size = pooled.len();
    let mut squared_distances = vec![0.0; size * size];
    let mut off_diagonal = Vec::with_capacity(size * (size - 1) / 2);
    for row in 0..size {
        for column in (row + 1)..size {
            let distance = squared_distance(pooled[row], pooled[column]);
            squared_distances[row * size + column] = distance;
            squared_distances[column * size + row] = distance;
            off_diagonal.push(distance.sqrt());
        }
    }
    off_diagonal.sort_by(f64::total_cmp);
    let median = match off_diagonal.len() {
        0 => 0.0,
        length if length % 2 == 1 => off_diagonal[length / 2],
        length => (off_diagonal[length / 2 - 1] + off_diagonal[length / 2]) / 2.0,
    };
    let bandwidth = if median > 0.0 { median } else { 1.0 };
    let kernel: Vec<f64> = squared_distances
        .iter()
        .map(|distance| (-distance / (2.0 * bandwidth * bandwidth)).exp())
        .collect();
    let mut is_reference: Vec<bool> = (0..size).map(|index| index < reference.len()).collect();
    let observed = mmd_squared(&kernel, size, &is_reference, reference.len());
    let mut generator = Xorshift(seed.max(1));
    let mut at_least_as_large = 0usize;
    for _ in 0..permutations {
        // Fisher–Yates shuffle of the group labels.
        for index in (1..size).rev() {
            is_reference.swap(index, generator.next_below(index + 1));
        }
        if mmd_squared(&kernel, size, &is_reference, reference.len()) >= observed {
            at_least_as_large += 1;
        }
    }
    let p_value = (1 + at_least_as_large) as f64 / (1 + permutations) as f64;
    Ok(MmdResult {
        mmd_squared: observed,
        p_value,
        bandwidth,
    })
}

/// Euclidean distance between the mean reference embedding and the mean current embedding.
pub fn mean_embedding_distance(reference: &[Vec<f64>], current: &[Vec<f64>]) -> Result<f64, StatisticError> {
    let dimension = check_vectors(reference, "reference", None)?;
    check_vectors(current, "current", Some(dimension))?;
    let mean = |vectors: &[Vec<f64>]| -> Vec<f64> {
        let mut sums = vec![0.0; dimension];
        for vector in vectors {
            for (sum, value) in sums.iter_mut().zip(vector) {
                *sum += value;
            }
        }
        sums.iter().map(|sum| sum / vectors.len() as f64).collect()
    };
    Ok(squared_distance(&mean(reference), &mean(current)).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic points spread in [−0.5, 0.5)^dimension, shifted by `shift` in every coordinate.
    fn cloud(count: usize, dimension: usize, shift: f64, seed: u64) -> Vec<Vec<f64>> {
        let mut generator = Xorshift(seed);
        (0..count)
            .map(|_| {
                (0..dimension)
                    .map(|_| generator.next_below(1_000_000) as f64 / 1e6 - 0.5 + shift)
                    .collect()
            })
            .collect()
    }

    #[test]
    fn same_distribution_is_not_flagged_and_a_shift_is() {
        let reference = cloud(60, 4, 0.0, 11);
        let similar = cloud(60, 4, 0.0, 99);
        let same = maximum_mean_discrepancy(&reference, &similar, 200, 7).unwrap();
        assert!(same.p_value > 0.05, "{same:?}");
        let shifted = cloud(60, 4, 0.5, 99);
        let moved = maximum_mean_discrepancy(&reference, &shifted, 200, 7).unwrap();
        assert!(moved.p_value < 0.01, "{moved:?}");
        assert!(moved.mmd_squared > same.mmd_squared);
        assert_eq!(
            maximum_mean_discrepancy(&reference, &shifted, 200, 7).unwrap(),
            moved,
            "seeded runs repeat"
        );
    }

    #[test]
    fn mean_distance_and_bad_input() {
        let reference = vec![vec![0.0, 0.0], vec![2.0, 0.0]];
        let current = vec![vec![1.0, 3.0], vec![1.0, 5.0]];
        assert!((mean_embedding_distance(&reference, &current).unwrap() - 4.0).abs() < 1e-12);
        assert!(matches!(
            mean_embedding_distance(&reference, &[vec![1.0]]),
            Err(StatisticError::LengthMismatch { .. })
        ));
        assert!(matches!(
            maximum_mean_discrepancy(&[], &current, 10, 1),
            Err(StatisticError::Empty { .. })
        ));
        assert!(matches!(
            maximum_mean_discrepancy(&[vec![f64::NAN, 0.0]], &current, 10, 1),
            Err(StatisticError::NonFinite { .. })
        ));
        let identical = maximum_mean_discrepancy(&reference, &reference, 50, 3).unwrap();
        assert!(identical.mmd_squared < 1e-12, "{identical:?}");
        assert!(identical.p_value > 0.5, "{identical:?}");
    }
}
