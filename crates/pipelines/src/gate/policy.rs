//! A registered model's gate policy: which aliases it protects, the evaluation data (a dataset version, so
//! both models see the same rows), and the checks a candidate must pass.

use serde::{Deserialize, Serialize};

use crate::pipeline::spec::EVALUATION_METRICS;

/// The most checks of all kinds a policy may hold.
const MAX_CHECKS: usize = 50;

/// Classification or regression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Predicting classes.
    Classification,
    /// Predicting numbers.
    Regression,
}

/// A bound on a metric of the candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricCheck {
    /// The metric.
    pub metric: String,
    /// Its least value.
    #[serde(default)]
    pub min: Option<f64>,
    /// Its greatest value.
    #[serde(default)]
    pub max: Option<f64>,
}

/// No regression against the champion: the bootstrap interval of (candidate - champion) must not reach
/// past `margin` in the worse direction (non-inferiority at `confidence`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegressionCheck {
    /// The metric.
    pub metric: String,
    /// How much worse is tolerated, in the metric's units.
    #[serde(default = "default_margin")]
    pub margin: f64,
    /// The interval's confidence.
    #[serde(default = "default_confidence")]
    pub confidence: f64,
}

/// No slice (a value of a column) may lose more than `max_drop` of a metric against the champion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SliceCheck {
    /// The column whose values are the slices.
    pub column: String,
    /// The metric.
    pub metric: String,
    /// The largest drop tolerated.
    pub max_drop: f64,
    /// Slices with fewer rows are left out.
    #[serde(default = "default_min_rows")]
    pub min_rows: usize,
}

/// Fairness bounds over the groups of a protected attribute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FairnessCheck {
    /// The attribute's column.
    pub attribute: String,
    /// Largest demographic parity difference.
    #[serde(default)]
    pub max_demographic_parity_difference: Option<f64>,
    /// Largest equalised odds difference.
    #[serde(default)]
    pub max_equalized_odds_difference: Option<f64>,
}

/// A gate policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatePolicy {
    /// Aliases that only a version with a passing gate may take.
    #[serde(default = "default_aliases")]
    pub protected_aliases: Vec<String>,
    /// The evaluation data: a table dataset version, `name@version`.
    pub dataset: String,
    /// The column holding the truth.
    pub target: String,
    /// Classification or regression (inferred from the target when absent).
    #[serde(default)]
    pub task: Option<Task>,
    /// The positive class of a binary task (inferred: `1`, `true`, `yes`, else the larger label).
    #[serde(default)]
    pub positive_label: Option<String>,
    /// Columns never given to the model (ids, timestamps), besides the target.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Bounds on the candidate's metrics.
    #[serde(default)]
    pub checks: Vec<MetricCheck>,
    /// Non-inferiority against the champion.
    #[serde(default)]
    pub no_regression: Vec<RegressionCheck>,
    /// Fails a classifier significantly worse than the champion by McNemar's test at this level.
    #[serde(default)]
    pub mcnemar_alpha: Option<f64>,
    /// Per-slice non-regression.
    #[serde(default)]
    pub slices: Vec<SliceCheck>,
    /// Fairness bounds.
    #[serde(default)]
    pub fairness: Vec<FairnessCheck>,
    /// Largest 99th-percentile latency of one row, milliseconds, as the runtime measures it.
    #[serde(default)]
    pub max_latency_p99_ms: Option<f64>,
    /// Largest model (its files), bytes.
    #[serde(default)]
    pub max_model_bytes: Option<u64>,
    /// Bootstrap resamples.
    #[serde(default = "default_resamples")]
    pub resamples: usize,
    /// Bootstrap seed.
    #[serde(default = "default_seed")]
    pub seed: u64,
}

fn default_aliases() -> Vec<String> {
    vec!["champion".into()]
}
fn default_margin() -> f64 {
    0.01
}
fn default_confidence() -> f64 {
    0.95
}
fn default_min_rows() -> usize {
    30
}
fn default_resamples() -> usize {
    1_000
}
fn default_seed() -> u64 {
    42
}

/// Whether a larger value of a metric is better.
pub fn higher_is_better(metric: &str) -> bool {
    !matches!(
        metric,
        "mae" | "mse" | "rmse" | "log_loss" | "latency_p50_ms" | "latency_p99_ms" | "model_size_bytes"
    )
}

impl GatePolicy {
    /// Reads and checks a policy: known metrics, sensible bounds, a dataset version and aliases.
    pub fn parse(value: serde_json::Value) -> Result<GatePolicy, String> {
        let policy: GatePolicy =
            serde_json::from_value(value).map_err(|e| format!("the gate policy is not valid: {e}"))?;
        let known = |metric: &str, field: &str| {
            if EVALUATION_METRICS.contains(&metric) {
                Ok(())
            } else {
                Err(format!(
                    "{field}: unknown metric '{metric}' (one of {})",
                    EVALUATION_METRICS.join(", ")
                ))
            }
        };
        let checks = policy.checks.len() + policy.no_regression.len() + policy.slices.len() + policy.fairness.len();
        if checks > MAX_CHECKS {
            return Err(format!("a policy has at most {MAX_CHECKS} checks, not {checks}"));
        }
        if policy.target.trim().is_empty() {
            return Err("target: the column holding the truth is required".into());
        }
        for check in &policy.checks {
            known(&check.metric, "checks")?;
            if check.min.is_none() && check.max.is_none() {
                return Err(format!("checks: the check of {} needs min or max", check.metric));
            }
            if let (Some(min), Some(max)) = (check.min, check.max)
                && min > max
            {
                return Err(format!(
                    "checks: the check of {} has min {min} above max {max}",
                    check.metric
                ));
            }
        }
        for alias in &policy.protected_aliases {
            let valid = !alias.is_empty()
                && alias.len() <= 255
                && alias.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                && !alias.eq_ignore_ascii_case("latest");
            if !valid {
                return Err(format!(
                    "protected_aliases: '{alias}' is not an alias (letters, digits, '_', '-')"
                ));
            }
        }
        for check in &policy.slices {
            if !check.max_drop.is_finite() || check.max_drop < 0.0 {
                return Err(format!(
                    "slices: max_drop of {} is a number of at least 0",
                    check.column
                ));
            }
        }
        for check in &policy.fairness {
            let bounds = [
                check.max_demographic_parity_difference,
                check.max_equalized_odds_difference,
            ];
            if bounds.iter().all(Option::is_none) || bounds.iter().flatten().any(|b| !b.is_finite() || *b < 0.0) {
                return Err(format!("fairness: {} needs a bound of at least 0", check.attribute));
            }
        }
        for check in &policy.no_regression {
            known(&check.metric, "no_regression")?;
            if !(0.5..1.0).contains(&check.confidence) || !check.margin.is_finite() || check.margin < 0.0 {
                return Err(format!(
                    "no_regression: {}: confidence is in [0.5, 1) and margin at least 0",
                    check.metric
                ));
            }
        }
        for check in &policy.slices {
            known(&check.metric, "slices")?;
        }
        if policy.mcnemar_alpha.is_some_and(|a| a <= 0.0 || a >= 0.5) {
            return Err("mcnemar_alpha is in (0, 0.5)".into());
        }
        if policy.protected_aliases.is_empty() || policy.protected_aliases.len() > 20 {
            return Err("protected_aliases names 1 to 20 aliases".into());
        }
        let (name, version) = policy
            .dataset
            .split_once('@')
            .ok_or("dataset: the evaluation data is a dataset version, name@version")?;
        crate::data::pointer::check_name(name).map_err(|e| format!("dataset: {e}"))?;
        version.parse::<u32>().map_err(|_| {
            format!("dataset: '{version}' is not a version number (the data must not change under the gate)")
        })?;
        if !(1..=10_000).contains(&policy.resamples) {
            return Err("resamples is from 1 to 10000".into());
        }
        Ok(policy)
    }

    /// The dataset's name and version.
    pub fn dataset_version(&self) -> (&str, i64) {
        let (name, version) = self.dataset.split_once('@').unwrap_or((&self.dataset, "0"));
        (name, version.parse().unwrap_or(0))
    }

    /// Columns read besides the model's inputs: slices and protected attributes.
    pub fn side_columns(&self) -> Vec<String> {
        let mut columns: Vec<String> = self
            .slices
            .iter()
            .map(|s| s.column.clone())
            .chain(self.fairness.iter().map(|f| f.attribute.clone()))
            .collect();
        columns.sort();
        columns.dedup();
        columns
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<f64>().prop_map(|v| serde_json::json!(v)),
            any::<i64>().prop_map(|v| serde_json::json!(v)),
            "[a-z@0-9 ]{0,12}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("dataset".to_string()),
                        Just("target".to_string()),
                        Just("checks".to_string()),
                        Just("metric".to_string()),
                        Just("min".to_string()),
                        Just("slices".to_string()),
                        Just("resamples".to_string()),
                        Just("protected_aliases".to_string()),
                    ],
                    inner,
                    0..6
                )
                .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn generated_policies_are_refused_or_sound(policy in value()) {
            if let Ok(parsed) = GatePolicy::parse(policy) {
                prop_assert!(!parsed.target.trim().is_empty() && (1..=10_000).contains(&parsed.resamples));
            }
        }
    }
}
