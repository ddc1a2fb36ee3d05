//! Aggregated distributions for the report's charts: shares per bin or per label, never rows.

use loopline_tabular::quantiles::{Histogram, cdf_from_summary, quantile};
use serde::Serialize;

use crate::reference::{LabelReference, NumericReference};

/// Labels drawn per bar chart; the rest are pooled.
pub const MAX_BARS: usize = 20;

/// The data behind one chart.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Plot {
    /// Overlaid histograms over shared bins.
    Histogram {
        /// Bin edges (one more than bins).
        edges: Vec<f64>,
        /// Share of the reference in each bin.
        reference: Vec<f64>,
        /// Share of the current data in each bin.
        current: Vec<f64>,
    },
    /// Side-by-side bars per label.
    Bars {
        /// Labels, most frequent first; the last may be the pooled rest.
        labels: Vec<String>,
        /// Share of the reference per label.
        reference: Vec<f64>,
        /// Share of the current data per label.
        current: Vec<f64>,
    },
}

/// Sturges' bin count for the current size, kept between 10 and 40.
fn bin_count(values: usize) -> usize {
    ((values.max(1) as f64).log2().ceil() as usize + 1).clamp(10, 40)
}

fn shares(counts: &[f64]) -> Vec<f64> {
    let total: f64 = counts.iter().sum();
    counts
        .iter()
        .map(|c| if total > 0.0 { c / total } else { 0.0 })
        .collect()
}

/// Share of each tail left out of a histogram's range (and folded into its edge bins), so a few extreme values
/// do not squeeze the bulk of the distribution into one bin.
pub const PLOT_TAIL: f64 = 0.005;

/// Counts in bins with the values beyond the edges folded into the first and last bins.
fn folded_counts(sorted: &[f64], edges: &[f64]) -> Vec<f64> {
    let histogram = Histogram::of_sorted(sorted, edges.to_vec());
    let mut counts: Vec<f64> = histogram.counts.iter().map(|c| *c as f64).collect();
    if let Some(first) = counts.first_mut() {
        *first += histogram.below as f64;
    }
    if let Some(last) = counts.last_mut() {
        *last += histogram.above as f64;
    }
    counts
}

/// Histograms of both sides over shared equal-width bins spanning the central 99% of both (the tails folded
/// into the edge bins).
pub fn numeric_plot(reference: &NumericReference, current: &[f64]) -> Option<Plot> {
    let reference_low = quantile(&reference.quantiles, PLOT_TAIL)?;
    let reference_high = quantile(&reference.quantiles, 1.0 - PLOT_TAIL)?;
    let low = reference_low.min(quantile(current, PLOT_TAIL).unwrap_or(reference_low));
    let high = reference_high.max(quantile(current, 1.0 - PLOT_TAIL).unwrap_or(reference_high));
    let edges = Histogram::equal_width_edges(low, high, bin_count(current.len()));
    let current_counts = folded_counts(current, &edges);
    let reference_counts: Vec<f64> = match &reference.values {
        Some(values) => folded_counts(values, &edges),
        None => {
            let cdf: Vec<f64> = edges
                .iter()
                .map(|e| cdf_from_summary(&reference.quantiles, *e))
                .collect();
            let mut counts: Vec<f64> = cdf.windows(2).map(|w| (w[1] - w[0]).max(0.0)).collect();
            if let Some(first) = counts.first_mut() {
                *first += cdf[0];
            }
            if let Some(last) = counts.last_mut() {
                *last += 1.0 - cdf[cdf.len() - 1];
            }
            counts
        }
    };
    Some(Plot::Histogram {
        edges,
        reference: shares(&reference_counts),
        current: shares(&current_counts),
    })
}

/// Bars for the most frequent labels over both sides, the rest pooled as "(other)".
pub fn label_plot(reference: &LabelReference, current: &[(String, u64)]) -> Plot {
    let reference_total = reference.counts.iter().map(|(_, c)| *c).sum::<u64>() + reference.other;
    let current_total: u64 = current.iter().map(|(_, c)| *c).sum();
    let share = |count: u64, total: u64| if total > 0 { count as f64 / total as f64 } else { 0.0 };
    let mut rows: Vec<(String, f64, f64)> = reference
        .counts
        .iter()
        .map(|(label, count)| {
            let now = current.iter().find(|(l, _)| l == label).map(|(_, c)| *c).unwrap_or(0);
            (label.clone(), share(*count, reference_total), share(now, current_total))
        })
        .collect();
    for (label, count) in current {
        if !reference.counts.iter().any(|(l, _)| l == label) {
            rows.push((label.clone(), 0.0, share(*count, current_total)));
        }
    }
    rows.sort_by(|a, b| b.1.max(b.2).total_cmp(&a.1.max(a.2)).then_with(|| a.0.cmp(&b.0)));
    let mut other = (share(reference.other, reference_total), 0.0);
    if rows.len() > MAX_BARS {
        for (_, r, c) in rows.drain(MAX_BARS - 1..) {
            other.0 += r;
            other.1 += c;
        }
    }
    if other.0 > 0.0 || other.1 > 0.0 {
        rows.push((crate::compare::OTHER_LABEL.to_string(), other.0, other.1));
    }
    Plot::Bars {
        labels: rows.iter().map(|r| r.0.clone()).collect(),
        reference: rows.iter().map(|r| r.1).collect(),
        current: rows.iter().map(|r| r.2).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loopline_tabular::collect::NumericValues;

    #[test]
    fn histograms_share_bins_and_sum_to_one() {
        let reference = NumericReference::of_values(NumericValues {
            values: (0..100).map(f64::from).collect(),
            ..Default::default()
        });
        let current: Vec<f64> = (50..250).map(f64::from).collect();
        let Some(Plot::Histogram {
            edges,
            reference: r,
            current: c,
        }) = numeric_plot(&reference, &current)
        else {
            panic!()
        };
        // The central 99% of both sides: from the reference's 0.5th percentile to the current's 99.5th.
        assert!(
            (edges[0] - 0.495).abs() < 1e-9 && (*edges.last().unwrap() - 248.005).abs() < 1e-9,
            "{edges:?}"
        );
        assert!((r.iter().sum::<f64>() - 1.0).abs() < 1e-12 && (c.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(*r.last().unwrap(), 0.0, "the reference never reached the top bin");
    }

    #[test]
    fn bars_pool_the_rarest_labels() {
        let reference = LabelReference {
            counts: (0..30).map(|i| (format!("l{i}"), 100 - i)).collect(),
            other: 0,
        };
        let current = vec![("new".to_string(), 500)];
        let Plot::Bars {
            labels,
            reference: r,
            current: c,
        } = label_plot(&reference, &current)
        else {
            panic!()
        };
        assert_eq!(labels.len(), MAX_BARS);
        assert_eq!(labels[0], "new");
        assert_eq!(labels.last().unwrap(), "(other)");
        assert!((r.iter().sum::<f64>() - 1.0).abs() < 1e-12 && (c.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }
}
