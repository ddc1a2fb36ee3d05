//! Serving metrics in the Prometheus text format (0.0.4): requests by protocol and outcome, rows predicted,
//! batches run, latency histograms (queue, compute, end to end), batch sizes, and queued rows per model —
//! the signal to autoscale on. Labels stay bounded: model, version, protocol, outcome.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

const PREFIX: &str = "loopline";
const SECONDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const ROWS: [f64; 11] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];

#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, value: f64) {
        if let Some(slot) = self.bounds.iter().position(|bound| value <= *bound) {
            self.counts[slot] += 1;
        }
        self.sum += value;
        self.count += 1;
    }
}

type Key = (String, String);

#[derive(Debug, Default)]
struct State {
    requests: BTreeMap<(String, String, &'static str, &'static str), u64>,
    rows: BTreeMap<Key, u64>,
    batches: BTreeMap<Key, u64>,
    request_seconds: BTreeMap<Key, Histogram>,
    queue_seconds: BTreeMap<Key, Histogram>,
    compute_seconds: BTreeMap<Key, Histogram>,
    batch_rows: BTreeMap<Key, Histogram>,
}

/// How a request ended, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered.
    Success,
    /// Refused for bad input.
    BadInput,
    /// Refused because the queue was full.
    Rejected,
    /// The model failed or was unavailable.
    Failure,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::BadInput => "bad_input",
            Outcome::Rejected => "rejected",
            Outcome::Failure => "failure",
        }
    }
}

/// One server's serving metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    state: Mutex<State>,
}

fn key(model: &str, version: &str) -> Key {
    (model.to_string(), version.to_string())
}

impl Metrics {
    fn with<R>(&self, change: impl FnOnce(&mut State) -> R) -> R {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        change(&mut state)
    }

    /// Counts a finished request and its end-to-end time.
    pub fn request(&self, model: &str, version: &str, protocol: &'static str, outcome: Outcome, took: Duration) {
        self.with(|state| {
            *state
                .requests
                .entry((model.to_string(), version.to_string(), protocol, outcome.label()))
                .or_default() += 1;
            if outcome == Outcome::Success {
                state
                    .request_seconds
                    .entry(key(model, version))
                    .or_insert_with(|| Histogram::new(&SECONDS))
                    .observe(took.as_secs_f64());
            }
        });
    }

    /// Records a batch run: its rows, how long its requests queued, and the compute time.
    pub fn batch(&self, model: &str, version: &str, rows: usize, queued: &[Duration], compute: Duration) {
        self.with(|state| {
            let key = key(model, version);
            *state.rows.entry(key.clone()).or_default() += rows as u64;
            *state.batches.entry(key.clone()).or_default() += 1;
            state
                .batch_rows
                .entry(key.clone())
                .or_insert_with(|| Histogram::new(&ROWS))
                .observe(rows as f64);
            let queue = state
                .queue_seconds
                .entry(key.clone())
                .or_insert_with(|| Histogram::new(&SECONDS));
            for wait in queued {
                queue.observe(wait.as_secs_f64());
            }
            state
                .compute_seconds
                .entry(key)
                .or_insert_with(|| Histogram::new(&SECONDS))
                .observe(compute.as_secs_f64());
        });
    }

    /// The exposition text; `queues` gives (model, version, queued rows) for each loaded model.
    pub fn render(&self, queues: &[(String, String, usize)]) -> String {
        let mut out = String::new();
        self.with(|state| {
            family(&mut out, "inference_requests_total", "counter", "Inference requests, by protocol and outcome.");
            for ((model, version, protocol, outcome), value) in &state.requests {
                let _ = writeln!(
                    out,
                    "{PREFIX}_inference_requests_total{{model=\"{}\",version=\"{}\",protocol=\"{protocol}\",outcome=\"{outcome}\"}} {value}",
                    escape(model),
                    escape(version)
                );
            }
            counters(&mut out, "inference_rows_total", "Rows predicted.", &state.rows);
            counters(&mut out, "inference_batches_total", "Batches run.", &state.batches);
            histograms(
                &mut out,
                "inference_request_duration_seconds",
                "End-to-end time of answered requests.",
                &state.request_seconds,
            );
            histograms(
                &mut out,
                "inference_queue_duration_seconds",
                "Time requests waited for a batch.",
                &state.queue_seconds,
            );
            histograms(
                &mut out,
                "inference_compute_duration_seconds",
                "Time the model took per batch.",
                &state.compute_seconds,
            );
            histograms(&mut out, "inference_batch_rows", "Rows per batch.", &state.batch_rows);
        });
        family(
            &mut out,
            "inference_queue_rows",
            "gauge",
            "Rows waiting for a batch (the signal to autoscale on).",
        );
        for (model, version, rows) in queues {
            let _ = writeln!(
                out,
                "{PREFIX}_inference_queue_rows{{model=\"{}\",version=\"{}\"}} {rows}",
                escape(model),
                escape(version)
            );
        }
        family(&mut out, "build_info", "gauge", "Build metadata; always 1.");
        let _ = writeln!(
            out,
            "{PREFIX}_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        out
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {PREFIX}_{name} {help}\n# TYPE {PREFIX}_{name} {kind}");
}

fn counters(out: &mut String, name: &str, help: &str, values: &BTreeMap<Key, u64>) {
    family(out, name, "counter", help);
    for ((model, version), value) in values {
        let _ = writeln!(
            out,
            "{PREFIX}_{name}{{model=\"{}\",version=\"{}\"}} {value}",
            escape(model),
            escape(version)
        );
    }
}

fn histograms(out: &mut String, name: &str, help: &str, values: &BTreeMap<Key, Histogram>) {
    family(out, name, "histogram", help);
    for ((model, version), histogram) in values {
        let labels = format!("model=\"{}\",version=\"{}\"", escape(model), escape(version));
        let mut cumulative = 0;
        for (bound, count) in histogram.bounds.iter().zip(&histogram.counts) {
            cumulative += count;
            let _ = writeln!(out, "{PREFIX}_{name}_bucket{{{labels},le=\"{bound:?}\"}} {cumulative}");
        }
        let _ = writeln!(
            out,
            "{PREFIX}_{name}_bucket{{{labels},le=\"+Inf\"}} {}",
            histogram.count
        );
        let _ = writeln!(out, "{PREFIX}_{name}_sum{{{labels}}} {:?}", histogram.sum);
        let _ = writeln!(out, "{PREFIX}_{name}_count{{{labels}}} {}", histogram.count);
    }
}

/// Escapes a label value.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_labels_escaped() {
        let metrics = Metrics::default();
        metrics.request("m\"x", "1", "v2", Outcome::Success, Duration::from_millis(3));
        metrics.request("m\"x", "1", "v2", Outcome::BadInput, Duration::from_millis(1));
        metrics.batch(
            "m\"x",
            "1",
            3,
            &[Duration::from_micros(100), Duration::ZERO],
            Duration::from_millis(2),
        );
        let text = metrics.render(&[("m\"x".to_string(), "1".to_string(), 7)]);
        assert!(
            text.contains(
                r#"loopline_inference_requests_total{model="m\"x",version="1",protocol="v2",outcome="bad_input"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"loopline_inference_request_duration_seconds_bucket{model="m\"x",version="1",le="0.0025"} 0"#
            )
        );
        assert!(
            text.contains(
                r#"loopline_inference_request_duration_seconds_bucket{model="m\"x",version="1",le="0.005"} 1"#
            )
        );
        assert!(text.contains(r#"loopline_inference_queue_duration_seconds_count{model="m\"x",version="1"} 2"#));
        assert!(text.contains(r#"loopline_inference_batch_rows_bucket{model="m\"x",version="1",le="4.0"} 1"#));
        assert!(text.contains(r#"loopline_inference_queue_rows{model="m\"x",version="1"} 7"#));
        assert!(text.ends_with('\n'));
    }
}
