//! Realised performance of a window once labels arrive, computed as scikit-learn computes it:
//! accuracy, precision, recall, F1 (binary for the positive label when there are at most two classes, macro
//! averages otherwise; 0 where a ratio has no denominator), ROC AUC and log loss from the positive class's
//! probability; RMSE, MAE, MAPE and R² for regressors.

use std::collections::BTreeSet;

use serde::Serialize;

/// Classifier figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassificationFigures {
    /// Share of rows predicted right.
    pub accuracy: f64,
    /// Precision (binary for the positive class, else macro average).
    pub precision: f64,
    /// Recall (same averaging).
    pub recall: f64,
    /// F1 (same averaging).
    pub f1: f64,
    /// Area under the ROC curve, when probabilities are logged and both classes occur.
    pub roc_auc: Option<f64>,
    /// Log loss, when probabilities are logged.
    pub log_loss: Option<f64>,
    /// `binary` or `macro`.
    pub average: &'static str,
}

/// Regressor figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegressionFigures {
    /// Root mean squared error.
    pub rmse: f64,
    /// Mean absolute error.
    pub mae: f64,
    /// Mean absolute percentage error (as a fraction, scikit-learn's convention).
    pub mape: f64,
    /// Coefficient of determination.
    pub r2: f64,
}

fn ratio(numerator: f64, denominator: f64) -> f64 {
    if denominator == 0.0 {
        0.0
    } else {
        numerator / denominator
    }
}

/// Counts for one class treated as positive.
fn class_counts(labels: &[String], predictions: &[String], class: &str) -> (f64, f64, f64) {
    let mut true_positive = 0.0;
    let mut false_positive = 0.0;
    let mut false_negative = 0.0;
    for (label, prediction) in labels.iter().zip(predictions) {
        match (label == class, prediction == class) {
            (true, true) => true_positive += 1.0,
            (false, true) => false_positive += 1.0,
            (true, false) => false_negative += 1.0,
            (false, false) => {}
        }
    }
    (true_positive, false_positive, false_negative)
}

pub(crate) fn precision_recall_f1(counts: (f64, f64, f64)) -> (f64, f64, f64) {
    let (true_positive, false_positive, false_negative) = counts;
    (
        ratio(true_positive, true_positive + false_positive),
        ratio(true_positive, true_positive + false_negative),
        ratio(
            2.0 * true_positive,
            2.0 * true_positive + false_positive + false_negative,
        ),
    )
}

/// Classification figures for aligned labels and predicted classes; `scores` is the positive class's
/// probability per row, when logged. `None` for no rows.
pub fn classification(
    labels: &[String],
    predictions: &[String],
    positive_label: &str,
    scores: Option<&[f64]>,
) -> Option<ClassificationFigures> {
    if labels.is_empty() || labels.len() != predictions.len() {
        return None;
    }
    let rows = labels.len() as f64;
    let correct = labels.iter().zip(predictions).filter(|(l, p)| l == p).count() as f64;
    let classes: BTreeSet<&str> = labels.iter().chain(predictions).map(String::as_str).collect();
    let binary = classes.len() <= 2 && classes.contains(positive_label);
    let (precision, recall, f1) = if binary {
        precision_recall_f1(class_counts(labels, predictions, positive_label))
    } else {
        let per_class: Vec<(f64, f64, f64)> = classes
            .iter()
            .map(|class| precision_recall_f1(class_counts(labels, predictions, class)))
            .collect();
        let count = per_class.len() as f64;
        (
            per_class.iter().map(|c| c.0).sum::<f64>() / count,
            per_class.iter().map(|c| c.1).sum::<f64>() / count,
            per_class.iter().map(|c| c.2).sum::<f64>() / count,
        )
    };
    let truths: Vec<bool> = labels.iter().map(|l| l == positive_label).collect();
    let scores = scores.filter(|s| s.len() == labels.len() && s.iter().all(|v| v.is_finite()));
    Some(ClassificationFigures {
        accuracy: correct / rows,
        precision,
        recall,
        f1,
        roc_auc: scores.and_then(|s| roc_auc(&truths, s)),
        log_loss: scores.map(|s| log_loss(&truths, s)),
        average: if binary { "binary" } else { "macro" },
    })
}

/// Area under the ROC curve: the probability that a random positive scores above a random negative, ties
/// counting half (equal to the trapezoidal area scikit-learn computes). `None` without both classes.
pub fn roc_auc(truths: &[bool], scores: &[f64]) -> Option<f64> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let positives = truths.iter().filter(|t| **t).count() as f64;
    let negatives = truths.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return None;
    }
    // Sum of the positives' mid-ranks (1-based), ties sharing the average rank.
    let mut rank_sum = 0.0;
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && scores[order[end]] == scores[order[start]] {
            end += 1;
        }
        let mid_rank = (start + 1 + end) as f64 / 2.0;
        let tied_positives = order[start..end].iter().filter(|&&i| truths[i]).count() as f64;
        rank_sum += mid_rank * tied_positives;
        start = end;
    }
    Some((rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives))
}

/// Binary cross-entropy in nats, probabilities clipped to `[ε, 1 − ε]` (ε of `f64`), as scikit-learn.
pub fn log_loss(truths: &[bool], scores: &[f64]) -> f64 {
    let clip = |p: f64| p.clamp(f64::EPSILON, 1.0 - f64::EPSILON);
    let total: f64 = truths
        .iter()
        .zip(scores)
        .map(|(&truth, &score)| {
            let p = clip(score);
            if truth { -p.ln() } else { -(1.0 - p).ln() }
        })
        .sum();
    total / truths.len() as f64
}

/// Regression figures for aligned labels and predictions (finite numbers only). `None` for no rows.
pub fn regression(labels: &[f64], predictions: &[f64]) -> Option<RegressionFigures> {
    if labels.is_empty() || labels.len() != predictions.len() {
        return None;
    }
    let rows = labels.len() as f64;
    let errors: Vec<f64> = labels.iter().zip(predictions).map(|(y, p)| y - p).collect();
    let squared: f64 = errors.iter().map(|e| e * e).sum();
    let absolute: f64 = errors.iter().map(|e| e.abs()).sum();
    let percentage: f64 = errors
        .iter()
        .zip(labels)
        .map(|(e, y)| e.abs() / y.abs().max(f64::EPSILON))
        .sum();
    let mean = labels.iter().sum::<f64>() / rows;
    let total: f64 = labels.iter().map(|y| (y - mean) * (y - mean)).sum();
    let r2 = if total != 0.0 {
        1.0 - squared / total
    } else if squared == 0.0 {
        1.0
    } else {
        0.0
    };
    Some(RegressionFigures {
        rmse: (squared / rows).sqrt(),
        mae: absolute / rows,
        mape: percentage / rows,
        r2,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn binary_figures_match_hand_counts() {
        // tp = 2, fp = 1, fn = 1, tn = 1.
        let labels = strings(&["1", "1", "1", "0", "0"]);
        let predictions = strings(&["1", "1", "0", "1", "0"]);
        let figures = classification(&labels, &predictions, "1", Some(&[0.9, 0.8, 0.3, 0.6, 0.1])).unwrap();
        assert_eq!(figures.average, "binary");
        assert_eq!(figures.accuracy, 0.6);
        assert!((figures.precision - 2.0 / 3.0).abs() < 1e-15);
        assert!((figures.recall - 2.0 / 3.0).abs() < 1e-15);
        assert!((figures.f1 - 2.0 / 3.0).abs() < 1e-15);
        // Positives 0.9, 0.8, 0.3 against negatives 0.6, 0.1: 5 of 6 pairs ordered right.
        assert!((figures.roc_auc.unwrap() - 5.0 / 6.0).abs() < 1e-15);
    }

    #[test]
    fn ties_count_half_and_one_class_has_no_auc() {
        assert_eq!(roc_auc(&[true, false], &[0.5, 0.5]), Some(0.5));
        assert_eq!(roc_auc(&[true, true], &[0.1, 0.5]), None);
    }

    #[test]
    fn multiclass_uses_macro_averages_with_zero_for_empty_ratios() {
        let labels = strings(&["a", "b", "c", "c"]);
        let predictions = strings(&["a", "c", "c", "c"]);
        let figures = classification(&labels, &predictions, "1", None).unwrap();
        assert_eq!(figures.average, "macro");
        // Per class precision: a 1, b 0 (never predicted), c 2/3.
        assert!((figures.precision - (1.0 + 0.0 + 2.0 / 3.0) / 3.0).abs() < 1e-15);
        assert!((figures.recall - (1.0 + 0.0 + 1.0) / 3.0).abs() < 1e-15);
    }

    #[test]
    fn log_loss_clips_certain_mistakes() {
        let loss = log_loss(&[true], &[0.0]);
        assert!((loss - -(f64::EPSILON).ln()).abs() < 1e-12);
    }

    #[test]
    fn regression_figures_and_constant_labels() {
        let figures = regression(&[3.0, -0.5, 2.0, 7.0], &[2.5, 0.0, 2.0, 8.0]).unwrap();
        // scikit-learn's documented examples.
        assert!((figures.mae - 0.5).abs() < 1e-15);
        assert!((figures.rmse - 0.375f64.sqrt()).abs() < 1e-15);
        assert!((figures.r2 - 0.948_608_137_044_967_9).abs() < 1e-12);
        assert_eq!(regression(&[1.0, 1.0], &[1.0, 1.0]).unwrap().r2, 1.0);
        assert_eq!(regression(&[1.0, 1.0], &[1.0, 2.0]).unwrap().r2, 0.0);
        assert!(regression(&[], &[]).is_none());
    }
}
