//! Distances between two samples, or between two frequency vectors over the same bins or categories.

use crate::error::{StatisticError, check_frequencies, check_sample};

/// Sorted copy of a sample.
fn sorted(sample: &[f64]) -> Vec<f64> {
    let mut values = sample.to_vec();
    values.sort_by(f64::total_cmp);
    values
}

/// Number of values in `sorted_values` that are ≤ `threshold`, from position `start` on (a forward sweep).
fn advance_past(sorted_values: &[f64], mut start: usize, threshold: f64) -> usize {
    while start < sorted_values.len() && sorted_values[start] <= threshold {
        start += 1;
    }
    start
}

/// The first Wasserstein distance between two samples (the area between their empirical CDFs), as
/// `scipy.stats.wasserstein_distance(u, v)` computes it for unweighted samples.
pub fn wasserstein_distance(reference: &[f64], current: &[f64]) -> Result<f64, StatisticError> {
    check_sample(reference, "reference")?;
    check_sample(current, "current")?;
    Ok(wasserstein_distance_of_sorted(&sorted(reference), &sorted(current)))
}

/// [`wasserstein_distance`] for samples already sorted ascending (finite, non-empty: not checked), in one merge
/// pass: the gap between the CDFs just after each distinct value, times the distance to the next value.
pub fn wasserstein_distance_of_sorted(reference: &[f64], current: &[f64]) -> f64 {
    let (reference_count, current_count) = (reference.len() as f64, current.len() as f64);
    let (mut reference_below, mut current_below) = (0usize, 0usize);
    let next_value = |r: usize, c: usize| {
        reference
            .get(r)
            .copied()
            .unwrap_or(f64::INFINITY)
            .min(current.get(c).copied().unwrap_or(f64::INFINITY))
    };
    let mut previous = next_value(0, 0);
    let mut area = 0.0;
    while reference_below < reference.len() || current_below < current.len() {
        let value = next_value(reference_below, current_below);
        let gap = reference_below as f64 / reference_count - current_below as f64 / current_count;
        area += gap.abs() * (value - previous);
        reference_below = advance_past(reference, reference_below, value);
        current_below = advance_past(current, current_below, value);
        previous = value;
    }
    area
}

/// The two-sample Kolmogorov–Smirnov statistic: the largest gap between the empirical CDFs, as the
/// `statistic` of `scipy.stats.ks_2samp` (ties handled by evaluating both CDFs after each distinct value).
pub fn kolmogorov_smirnov_statistic(reference: &[f64], current: &[f64]) -> Result<f64, StatisticError> {
    check_sample(reference, "reference")?;
    check_sample(current, "current")?;
    let reference_sorted = sorted(reference);
    let current_sorted = sorted(current);
    let (reference_count, current_count) = (reference_sorted.len() as f64, current_sorted.len() as f64);
    let (mut reference_below, mut current_below) = (0usize, 0usize);
    let mut largest_gap: f64 = 0.0;
    while reference_below < reference_sorted.len() || current_below < current_sorted.len() {
        let next_reference = reference_sorted.get(reference_below).copied().unwrap_or(f64::INFINITY);
        let next_current = current_sorted.get(current_below).copied().unwrap_or(f64::INFINITY);
        let value = next_reference.min(next_current);
        reference_below = advance_past(&reference_sorted, reference_below, value);
        current_below = advance_past(&current_sorted, current_below, value);
        let gap = (reference_below as f64 / reference_count - current_below as f64 / current_count).abs();
        largest_gap = largest_gap.max(gap);
    }
    Ok(largest_gap)
}

fn normalised(frequencies: &[f64], which: &'static str) -> Result<Vec<f64>, StatisticError> {
    let total = check_frequencies(frequencies, which)?;
    Ok(frequencies.iter().map(|frequency| frequency / total).collect())
}

fn same_bins(reference: &[f64], current: &[f64]) -> Result<(), StatisticError> {
    if reference.len() != current.len() {
        return Err(StatisticError::LengthMismatch {
            reference: reference.len(),
            current: current.len(),
        });
    }
    Ok(())
}

/// `x · ln(x / y)` with the conventions of `scipy.special.rel_entr`: 0 when x = 0, ∞ when y = 0 < x.
fn relative_entropy_term(x: f64, y: f64) -> f64 {
    if x == 0.0 {
        0.0
    } else if y == 0.0 {
        f64::INFINITY
    } else {
        x * (x / y).ln()
    }
}

/// Kullback–Leibler divergence D(reference ‖ current) in nats, after normalising both frequency vectors,
/// as `scipy.stats.entropy(reference, current)`. Infinite when the current data lacks a bin the reference has.
pub fn kullback_leibler_divergence(reference: &[f64], current: &[f64]) -> Result<f64, StatisticError> {
    same_bins(reference, current)?;
    let reference = normalised(reference, "reference")?;
    let current = normalised(current, "current")?;
    Ok(reference
        .iter()
        .zip(&current)
        .map(|(p, q)| relative_entropy_term(*p, *q))
        .sum())
}

/// Jensen–Shannon distance (the square root of the divergence) between two frequency vectors, as
/// `scipy.spatial.distance.jensenshannon(reference, current, base)`; `base` None means natural logarithms.
/// Bounded by `sqrt(ln 2)` in nats and by 1 in base 2.
pub fn jensen_shannon_distance(reference: &[f64], current: &[f64], base: Option<f64>) -> Result<f64, StatisticError> {
    same_bins(reference, current)?;
    if let Some(base) = base
        && !(base > 0.0 && base != 1.0 && base.is_finite())
    {
        return Err(StatisticError::InvalidParameter {
            name: "base",
            value: base,
            reason: "must be positive, finite and not 1",
        });
    }
    let reference = normalised(reference, "reference")?;
    let current = normalised(current, "current")?;
    let mut divergence_sum = 0.0;
    for (p, q) in reference.iter().zip(&current) {
        let midpoint = (p + q) / 2.0;
        divergence_sum += relative_entropy_term(*p, midpoint) + relative_entropy_term(*q, midpoint);
    }
    if let Some(base) = base {
        divergence_sum /= base.ln();
    }
    // Rounding can leave a tiny negative number for identical inputs.
    Ok((divergence_sum / 2.0).max(0.0).sqrt())
}

/// Hellinger distance between two frequency vectors, `sqrt(Σ (√p − √q)²) / √2` after normalising; in [0, 1].
pub fn hellinger_distance(reference: &[f64], current: &[f64]) -> Result<f64, StatisticError> {
    same_bins(reference, current)?;
    let reference = normalised(reference, "reference")?;
    let current = normalised(current, "current")?;
    let squared: f64 = reference
        .iter()
        .zip(&current)
        .map(|(p, q)| (p.sqrt() - q.sqrt()).powi(2))
        .sum();
    Ok(squared.sqrt() / std::f64::consts::SQRT_2)
}

/// Share used in place of an empty bin by [`population_stability_index`], as in Evidently (0.0001).
pub const PSI_EMPTY_BIN_SHARE: f64 = 0.0001;

/// Population Stability Index between frequency vectors over the same bins:
/// `Σ (c − r) · ln(c / r)` over bin shares, where an empty bin counts as [`PSI_EMPTY_BIN_SHARE`] so the
/// index stays finite. Conventional reading: < 0.1 stable, 0.1–0.25 moderate shift, > 0.25 significant.
pub fn population_stability_index(reference: &[f64], current: &[f64]) -> Result<f64, StatisticError> {
    same_bins(reference, current)?;
    let reference = normalised(reference, "reference")?;
    let current = normalised(current, "current")?;
    let floor = |share: f64| if share == 0.0 { PSI_EMPTY_BIN_SHARE } else { share };
    Ok(reference
        .iter()
        .zip(&current)
        .map(|(r, c)| {
            let (r, c) = (floor(*r), floor(*c));
            (c - r) * (c / r).ln()
        })
        .sum())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn close(actual: f64, expected: f64) {
        let tolerance = 1e-12 * expected.abs().max(1.0);
        assert!((actual - expected).abs() <= tolerance, "{actual} != {expected}");
    }

    // Expected values computed with scipy 1.17.1.
    #[test]
    fn matches_scipy_reference_values() {
        close(wasserstein_distance(&[0.0, 1.0, 3.0], &[5.0, 6.0, 8.0]).unwrap(), 5.0);
        close(wasserstein_distance(&[3.4, 3.9, 7.5, 7.8], &[4.5, 1.4]).unwrap(), 2.7);
        close(
            jensen_shannon_distance(&[0.1, 0.4, 0.5], &[0.2, 0.2, 0.6], None).unwrap(),
            0.1666154964735191,
        );
        close(
            jensen_shannon_distance(&[0.1, 0.4, 0.5], &[0.2, 0.2, 0.6], Some(2.0)).unwrap(),
            0.20012560646542346,
        );
        close(
            kullback_leibler_divergence(&[0.1, 0.4, 0.5], &[0.2, 0.2, 0.6]).unwrap(),
            0.11678337577100627,
        );
        close(
            kolmogorov_smirnov_statistic(&[1.0, 2.0, 3.0, 4.0, 5.0], &[3.0, 4.0, 5.0, 6.0, 7.0, 8.0]).unwrap(),
            0.5,
        );
        close(
            kolmogorov_smirnov_statistic(&[1.0, 1.0, 2.0, 2.0, 3.0], &[2.0, 2.0, 3.0, 3.0, 4.0]).unwrap(),
            0.4,
        );
    }

    #[test]
    fn edge_cases_follow_the_documented_conventions() {
        assert_eq!(
            kullback_leibler_divergence(&[1.0, 1.0], &[1.0, 0.0]).unwrap(),
            f64::INFINITY
        );
        assert!(
            population_stability_index(&[10.0, 0.0], &[5.0, 5.0])
                .unwrap()
                .is_finite()
        );
        close(hellinger_distance(&[1.0, 0.0], &[0.0, 1.0]).unwrap(), 1.0);
        assert!(matches!(
            wasserstein_distance(&[], &[1.0]),
            Err(StatisticError::Empty { which: "reference" })
        ));
        assert!(matches!(
            kolmogorov_smirnov_statistic(&[1.0, f64::NAN], &[1.0]),
            Err(StatisticError::NonFinite { position: 1, .. })
        ));
        assert!(matches!(
            hellinger_distance(&[1.0], &[1.0, 2.0]),
            Err(StatisticError::LengthMismatch { .. })
        ));
        assert!(matches!(
            population_stability_index(&[0.0, 0.0], &[1.0, 2.0]),
            Err(StatisticError::ZeroTotal { .. })
        ));
        assert!(matches!(
            jensen_shannon_distance(&[1.0, -1.0], &[1.0, 2.0], None),
            Err(StatisticError::Negative { .. })
        ));
    }

    fn sample() -> impl Strategy<Value = Vec<f64>> {
        prop::collection::vec(-1e6f64..1e6, 1..60)
    }

    fn frequencies() -> impl Strategy<Value = Vec<f64>> {
        prop::collection::vec(0.0f64..1000.0, 6)
            .prop_filter("positive total", |values| values.iter().sum::<f64>() > 0.0)
    }

    proptest! {
        #[test]
        fn sample_distances_are_symmetric_and_zero_on_identity(first in sample(), second in sample()) {
            let forward = wasserstein_distance(&first, &second).unwrap();
            let backward = wasserstein_distance(&second, &first).unwrap();
            prop_assert!((forward - backward).abs() <= 1e-9 * forward.max(1.0));
            prop_assert_eq!(wasserstein_distance(&first, &first).unwrap(), 0.0);
            let statistic = kolmogorov_smirnov_statistic(&first, &second).unwrap();
            prop_assert!((0.0..=1.0).contains(&statistic));
            prop_assert_eq!(statistic, kolmogorov_smirnov_statistic(&second, &first).unwrap());
            prop_assert_eq!(kolmogorov_smirnov_statistic(&first, &first).unwrap(), 0.0);
        }

        #[test]
        fn shifting_one_sample_moves_wasserstein_by_the_shift(values in sample(), shift in -1e3f64..1e3) {
            let shifted: Vec<f64> = values.iter().map(|value| value + shift).collect();
            let distance = wasserstein_distance(&values, &shifted).unwrap();
            prop_assert!((distance - shift.abs()).abs() <= 1e-6 * shift.abs().max(1.0));
        }

        #[test]
        fn frequency_distances_stay_in_their_ranges(first in frequencies(), second in frequencies()) {
            let js = jensen_shannon_distance(&first, &second, Some(2.0)).unwrap();
            prop_assert!((0.0..=1.0 + 1e-12).contains(&js));
            prop_assert!((js - jensen_shannon_distance(&second, &first, Some(2.0)).unwrap()).abs() < 1e-12);
            let hellinger = hellinger_distance(&first, &second).unwrap();
            prop_assert!((0.0..=1.0 + 1e-12).contains(&hellinger));
            prop_assert!(jensen_shannon_distance(&first, &first, None).unwrap() < 1e-7);
            prop_assert!(population_stability_index(&first, &second).unwrap() >= 0.0);
            prop_assert!(kullback_leibler_divergence(&first, &second).unwrap() >= -1e-12);
        }
    }
}
