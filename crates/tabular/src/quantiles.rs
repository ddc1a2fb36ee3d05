//! Quantiles and histograms of sorted values.

use serde::{Deserialize, Serialize};

/// The `p`-quantile of ascending `sorted` values with linear interpolation between order statistics
/// (numpy's default `method="linear"`). `None` for no values.
pub fn quantile(sorted: &[f64], p: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let position = p.clamp(0.0, 1.0) * last as f64;
    let below = position.floor() as usize;
    let fraction = position - below as f64;
    let low = sorted[below];
    if below == last || fraction == 0.0 {
        return Some(low);
    }
    Some(low + fraction * (sorted[below + 1] - low))
}

/// Quantiles at `points` evenly spaced probabilities `0, 1/(points-1), …, 1`.
pub fn quantile_summary(sorted: &[f64], points: usize) -> Vec<f64> {
    if sorted.is_empty() || points < 2 {
        return Vec::new();
    }
    (0..points)
        .map(|i| quantile(sorted, i as f64 / (points - 1) as f64).expect("non-empty"))
        .collect()
}

/// Counts of values in bins. `edges` has one more entry than `counts`; bin `i` holds `edges[i] ≤ x < edges[i+1]`,
/// the last bin also its right edge. Values outside the edges are counted apart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// Bin edges, ascending.
    pub edges: Vec<f64>,
    /// Values per bin.
    pub counts: Vec<u64>,
    /// Values below the first edge.
    #[serde(default)]
    pub below: u64,
    /// Values above the last edge.
    #[serde(default)]
    pub above: u64,
}

impl Histogram {
    /// `bins` equal-width bins spanning `[low, high]` (widened by one unit each side when the range is a point).
    pub fn equal_width_edges(low: f64, high: f64, bins: usize) -> Vec<f64> {
        let bins = bins.max(1);
        let (low, high) = if high > low {
            (low, high)
        } else {
            (low - 0.5, high + 0.5)
        };
        let width = (high - low) / bins as f64;
        let mut edges: Vec<f64> = (0..bins).map(|i| low + width * i as f64).collect();
        edges.push(high);
        edges
    }

    /// Counts ascending `sorted` values into bins with the given edges.
    pub fn of_sorted(sorted: &[f64], edges: Vec<f64>) -> Histogram {
        let bins = edges.len().saturating_sub(1);
        let mut counts = vec![0u64; bins];
        if bins == 0 {
            return Histogram {
                edges,
                counts,
                below: 0,
                above: sorted.len() as u64,
            };
        }
        let below = sorted.partition_point(|v| *v < edges[0]);
        let mut start = below;
        for (bin, count) in counts.iter_mut().enumerate() {
            let end = if bin + 1 == bins {
                sorted.partition_point(|v| *v <= edges[bin + 1])
            } else {
                sorted.partition_point(|v| *v < edges[bin + 1])
            };
            *count = (end - start) as u64;
            start = end;
        }
        Histogram {
            edges,
            counts,
            below: below as u64,
            above: (sorted.len() - start) as u64,
        }
    }
}

/// The share of a distribution at or below `x`, read from its quantile summary (quantiles at evenly spaced
/// probabilities) by linear interpolation: the inverse of the piecewise-linear quantile function.
pub fn cdf_from_summary(summary: &[f64], x: f64) -> f64 {
    let Some(last) = summary.len().checked_sub(1) else {
        return 0.0;
    };
    if x < summary[0] {
        return 0.0;
    }
    if x >= summary[last] {
        return 1.0;
    }
    // The last point whose quantile is ≤ x; the next one is > x.
    let i = summary.partition_point(|q| *q <= x) - 1;
    let (low, high) = (summary[i], summary[i + 1]);
    let fraction = if high > low { (x - low) / (high - low) } else { 0.0 };
    (i as f64 + fraction) / last as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn quantiles_match_numpy_linear() {
        let values = [1.0, 2.0, 4.0, 8.0];
        // numpy.quantile([1, 2, 4, 8], [0, 0.25, 0.5, 0.9, 1]) = [1, 1.75, 3, 6.8, 8]
        let expected = [(0.0, 1.0), (0.25, 1.75), (0.5, 3.0), (0.9, 6.8), (1.0, 8.0)];
        for (p, q) in expected {
            assert!((quantile(&values, p).unwrap() - q).abs() < 1e-12, "p={p}");
        }
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn histogram_counts_edges_and_outliers() {
        let histogram = Histogram::of_sorted(&[-1.0, 0.0, 0.5, 1.0, 2.0, 2.0, 3.0], vec![0.0, 1.0, 2.0]);
        assert_eq!(histogram.counts, vec![2, 3]);
        assert_eq!((histogram.below, histogram.above), (1, 1));
        assert_eq!(Histogram::equal_width_edges(3.0, 3.0, 2), vec![2.5, 3.0, 3.5]);
    }

    proptest! {
        #[test]
        fn histogram_accounts_for_every_value(mut values in prop::collection::vec(-1e6f64..1e6, 0..200), bins in 1usize..30) {
            values.sort_by(f64::total_cmp);
            let edges = Histogram::equal_width_edges(-1e5, 1e5, bins);
            let h = Histogram::of_sorted(&values, edges);
            prop_assert_eq!(h.counts.iter().sum::<u64>() + h.below + h.above, values.len() as u64);
        }

        #[test]
        fn summary_cdf_inverts_the_summary(mut values in prop::collection::vec(-1e3f64..1e3, 2..300)) {
            values.sort_by(f64::total_cmp);
            let summary = quantile_summary(&values, 101);
            prop_assert!(summary.windows(2).all(|w| w[0] <= w[1]));
            for (i, q) in summary.iter().enumerate() {
                let p = cdf_from_summary(&summary, *q);
                // At a repeated quantile the CDF reads the top of the flat run.
                prop_assert!(p + 1e-12 >= i as f64 / 100.0);
            }
        }
    }
}
