//! The k-sample Anderson–Darling test of Scholz and Stephens (1987), as `scipy.stats.anderson_ksamp` with its
//! default midrank statistic: the standardised statistic and scipy's approximate p-value, which interpolates
//! the logarithm of the significance levels of the published critical values with a quadratic least-squares fit
//! and is capped at 0.25 and floored at 0.001 outside the table (scipy warns there; the result says so).

use crate::error::{StatisticError, check_sample};

/// Significance levels of the critical-value table.
pub const SIGNIFICANCE_LEVELS: [f64; 7] = [0.25, 0.1, 0.05, 0.025, 0.01, 0.005, 0.001];
const B0: [f64; 7] = [0.675, 1.281, 1.645, 1.96, 2.326, 2.573, 3.085];
const B1: [f64; 7] = [-0.245, 0.25, 0.678, 1.149, 1.822, 2.364, 3.615];
const B2: [f64; 7] = [-0.105, -0.305, -0.362, -0.391, -0.396, -0.345, -0.154];

/// Where the p-value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PValueRange {
    /// Interpolated within the table.
    Interpolated,
    /// The statistic is below every critical value: the p-value is at least 0.25 and reported as 0.25.
    Capped,
    /// The statistic is above every critical value: the p-value is at most 0.001 and reported as 0.001.
    Floored,
}

/// The test's result.
#[derive(Debug, Clone, PartialEq)]
pub struct AndersonDarlingResult {
    /// The standardised statistic `(A²akN − (k − 1)) / σ`.
    pub statistic: f64,
    /// Critical values for the [`SIGNIFICANCE_LEVELS`].
    pub critical_values: [f64; 7],
    /// Approximate p-value.
    pub p_value: f64,
    /// Whether the p-value was interpolated, capped or floored.
    pub range: PValueRange,
}

/// The midrank statistic A²akN (equation 7 of Scholz and Stephens), from sorted samples.
fn midrank_statistic(sorted: &[Vec<f64>], pooled: &[f64]) -> f64 {
    let total = pooled.len() as f64;
    // Distinct pooled values with their multiplicity and the count of smaller values.
    let mut distinct: Vec<(f64, f64, f64)> = Vec::new(); // (value, l_j, below)
    let mut start = 0;
    while start < pooled.len() {
        let value = pooled[start];
        let mut end = start + 1;
        while end < pooled.len() && pooled[end] == value {
            end += 1;
        }
        distinct.push((value, (end - start) as f64, start as f64));
        start = end;
    }
    let all_distinct = distinct.len() == pooled.len();
    let mut statistic = 0.0;
    for sample in sorted {
        let size = sample.len() as f64;
        let (mut at_most, mut below) = (0usize, 0usize);
        let mut sum = 0.0;
        for &(value, multiplicity, smaller) in &distinct {
            while below < sample.len() && sample[below] < value {
                below += 1;
            }
            at_most = at_most.max(below);
            while at_most < sample.len() && sample[at_most] <= value {
                at_most += 1;
            }
            let l = if all_distinct { 1.0 } else { multiplicity };
            let b = smaller + l / 2.0;
            let m = at_most as f64 - (at_most - below) as f64 / 2.0;
            let gap = total * m - b * size;
            sum += l / total * gap * gap / (b * (total - b) - total * l / 4.0);
        }
        statistic += sum / size;
    }
    statistic * (total - 1.0) / total
}

/// The variance of A²akN under the null hypothesis (Scholz and Stephens, equation 4).
fn null_variance(sizes: &[usize], total: usize) -> f64 {
    let k = sizes.len() as f64;
    let n = total as f64;
    let harmonic_inverse_sizes: f64 = sizes.iter().map(|s| 1.0 / *s as f64).sum();
    // Partial sums of 1/i from i = N−1 down to 2, as scipy's cumsum.
    let mut partial = Vec::with_capacity(total.saturating_sub(2));
    let mut running = 0.0;
    for i in (2..total).rev() {
        running += 1.0 / i as f64;
        partial.push(running);
    }
    let h = partial.last().copied().unwrap_or(0.0) + 1.0;
    let g: f64 = partial.iter().enumerate().map(|(t, s)| s / (t + 2) as f64).sum();
    let a = (4.0 * g - 6.0) * (k - 1.0) + (10.0 - 6.0 * g) * harmonic_inverse_sizes;
    let b = (2.0 * g - 4.0) * k * k + 8.0 * h * k + (2.0 * g - 14.0 * h - 4.0) * harmonic_inverse_sizes - 8.0 * h
        + 4.0 * g
        - 6.0;
    let c = (6.0 * h + 2.0 * g - 2.0) * k * k
        + (4.0 * h - 4.0 * g + 6.0) * k
        + (2.0 * h - 6.0) * harmonic_inverse_sizes
        + 4.0 * h;
    let d = (2.0 * h + 6.0) * k * k - 4.0 * h * k;
    (a * n.powi(3) + b * n * n + c * n + d) / ((n - 1.0) * (n - 2.0) * (n - 3.0))
}

/// Least-squares quadratic through the points, as numpy's `polyfit(x, y, 2)` (columns scaled to unit norm,
/// then the normal equations solved by Gaussian elimination with partial pivoting). Highest power first.
fn quadratic_fit(x: &[f64], y: &[f64]) -> [f64; 3] {
    let columns: [Vec<f64>; 3] = [x.iter().map(|v| v * v).collect(), x.to_vec(), vec![1.0; x.len()]];
    let scale: Vec<f64> = columns
        .iter()
        .map(|c| c.iter().map(|v| v * v).sum::<f64>().sqrt())
        .collect();
    let scaled: Vec<Vec<f64>> = columns
        .iter()
        .zip(&scale)
        .map(|(c, s)| c.iter().map(|v| v / s).collect())
        .collect();
    let mut system = [[0.0f64; 4]; 3];
    for i in 0..3 {
        for j in 0..3 {
            system[i][j] = scaled[i].iter().zip(&scaled[j]).map(|(a, b)| a * b).sum();
        }
        system[i][3] = scaled[i].iter().zip(y).map(|(a, b)| a * b).sum();
    }
    for pivot in 0..3 {
        let best = (pivot..3)
            .max_by(|a, b| system[*a][pivot].abs().total_cmp(&system[*b][pivot].abs()))
            .unwrap_or(pivot);
        system.swap(pivot, best);
        let pivot_row = system[pivot];
        for row in system.iter_mut().skip(pivot + 1) {
            let factor = row[pivot] / pivot_row[pivot];
            for (cell, above) in row.iter_mut().zip(pivot_row.iter()).skip(pivot) {
                *cell -= factor * above;
            }
        }
    }
    let mut solution = [0.0f64; 3];
    for row in (0..3).rev() {
        let known: f64 = (row + 1..3).map(|c| system[row][c] * solution[c]).sum();
        solution[row] = (system[row][3] - known) / system[row][row];
    }
    [solution[0] / scale[0], solution[1] / scale[1], solution[2] / scale[2]]
}

/// The k-sample Anderson–Darling test on two or more samples of finite values.
pub fn anderson_darling_k_sample(samples: &[&[f64]]) -> Result<AndersonDarlingResult, StatisticError> {
    if samples.len() < 2 {
        return Err(StatisticError::InvalidParameter {
            name: "samples",
            value: samples.len() as f64,
            reason: "the Anderson-Darling test needs at least two samples",
        });
    }
    for sample in samples {
        check_sample(sample, "sample")?;
    }
    let sorted: Vec<Vec<f64>> = samples
        .iter()
        .map(|s| {
            let mut values = s.to_vec();
            values.sort_by(f64::total_cmp);
            values
        })
        .collect();
    let mut pooled: Vec<f64> = sorted.iter().flatten().copied().collect();
    pooled.sort_by(f64::total_cmp);
    if pooled.first() == pooled.last() {
        return Err(StatisticError::InvalidParameter {
            name: "samples",
            value: pooled[0],
            reason: "the Anderson-Darling test needs more than one distinct value",
        });
    }
    let raw = midrank_statistic(&sorted, &pooled);
    let sizes: Vec<usize> = sorted.iter().map(Vec::len).collect();
    let m = (samples.len() - 1) as f64;
    let statistic = (raw - m) / null_variance(&sizes, pooled.len()).sqrt();
    let mut critical_values = [0.0f64; 7];
    for i in 0..7 {
        critical_values[i] = B0[i] + B1[i] / m.sqrt() + B2[i] / m;
    }
    let lowest = critical_values.iter().copied().fold(f64::INFINITY, f64::min);
    let highest = critical_values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (p_value, range) = if statistic < lowest {
        (0.25, PValueRange::Capped)
    } else if statistic > highest {
        (0.001, PValueRange::Floored)
    } else {
        let logs: Vec<f64> = SIGNIFICANCE_LEVELS.iter().map(|s| s.ln()).collect();
        let [a, b, c] = quadratic_fit(&critical_values, &logs);
        (((a * statistic + b) * statistic + c).exp(), PValueRange::Interpolated)
    };
    Ok(AndersonDarlingResult {
        statistic,
        critical_values,
        p_value,
        range,
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

    #[test]
    fn refuses_what_scipy_refuses() {
        assert!(anderson_darling_k_sample(&[&[1.0, 2.0]]).is_err());
        assert!(anderson_darling_k_sample(&[&[1.0, 1.0], &[1.0]]).is_err());
        assert!(anderson_darling_k_sample(&[&[1.0, 2.0], &[]]).is_err());
    }

    #[test]
    fn statistic_grows_with_separation() {
        let base: Vec<f64> = (0..50).map(|i| i as f64 * 0.37 % 5.0).collect();
        let near: Vec<f64> = base.iter().map(|v| v + 0.1).collect();
        let far: Vec<f64> = base.iter().map(|v| v + 3.0).collect();
        let a = anderson_darling_k_sample(&[&base, &near]).unwrap();
        let b = anderson_darling_k_sample(&[&base, &far]).unwrap();
        assert!(b.statistic > a.statistic);
        assert_eq!(b.range, PValueRange::Floored);
        close(b.p_value, 0.001);
    }
}
