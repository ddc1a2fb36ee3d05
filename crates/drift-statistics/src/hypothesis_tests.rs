//! Hypothesis tests with p-values: chi-squared on category frequencies and the two-proportion z-test.

use crate::error::{StatisticError, check_frequencies};
use crate::special::{chi_squared_survival, erfc};

/// A test statistic and its p-value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TestResult {
    /// The statistic.
    pub statistic: f64,
    /// Probability of a statistic at least this extreme when nothing changed.
    pub p_value: f64,
    /// Degrees of freedom, where the test has them.
    pub degrees_of_freedom: Option<f64>,
}

/// Pearson's chi-squared goodness-of-fit test of observed counts against expected counts over the same
/// categories, as `scipy.stats.chisquare(observed, expected)`; expected counts are rescaled to the observed
/// total when they differ (scipy requires equal sums; a profile's reference shares are the common case).
/// A category observed now but absent from the reference makes the statistic infinite and the p-value 0.
pub fn chi_squared_goodness_of_fit(observed: &[f64], expected: &[f64]) -> Result<TestResult, StatisticError> {
    if observed.len() != expected.len() {
        return Err(StatisticError::LengthMismatch {
            reference: expected.len(),
            current: observed.len(),
        });
    }
    let observed_total = check_frequencies(observed, "current")?;
    let expected_total = check_frequencies(expected, "reference")?;
    let scale = observed_total / expected_total;
    let mut statistic = 0.0;
    for (observed_count, expected_count) in observed.iter().zip(expected) {
        let expected_count = expected_count * scale;
        if expected_count == 0.0 {
            if *observed_count > 0.0 {
                // A category the reference never saw: infinitely unlikely under it, as scipy reports.
                statistic = f64::INFINITY;
            }
            continue;
        }
        statistic += (observed_count - expected_count).powi(2) / expected_count;
    }
    let degrees_of_freedom = (observed.len() - 1) as f64;
    let p_value = if degrees_of_freedom == 0.0 {
        1.0
    } else if statistic.is_infinite() {
        0.0
    } else {
        chi_squared_survival(statistic, degrees_of_freedom)
    };
    Ok(TestResult {
        statistic,
        p_value,
        degrees_of_freedom: Some(degrees_of_freedom),
    })
}

/// Chi-squared test of independence on the 2 × k table of reference and current counts per category, as
/// `scipy.stats.chi2_contingency` with its defaults (Yates' continuity correction when there is one degree
/// of freedom). Categories absent from both rows are dropped first.
pub fn chi_squared_contingency(reference: &[f64], current: &[f64]) -> Result<TestResult, StatisticError> {
    if reference.len() != current.len() {
        return Err(StatisticError::LengthMismatch {
            reference: reference.len(),
            current: current.len(),
        });
    }
    let reference_total = check_frequencies(reference, "reference")?;
    let current_total = check_frequencies(current, "current")?;
    let columns: Vec<(f64, f64)> = reference
        .iter()
        .zip(current)
        .map(|(r, c)| (*r, *c))
        .filter(|(r, c)| r + c > 0.0)
        .collect();
    let grand_total = reference_total + current_total;
    let degrees_of_freedom = columns.len().saturating_sub(1) as f64;
    if degrees_of_freedom == 0.0 {
        return Ok(TestResult {
            statistic: 0.0,
            p_value: 1.0,
            degrees_of_freedom: Some(0.0),
        });
    }
    let yates = degrees_of_freedom == 1.0;
    let mut statistic = 0.0;
    for (reference_count, current_count) in &columns {
        let column_total = reference_count + current_count;
        for (observed, row_total) in [(reference_count, reference_total), (current_count, current_total)] {
            let expected = row_total * column_total / grand_total;
            let mut difference = (observed - expected).abs();
            if yates {
                difference = (difference - 0.5).max(0.0);
            }
            statistic += difference * difference / expected;
        }
    }
    Ok(TestResult {
        statistic,
        p_value: chi_squared_survival(statistic, degrees_of_freedom),
        degrees_of_freedom: Some(degrees_of_freedom),
    })
}

/// Two-sided two-proportion z-test with the pooled proportion: `successes` out of `trials` in the reference
/// and in the current data.
pub fn two_proportion_z_test(
    reference_successes: u64,
    reference_trials: u64,
    current_successes: u64,
    current_trials: u64,
) -> Result<TestResult, StatisticError> {
    for (which, successes, trials) in [
        ("reference", reference_successes, reference_trials),
        ("current", current_successes, current_trials),
    ] {
        if trials == 0 {
            return Err(StatisticError::Empty { which });
        }
        if successes > trials {
            return Err(StatisticError::InvalidParameter {
                name: "successes",
                value: successes as f64,
                reason: "cannot exceed the number of trials",
            });
        }
    }
    let (reference_trials, current_trials) = (reference_trials as f64, current_trials as f64);
    let pooled = (reference_successes + current_successes) as f64 / (reference_trials + current_trials);
    let variance = pooled * (1.0 - pooled) * (1.0 / reference_trials + 1.0 / current_trials);
    if variance == 0.0 {
        // Every trial on both sides had the same outcome: no evidence of a difference.
        return Ok(TestResult {
            statistic: 0.0,
            p_value: 1.0,
            degrees_of_freedom: None,
        });
    }
    let statistic =
        (reference_successes as f64 / reference_trials - current_successes as f64 / current_trials) / variance.sqrt();
    let p_value = erfc(statistic.abs() / std::f64::consts::SQRT_2);
    Ok(TestResult {
        statistic,
        p_value,
        degrees_of_freedom: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: f64, expected: f64) {
        assert!(
            (actual - expected).abs() <= 1e-11 * expected.abs(),
            "{actual} != {expected}"
        );
    }

    // Expected values computed with scipy 1.17.1.
    #[test]
    fn matches_scipy() {
        let fit = chi_squared_goodness_of_fit(
            &[16.0, 18.0, 16.0, 14.0, 12.0, 12.0],
            &[16.0, 16.0, 16.0, 16.0, 16.0, 8.0],
        )
        .unwrap();
        close(fit.statistic, 3.5);
        close(fit.p_value, 0.6233876277495822);
        let table = chi_squared_contingency(&[10.0, 20.0, 30.0], &[15.0, 25.0, 5.0]).unwrap();
        close(table.statistic, 17.629629629629633);
        close(table.p_value, 0.0001485164524699713);
        assert_eq!(table.degrees_of_freedom, Some(2.0));
        let yates = chi_squared_contingency(&[12.0, 5.0], &[7.0, 9.0]).unwrap();
        close(yates.statistic, 1.455996378814684);
        close(yates.p_value, 0.22756821457580642);
        let proportions = two_proportion_z_test(45, 100, 30, 100).unwrap();
        close(proportions.statistic, 2.1908902300206647);
        close(proportions.p_value, 0.02845973691631055);
    }

    #[test]
    fn degenerate_inputs_have_defined_answers() {
        assert_eq!(chi_squared_contingency(&[5.0, 0.0], &[7.0, 0.0]).unwrap().p_value, 1.0);
        assert_eq!(two_proportion_z_test(10, 10, 20, 20).unwrap().p_value, 1.0);
        assert!(two_proportion_z_test(11, 10, 1, 2).is_err());
        assert!(two_proportion_z_test(0, 0, 1, 2).is_err());
        let unseen = chi_squared_goodness_of_fit(&[1.0, 1.0], &[1.0, 0.0]).unwrap();
        assert_eq!((unseen.statistic, unseen.p_value), (f64::INFINITY, 0.0));
        assert!(chi_squared_goodness_of_fit(&[1.0], &[1.0, 2.0]).is_err());
    }
}
