//! A gate's decision: every check of the policy judged on the candidate's and the champion's evaluations
//! of the same rows, with the figures behind each verdict kept as evidence.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::evaluate::TableEvaluation;
use super::metrics::{Outcomes, fairness};
use super::policy::{GatePolicy, higher_is_better};
use super::stats::{mcnemar, paired_bootstrap, percentile};

/// Slices judged at most per check (values with enough rows, in order).
const MAX_SLICES: usize = 1_000;

/// What is known about the run being judged.
#[derive(Debug, Clone)]
pub struct GateSubject {
    /// The registered model.
    pub name: String,
    /// The candidate version.
    pub version: i64,
    /// The champion's version, when the first protected alias points at one.
    pub champion_version: Option<i64>,
    /// The dataset version evaluated on.
    pub dataset: String,
    /// Its content id.
    pub dataset_hash: String,
}

/// A model's figures: its metrics, latencies and size.
pub fn figures(evaluation: &TableEvaluation, size_bytes: u64) -> BTreeMap<String, f64> {
    let mut figures = evaluation.outcomes.metrics();
    if !evaluation.latencies_ms.is_empty() {
        let mut sorted = evaluation.latencies_ms.clone();
        sorted.sort_by(f64::total_cmp);
        figures.insert("latency_p50_ms".into(), percentile(&sorted, 0.5));
        figures.insert("latency_p99_ms".into(), percentile(&sorted, 0.99));
    }
    figures.insert("model_size_bytes".into(), size_bytes as f64);
    figures
}

struct Verdicts {
    checks: Vec<Value>,
    failed: Vec<String>,
}

impl Verdicts {
    fn add(&mut self, kind: &str, check: String, passed: bool, details: Value, why: String) {
        if !passed {
            self.failed.push(why);
        }
        self.checks
            .push(json!({"kind": kind, "check": check, "passed": passed, "details": details}));
    }
}

/// Judges the candidate; returns whether it passed and the evidence.
pub fn decide(
    policy: &GatePolicy,
    subject: &GateSubject,
    candidate: (&TableEvaluation, u64),
    champion: Option<(&TableEvaluation, u64)>,
) -> (bool, Value) {
    let candidate_figures = figures(candidate.0, candidate.1);
    let champion_figures = champion.map(|(e, size)| figures(e, size));
    let mut verdicts = Verdicts {
        checks: Vec::new(),
        failed: Vec::new(),
    };
    for check in &policy.checks {
        let value = candidate_figures.get(&check.metric).copied();
        let Some(value) = value else {
            verdicts.add(
                "threshold",
                check.metric.clone(),
                false,
                Value::Null,
                format!("{} is not computed for this model and data", check.metric),
            );
            continue;
        };
        if let Some(min) = check.min {
            verdicts.add(
                "threshold",
                format!("{} >= {min}", check.metric),
                value >= min,
                json!({"value": value}),
                format!("{} is {value:.4}, below the minimum {min}", check.metric),
            );
        }
        if let Some(max) = check.max {
            verdicts.add(
                "threshold",
                format!("{} <= {max}", check.metric),
                value <= max,
                json!({"value": value}),
                format!("{} is {value:.4}, above the maximum {max}", check.metric),
            );
        }
    }
    if let Some(limit) = policy.max_latency_p99_ms {
        let value = candidate_figures
            .get("latency_p99_ms")
            .copied()
            .unwrap_or(f64::INFINITY);
        verdicts.add(
            "latency",
            format!("latency_p99_ms <= {limit}"),
            value <= limit,
            json!({"value": value}),
            format!("one-row latency p99 is {value:.2} ms, over the budget of {limit} ms"),
        );
    }
    if let Some(limit) = policy.max_model_bytes {
        verdicts.add(
            "size",
            format!("model_size_bytes <= {limit}"),
            candidate.1 <= limit,
            json!({"value": candidate.1}),
            format!("the model is {} bytes, over the limit of {limit}", candidate.1),
        );
    }
    match champion {
        None => {
            if !policy.no_regression.is_empty() || policy.mcnemar_alpha.is_some() || !policy.slices.is_empty() {
                verdicts.checks.push(
                    json!({"kind": "comparison", "check": "against the champion", "passed": true,
                    "details": {"note": "no champion yet: nothing to regress against"}}),
                );
            }
        }
        Some((champion_evaluation, _)) => compare(policy, candidate.0, champion_evaluation, &mut verdicts),
    }
    for check in &policy.fairness {
        let Outcomes::Classes {
            truth,
            predicted,
            positive: Some(positive),
            ..
        } = &candidate.0.outcomes
        else {
            verdicts.add(
                "fairness",
                check.attribute.clone(),
                false,
                Value::Null,
                format!("fairness over '{}' needs a binary classifier", check.attribute),
            );
            continue;
        };
        let groups = &candidate.0.side[&check.attribute];
        let gaps = fairness(truth, predicted, groups, positive);
        if let Some(max) = check.max_demographic_parity_difference {
            let value = gaps.demographic_parity_difference;
            verdicts.add(
                "fairness",
                format!("demographic parity difference over {} <= {max}", check.attribute),
                value <= max,
                json!({"value": value}),
                format!(
                    "demographic parity difference over '{}' is {value:.4}, above {max}",
                    check.attribute
                ),
            );
        }
        if let Some(max) = check.max_equalized_odds_difference {
            let value = gaps.equalized_odds_difference;
            verdicts.add(
                "fairness",
                format!("equalized odds difference over {} <= {max}", check.attribute),
                value <= max,
                json!({"value": value}),
                format!(
                    "equalized odds difference over '{}' is {value:.4}, above {max}",
                    check.attribute
                ),
            );
        }
    }
    let passed = verdicts.failed.is_empty();
    let evidence = json!({
        "model": subject.name,
        "candidate_version": subject.version,
        "champion_version": subject.champion_version,
        "dataset": subject.dataset,
        "dataset_hash": subject.dataset_hash,
        "rows": candidate.0.outcomes.len(),
        "task": candidate.0.task,
        "candidate": candidate_figures,
        "champion": champion_figures,
        "checks": verdicts.checks,
        "failed": verdicts.failed,
        "passed": passed,
    });
    (passed, evidence)
}

fn compare(policy: &GatePolicy, candidate: &TableEvaluation, champion: &TableEvaluation, verdicts: &mut Verdicts) {
    for (index, check) in policy.no_regression.iter().enumerate() {
        let seed = policy.seed.wrapping_add(index as u64);
        let Some(interval) = paired_bootstrap(
            &champion.outcomes,
            &candidate.outcomes,
            &check.metric,
            policy.resamples,
            check.confidence,
            seed,
        ) else {
            verdicts.add(
                "no_regression",
                check.metric.clone(),
                false,
                Value::Null,
                format!("{} cannot be compared on this data", check.metric),
            );
            continue;
        };
        let (passed, why) = if higher_is_better(&check.metric) {
            (
                interval.low >= -check.margin,
                format!(
                    "{} may be worse than the champion's: the {:.0}% interval of the difference reaches {:.4}, past the margin -{}",
                    check.metric,
                    check.confidence * 100.0,
                    interval.low,
                    check.margin
                ),
            )
        } else {
            (
                interval.high <= check.margin,
                format!(
                    "{} may be worse than the champion's: the {:.0}% interval of the difference reaches {:.4}, past the margin {}",
                    check.metric,
                    check.confidence * 100.0,
                    interval.high,
                    check.margin
                ),
            )
        };
        verdicts.add(
            "no_regression",
            format!(
                "{} not worse than the champion by more than {}",
                check.metric, check.margin
            ),
            passed,
            serde_json::to_value(interval).unwrap_or_default(),
            why,
        );
    }
    if let (Some(alpha), Some(champion_right), Some(candidate_right)) = (
        policy.mcnemar_alpha,
        champion.outcomes.correct(),
        candidate.outcomes.correct(),
    ) {
        let test = mcnemar(&champion_right, &candidate_right);
        let worse = test.candidate_only < test.champion_only && test.p_value < alpha;
        verdicts.add("mcnemar", format!("not significantly less accurate (McNemar, alpha {alpha})"), !worse,
            serde_json::to_value(test).unwrap_or_default(),
            format!("the candidate is significantly less accurate than the champion (McNemar p = {:.4}: {} rows only the champion got right, {} only the candidate)",
                test.p_value, test.champion_only, test.candidate_only));
    }
    for check in &policy.slices {
        let values = &candidate.side[&check.column];
        // Rows grouped by value in one pass (a column with many values must not cost rows × values).
        let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (row, value) in values.iter().enumerate() {
            groups.entry(value.as_str()).or_default().push(row);
        }
        let mut slices = Vec::new();
        let mut worst: Option<(String, f64)> = None;
        for (value, rows) in groups
            .into_iter()
            .filter(|(_, rows)| rows.len() >= check.min_rows)
            .take(MAX_SLICES)
        {
            let a = champion.outcomes.select(&rows).metrics().get(&check.metric).copied();
            let b = candidate.outcomes.select(&rows).metrics().get(&check.metric).copied();
            let drop = match (a, b) {
                (Some(a), Some(b)) if higher_is_better(&check.metric) => Some(a - b),
                (Some(a), Some(b)) => Some(b - a),
                _ => None,
            };
            slices.push(json!({"value": value, "rows": rows.len(), "champion": a, "candidate": b, "drop": drop}));
            if let Some(drop) = drop
                && worst.as_ref().is_none_or(|(_, w)| drop > *w)
            {
                worst = Some((value.to_string(), drop));
            }
        }
        let passed = worst.as_ref().is_none_or(|(_, drop)| *drop <= check.max_drop);
        let (slice, drop) = worst.unwrap_or_default();
        verdicts.add(
            "slices",
            format!(
                "no {} slice loses more than {} of {}",
                check.column, check.max_drop, check.metric
            ),
            passed,
            json!({"slices": slices}),
            format!(
                "slice {}={slice} loses {drop:.4} of {} against the champion, more than {}",
                check.column, check.metric, check.max_drop
            ),
        );
    }
}
