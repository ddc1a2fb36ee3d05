//! Performance estimated before labels arrive, for binary classifiers, as NannyML's CBPE does it
//! (confidence-based performance estimation, NannyML 0.13): the model's probabilities are calibrated on the
//! labelled reference with isotonic regression (when that lowers the expected calibration error), and a
//! window's accuracy and ROC AUC are the values expected if the calibrated probabilities are right. The
//! confidence band is three standard errors, from the reference's spread and the window's size.
//!
//! The fit is made once from reference rows (`loopline monitor reference` with labels and probabilities) and
//! stored with the reference profile; nothing here reads files or the clock.

use serde::{Deserialize, Serialize};

/// Standard errors either side of an estimate in its confidence band (NannyML's `SAMPLING_ERROR_RANGE`).
pub const BAND_STANDARD_ERRORS: f64 = 3.0;
/// Folds of the calibration check.
const CALIBRATION_FOLDS: usize = 10;

/// What estimation keeps from the reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EstimationReference {
    /// Whether probabilities are calibrated before estimating.
    pub calibrated: bool,
    /// The isotonic map: ascending probabilities and what they calibrate to (empty when not calibrated).
    pub calibration_x: Vec<f64>,
    /// Calibrated values at `calibration_x`.
    pub calibration_y: Vec<f64>,
    /// Population standard deviation of per-row correctness on the reference.
    pub accuracy_std: f64,
    /// ROC AUC sampling-error components: standard deviation ...
    pub roc_auc_std: f64,
    /// ... and the share of the minority class.
    pub roc_auc_fraction: f64,
    /// Reference rows fitted.
    pub rows: u64,
}

/// An estimate with its confidence band.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    /// The estimated value.
    pub value: f64,
    /// Standard error for a window of this size.
    pub sampling_error: f64,
    /// `value − 3·SE`, at least 0.
    pub lower: f64,
    /// `value + 3·SE`, at most 1.
    pub upper: f64,
}

fn band(value: f64, sampling_error: f64) -> Estimate {
    Estimate {
        value,
        sampling_error,
        lower: (value - BAND_STANDARD_ERRORS * sampling_error).max(0.0),
        upper: (value + BAND_STANDARD_ERRORS * sampling_error).min(1.0),
    }
}

/// Isotonic regression (increasing, ties in x averaged first, pool-adjacent-violators), as scikit-learn's
/// `IsotonicRegression`: returns the distinct ascending x and their fitted values.
pub fn isotonic_fit(x: &[f64], y: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    // Blocks of (x, sum of y, weight).
    let mut xs: Vec<f64> = Vec::new();
    let mut sums: Vec<f64> = Vec::new();
    let mut weights: Vec<f64> = Vec::new();
    for &index in &order {
        if xs.last() == Some(&x[index]) {
            *sums.last_mut().expect("a block exists") += y[index];
            *weights.last_mut().expect("a block exists") += 1.0;
        } else {
            xs.push(x[index]);
            sums.push(y[index]);
            weights.push(1.0);
        }
    }
    // Pool adjacent violators over the distinct x: each pool is (sum, weight, count of distinct x).
    let mut pools: Vec<(f64, f64, usize)> = Vec::new();
    for (sum, weight) in sums.iter().zip(&weights) {
        pools.push((*sum, *weight, 1));
        while pools.len() > 1 {
            let last = pools[pools.len() - 1];
            let before = pools[pools.len() - 2];
            if before.0 / before.1 <= last.0 / last.1 {
                break;
            }
            pools.pop();
            let merged = pools.last_mut().expect("two pools were there");
            *merged = (merged.0 + last.0, merged.1 + last.1, merged.2 + last.2);
        }
    }
    let fitted: Vec<f64> = pools
        .iter()
        .flat_map(|(sum, weight, count)| std::iter::repeat_n(sum / weight, *count))
        .collect();
    (xs, fitted)
}

/// The isotonic map at `value`: clipped to the fitted range, linear between fitted points (`np.interp`).
pub fn isotonic_predict(xs: &[f64], ys: &[f64], value: f64) -> f64 {
    let (Some(&first), Some(&last)) = (xs.first(), xs.last()) else {
        return value;
    };
    if value <= first {
        return ys[0];
    }
    if value >= last {
        return ys[ys.len() - 1];
    }
    let upper = xs.partition_point(|&x| x <= value);
    let (x0, x1, y0, y1) = (xs[upper - 1], xs[upper], ys[upper - 1], ys[upper]);
    if x1 == x0 {
        y0
    } else {
        y0 + (y1 - y0) * (value - x0) / (x1 - x0)
    }
}

/// The map with only the first and last point of each run of equal values: interpolating between them gives
/// the same values everywhere, and the map stays small however many distinct probabilities were fitted.
fn flat_run_ends((xs, ys): (Vec<f64>, Vec<f64>)) -> (Vec<f64>, Vec<f64>) {
    let mut kept_x = Vec::new();
    let mut kept_y = Vec::new();
    for index in 0..xs.len() {
        let same_as_before = index > 0 && ys[index - 1] == ys[index];
        let same_as_after = index + 1 < xs.len() && ys[index + 1] == ys[index];
        if !(same_as_before && same_as_after) {
            kept_x.push(xs[index]);
            kept_y.push(ys[index]);
        }
    }
    (kept_x, kept_y)
}

/// Expected calibration error over equal-count bins of rows sorted by probability.
fn expected_calibration_error(probabilities: &[f64], labels: &[f64]) -> f64 {
    let total = probabilities.len();
    if total == 0 {
        return 0.0;
    }
    let mut order: Vec<usize> = (0..total).collect();
    order.sort_by(|&a, &b| probabilities[a].total_cmp(&probabilities[b]));
    let bins = if total <= 20 { (total / 2).max(1) } else { 10 };
    let width = (total / bins).max(1);
    // Edges every `width` rows, the last moved to the end (so the last bin may be wider), as NannyML cuts them.
    let mut edges: Vec<usize> = (0..=total).step_by(width).collect();
    if let Some(last) = edges.last_mut() {
        *last = total;
    }
    edges
        .windows(2)
        .filter(|edge| edge[1] > edge[0])
        .map(|edge| {
            let rows = &order[edge[0]..edge[1]];
            let count = rows.len() as f64;
            let mean_probability = rows.iter().map(|&i| probabilities[i]).sum::<f64>() / count;
            let mean_label = rows.iter().map(|&i| labels[i]).sum::<f64>() / count;
            count / total as f64 * (mean_probability - mean_label).abs()
        })
        .sum()
}

/// Whether isotonic calibration lowers the expected calibration error out of sample (stratified folds; the
/// same decision NannyML's `needs_calibration` takes, with deterministic folds instead of shuffled splits).
pub fn needs_calibration(probabilities: &[f64], labels: &[f64]) -> bool {
    let positives = labels.iter().filter(|l| **l == 1.0).count();
    if positives == 0 || positives == labels.len() {
        return false;
    }
    let truths: Vec<bool> = labels.iter().map(|l| *l == 1.0).collect();
    if crate::performance::roc_auc(&truths, probabilities).is_some_and(|auc| auc > 0.999) {
        return false;
    }
    let mut raw = Vec::new();
    let mut calibrated = Vec::new();
    let mut observed = Vec::new();
    // Stratified: the k-th row of each class goes to fold k mod folds.
    let mut seen = [0usize; 2];
    let fold_of: Vec<usize> = truths
        .iter()
        .map(|&truth| {
            let class = usize::from(truth);
            seen[class] += 1;
            seen[class] % CALIBRATION_FOLDS
        })
        .collect();
    for fold in 0..CALIBRATION_FOLDS {
        let (train, test): (Vec<usize>, Vec<usize>) = (0..labels.len()).partition(|&i| fold_of[i] != fold);
        if train.is_empty() || test.is_empty() {
            continue;
        }
        let train_x: Vec<f64> = train.iter().map(|&i| probabilities[i]).collect();
        let train_y: Vec<f64> = train.iter().map(|&i| labels[i]).collect();
        let (xs, ys) = isotonic_fit(&train_x, &train_y);
        for &i in &test {
            raw.push(probabilities[i]);
            calibrated.push(isotonic_predict(&xs, &ys, probabilities[i]));
            observed.push(labels[i]);
        }
    }
    expected_calibration_error(&raw, &observed) > expected_calibration_error(&calibrated, &observed)
}

fn population_std(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    (values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / values.len() as f64).sqrt()
}

/// ROC AUC sampling-error components from reference probabilities and labels: the spread of each positive's
/// share of negatives ranked below it, and the positive share (classes swapped when positives are the
/// majority).
fn roc_auc_components(probabilities: &[f64], labels: &[f64]) -> (f64, f64) {
    let majority_positive = labels.iter().sum::<f64>() / labels.len().max(1) as f64 > 0.5;
    let (scores, truths): (Vec<f64>, Vec<bool>) = probabilities
        .iter()
        .zip(labels)
        .map(|(p, l)| {
            if majority_positive {
                (1.0 - p, *l != 1.0)
            } else {
                (*p, *l == 1.0)
            }
        })
        .unzip();
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let positives = truths.iter().filter(|t| **t).count();
    let negatives = truths.len() - positives;
    if positives == 0 || negatives == 0 {
        return (0.0, 0.0);
    }
    let ranks: Vec<usize> = order
        .iter()
        .enumerate()
        .filter(|(rank, index)| truths[**index] && *rank > 0)
        .map(|(rank, _)| rank)
        .collect();
    let shares: Vec<f64> = ranks
        .iter()
        .enumerate()
        .map(|(position, rank)| (*rank - position) as f64 / negatives as f64)
        .collect();
    (population_std(&shares), positives as f64 / truths.len() as f64)
}

/// Fits estimation on labelled reference rows: probabilities of the positive class, labels (1 positive, 0
/// not) and the model's predicted classes (1 or 0). `None` without both classes.
pub fn fit(probabilities: &[f64], labels: &[f64], predictions: &[f64]) -> Option<EstimationReference> {
    let rows = probabilities.len();
    if rows == 0 || labels.len() != rows || predictions.len() != rows {
        return None;
    }
    if probabilities.iter().any(|p| !p.is_finite()) {
        return None;
    }
    let positives = labels.iter().filter(|l| **l == 1.0).count();
    if positives == 0 || positives == rows {
        return None;
    }
    let correct: Vec<f64> = labels
        .iter()
        .zip(predictions)
        .map(|(l, p)| f64::from(u8::from(l == p)))
        .collect();
    let (roc_auc_std, roc_auc_fraction) = roc_auc_components(probabilities, labels);
    let calibrated = needs_calibration(probabilities, labels);
    let (calibration_x, calibration_y) = if calibrated {
        flat_run_ends(isotonic_fit(probabilities, labels))
    } else {
        (Vec::new(), Vec::new())
    };
    Some(EstimationReference {
        calibrated,
        calibration_x,
        calibration_y,
        accuracy_std: population_std(&correct),
        roc_auc_std,
        roc_auc_fraction,
        rows: rows as u64,
    })
}

/// Estimated accuracy and ROC AUC of a window from its probabilities and predicted classes (1 or 0).
pub fn estimate(
    reference: &EstimationReference,
    probabilities: &[f64],
    predictions: &[f64],
) -> Option<(Estimate, Option<Estimate>)> {
    let rows = probabilities.len();
    if rows == 0 || predictions.len() != rows {
        return None;
    }
    let calibrate = |p: f64| {
        if reference.calibrated {
            isotonic_predict(&reference.calibration_x, &reference.calibration_y, p)
        } else {
            p
        }
    };
    // Rows by uncalibrated score, highest first, with their calibrated probability and predicted class.
    // (Rows with equal scores have equal calibrated values, so their order among themselves changes nothing.)
    let mut ranked: Vec<(f64, f64, bool)> = probabilities
        .iter()
        .zip(predictions)
        .map(|(&p, &predicted)| (p, calibrate(p), predicted == 1.0))
        .collect();
    ranked.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
    let expected_correct: f64 = ranked
        .iter()
        .map(|(_, p, positive)| if *positive { *p } else { 1.0 - p })
        .sum();
    let n = rows as f64;
    let accuracy = band(expected_correct / n, reference.accuracy_std / n.sqrt());
    // ROC AUC: expected true and false positives accumulate down the ranking (rounded as NannyML rounds
    // them); the area is the sum of the trapezoids, scaled once by both totals at the end.
    let round = |v: f64| (v * 1e5).round() / 1e5;
    let (mut cumulative, mut area) = (0.0, 0.0);
    let (mut true_positives, mut false_positives) = (0.0, 0.0);
    for (position, (_, calibrated, _)) in ranked.iter().enumerate() {
        cumulative += calibrated;
        let (next_true, next_false) = (round(cumulative), round((position + 1) as f64 - cumulative));
        area += (next_false - false_positives) * (next_true + true_positives);
        (true_positives, false_positives) = (next_true, next_false);
    }
    let (all_true, all_false) = (true_positives, false_positives);
    let roc_auc = (all_true > 0.0 && all_false > 0.0).then(|| {
        let area = area / (2.0 * all_false * all_true);
        let error = reference.roc_auc_std / (n * reference.roc_auc_fraction).sqrt();
        band(area, if error.is_finite() { error } else { 0.0 })
    });
    Some((accuracy, roc_auc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isotonic_pools_violators_and_averages_ties() {
        let (xs, ys) = isotonic_fit(&[0.1, 0.2, 0.2, 0.3, 0.4], &[0.0, 1.0, 0.0, 0.0, 1.0]);
        assert_eq!(xs, [0.1, 0.2, 0.3, 0.4]);
        // 0.2 averages to 0.5, then pools with 0.3 (0.0): (1 + 0) / 3.
        assert_eq!(ys, [0.0, 1.0 / 3.0, 1.0 / 3.0, 1.0]);
        assert_eq!(isotonic_predict(&xs, &ys, 0.05), 0.0);
        assert!((isotonic_predict(&xs, &ys, 0.35) - (1.0 / 3.0 + 1.0) / 2.0).abs() < 1e-15);
        assert_eq!(isotonic_predict(&xs, &ys, 0.9), 1.0);
    }

    #[test]
    fn well_calibrated_scores_estimate_their_own_accuracy() {
        // Probabilities 0.9 and 0.1, predicted 1 and 0: expected accuracy 0.9 whatever the labels.
        let probabilities = [0.9, 0.1, 0.9, 0.1];
        let reference = EstimationReference {
            calibrated: false,
            calibration_x: vec![],
            calibration_y: vec![],
            accuracy_std: 0.3,
            roc_auc_std: 0.1,
            roc_auc_fraction: 0.5,
            rows: 100,
        };
        let (accuracy, roc_auc) = estimate(&reference, &probabilities, &[1.0, 0.0, 1.0, 0.0]).unwrap();
        assert!((accuracy.value - 0.9).abs() < 1e-12);
        assert!((accuracy.sampling_error - 0.15).abs() < 1e-12);
        assert_eq!(accuracy.upper, 1.0);
        assert!(roc_auc.unwrap().value > 0.5);
    }

    #[test]
    fn flat_runs_keep_their_ends_and_interpolate_the_same() {
        let (xs, ys) = flat_run_ends((vec![0.1, 0.2, 0.3, 0.4, 0.5], vec![0.0, 0.5, 0.5, 0.5, 1.0]));
        assert_eq!(xs, [0.1, 0.2, 0.4, 0.5]);
        assert_eq!(ys, [0.0, 0.5, 0.5, 1.0]);
        assert_eq!(isotonic_predict(&xs, &ys, 0.3), 0.5);
        assert!((isotonic_predict(&xs, &ys, 0.45) - 0.75).abs() < 1e-12);
    }

    #[test]
    fn one_class_references_cannot_be_fitted() {
        assert!(fit(&[0.2, 0.4], &[1.0, 1.0], &[0.0, 0.0]).is_none());
        assert!(fit(&[0.2, f64::NAN], &[1.0, 0.0], &[0.0, 0.0]).is_none());
    }
}
