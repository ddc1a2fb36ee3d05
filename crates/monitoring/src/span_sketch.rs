//! The rest of a window that merges into longer spans: serving health (exact counts and a latency digest),
//! realised performance (confusion counts, or a regressor's sums: every classifier figure but ROC AUC, and
//! every regressor figure, come out as scikit-learn would compute them on the whole span) and CBPE's expected
//! accuracy (a mean of per-row expectations, so it adds up exactly).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::sketches::Digest;

/// Most (label, prediction) pairs a confusion table keeps; a span with more is not summarised.
const MAX_CONFUSION: usize = 10_000;

/// Serving health of a span.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HealthSketch {
    /// Requests answered.
    pub requests: f64,
    /// Failed requests (internal errors, unavailable, timeouts).
    pub failures: f64,
    /// Requests refused as bad input.
    pub bad_inputs: f64,
    /// Requests rejected (overload).
    pub rejected: f64,
    /// Failed requests of other kinds.
    pub other_failures: f64,
    /// Latency of answered requests, ms (kept requests, weighted).
    pub latency_ms: Option<Digest>,
}

/// Realised performance of a span, as sums that add up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "task", rename_all = "snake_case")]
pub enum PerformanceSketch {
    /// A classifier's confusion table `(label, prediction, rows)` and its summed log loss.
    Classification {
        /// The positive class.
        positive_label: String,
        /// Rows per (label, predicted class).
        confusion: Vec<(String, String, f64)>,
        /// Summed log loss and the rows it covers, when probabilities were logged for every labelled row.
        log_loss: Option<(f64, f64)>,
    },
    /// A regressor's sums.
    Regression(RegressionSums),
}

/// A regressor's sums over labelled rows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RegressionSums {
    /// Labelled rows.
    pub rows: f64,
    /// Σ (y − ŷ)².
    pub squared: f64,
    /// Σ |y − ŷ|.
    pub absolute: f64,
    /// Σ |y − ŷ| / max(|y|, ε).
    pub percentage: f64,
    /// Σ y.
    pub labels: f64,
    /// Σ y².
    pub labels_squared: f64,
}

impl RegressionSums {
    fn merge(&self, other: &RegressionSums) -> RegressionSums {
        RegressionSums {
            rows: self.rows + other.rows,
            squared: self.squared + other.squared,
            absolute: self.absolute + other.absolute,
            percentage: self.percentage + other.percentage,
            labels: self.labels + other.labels,
            labels_squared: self.labels_squared + other.labels_squared,
        }
    }

    fn is_fine(&self) -> bool {
        let fine = |v: f64| v.is_finite() && v >= 0.0;
        [
            self.rows,
            self.squared,
            self.absolute,
            self.percentage,
            self.labels_squared,
        ]
        .iter()
        .all(|v| fine(*v))
            && self.rows <= 1e15
            && self.labels.is_finite()
            // (Σy)² ≤ n·Σy² (Cauchy–Schwarz): the labels' spread is not negative.
            && (self.labels / self.rows.max(1.0)).powi(2)
                <= self.labels_squared / self.rows.max(1.0) * (1.0 + 1e-9) + 1e-9
    }

    fn figures(&self, figures: &mut BTreeMap<String, f64>) -> Value {
        let rows = self.rows;
        if rows <= 0.0 {
            return Value::Null;
        }
        let spread = (self.labels_squared - self.labels * self.labels / rows).max(0.0);
        let r2 = if spread > 0.0 {
            1.0 - self.squared / spread
        } else if self.squared == 0.0 {
            1.0
        } else {
            0.0
        };
        for (name, value) in [
            ("rmse", (self.squared / rows).sqrt()),
            ("mae", self.absolute / rows),
            ("mape", self.percentage / rows),
            ("r2", r2),
        ] {
            figures.insert(format!("performance.{name}"), value);
        }
        json!({"labelled_rows": rows})
    }
}

/// CBPE's expected accuracy as sums.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EstimateSketch {
    /// Rows estimated.
    pub rows: f64,
    /// Σ expected correctness.
    pub expected_correct: f64,
}

impl HealthSketch {
    /// Both spans' health.
    pub fn merge(&self, other: &HealthSketch) -> HealthSketch {
        HealthSketch {
            requests: self.requests + other.requests,
            failures: self.failures + other.failures,
            bad_inputs: self.bad_inputs + other.bad_inputs,
            rejected: self.rejected + other.rejected,
            other_failures: self.other_failures + other.other_failures,
            latency_ms: match (&self.latency_ms, &other.latency_ms) {
                (Some(a), Some(b)) => Some(a.merge(b)),
                (a, b) => a.clone().or_else(|| b.clone()),
            },
        }
    }

    /// Health figures, named as a window's.
    pub fn figures(&self, figures: &mut BTreeMap<String, f64>) {
        figures.insert("requests".into(), self.requests);
        figures.insert("health.failures".into(), self.failures);
        figures.insert("health.bad_inputs".into(), self.bad_inputs);
        figures.insert("health.rejected".into(), self.rejected);
        let asked = self.requests + self.failures + self.bad_inputs + self.rejected + self.other_failures;
        if asked > 0.0 {
            figures.insert("health.error_rate".into(), self.failures / asked);
        }
        if let Some(latency) = &self.latency_ms {
            for (name, q) in [("p50", 0.5), ("p95", 0.95), ("p99", 0.99)] {
                figures.insert(format!("health.latency_{name}_ms"), latency.quantile(q));
            }
        }
    }
}

impl PerformanceSketch {
    /// A classifier's table from labelled rows, each standing for `weight` rows.
    pub fn classification(
        pairs: &[(String, String, Option<f64>)],
        positive_label: &str,
        weight: f64,
        with_scores: bool,
    ) -> Option<PerformanceSketch> {
        let mut confusion: BTreeMap<(&str, &str), f64> = BTreeMap::new();
        let mut log_loss = with_scores.then_some((0.0, 0.0));
        let clip = |p: f64| p.clamp(f64::EPSILON, 1.0 - f64::EPSILON);
        for (label, predicted, score) in pairs {
            *confusion.entry((label, predicted)).or_default() += weight;
            log_loss = match (log_loss, score) {
                (Some((sum, rows)), Some(score)) if score.is_finite() => {
                    let p = clip(*score);
                    let loss = if label == positive_label {
                        -p.ln()
                    } else {
                        -(1.0 - p).ln()
                    };
                    Some((sum + loss * weight, rows + weight))
                }
                _ => None,
            };
        }
        (!pairs.is_empty() && confusion.len() <= MAX_CONFUSION).then(|| PerformanceSketch::Classification {
            positive_label: positive_label.to_string(),
            confusion: confusion
                .into_iter()
                .map(|((l, p), n)| (l.to_string(), p.to_string(), n))
                .collect(),
            log_loss,
        })
    }

    /// A regressor's sums from labelled rows `(label, prediction)`, each standing for `weight` rows.
    pub fn regression(pairs: &[(f64, f64)], weight: f64) -> Option<PerformanceSketch> {
        if pairs.is_empty() {
            return None;
        }
        let sum = |f: &dyn Fn(f64, f64) -> f64| pairs.iter().map(|(y, p)| f(*y, *p)).sum::<f64>() * weight;
        Some(PerformanceSketch::Regression(RegressionSums {
            rows: pairs.len() as f64 * weight,
            squared: sum(&|y, p| (y - p) * (y - p)),
            absolute: sum(&|y, p| (y - p).abs()),
            percentage: sum(&|y, p| (y - p).abs() / y.abs().max(f64::EPSILON)),
            labels: sum(&|y, _| y),
            labels_squared: sum(&|y, _| y * y),
        }))
    }

    /// Both spans' sums; `None` when they disagree on the task or the positive class, or the table grows
    /// past its bound.
    pub fn merge(&self, other: &PerformanceSketch) -> Option<PerformanceSketch> {
        use PerformanceSketch::{Classification, Regression};
        match (self, other) {
            (
                Classification {
                    positive_label,
                    confusion,
                    log_loss,
                },
                Classification {
                    positive_label: theirs,
                    confusion: their_confusion,
                    log_loss: their_loss,
                },
            ) if positive_label == theirs => {
                let mut merged: BTreeMap<(&str, &str), f64> = BTreeMap::new();
                for (label, predicted, rows) in confusion.iter().chain(their_confusion) {
                    *merged.entry((label, predicted)).or_default() += rows;
                }
                (merged.len() <= MAX_CONFUSION).then(|| Classification {
                    positive_label: positive_label.clone(),
                    confusion: merged
                        .into_iter()
                        .map(|((l, p), n)| (l.to_string(), p.to_string(), n))
                        .collect(),
                    log_loss: log_loss.zip(*their_loss).map(|(a, b)| (a.0 + b.0, a.1 + b.1)),
                })
            }
            (Regression(a), Regression(b)) => Some(Regression(a.merge(b))),
            _ => None,
        }
    }

    /// Bounded, finite and self-consistent, as read back from storage.
    pub fn check(&self) -> Result<(), String> {
        let count = |v: f64| v.is_finite() && (0.0..=1e15).contains(&v);
        let ok = match self {
            PerformanceSketch::Classification {
                confusion, log_loss, ..
            } => {
                let pairs: BTreeSet<(&str, &str)> = confusion.iter().map(|c| (c.0.as_str(), c.1.as_str())).collect();
                let total: f64 = confusion.iter().map(|c| c.2).sum();
                // The log loss of one row is at most −ln ε (probabilities are clipped to [ε, 1 − ε]).
                let most_loss = -f64::EPSILON.ln();
                confusion.len() <= MAX_CONFUSION
                    && pairs.len() == confusion.len()
                    && confusion.iter().all(|c| count(c.2))
                    && log_loss.is_none_or(|(sum, rows)| {
                        count(rows)
                            && rows <= total * (1.0 + 1e-9)
                            && sum >= 0.0
                            && sum <= rows * most_loss * (1.0 + 1e-9)
                    })
            }
            PerformanceSketch::Regression(sums) => sums.is_fine(),
        };
        ok.then_some(())
            .ok_or_else(|| "the performance sums are not counts that fit each other".to_string())
    }

    /// Labelled rows summed.
    pub fn rows(&self) -> f64 {
        match self {
            PerformanceSketch::Classification { confusion, .. } => confusion.iter().map(|c| c.2).sum(),
            PerformanceSketch::Regression(sums) => sums.rows,
        }
    }

    /// Performance figures, named as a window's (`performance.*`); ROC AUC does not merge and is left out.
    pub fn figures(&self, figures: &mut BTreeMap<String, f64>) -> Value {
        match self {
            PerformanceSketch::Classification {
                positive_label,
                confusion,
                log_loss,
            } => {
                let total: f64 = confusion.iter().map(|c| c.2).sum();
                if total <= 0.0 {
                    return Value::Null;
                }
                let correct: f64 = confusion.iter().filter(|c| c.0 == c.1).map(|c| c.2).sum();
                let classes: BTreeSet<&str> = confusion.iter().flat_map(|c| [c.0.as_str(), c.1.as_str()]).collect();
                let counts = |class: &str| {
                    let mut tally = (0.0, 0.0, 0.0);
                    for (label, predicted, rows) in confusion {
                        match (label == class, predicted == class) {
                            (true, true) => tally.0 += rows,
                            (false, true) => tally.1 += rows,
                            (true, false) => tally.2 += rows,
                            (false, false) => {}
                        }
                    }
                    tally
                };
                let binary = classes.len() <= 2 && classes.contains(positive_label.as_str());
                let (precision, recall, f1) = if binary {
                    crate::performance::precision_recall_f1(counts(positive_label))
                } else {
                    let per_class: Vec<(f64, f64, f64)> = classes
                        .iter()
                        .map(|c| crate::performance::precision_recall_f1(counts(c)))
                        .collect();
                    let n = per_class.len() as f64;
                    (
                        per_class.iter().map(|c| c.0).sum::<f64>() / n,
                        per_class.iter().map(|c| c.1).sum::<f64>() / n,
                        per_class.iter().map(|c| c.2).sum::<f64>() / n,
                    )
                };
                let log_loss = log_loss.filter(|(_, rows)| *rows > 0.0).map(|(sum, rows)| sum / rows);
                for (name, value) in [
                    ("accuracy", Some(correct / total)),
                    ("precision", Some(precision)),
                    ("recall", Some(recall)),
                    ("f1", Some(f1)),
                    ("log_loss", log_loss),
                ] {
                    if let Some(value) = value {
                        figures.insert(format!("performance.{name}"), value);
                    }
                }
                json!({"labelled_rows": total, "average": if binary { "binary" } else { "macro" }})
            }
            PerformanceSketch::Regression(sums) => sums.figures(figures),
        }
    }
}

impl EstimateSketch {
    /// Both spans' sums.
    pub fn merge(&self, other: &EstimateSketch) -> EstimateSketch {
        EstimateSketch {
            rows: self.rows + other.rows,
            expected_correct: self.expected_correct + other.expected_correct,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::performance;

    fn texts(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn merged_tables_give_the_figures_of_all_rows_together() {
        let labels = texts(&["1", "0", "1", "1", "0", "0", "1", "0", "2", "1"]);
        let predicted = texts(&["1", "0", "0", "1", "1", "0", "1", "0", "1", "2"]);
        let scores = [0.9, 0.2, 0.4, 0.8, 0.6, 0.1, 0.7, 0.3, 0.5, 0.5];
        for split in [3, 6, 8] {
            let part = |range: std::ops::Range<usize>| {
                let pairs: Vec<(String, String, Option<f64>)> = range
                    .map(|i| (labels[i].clone(), predicted[i].clone(), Some(scores[i])))
                    .collect();
                PerformanceSketch::classification(&pairs, "1", 1.0, true).unwrap()
            };
            let merged = part(0..split).merge(&part(split..10)).unwrap();
            let mut figures = BTreeMap::new();
            merged.figures(&mut figures);
            let whole = performance::classification(&labels, &predicted, "1", Some(&scores)).unwrap();
            for (name, value) in [
                ("accuracy", whole.accuracy),
                ("precision", whole.precision),
                ("recall", whole.recall),
                ("f1", whole.f1),
                ("log_loss", whole.log_loss.unwrap()),
            ] {
                let got = figures[&format!("performance.{name}")];
                assert!((got - value).abs() < 1e-12, "{name}: {got} vs {value}");
            }
        }
    }

    #[test]
    fn merged_regression_sums_give_the_figures_of_all_rows_together() {
        let labels = [3.0, -0.5, 2.0, 7.0, 4.2, 1.1];
        let predicted = [2.5, 0.0, 2.0, 8.0, 4.0, 0.9];
        let pairs: Vec<(f64, f64)> = labels.iter().copied().zip(predicted).collect();
        let merged = PerformanceSketch::regression(&pairs[..2], 1.0)
            .unwrap()
            .merge(&PerformanceSketch::regression(&pairs[2..], 1.0).unwrap())
            .unwrap();
        let mut figures = BTreeMap::new();
        merged.figures(&mut figures);
        let whole = performance::regression(&labels, &predicted).unwrap();
        for (name, value) in [
            ("rmse", whole.rmse),
            ("mae", whole.mae),
            ("mape", whole.mape),
            ("r2", whole.r2),
        ] {
            let got = figures[&format!("performance.{name}")];
            assert!((got - value).abs() < 1e-9, "{name}: {got} vs {value}");
        }
        let classes = PerformanceSketch::classification(&[("1".into(), "1".into(), None)], "1", 1.0, false).unwrap();
        assert!(merged.merge(&classes).is_none());
    }

    #[test]
    fn health_adds_up_and_lying_sums_are_refused() {
        let a = HealthSketch {
            requests: 90.0,
            failures: 10.0,
            latency_ms: Digest::of_sorted(&[1.0, 2.0, 3.0], 1.0),
            ..HealthSketch::default()
        };
        let b = HealthSketch {
            requests: 100.0,
            bad_inputs: 5.0,
            latency_ms: Digest::of_sorted(&[4.0, 5.0], 1.0),
            ..HealthSketch::default()
        };
        let mut figures = BTreeMap::new();
        a.merge(&b).figures(&mut figures);
        assert_eq!(figures["requests"], 190.0);
        assert_eq!(figures["health.error_rate"], 10.0 / 205.0);
        assert_eq!(figures["health.latency_p50_ms"], 3.0);
        let lying = PerformanceSketch::Regression(RegressionSums {
            rows: -1.0,
            squared: 0.0,
            absolute: 0.0,
            percentage: 0.0,
            labels: 0.0,
            labels_squared: 0.0,
        });
        assert!(lying.check().is_err());
    }
}
