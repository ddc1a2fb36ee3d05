//! Deployment metrics in the Prometheus text format: requests per version and outcome, each version's share
//! of traffic, the current step, rollbacks, and shadow agreement. Per-version latency histograms are the
//! serving metrics' (`loopline_inference_request_seconds`), since a deployment's versions are served models.

use std::fmt::Write;
use std::sync::Arc;

use crate::live::Live;
use crate::state::plan;
use crate::window::agreement;

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Appends the metrics of `deployments` to `out`.
pub fn render(deployments: &[Arc<Live>], out: &mut String) {
    let mut requests = String::new();
    let mut seconds = String::new();
    let mut share = String::new();
    let mut step = String::new();
    let mut rollbacks = String::new();
    let mut mirrored = String::new();
    let mut agreeing = String::new();
    let mut sorted: Vec<&Arc<Live>> = deployments.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    for live in sorted {
        let name = escape(&live.name);
        let (planned, current_step, total_rollbacks) = {
            let inner = live.read();
            let current = inner.state.rollout.as_ref().map_or(-1, |r| r.step as i64);
            (plan(&inner.spec, &inner.state), current, inner.state.rollbacks)
        };
        let totals = live
            .totals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut versions: Vec<_> = totals.into_iter().collect();
        versions.sort_by(|a, b| a.0.cmp(&b.0));
        for (version, totals) in &versions {
            let version = escape(version);
            for (outcome, count) in [("success", totals.success), ("failure", totals.failure)] {
                let _ = writeln!(
                    requests,
                    "loopline_deployment_requests_total{{deployment=\"{name}\",version=\"{version}\",outcome=\"{outcome}\"}} {count}"
                );
            }
            let _ = writeln!(
                seconds,
                "loopline_deployment_request_seconds_sum{{deployment=\"{name}\",version=\"{version}\"}} {}",
                totals.seconds
            );
            let _ = writeln!(
                seconds,
                "loopline_deployment_request_seconds_count{{deployment=\"{name}\",version=\"{version}\"}} {}",
                totals.success + totals.failure
            );
            if totals.mirrored > 0 {
                let _ = writeln!(
                    mirrored,
                    "loopline_deployment_shadow_requests_total{{deployment=\"{name}\",version=\"{version}\"}} {}",
                    totals.mirrored
                );
            }
        }
        for (version, fraction) in &planned.arms {
            let _ = writeln!(
                share,
                "loopline_deployment_traffic_share{{deployment=\"{name}\",version=\"{}\"}} {fraction}",
                escape(version)
            );
        }
        if let Some((version, _)) = &planned.shadow {
            let window = live.window.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(rate) = agreement(&window.shadow) {
                let _ = writeln!(
                    agreeing,
                    "loopline_deployment_shadow_agreement{{deployment=\"{name}\",version=\"{}\"}} {rate}",
                    escape(version)
                );
            }
        }
        let _ = writeln!(
            step,
            "loopline_deployment_rollout_step{{deployment=\"{name}\"}} {current_step}"
        );
        let _ = writeln!(
            rollbacks,
            "loopline_deployment_rollbacks_total{{deployment=\"{name}\"}} {total_rollbacks}"
        );
    }
    let families = [
        (
            "loopline_deployment_requests_total",
            "counter",
            "Requests answered through a deployment, by version and outcome.",
            requests,
        ),
        (
            "loopline_deployment_request_seconds",
            "summary",
            "Time in the model for requests through a deployment, by version.",
            seconds,
        ),
        (
            "loopline_deployment_traffic_share",
            "gauge",
            "Configured share of a deployment's traffic per version (0 to 1).",
            share,
        ),
        (
            "loopline_deployment_rollout_step",
            "gauge",
            "Current rollout step (-1: no rollout under way).",
            step,
        ),
        (
            "loopline_deployment_rollbacks_total",
            "counter",
            "Rollbacks of a deployment, by hand or by a guardrail.",
            rollbacks,
        ),
        (
            "loopline_deployment_shadow_requests_total",
            "counter",
            "Requests mirrored to a shadow version.",
            mirrored,
        ),
        (
            "loopline_deployment_shadow_agreement",
            "gauge",
            "Share of rows on which the shadow agreed with the stable version this step.",
            agreeing,
        ),
    ];
    for (family, kind, help, lines) in families {
        if lines.is_empty() {
            continue;
        }
        let _ = writeln!(out, "# HELP {family} {help}");
        let _ = writeln!(out, "# TYPE {family} {kind}");
        out.push_str(&lines);
    }
}
