//! Evaluation metrics from predictions and true values: classification (accuracy, precision, recall, F1
//! for a positive class or macro-averaged, ROC AUC and log loss from scores) and regression (MAE, MSE, RMSE,
//! R²), per row where a paired comparison needs it, and fairness gaps between groups.

use std::collections::{BTreeMap, BTreeSet};

/// What a model predicted for a table, row by row.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcomes {
    /// Classes: the true and predicted labels, and the score of the positive class when the model gives one.
    Classes {
        /// True labels.
        truth: Vec<String>,
        /// Predicted labels.
        predicted: Vec<String>,
        /// Score (probability) of `positive`, per row.
        scores: Option<Vec<f64>>,
        /// The positive class of a binary task.
        positive: Option<String>,
    },
    /// Numbers: true and predicted values.
    Values {
        /// True values.
        truth: Vec<f64>,
        /// Predicted values.
        predicted: Vec<f64>,
    },
}

impl Outcomes {
    /// Rows.
    pub fn len(&self) -> usize {
        match self {
            Outcomes::Classes { truth, .. } => truth.len(),
            Outcomes::Values { truth, .. } => truth.len(),
        }
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rows at `indices` (a slice or a resample).
    pub fn select(&self, indices: &[usize]) -> Outcomes {
        match self {
            Outcomes::Classes {
                truth,
                predicted,
                scores,
                positive,
            } => Outcomes::Classes {
                truth: indices.iter().map(|i| truth[*i].clone()).collect(),
                predicted: indices.iter().map(|i| predicted[*i].clone()).collect(),
                scores: scores.as_ref().map(|s| indices.iter().map(|i| s[*i]).collect()),
                positive: positive.clone(),
            },
            Outcomes::Values { truth, predicted } => Outcomes::Values {
                truth: indices.iter().map(|i| truth[*i]).collect(),
                predicted: indices.iter().map(|i| predicted[*i]).collect(),
            },
        }
    }

    /// Whether each row was predicted right (classes only).
    pub fn correct(&self) -> Option<Vec<bool>> {
        match self {
            Outcomes::Classes { truth, predicted, .. } => {
                Some(truth.iter().zip(predicted).map(|(t, p)| t == p).collect())
            }
            Outcomes::Values { .. } => None,
        }
    }

    /// Every metric that applies, by name.
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        let mut metrics = BTreeMap::new();
        match self {
            Outcomes::Classes {
                truth,
                predicted,
                scores,
                positive,
            } => {
                if truth.is_empty() {
                    return metrics;
                }
                let right = truth.iter().zip(predicted).filter(|(t, p)| t == p).count();
                metrics.insert("accuracy".into(), right as f64 / truth.len() as f64);
                let classes: BTreeSet<&str> = truth.iter().chain(predicted).map(String::as_str).collect();
                let targets: Vec<&str> = match positive {
                    Some(positive) => vec![positive.as_str()],
                    None => classes.iter().copied().collect(),
                };
                let (mut precision, mut recall, mut f1) = (0.0, 0.0, 0.0);
                for class in &targets {
                    let (p, r, f) = precision_recall_f1(truth, predicted, class);
                    precision += p;
                    recall += r;
                    f1 += f;
                }
                let n = targets.len().max(1) as f64;
                metrics.insert("precision".into(), precision / n);
                metrics.insert("recall".into(), recall / n);
                metrics.insert("f1".into(), f1 / n);
                if let (Some(scores), Some(positive)) = (scores, positive) {
                    let actual: Vec<bool> = truth.iter().map(|t| t == positive).collect();
                    if let Some(auc) = roc_auc(scores, &actual) {
                        metrics.insert("roc_auc".into(), auc);
                    }
                    let eps = 1e-15;
                    let loss = scores
                        .iter()
                        .zip(&actual)
                        .map(|(s, a)| {
                            let p = s.clamp(eps, 1.0 - eps);
                            if *a { -p.ln() } else { -(1.0 - p).ln() }
                        })
                        .sum::<f64>()
                        / scores.len() as f64;
                    metrics.insert("log_loss".into(), loss);
                }
            }
            Outcomes::Values { truth, predicted } => {
                if truth.is_empty() {
                    return metrics;
                }
                let n = truth.len() as f64;
                let errors: Vec<f64> = truth.iter().zip(predicted).map(|(t, p)| p - t).collect();
                let mse = errors.iter().map(|e| e * e).sum::<f64>() / n;
                metrics.insert("mae".into(), errors.iter().map(|e| e.abs()).sum::<f64>() / n);
                metrics.insert("mse".into(), mse);
                metrics.insert("rmse".into(), mse.sqrt());
                let mean = truth.iter().sum::<f64>() / n;
                let total = truth.iter().map(|t| (t - mean).powi(2)).sum::<f64>();
                if total > 0.0 {
                    metrics.insert("r2".into(), 1.0 - mse * n / total);
                }
            }
        }
        metrics
    }
}

fn precision_recall_f1(truth: &[String], predicted: &[String], class: &str) -> (f64, f64, f64) {
    let mut true_positive = 0usize;
    let mut predicted_positive = 0usize;
    let mut actual_positive = 0usize;
    for (t, p) in truth.iter().zip(predicted) {
        let (t, p) = (t == class, p == class);
        true_positive += usize::from(t && p);
        predicted_positive += usize::from(p);
        actual_positive += usize::from(t);
    }
    let precision = if predicted_positive == 0 {
        0.0
    } else {
        true_positive as f64 / predicted_positive as f64
    };
    let recall = if actual_positive == 0 {
        0.0
    } else {
        true_positive as f64 / actual_positive as f64
    };
    let f1 = if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    };
    (precision, recall, f1)
}

/// ROC AUC (the probability a random positive scores above a random negative, ties counting half); `None`
/// without both classes.
pub fn roc_auc(scores: &[f64], actual: &[bool]) -> Option<f64> {
    let positives = actual.iter().filter(|a| **a).count();
    let negatives = actual.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|a, b| scores[*a].total_cmp(&scores[*b]));
    // Mann-Whitney: sum of the positives' ranks (average ranks for ties).
    let mut rank_sum = 0.0;
    let mut start = 0;
    while start < order.len() {
        let mut end = start;
        while end + 1 < order.len() && scores[order[end + 1]] == scores[order[start]] {
            end += 1;
        }
        let average_rank = (start + end) as f64 / 2.0 + 1.0;
        rank_sum += average_rank * order[start..=end].iter().filter(|i| actual[**i]).count() as f64;
        start = end + 1;
    }
    let (p, n) = (positives as f64, negatives as f64);
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

/// Fairness gaps over the groups of a protected attribute: the demographic parity difference (largest gap
/// in the rate of positive predictions) and the equalised odds difference (largest gap in true- or
/// false-positive rate).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fairness {
    /// Demographic parity difference.
    pub demographic_parity_difference: f64,
    /// Equalised odds difference.
    pub equalized_odds_difference: f64,
}

/// Fairness of binary predictions (`positive` is the favourable class) over `groups`.
pub fn fairness(truth: &[String], predicted: &[String], groups: &[String], positive: &str) -> Fairness {
    let mut by_group: BTreeMap<&str, [usize; 6]> = BTreeMap::new(); // rows, predicted+, actual+, tp, actual-, fp
    for ((t, p), g) in truth.iter().zip(predicted).zip(groups) {
        let counts = by_group.entry(g.as_str()).or_default();
        let (t, p) = (t == positive, p == positive);
        counts[0] += 1;
        counts[1] += usize::from(p);
        counts[2] += usize::from(t);
        counts[3] += usize::from(t && p);
        counts[4] += usize::from(!t);
        counts[5] += usize::from(!t && p);
    }
    let rate = |a: usize, b: usize| if b == 0 { None } else { Some(a as f64 / b as f64) };
    let spread = |values: Vec<f64>| {
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        if values.is_empty() { 0.0 } else { max - min }
    };
    let selection: Vec<f64> = by_group.values().filter_map(|c| rate(c[1], c[0])).collect();
    let tpr: Vec<f64> = by_group.values().filter_map(|c| rate(c[3], c[2])).collect();
    let fpr: Vec<f64> = by_group.values().filter_map(|c| rate(c[5], c[4])).collect();
    Fairness {
        demographic_parity_difference: spread(selection),
        equalized_odds_difference: spread(tpr).max(spread(fpr)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(text: &str) -> Vec<String> {
        text.chars().map(String::from).collect()
    }

    #[test]
    fn classification_metrics_match_hand_counts() {
        // truth 1 1 1 0 0, predicted 1 0 1 1 0: tp 2, fp 1, fn 1, tn 1.
        let outcomes = Outcomes::Classes {
            truth: labels("11100"),
            predicted: labels("10110"),
            scores: Some(vec![0.9, 0.4, 0.8, 0.6, 0.1]),
            positive: Some("1".into()),
        };
        let metrics = outcomes.metrics();
        assert_eq!(metrics["accuracy"], 0.6);
        assert!((metrics["precision"] - 2.0 / 3.0).abs() < 1e-12);
        assert!((metrics["recall"] - 2.0 / 3.0).abs() < 1e-12);
        assert!((metrics["f1"] - 2.0 / 3.0).abs() < 1e-12);
        // Pairs (positive above negative): 0.9 beats both, 0.8 both, 0.4 beats 0.1 only: 5 of 6.
        assert!((metrics["roc_auc"] - 5.0 / 6.0).abs() < 1e-12);
        let expected_loss = -(0.9f64.ln() + 0.4f64.ln() + 0.8f64.ln() + 0.4f64.ln() + 0.9f64.ln()) / 5.0;
        assert!((metrics["log_loss"] - expected_loss).abs() < 1e-12);
        assert_eq!(roc_auc(&[0.5, 0.5], &[true, false]), Some(0.5));
        assert_eq!(roc_auc(&[0.5], &[true]), None);
    }

    #[test]
    fn regression_metrics_match_hand_counts() {
        let outcomes = Outcomes::Values {
            truth: vec![1.0, 2.0, 3.0],
            predicted: vec![1.5, 2.0, 2.0],
        };
        let metrics = outcomes.metrics();
        assert_eq!(metrics["mae"], 0.5);
        assert!((metrics["mse"] - 1.25 / 3.0).abs() < 1e-12);
        assert!((metrics["r2"] - (1.0 - 1.25 / 2.0)).abs() < 1e-12);
    }

    #[test]
    fn fairness_gaps_match_hand_counts() {
        // Group a: predicted positive 2 of 2; group b: 1 of 4. Parity gap 0.75.
        let truth = labels("111100");
        let predicted = labels("111000");
        let groups = labels("aabbbb");
        let gaps = fairness(&truth, &predicted, &groups, "1");
        assert_eq!(gaps.demographic_parity_difference, 0.75);
        // TPR: a 2/2, b 1/2 -> 0.5; FPR: a none, b 0/2 -> 0.
        assert_eq!(gaps.equalized_odds_difference, 0.5);
    }
}
