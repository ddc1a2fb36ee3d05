//! The comparisons a gate makes between a candidate and the current champion on the same rows: a paired
//! bootstrap confidence interval of a metric's difference, and McNemar's test on which rows each got right.

use super::metrics::Outcomes;

/// Rows and resamples bounded so a gate finishes: resampling cost is rows × resamples.
pub const MAX_BOOTSTRAP_WORK: usize = 200_000_000;

/// McNemar's test of two classifiers on the same rows.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct McNemar {
    /// Rows only the champion got right.
    pub champion_only: u64,
    /// Rows only the candidate got right.
    pub candidate_only: u64,
    /// The statistic: the exact test's smaller count, or the continuity-corrected chi-square.
    pub statistic: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// Whether the exact binomial form was used (fewer than 25 discordant rows).
    pub exact: bool,
}

/// McNemar's test from which rows each model predicted right: exact (binomial) below 25 discordant rows, the
/// chi-square with continuity correction above, as statsmodels' `mcnemar(exact=..., correction=True)`.
pub fn mcnemar(champion: &[bool], candidate: &[bool]) -> McNemar {
    let champion_only = champion.iter().zip(candidate).filter(|(a, b)| **a && !**b).count() as u64;
    let candidate_only = champion.iter().zip(candidate).filter(|(a, b)| !**a && **b).count() as u64;
    let discordant = champion_only + candidate_only;
    if discordant == 0 {
        return McNemar {
            champion_only,
            candidate_only,
            statistic: 0.0,
            p_value: 1.0,
            exact: true,
        };
    }
    if discordant < 25 {
        let smaller = champion_only.min(candidate_only);
        let tail: f64 = (0..=smaller).map(|k| binomial_half(discordant, k)).sum();
        return McNemar {
            champion_only,
            candidate_only,
            statistic: smaller as f64,
            p_value: (2.0 * tail).min(1.0),
            exact: true,
        };
    }
    let difference = (champion_only as f64 - candidate_only as f64).abs() - 1.0;
    let statistic = difference.max(0.0).powi(2) / discordant as f64;
    McNemar {
        champion_only,
        candidate_only,
        statistic,
        p_value: loopline_drift_statistics::special::chi_squared_survival(statistic, 1.0),
        exact: false,
    }
}

/// P(X = k) for X ~ Binomial(n, 1/2), in logs to stay finite.
fn binomial_half(n: u64, k: u64) -> f64 {
    use loopline_drift_statistics::special::ln_gamma;
    let (n, k) = (n as f64, k as f64);
    (ln_gamma(n + 1.0) - ln_gamma(k + 1.0) - ln_gamma(n - k + 1.0) - n * std::f64::consts::LN_2).exp()
}

/// A confidence interval of a difference (candidate minus champion).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct DifferenceInterval {
    /// The difference on all rows.
    pub difference: f64,
    /// Lower bound.
    pub low: f64,
    /// Upper bound.
    pub high: f64,
    /// Confidence level.
    pub confidence: f64,
    /// Resamples drawn.
    pub resamples: usize,
}

/// SplitMix64: a small generator whose sequence never changes, so a gate's evidence can be reproduced.
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from a seed.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (Lemire's multiply-shift, bias below 2^-32 for the sizes used here).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// The percentile bootstrap interval of `metric(candidate) - metric(champion)`, resampling rows with
/// replacement (the same rows for both models in each resample). `None` when the metric is undefined on
/// the rows, or the work would be too large.
pub fn paired_bootstrap(
    champion: &Outcomes,
    candidate: &Outcomes,
    metric: &str,
    resamples: usize,
    confidence: f64,
    seed: u64,
) -> Option<DifferenceInterval> {
    let rows = champion.len();
    if rows == 0 || rows != candidate.len() || rows.saturating_mul(resamples) > MAX_BOOTSTRAP_WORK {
        return None;
    }
    let difference = candidate.metrics().get(metric)? - champion.metrics().get(metric)?;
    let mut random = SplitMix64::new(seed);
    let mut differences = Vec::with_capacity(resamples);
    let mut indices = vec![0usize; rows];
    for _ in 0..resamples {
        for index in &mut indices {
            *index = random.below(rows);
        }
        let (a, b) = (
            champion.select(&indices).metrics(),
            candidate.select(&indices).metrics(),
        );
        if let (Some(a), Some(b)) = (a.get(metric), b.get(metric)) {
            differences.push(b - a);
        }
    }
    if differences.is_empty() {
        return None;
    }
    differences.sort_by(f64::total_cmp);
    let tail = (1.0 - confidence) / 2.0;
    Some(DifferenceInterval {
        difference,
        low: percentile(&differences, tail),
        high: percentile(&differences, 1.0 - tail),
        confidence,
        resamples: differences.len(),
    })
}

/// The `q` quantile of sorted values, interpolating linearly (NumPy's default).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    let position = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (below, above) = (position.floor() as usize, position.ceil() as usize);
    sorted[below] + (sorted[above] - sorted[below]) * (position - below as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes(truth: &str, predicted: &str) -> Outcomes {
        Outcomes::Classes {
            truth: truth.chars().map(String::from).collect(),
            predicted: predicted.chars().map(String::from).collect(),
            scores: None,
            positive: Some("1".into()),
        }
    }

    #[test]
    fn mcnemar_matches_hand_computed_values() {
        // Exact: 2 rows only the champion got, 8 only the candidate: p = 2 * (C(10,0)+C(10,1)+C(10,2)) / 2^10.
        let champion: Vec<bool> = [vec![true; 2], vec![false; 8], vec![true; 5]].concat();
        let candidate: Vec<bool> = [vec![false; 2], vec![true; 8], vec![true; 5]].concat();
        let exact = mcnemar(&champion, &candidate);
        assert_eq!((exact.champion_only, exact.candidate_only, exact.exact), (2, 8, true));
        assert!((exact.p_value - 112.0 / 1024.0).abs() < 1e-12, "{}", exact.p_value);
        // Chi-square: 10 and 30 discordant rows: (|10 - 30| - 1)^2 / 40 = 9.025, p = erfc(sqrt(9.025 / 2)).
        let champion: Vec<bool> = [vec![true; 10], vec![false; 30]].concat();
        let candidate: Vec<bool> = [vec![false; 10], vec![true; 30]].concat();
        let large = mcnemar(&champion, &candidate);
        assert!(!large.exact);
        assert!((large.statistic - 9.025).abs() < 1e-12);
        // scipy.stats.chi2.sf(9.025, 1) = 0.0026631...
        assert!((large.p_value - 0.002_663_1).abs() < 1e-6, "{}", large.p_value);
        assert_eq!(mcnemar(&[true, false], &[true, false]).p_value, 1.0);
    }

    #[test]
    fn the_bootstrap_interval_is_the_percentiles_of_resampled_differences() {
        let truth = "1100110011";
        let champion = classes(truth, "1111110000");
        let candidate = classes(truth, "1100110000");
        let interval = paired_bootstrap(&champion, &candidate, "accuracy", 2_000, 0.9, 7).unwrap();
        assert!((interval.difference - 0.2).abs() < 1e-12);
        // The same computation written out independently: resample, difference, sort, percentile.
        let mut random = SplitMix64::new(7);
        let right = |predicted: &str, i: usize| u8::from(truth.as_bytes()[i] == predicted.as_bytes()[i]) as f64;
        let mut differences: Vec<f64> = (0..2_000)
            .map(|_| {
                let rows: Vec<usize> = (0..10).map(|_| random.below(10)).collect();
                rows.iter()
                    .map(|i| right("1100110000", *i) - right("1111110000", *i))
                    .sum::<f64>()
                    / 10.0
            })
            .collect();
        differences.sort_by(f64::total_cmp);
        assert!((interval.low - percentile(&differences, 0.05)).abs() < 1e-12);
        assert!((interval.high - percentile(&differences, 0.95)).abs() < 1e-12);
        assert!(interval.low > 0.0 - 1e-12 && interval.high <= 0.4 + 1e-12);
        // The same model against itself: no difference, in every resample.
        let same = paired_bootstrap(&champion, &champion, "accuracy", 500, 0.95, 1).unwrap();
        assert_eq!((same.low, same.high), (0.0, 0.0));
        assert_eq!(paired_bootstrap(&champion, &candidate, "rmse", 10, 0.95, 1), None);
    }
}
