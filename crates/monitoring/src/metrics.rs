//! Monitor figures as Prometheus gauges, from each monitor's newest window.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::service::Monitoring;

/// Drift score per monitor and column (`column="__prediction__"` for the prediction).
pub const DRIFT_SCORE: &str = "loopline_monitor_drift_score";
/// 1 when the column drifted in the newest window.
pub const DRIFT_DETECTED: &str = "loopline_monitor_drift_detected";
/// Share of drifted columns.
pub const DRIFT_SHARE: &str = "loopline_monitor_drift_share";
/// Realised performance per metric.
pub const PERFORMANCE: &str = "loopline_monitor_performance";
/// Estimated performance (CBPE) per metric, with `_lower`/`_upper` band metrics.
pub const ESTIMATED_PERFORMANCE: &str = "loopline_monitor_estimated_performance";
/// Serving health per figure (failures, error rate, latency quantiles).
pub const HEALTH: &str = "loopline_monitor_health";
/// Quality findings per check.
pub const QUALITY_FINDINGS: &str = "loopline_monitor_quality_findings";
/// Predictions in the newest window.
pub const WINDOW_ROWS: &str = "loopline_monitor_window_rows";
/// Labels joined in the newest window.
pub const WINDOW_LABELS: &str = "loopline_monitor_window_labels";
/// Alerts firing by severity.
pub const ALERTS_FIRING: &str = "loopline_monitor_alerts_firing";

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Monitoring {
    /// Appends the gauges to a Prometheus text exposition.
    pub fn render_metrics(&self, out: &mut String) {
        let latest = self.latest.lock().expect("latest figures lock: this is a bug").clone();
        let families: [(&str, &str, &str, &str); 9] = [
            (
                DRIFT_SCORE,
                "drift score of a column in the newest window",
                "drift.score.",
                "column",
            ),
            (
                DRIFT_DETECTED,
                "1 when a column drifted in the newest window",
                "drift.detected.",
                "column",
            ),
            (
                PERFORMANCE,
                "realised performance in the newest window",
                "performance.",
                "metric",
            ),
            (HEALTH, "serving health in the newest window", "health.", "figure"),
            (
                ESTIMATED_PERFORMANCE,
                "estimated performance (CBPE) in the newest window",
                "estimated.",
                "metric",
            ),
            (
                QUALITY_FINDINGS,
                "data-quality findings in the newest window",
                "quality.",
                "check",
            ),
            (
                DRIFT_SHARE,
                "share of drifted columns in the newest window",
                "drift.share",
                "",
            ),
            (WINDOW_ROWS, "predictions in the newest window", "rows", ""),
            (WINDOW_LABELS, "labels joined in the newest window", "labels", ""),
        ];
        for (family, help, prefix, label) in families {
            let _ = writeln!(out, "# HELP {family} {help}\n# TYPE {family} gauge");
            for (monitor, figures) in &latest {
                let monitor = escape(monitor);
                for (name, value) in &figures.figures {
                    if label.is_empty() {
                        if name == prefix {
                            let _ = writeln!(out, "{family}{{monitor=\"{monitor}\"}} {value}");
                        }
                        continue;
                    }
                    let Some(key) = name.strip_prefix(prefix) else { continue };
                    if prefix == "quality." && (key.starts_with("missing_share.") || key == "findings") {
                        continue;
                    }
                    let _ = writeln!(
                        out,
                        "{family}{{monitor=\"{monitor}\",{label}=\"{}\"}} {value}",
                        escape(key)
                    );
                }
                if prefix.starts_with("drift.score") || prefix.starts_with("drift.detected") {
                    let own = if prefix.starts_with("drift.score") {
                        "prediction_drift.score"
                    } else {
                        "prediction_drift.detected"
                    };
                    if let Some(value) = figures.figures.get(own) {
                        let _ = writeln!(
                            out,
                            "{family}{{monitor=\"{monitor}\",{label}=\"__prediction__\"}} {value}"
                        );
                    }
                }
            }
        }
        let mut firing: BTreeMap<&str, u64> = crate::spec::SEVERITIES.iter().map(|s| (*s, 0)).collect();
        for figures in latest.values() {
            for severity in &figures.firing {
                if let Some(count) = firing.get_mut(severity.as_str()) {
                    *count += 1;
                }
            }
        }
        let _ = writeln!(
            out,
            "# HELP {ALERTS_FIRING} monitor alerts firing\n# TYPE {ALERTS_FIRING} gauge"
        );
        for (severity, count) in firing {
            let _ = writeln!(out, "{ALERTS_FIRING}{{severity=\"{severity}\"}} {count}");
        }
    }
}

impl loopline_serving::routes::MetricsSource for Monitoring {
    fn render_metrics(&self, out: &mut String) {
        Monitoring::render_metrics(self, out);
    }
}
