//! The two-sample Kolmogorov–Smirnov test with its exact two-sided p-value, as
//! `scipy.stats.ks_2samp(method="exact")` computes it (and as its default `auto` method does whenever the
//! larger sample has at most 10,000 values).
//!
//! The statistic D is turned into an integer band half-width `h = round(D · lcm(n1, n2))`. The p-value is
//! the share of monotone lattice paths from (0, 0) to (n1, n2) that touch or cross the band
//! `|x/n1 − y/n2| ≥ h / lcm`, every path being equally likely under the null hypothesis.

use crate::distances::kolmogorov_smirnov_statistic;
use crate::error::StatisticError;
use crate::hypothesis_tests::TestResult;
use crate::kolmogorov_distribution::asymptotic_two_sample_p_value;

/// Largest sample for which scipy's `auto` method uses the exact distribution.
pub const EXACT_SAMPLE_LIMIT: usize = 10_000;

fn greatest_common_divisor(mut first: u64, mut second: u64) -> u64 {
    while second != 0 {
        (first, second) = (second, first % second);
    }
    first
}

/// Equal sample sizes: the reflection-principle sum over `k = ⌊n/h⌋ … 0` of alternating path counts.
fn equal_sizes_outside_share(size: u64, half_width: u64) -> f64 {
    let size = size as f64;
    let width = half_width as f64;
    let mut share = 0.0;
    let mut k = (size / width).floor();
    while k >= 0.0 {
        let mut product = 1.0;
        for j in 0..half_width {
            let j = j as f64;
            product *= (size - k * width - j) / (size + k * width + j + 1.0);
        }
        share = product * (1.0 - share);
        k -= 1.0;
    }
    2.0 * share
}

/// Unequal sizes: the share of paths that leave the band, column by column. For a point inside the band,
/// `outside(x, y) = (x · outside(x−1, y) + y · outside(x, y−1)) / (x + y)` (paths arrive from the left in
/// proportion x / (x + y)); every point outside the band has share 1. Only the band is stored.
fn band_outside_share(larger: u64, smaller: u64, half_width: u64) -> f64 {
    let divisor = greatest_common_divisor(larger, smaller);
    let (step_x, step_y) = ((smaller / divisor) as i64, (larger / divisor) as i64);
    let half_width = half_width as i64;
    let smaller = smaller as i64;
    // Inside the band at column x: |step_x·x − step_y·y| < half_width.
    let window = |x: i64| -> (i64, i64) {
        let lowest = ((step_x * x - half_width).div_euclid(step_y) + 1).max(0);
        let beyond = ((step_x * x + half_width + step_y - 1).div_euclid(step_y)).min(smaller + 1);
        (lowest.min(smaller), beyond)
    };
    let mut previous = vec![1.0f64; (smaller + 1) as usize];
    let (first_low, first_beyond) = window(0);
    for y in first_low..first_beyond {
        previous[y as usize] = 0.0;
    }
    let mut current = vec![1.0f64; (smaller + 1) as usize];
    for x in 1..=larger as i64 {
        let (low, beyond) = window(x);
        if beyond <= low {
            return 1.0;
        }
        current.iter_mut().for_each(|share| *share = 1.0);
        let mut below = if low == 0 { 0.0 } else { 1.0 };
        for y in low..beyond {
            let from_left = previous[y as usize];
            let value = (from_left * x as f64 + below * y as f64) / (x + y) as f64;
            current[y as usize] = value;
            below = value;
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[smaller as usize]
}

/// The exact two-sided p-value for a KS statistic between samples of the given sizes.
pub fn exact_p_value(reference_size: usize, current_size: usize, statistic: f64) -> Result<f64, StatisticError> {
    for (which, size) in [("reference", reference_size), ("current", current_size)] {
        if size == 0 {
            return Err(StatisticError::Empty { which });
        }
    }
    if !(0.0..=1.0).contains(&statistic) {
        return Err(StatisticError::InvalidParameter {
            name: "statistic",
            value: statistic,
            reason: "must lie in [0, 1]",
        });
    }
    let (first, second) = (reference_size as u64, current_size as u64);
    let least_common_multiple = first / greatest_common_divisor(first, second) * second;
    let half_width = (statistic * least_common_multiple as f64).round() as u64;
    if half_width == 0 {
        return Ok(1.0);
    }
    let share = if first == second {
        equal_sizes_outside_share(first, half_width)
    } else {
        band_outside_share(first.max(second), first.min(second), half_width)
    };
    Ok(share.clamp(0.0, 1.0))
}

/// The two-sample KS test as `scipy.stats.ks_2samp` with its default `auto` method: the exact p-value when
/// both samples have at most [`EXACT_SAMPLE_LIMIT`] values, otherwise the asymptotic one
/// (`kstwo.sf(D, round(m·n / (m + n)))`, see [`crate::kolmogorov_distribution`]).
pub fn kolmogorov_smirnov_test(reference: &[f64], current: &[f64]) -> Result<TestResult, StatisticError> {
    let statistic = kolmogorov_smirnov_statistic(reference, current)?;
    let larger = reference.len().max(current.len());
    let p_value = if larger > EXACT_SAMPLE_LIMIT {
        asymptotic_two_sample_p_value(reference.len(), current.len(), statistic)
    } else {
        exact_p_value(reference.len(), current.len(), statistic)?
    };
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
            (actual - expected).abs() <= 1e-9 * expected.abs(),
            "{actual} != {expected}"
        );
    }

    // (n1, n2, D) → p from scipy 1.17.1 `ks_2samp(..., method="exact")` on normal samples.
    #[test]
    fn exact_p_values_match_scipy() {
        close(exact_p_value(40, 40, 0.475).unwrap(), 0.00018791118070078278);
        close(exact_p_value(50, 73, 0.20136986301369864).unwrap(), 0.15267488233506527);
        close(exact_p_value(60, 45, 0.29444444444444445).unwrap(), 0.0189869699101248);
        close(exact_p_value(300, 250, 0.64).unwrap(), 4.495729739982988e-53);
        assert_eq!(exact_p_value(10, 10, 0.0).unwrap(), 1.0);
    }

    #[test]
    fn the_test_combines_statistic_and_p_value() {
        let same: Vec<f64> = (0..10).map(f64::from).collect();
        let result = kolmogorov_smirnov_test(&same, &same).unwrap();
        assert_eq!((result.statistic, result.p_value), (0.0, 1.0));
        let shifted: Vec<f64> = same.iter().map(|value| value + 100.0).collect();
        let result = kolmogorov_smirnov_test(&same, &shifted).unwrap();
        assert_eq!(result.statistic, 1.0);
        assert!(result.p_value < 1e-4);
        // Beyond 10,000 values the asymptotic p-value: scipy 1.17.1 gives kstwo.sf(1.0, 1) = 0 here.
        let large = kolmogorov_smirnov_test(&vec![0.0; 10_001], &[1.0]).unwrap();
        assert_eq!((large.statistic, large.p_value), (1.0, 0.0));
    }
}
