//! The drift statistic of one column: the method chosen (Evidently's defaults unless overridden), the value it
//! gives and the verdict.
//!
//! Share-based methods on numeric columns with many distinct values bin them by the reference deciles (ten
//! bins between the reference's 10th, 20th, … 90th percentiles, open at both ends; repeated edges merged).
//! Evidently bins those with Sturges' rule over both samples instead; the defaults (Wasserstein for numbers)
//! never bin. Columns with at most five distinct values over both sides are compared as categories, and so are
//! numeric columns for share-based methods when they have at most twenty distinct reference values.

use loopline_drift_statistics::anderson_darling::anderson_darling_k_sample;
use loopline_drift_statistics::distances::{
    hellinger_distance, jensen_shannon_distance, kullback_leibler_divergence, population_stability_index,
    wasserstein_distance_of_sorted,
};
use loopline_drift_statistics::hypothesis_tests::{chi_squared_goodness_of_fit, two_proportion_z_test};
use loopline_drift_statistics::kolmogorov_smirnov::kolmogorov_smirnov_test;
use loopline_drift_statistics::method_choice::{ColumnKind, DriftMethod, MethodChoice, default_method};
use loopline_tabular::collect::NumericValues;
use loopline_tabular::profile::value_runs;
use loopline_tabular::quantiles::{cdf_from_summary, quantile};

use crate::reference::{LabelReference, NumericReference};

/// Label for the bucket pooling labels a profile did not keep.
pub const OTHER_LABEL: &str = "(other)";

/// The verdict on one column.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    /// The method used.
    pub method: DriftMethod,
    /// Its threshold.
    pub threshold: f64,
    /// The test statistic, or the distance.
    pub statistic: f64,
    /// The p-value, for tests.
    pub p_value: Option<f64>,
    /// The value compared with the threshold (the p-value for tests, the distance otherwise).
    pub score: f64,
    /// Whether the column drifted.
    pub drifted: bool,
}

/// Method and threshold asked for a column, each `None` for the default.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Choice {
    /// Method override.
    pub method: Option<DriftMethod>,
    /// Threshold override.
    pub threshold: Option<f64>,
}

impl Choice {
    fn resolve(self, default: MethodChoice) -> MethodChoice {
        let method = self.method.unwrap_or(default.method);
        let threshold = self.threshold.unwrap_or(if method == default.method {
            default.threshold
        } else {
            method.default_threshold()
        });
        MethodChoice { method, threshold }
    }
}

fn verdict(choice: MethodChoice, statistic: f64, p_value: Option<f64>) -> Outcome {
    let score = p_value.unwrap_or(statistic);
    Outcome {
        method: choice.method,
        threshold: choice.threshold,
        statistic,
        p_value,
        score,
        drifted: choice.method.is_drift(score, choice.threshold),
    }
}

/// Distinct values over both sides, counted exactly up to `limit + 1` (enough to decide `≤ limit`).
fn union_distinct(reference: &NumericReference, current: &[f64], limit: usize) -> usize {
    let current_runs: Vec<f64> = value_runs(current).map(|(v, _)| v).take(limit + 1).collect();
    let reference_values: Vec<f64> = match &reference.value_counts {
        Some(counts) if reference.distinct as usize <= limit => counts.iter().map(|(v, _)| *v).collect(),
        _ => return limit + 1,
    };
    if current_runs.len() > limit {
        return limit + 1;
    }
    let mut all: Vec<f64> = reference_values.into_iter().chain(current_runs).collect();
    all.sort_by(f64::total_cmp);
    all.dedup();
    all.len()
}

fn number_label(value: f64) -> String {
    format!("{value}")
}

/// Counts per value of a numeric reference, as labels (from its values, or a profile's value counts).
fn numeric_reference_labels(reference: &NumericReference) -> Option<LabelReference> {
    let counts: Vec<(f64, u64)> = match (&reference.values, &reference.value_counts) {
        (Some(values), _) => value_runs(values).collect(),
        (None, Some(counts)) => counts.clone(),
        (None, None) => return None,
    };
    Some(LabelReference {
        counts: counts.iter().map(|(v, c)| (number_label(*v), *c)).collect(),
        other: 0,
    })
}

/// Integer columns with at most this many distinct current values are categories (Evidently's
/// `INTEGER_CARDINALITY_LIMIT`, applied to the current data as Evidently does).
pub const INTEGER_CATEGORY_LIMIT: usize = 10;

/// Whether an integer column is read as categories: at most [`INTEGER_CATEGORY_LIMIT`] distinct current values.
pub fn integer_is_categorical(current_sorted: &[f64]) -> bool {
    value_runs(current_sorted).take(INTEGER_CATEGORY_LIMIT + 1).count() <= INTEGER_CATEGORY_LIMIT
}

/// Drift of a numeric column; `as_categories` when the column is to be compared as labels whatever its
/// number of distinct values (integer columns with few current values, as Evidently types them).
pub fn compare_numeric(
    reference: &NumericReference,
    current: &NumericValues,
    as_categories: bool,
    choice: Choice,
) -> Result<Outcome, String> {
    let current_values = &current.values;
    let few = union_distinct(reference, current_values, 5);
    let kind = if few <= 5 || as_categories {
        ColumnKind::Categorical
    } else {
        ColumnKind::Numerical
    };
    let chosen = choice.resolve(default_method(kind, reference.finite as usize, few));
    let method = chosen.method;
    if kind == ColumnKind::Categorical && !method.compares_shares() {
        return Err(format!(
            "method {} needs many distinct numbers, but this column is compared as categories",
            method.name()
        ));
    }
    if method.compares_shares() {
        if kind == ColumnKind::Categorical || reference.value_counts.is_some() {
            let labels = numeric_reference_labels(reference).ok_or_else(|| {
                "the reference profile keeps no value counts for this column (it has more than 20 distinct \
                 values); pass the reference data file instead of its profile"
                    .to_string()
            })?;
            let current_counts: Vec<(String, u64)> =
                value_runs(current_values).map(|(v, c)| (number_label(v), c)).collect();
            return compare_label_counts(&labels, &current_counts, chosen);
        }
        if matches!(method, DriftMethod::ChiSquared | DriftMethod::ProportionZTest) {
            return Err(format!(
                "method {} compares categories, but the column has {} distinct values; use ks, wasserstein, psi, \
                 jensenshannon, kl_div or hellinger",
                method.name(),
                reference.distinct
            ));
        }
        let (reference_counts, current_counts) = decile_bins(reference, current_values);
        return share_method(chosen, &reference_counts, &current_counts);
    }
    match method {
        DriftMethod::KolmogorovSmirnov => {
            let values = reference.values.as_ref().ok_or_else(|| {
                "method ks needs the reference values, which a profile keeps only for columns of at most 1000 \
                 values; pass the reference data file instead of its profile"
                    .to_string()
            })?;
            let test = kolmogorov_smirnov_test(values, current_values).map_err(|e| e.to_string())?;
            Ok(verdict(chosen, test.statistic, Some(test.p_value)))
        }
        DriftMethod::AndersonDarling => {
            let values = reference.values.as_ref().ok_or_else(|| {
                "method anderson needs the reference values, which a profile keeps only for columns of at most \
                 1000 values; pass the reference data file instead of its profile"
                    .to_string()
            })?;
            let test = anderson_darling_k_sample(&[values, current_values]).map_err(|e| e.to_string())?;
            Ok(verdict(chosen, test.statistic, Some(test.p_value)))
        }
        DriftMethod::NormedWasserstein => {
            let distance = match &reference.values {
                Some(values) => wasserstein_distance_of_sorted(values, current_values),
                None => wasserstein_from_quantiles(&reference.quantiles, current_values),
            };
            Ok(verdict(chosen, distance / reference.population_std.max(0.001), None))
        }
        _ => unreachable!("share-based methods handled above"),
    }
}

/// Counts of reference and current values in bins cut at the reference deciles.
fn decile_bins(reference: &NumericReference, current: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let mut edges: Vec<f64> = (1..10)
        .filter_map(|i| match &reference.values {
            Some(values) => quantile(values, i as f64 / 10.0),
            // The summary is itself the quantile function at evenly spaced points: interpolate in it.
            None => quantile(&reference.quantiles, i as f64 / 10.0),
        })
        .collect();
    edges.dedup();
    let counts_below = |edge: f64| -> (f64, f64) {
        let reference_below = match &reference.values {
            Some(values) => values.partition_point(|v| *v < edge) as f64,
            None => cdf_from_summary(&reference.quantiles, edge) * reference.finite as f64,
        };
        (reference_below, current.partition_point(|v| *v < edge) as f64)
    };
    let mut reference_counts = Vec::with_capacity(edges.len() + 1);
    let mut current_counts = Vec::with_capacity(edges.len() + 1);
    let (mut reference_previous, mut current_previous) = (0.0, 0.0);
    for edge in edges {
        let (r, c) = counts_below(edge);
        reference_counts.push((r - reference_previous).max(0.0));
        current_counts.push(c - current_previous);
        (reference_previous, current_previous) = (r, c);
    }
    reference_counts.push((reference.finite as f64 - reference_previous).max(0.0));
    current_counts.push(current.len() as f64 - current_previous);
    (reference_counts, current_counts)
}

/// Wasserstein-1 between a distribution known by its quantile summary (the quantile function taken as linear
/// between the summary points) and a sorted sample: ∫₀¹ |Q_ref(u) − Q_cur(u)| du, integrated exactly piece by
/// piece. With 1001 summary points the error against the exact distance is a small fraction of the distance
/// for smooth distributions (see the tests); it is used only when the reference is a profile of more than
/// 1000 values.
pub fn wasserstein_from_quantiles(summary: &[f64], current: &[f64]) -> f64 {
    let (k, m) = (summary.len().saturating_sub(1), current.len());
    if k == 0 || m == 0 {
        return f64::NAN;
    }
    let reference_at = |segment: usize, u: f64| {
        let low = summary[segment];
        low + (summary[segment + 1] - low) * (u * k as f64 - segment as f64)
    };
    let (mut i, mut j, mut u, mut area) = (0usize, 0usize, 0.0f64, 0.0f64);
    while i < k && j < m {
        // Compare (i+1)/k with (j+1)/m exactly in integers.
        let (reference_end, current_end) = ((i as u128 + 1) * m as u128, (j as u128 + 1) * k as u128);
        let end = if reference_end <= current_end {
            (i + 1) as f64 / k as f64
        } else {
            (j + 1) as f64 / m as f64
        };
        let a = reference_at(i, u) - current[j];
        let b = reference_at(i, end) - current[j];
        let width = end - u;
        area += if a * b >= 0.0 {
            width * (a.abs() + b.abs()) / 2.0
        } else {
            width * (a * a + b * b) / (2.0 * (a.abs() + b.abs()))
        };
        u = end;
        if reference_end <= current_end {
            i += 1;
        }
        if current_end <= reference_end {
            j += 1;
        }
    }
    area
}

/// Drift of a categorical column.
pub fn compare_labels(
    reference: &LabelReference,
    current: &[(String, u64)],
    choice: Choice,
) -> Result<Outcome, String> {
    let mut labels: Vec<&str> = reference.counts.iter().map(|(l, _)| l.as_str()).collect();
    for (label, _) in current {
        if !reference.counts.iter().any(|(l, _)| l == label) {
            labels.push(label);
        }
    }
    let distinct = labels.len();
    let reference_rows: u64 = reference.counts.iter().map(|(_, c)| c).sum::<u64>() + reference.other;
    let chosen = choice.resolve(default_method(
        ColumnKind::Categorical,
        reference_rows as usize,
        distinct,
    ));
    compare_label_counts(reference, current, chosen)
}

fn compare_label_counts(
    reference: &LabelReference,
    current: &[(String, u64)],
    chosen: MethodChoice,
) -> Result<Outcome, String> {
    if matches!(
        chosen.method,
        DriftMethod::KolmogorovSmirnov | DriftMethod::NormedWasserstein | DriftMethod::AndersonDarling
    ) {
        return Err(format!(
            "method {} needs numbers; this column holds labels",
            chosen.method.name()
        ));
    }
    let pooled = reference.other > 0;
    let mut reference_counts: Vec<f64> = reference.counts.iter().map(|(_, c)| *c as f64).collect();
    let mut current_counts = vec![0.0; reference_counts.len()];
    let mut other_current = 0.0;
    for (label, count) in current {
        match reference.counts.iter().position(|(l, _)| l == label) {
            Some(index) => current_counts[index] += *count as f64,
            None if pooled => other_current += *count as f64,
            None => {
                reference_counts.push(0.0);
                current_counts.push(*count as f64);
            }
        }
    }
    if pooled {
        reference_counts.push(reference.other as f64);
        current_counts.push(other_current);
    }
    share_method(chosen, &reference_counts, &current_counts)
}

/// Evidently's fill for empty shares in PSI and KL: a millionth of the smallest non-empty share when that is at
/// most 0.0001, else 0.0001.
fn fill_empty(counts: &[f64]) -> Vec<f64> {
    let total: f64 = counts.iter().sum();
    let shares: Vec<f64> = counts.iter().map(|c| c / total).collect();
    let smallest = shares
        .iter()
        .copied()
        .filter(|s| *s > 0.0)
        .fold(f64::INFINITY, f64::min);
    let fill = if smallest <= 0.0001 { smallest / 1e6 } else { 0.0001 };
    shares.into_iter().map(|s| if s == 0.0 { fill } else { s }).collect()
}

fn share_method(chosen: MethodChoice, reference: &[f64], current: &[f64]) -> Result<Outcome, String> {
    let error = |e: loopline_drift_statistics::StatisticError| e.to_string();
    let distance = |value: Result<f64, loopline_drift_statistics::StatisticError>| {
        Ok(verdict(chosen, value.map_err(error)?, None))
    };
    match chosen.method {
        DriftMethod::ChiSquared => {
            let test = chi_squared_goodness_of_fit(current, reference).map_err(error)?;
            Ok(verdict(chosen, test.statistic, Some(test.p_value)))
        }
        DriftMethod::ProportionZTest => {
            if reference.len() > 2 {
                return Err(format!(
                    "the z-test compares two categories but the column has {}; use chisquare or jensenshannon",
                    reference.len()
                ));
            }
            let (reference_total, current_total) = (reference.iter().sum::<f64>(), current.iter().sum::<f64>());
            let test = two_proportion_z_test(
                reference[0] as u64,
                reference_total as u64,
                current[0] as u64,
                current_total as u64,
            )
            .map_err(error)?;
            Ok(verdict(chosen, test.statistic, Some(test.p_value)))
        }
        DriftMethod::JensenShannon => distance(jensen_shannon_distance(reference, current, None)),
        DriftMethod::Hellinger => distance(hellinger_distance(reference, current)),
        DriftMethod::PopulationStability => {
            distance(population_stability_index(&fill_empty(reference), &fill_empty(current)))
        }
        DriftMethod::KullbackLeibler => distance(kullback_leibler_divergence(
            &fill_empty(reference),
            &fill_empty(current),
        )),
        DriftMethod::KolmogorovSmirnov | DriftMethod::NormedWasserstein | DriftMethod::AndersonDarling => {
            unreachable!("not share-based")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normal_sample(count: usize, shift: f64, seed: u64) -> Vec<f64> {
        // Box–Muller over a small linear congruential generator: deterministic and dependency-free.
        let mut state = seed;
        let mut uniform = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        let mut values: Vec<f64> = (0..count)
            .map(|_| (-2.0 * uniform().ln()).sqrt() * (2.0 * std::f64::consts::PI * uniform()).cos() + shift)
            .collect();
        values.sort_by(f64::total_cmp);
        values
    }

    fn numeric(values: Vec<f64>) -> NumericValues {
        NumericValues {
            values,
            ..Default::default()
        }
    }

    #[test]
    fn profile_wasserstein_is_close_to_the_exact_distance() {
        let reference = normal_sample(200_000, 0.0, 1);
        for shift in [0.0, 0.05, 0.3] {
            let current = normal_sample(50_000, shift, 2);
            let exact = wasserstein_distance_of_sorted(&reference, &current);
            let summary = loopline_tabular::quantiles::quantile_summary(&reference, 1001);
            let approximate = wasserstein_from_quantiles(&summary, &current);
            assert!(
                (approximate - exact).abs() <= 0.02 * exact + 0.002,
                "shift {shift}: {approximate} vs {exact}"
            );
        }
    }

    #[test]
    fn defaults_follow_evidently_by_reference_size() {
        let small = NumericReference::of_values(numeric(normal_sample(500, 0.0, 3)));
        let outcome = compare_numeric(&small, &numeric(normal_sample(400, 1.0, 4)), false, Choice::default()).unwrap();
        assert_eq!(outcome.method, DriftMethod::KolmogorovSmirnov);
        assert!(outcome.drifted && outcome.p_value.unwrap() < 1e-10);

        let large = NumericReference::of_values(numeric(normal_sample(5000, 0.0, 5)));
        let outcome =
            compare_numeric(&large, &numeric(normal_sample(5000, 0.02, 6)), false, Choice::default()).unwrap();
        assert_eq!(
            (outcome.method, outcome.drifted),
            (DriftMethod::NormedWasserstein, false)
        );

        let forced = Choice {
            method: Some(DriftMethod::PopulationStability),
            threshold: None,
        };
        let outcome = compare_numeric(&large, &numeric(normal_sample(5000, 1.0, 7)), false, forced).unwrap();
        assert_eq!(
            (outcome.method, outcome.threshold, outcome.drifted),
            (DriftMethod::PopulationStability, 0.1, true)
        );
    }

    #[test]
    fn anderson_darling_needs_the_reference_values() {
        let values = normal_sample(300, 0.0, 8);
        let reference = NumericReference::of_values(numeric(values.clone()));
        let anderson = Choice {
            method: Some(DriftMethod::AndersonDarling),
            threshold: None,
        };
        let outcome = compare_numeric(&reference, &numeric(normal_sample(300, 1.0, 9)), false, anderson).unwrap();
        assert_eq!(
            (outcome.method, outcome.threshold, outcome.drifted),
            (DriftMethod::AndersonDarling, 0.05, true)
        );
        let summarised = NumericReference {
            values: None,
            ..reference
        };
        let error = compare_numeric(&summarised, &numeric(values), false, anderson).unwrap_err();
        assert!(error.contains("needs the reference values"), "{error}");
    }

    #[test]
    fn few_distinct_numbers_are_compared_as_categories() {
        let reference = NumericReference::of_values(numeric([0.0; 300].iter().chain(&[1.0; 700]).copied().collect()));
        let current = numeric([0.0; 500].iter().chain(&[1.0; 500]).copied().collect());
        let outcome = compare_numeric(&reference, &current, false, Choice::default()).unwrap();
        assert_eq!(outcome.method, DriftMethod::ProportionZTest);
        assert!(outcome.drifted);
    }

    #[test]
    fn labels_new_to_the_reference_count_as_drift_evidence() {
        let reference = LabelReference {
            counts: vec![("a".into(), 60), ("b".into(), 40)],
            other: 0,
        };
        let same = compare_labels(&reference, &[("a".into(), 30), ("b".into(), 20)], Choice::default()).unwrap();
        assert_eq!((same.method, same.drifted), (DriftMethod::ProportionZTest, false));
        let new = compare_labels(&reference, &[("a".into(), 30), ("c".into(), 20)], Choice::default()).unwrap();
        assert_eq!(new.method, DriftMethod::ChiSquared);
        assert_eq!((new.p_value, new.drifted), (Some(0.0), true));
        let wrong = compare_labels(
            &reference,
            &[],
            Choice {
                method: Some(DriftMethod::KolmogorovSmirnov),
                threshold: None,
            },
        );
        assert!(wrong.unwrap_err().contains("needs numbers"));
    }
}
