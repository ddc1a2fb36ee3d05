//! What each version did during the current rollout step (requests, failures, latencies, predictions; for a
//! shadow, agreement with the stable version), and the guardrail verdict drawn from it. A window starts
//! afresh on every step so each step is judged on its own traffic.

use std::collections::HashMap;

use serde_json::json;

use crate::spec::Guardrails;

/// Most latencies and predictions kept per version and step (the newest replace the oldest).
const KEPT: usize = 8192;

/// A bounded sample that keeps the newest values.
#[derive(Debug, Default, Clone)]
pub struct Recent {
    values: Vec<f64>,
    next: usize,
}

impl Recent {
    fn push(&mut self, value: f64) {
        if self.values.len() < KEPT {
            self.values.push(value);
        } else {
            self.values[self.next] = value;
            self.next = (self.next + 1) % KEPT;
        }
    }

    /// The values kept.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// The `q` quantile (nearest rank), if any values.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.values.is_empty() {
            return None;
        }
        let mut sorted = self.values.clone();
        sorted.sort_by(f64::total_cmp);
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        Some(sorted[rank - 1])
    }
}

/// One version on one step.
#[derive(Debug, Default, Clone)]
pub struct VersionWindow {
    /// Requests it took.
    pub requests: u64,
    /// Of which failed.
    pub failures: u64,
    /// Latencies, milliseconds.
    pub latency_ms: Recent,
    /// First output value per answered row.
    pub predictions: Recent,
}

impl VersionWindow {
    /// Failed share.
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.failures as f64 / self.requests as f64
        }
    }
}

/// A shadow version compared with the stable one.
#[derive(Debug, Default, Clone)]
pub struct ShadowWindow {
    /// Requests mirrored.
    pub mirrored: u64,
    /// The shadow failed.
    pub failures: u64,
    /// Answers compared row by row.
    pub compared_rows: u64,
    /// Rows where both answered the same (numbers within 1e-6 relative).
    pub agreeing_rows: u64,
    /// Shadow latencies, ms.
    pub latency_ms: Recent,
    /// The stable version's first outputs on mirrored requests.
    pub stable_predictions: Recent,
    /// The shadow's first outputs.
    pub shadow_predictions: Recent,
}

/// Everything seen on the current step.
#[derive(Debug, Default, Clone)]
pub struct Window {
    /// Per version.
    pub versions: HashMap<String, VersionWindow>,
    /// The shadow, if one runs.
    pub shadow: ShadowWindow,
}

impl Window {
    /// Counts one request answered (or failed) by `version`.
    pub fn observe(&mut self, version: &str, failed: bool, latency_ms: f64, predictions: &[f64]) {
        let window = self.versions.entry(version.to_string()).or_default();
        window.requests += 1;
        window.failures += u64::from(failed);
        window.latency_ms.push(latency_ms);
        for value in predictions {
            window.predictions.push(*value);
        }
    }

    /// Counts one mirrored request.
    pub fn observe_shadow(&mut self, stable: &[f64], shadow: Option<&[f64]>, latency_ms: f64) {
        let window = &mut self.shadow;
        window.mirrored += 1;
        let Some(shadow) = shadow else {
            window.failures += 1;
            return;
        };
        window.latency_ms.push(latency_ms);
        for (a, b) in stable.iter().zip(shadow) {
            window.compared_rows += 1;
            let scale = a.abs().max(b.abs()).max(1.0);
            window.agreeing_rows += u64::from((a - b).abs() <= 1e-6 * scale || (a.is_nan() && b.is_nan()));
        }
        for value in stable {
            window.stable_predictions.push(*value);
        }
        for value in shadow {
            window.shadow_predictions.push(*value);
        }
    }

    /// Requests `version` took on this step.
    pub fn requests(&self, version: &str) -> u64 {
        self.versions.get(version).map_or(0, |w| w.requests)
    }
}

/// A guardrail the candidate crossed.
#[derive(Debug, Clone, PartialEq)]
pub struct Breach {
    /// A sentence for people.
    pub reason: String,
    /// The figures, for the audit trail.
    pub details: serde_json::Value,
}

fn distance(a: &[f64], b: &[f64]) -> Option<f64> {
    let a: Vec<f64> = a.iter().copied().filter(|v| v.is_finite()).collect();
    let b: Vec<f64> = b.iter().copied().filter(|v| v.is_finite()).collect();
    loopline_drift_statistics::distances::kolmogorov_smirnov_statistic(&a, &b).ok()
}

/// Judges `candidate` against the guardrails, comparing with `stable` where both have enough traffic.
pub fn judge(guardrails: &Guardrails, window: &Window, stable: &str, candidate: &str) -> Option<Breach> {
    let enough = |w: &VersionWindow| w.requests >= guardrails.min_requests.max(1);
    let seen = window.versions.get(candidate).filter(|w| enough(w))?;
    let p99 = seen.latency_ms.quantile(0.99).unwrap_or(0.0);
    let base = json!({
        "version": candidate,
        "requests": seen.requests,
        "failures": seen.failures,
        "error_rate": seen.error_rate(),
        "p99_ms": p99,
    });
    let breach = |reason: String, extra: serde_json::Value| {
        let mut details = base.clone();
        if let (Some(details), Some(extra)) = (details.as_object_mut(), extra.as_object()) {
            details.extend(extra.clone());
        }
        Some(Breach { reason, details })
    };
    if seen.error_rate() > guardrails.max_error_rate {
        return breach(
            format!(
                "version {candidate} failed {} of {} requests ({:.1}%), above the {:.1}% limit",
                seen.failures,
                seen.requests,
                seen.error_rate() * 100.0,
                guardrails.max_error_rate * 100.0
            ),
            json!({"guardrail": "max_error_rate", "limit": guardrails.max_error_rate}),
        );
    }
    if let Some(limit) = guardrails.max_p99_ms
        && p99 > limit
    {
        return breach(
            format!("version {candidate} answered with p99 latency {p99:.1} ms, above the {limit} ms limit"),
            json!({"guardrail": "max_p99_ms", "limit": limit}),
        );
    }
    let reference = window
        .versions
        .get(stable)
        .filter(|w| enough(w) && stable != candidate)?;
    if let Some(ratio) = guardrails.max_p99_ratio {
        let stable_p99 = reference.latency_ms.quantile(0.99).unwrap_or(0.0).max(0.001);
        if p99 > stable_p99 * ratio {
            return breach(
                format!(
                    "version {candidate}'s p99 latency {p99:.2} ms is {:.1}x the stable version's {stable_p99:.2} ms, above the {ratio}x limit",
                    p99 / stable_p99
                ),
                json!({"guardrail": "max_p99_ratio", "limit": ratio, "stable_p99_ms": stable_p99}),
            );
        }
    }
    if let Some(limit) = guardrails.max_divergence
        && let Some(d) = distance(reference.predictions.values(), seen.predictions.values())
        && d > limit
    {
        return breach(
            format!(
                "version {candidate}'s predictions diverge from the stable version's (Kolmogorov-Smirnov distance {d:.3}, above {limit})"
            ),
            json!({"guardrail": "max_divergence", "limit": limit, "divergence": d}),
        );
    }
    None
}

/// Judges a shadow: its failures and, where set, the distance of its predictions from the stable version's.
pub fn judge_shadow(guardrails: &Guardrails, shadow: &ShadowWindow, version: &str) -> Option<Breach> {
    if shadow.mirrored < guardrails.min_requests.max(1) {
        return None;
    }
    let error_rate = shadow.failures as f64 / shadow.mirrored as f64;
    let details = json!({
        "version": version,
        "mirrored": shadow.mirrored,
        "failures": shadow.failures,
        "agreement": agreement(shadow),
    });
    if error_rate > guardrails.max_error_rate {
        return Some(Breach {
            reason: format!(
                "shadow version {version} failed {} of {} mirrored requests, above the {:.1}% limit",
                shadow.failures,
                shadow.mirrored,
                guardrails.max_error_rate * 100.0
            ),
            details,
        });
    }
    if let Some(limit) = guardrails.max_divergence
        && let Some(d) = distance(shadow.stable_predictions.values(), shadow.shadow_predictions.values())
        && d > limit
    {
        return Some(Breach {
            reason: format!(
                "shadow version {version}'s predictions diverge from the stable version's (Kolmogorov-Smirnov distance {d:.3}, above {limit})"
            ),
            details,
        });
    }
    None
}

/// Share of compared rows on which the shadow agreed.
pub fn agreement(shadow: &ShadowWindow) -> Option<f64> {
    (shadow.compared_rows > 0).then(|| shadow.agreeing_rows as f64 / shadow.compared_rows as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guardrails(json: serde_json::Value) -> Guardrails {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn failing_slow_and_diverging_candidates_breach() {
        let limits =
            guardrails(json!({"min_requests": 10, "max_p99_ms": 100, "max_p99_ratio": 5, "max_divergence": 0.5}));
        let mut window = Window::default();
        for i in 0..20 {
            window.observe("1", false, 1.0, &[f64::from(i)]);
            window.observe("2", i % 2 == 0, 1.0, &[f64::from(i)]);
        }
        let breach = judge(&limits, &window, "1", "2").unwrap();
        assert!(breach.reason.contains("failed 10 of 20"), "{}", breach.reason);
        assert_eq!(breach.details["guardrail"], "max_error_rate");

        let mut window = Window::default();
        for i in 0..20 {
            window.observe("1", false, 1.0, &[f64::from(i)]);
            window.observe("2", false, 150.0, &[f64::from(i)]);
        }
        assert_eq!(
            judge(&limits, &window, "1", "2").unwrap().details["guardrail"],
            "max_p99_ms"
        );

        let mut window = Window::default();
        for i in 0..20 {
            window.observe("1", false, 1.0, &[f64::from(i)]);
            window.observe("2", false, 9.0, &[f64::from(i)]);
        }
        assert_eq!(
            judge(&limits, &window, "1", "2").unwrap().details["guardrail"],
            "max_p99_ratio"
        );

        let mut window = Window::default();
        for i in 0..20 {
            window.observe("1", false, 1.0, &[f64::from(i)]);
            window.observe("2", false, 1.0, &[f64::from(i) + 100.0]);
        }
        assert_eq!(
            judge(&limits, &window, "1", "2").unwrap().details["guardrail"],
            "max_divergence"
        );
    }

    #[test]
    fn healthy_or_unproven_candidates_pass() {
        let limits = guardrails(json!({"min_requests": 10, "max_p99_ms": 100}));
        let mut window = Window::default();
        for i in 0..9 {
            window.observe("2", true, 1.0, &[f64::from(i)]);
        }
        assert_eq!(
            judge(&limits, &window, "1", "2"),
            None,
            "nine requests are too few to judge"
        );
        let mut window = Window::default();
        window.observe("2", true, 1.0, &[0.0]);
        for i in 0..38 {
            window.observe("2", false, 2.0, &[f64::from(i)]);
        }
        assert_eq!(window.requests("2"), 39);
        assert_eq!(judge(&limits, &window, "1", "2"), None);
    }

    #[test]
    fn shadows_are_compared_row_by_row() {
        let mut window = Window::default();
        window.observe_shadow(&[1.0, 2.0, 3.0, 4.0], Some(&[1.0, 2.0, 3.5, 4.0]), 1.0);
        window.observe_shadow(&[1.0], None, 0.0);
        assert_eq!(agreement(&window.shadow), Some(0.75));
        assert_eq!((window.shadow.mirrored, window.shadow.failures), (2, 1));
        let limits = guardrails(json!({"min_requests": 2, "max_error_rate": 0.1}));
        assert!(judge_shadow(&limits, &window.shadow, "2").is_some());
    }

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let mut recent = Recent::default();
        for i in 1..=100 {
            recent.push(f64::from(i));
        }
        assert_eq!(recent.quantile(0.99), Some(99.0));
        assert_eq!(recent.quantile(0.5), Some(50.0));
    }
}
