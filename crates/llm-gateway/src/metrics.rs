//! The gateway's Prometheus families: calls by model and outcome, upstream attempts by provider and result,
//! fallbacks, tokens, streams broken after they started, and histograms of call latency and time to first
//! token. Label values come only from the configuration (model and provider names), never from a request, so
//! the series stay bounded whatever callers send.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Histogram bucket bounds, in seconds.
const BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bound, count) in BUCKETS.iter().zip(self.counts.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }
}

#[derive(Debug, Default)]
struct Families {
    calls: BTreeMap<(String, &'static str), u64>,
    attempts: BTreeMap<(String, &'static str), u64>,
    fallbacks: BTreeMap<String, u64>,
    tokens: BTreeMap<(String, &'static str), u64>,
    broken: BTreeMap<String, u64>,
    guardrails: BTreeMap<(String, String, &'static str, &'static str), u64>,
    cost: BTreeMap<String, f64>,
    latency: BTreeMap<String, Histogram>,
    first_token: BTreeMap<String, Histogram>,
}

/// The gateway's counters.
#[derive(Debug, Default)]
pub struct GatewayMetrics {
    families: Mutex<Families>,
}

impl GatewayMetrics {
    fn with(&self, change: impl FnOnce(&mut Families)) {
        change(&mut self.families.lock().expect("gateway metrics"));
    }

    /// A call of a configured model ended: `outcome` is `ok` or the error's kind.
    pub fn call(&self, model: &str, outcome: &'static str, latency: Option<Duration>) {
        self.with(|families| {
            *families.calls.entry((model.to_string(), outcome)).or_default() += 1;
            if let Some(latency) = latency {
                families
                    .latency
                    .entry(model.to_string())
                    .or_default()
                    .observe(latency.as_secs_f64());
            }
        });
    }

    /// One upstream attempt on `provider` ended with `result`.
    pub fn attempt(&self, provider: &str, result: &'static str) {
        self.with(|families| *families.attempts.entry((provider.to_string(), result)).or_default() += 1);
    }

    /// A fallback model answered for `model`.
    pub fn fallback(&self, model: &str) {
        self.with(|families| *families.fallbacks.entry(model.to_string()).or_default() += 1);
    }

    /// Tokens a provider reported for a call of `model`.
    pub fn tokens(&self, model: &str, prompt: u64, completion: u64) {
        self.with(|families| {
            let prompt_total = families.tokens.entry((model.to_string(), "prompt")).or_default();
            *prompt_total = prompt_total.saturating_add(prompt);
            let completion_total = families.tokens.entry((model.to_string(), "completion")).or_default();
            *completion_total = completion_total.saturating_add(completion);
        });
    }

    /// A stream's first event reached the caller after `wait`.
    pub fn first_token(&self, model: &str, wait: Duration) {
        self.with(|families| {
            families
                .first_token
                .entry(model.to_string())
                .or_default()
                .observe(wait.as_secs_f64())
        });
    }

    /// A stream of `model` broke after it started.
    pub fn broken(&self, model: &str) {
        self.with(|families| *families.broken.entry(model.to_string()).or_default() += 1);
    }

    /// What a call of `model` cost, in US dollars.
    pub fn cost(&self, model: &str, dollars: f64) {
        if dollars.is_finite() && dollars > 0.0 {
            self.with(|families| *families.cost.entry(model.to_string()).or_default() += dollars);
        }
    }

    /// A call of `model` on which guardrails acted (each event once per call).
    pub fn guardrails(&self, model: &str, events: &[crate::guardrails::Event]) {
        if events.is_empty() {
            return;
        }
        self.with(|families| {
            for event in events {
                let key = (model.to_string(), event.guardrail.clone(), event.stage, event.action);
                *families.guardrails.entry(key).or_default() += 1;
            }
        });
    }

    /// Appends the families in Prometheus' text format.
    pub fn render(&self, out: &mut String) {
        let families = self.families.lock().expect("gateway metrics");
        let counter = |out: &mut String, name: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        };
        counter(
            out,
            "loopline_gateway_calls_total",
            "gateway calls by model and outcome",
        );
        for ((model, outcome), value) in &families.calls {
            let _ = writeln!(
                out,
                "loopline_gateway_calls_total{{model=\"{}\",outcome=\"{outcome}\"}} {value}",
                label(model)
            );
        }
        counter(
            out,
            "loopline_gateway_upstream_attempts_total",
            "requests sent to providers, by result",
        );
        for ((provider, result), value) in &families.attempts {
            let _ = writeln!(
                out,
                "loopline_gateway_upstream_attempts_total{{provider=\"{}\",result=\"{result}\"}} {value}",
                label(provider)
            );
        }
        counter(
            out,
            "loopline_gateway_fallbacks_total",
            "calls a fallback model answered",
        );
        for (model, value) in &families.fallbacks {
            let _ = writeln!(
                out,
                "loopline_gateway_fallbacks_total{{model=\"{}\"}} {value}",
                label(model)
            );
        }
        counter(
            out,
            "loopline_gateway_tokens_total",
            "tokens providers reported, by model and kind",
        );
        for ((model, kind), value) in &families.tokens {
            let _ = writeln!(
                out,
                "loopline_gateway_tokens_total{{model=\"{}\",kind=\"{kind}\"}} {value}",
                label(model)
            );
        }
        counter(
            out,
            "loopline_gateway_streams_broken_total",
            "streams that broke after their first event",
        );
        for (model, value) in &families.broken {
            let _ = writeln!(
                out,
                "loopline_gateway_streams_broken_total{{model=\"{}\"}} {value}",
                label(model)
            );
        }
        counter(
            out,
            "loopline_gateway_cost_usd_total",
            "what calls cost by the configured prices, by model (cache hits cost nothing)",
        );
        for (model, value) in &families.cost {
            let _ = writeln!(
                out,
                "loopline_gateway_cost_usd_total{{model=\"{}\"}} {value}",
                label(model)
            );
        }
        counter(
            out,
            "loopline_gateway_guardrail_actions_total",
            "calls a guardrail acted on, by model, guardrail, stage and action",
        );
        for ((model, guardrail, stage, action), value) in &families.guardrails {
            let _ = writeln!(
                out,
                "loopline_gateway_guardrail_actions_total{{model=\"{}\",guardrail=\"{}\",stage=\"{stage}\",action=\"{action}\"}} {value}",
                label(model),
                label(guardrail)
            );
        }
        histogram(
            out,
            "loopline_gateway_call_duration_seconds",
            "whole calls (streams: until their last event)",
            &families.latency,
        );
        histogram(
            out,
            "loopline_gateway_time_to_first_token_seconds",
            "streams: until the first event reached the caller",
            &families.first_token,
        );
    }
}

fn histogram(out: &mut String, name: &str, help: &str, series: &BTreeMap<String, Histogram>) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    for (model, histogram) in series {
        let model = label(model);
        for (bound, count) in BUCKETS.iter().zip(histogram.counts) {
            let _ = writeln!(out, "{name}_bucket{{model=\"{model}\",le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{model=\"{model}\",le=\"+Inf\"}} {}",
            histogram.count
        );
        let _ = writeln!(out, "{name}_sum{{model=\"{model}\"}} {}", histogram.sum);
        let _ = writeln!(out, "{name}_count{{model=\"{model}\"}} {}", histogram.count);
    }
}

/// A label value escaped as the text format wants it.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_in_the_text_format_with_escaped_labels() {
        let metrics = GatewayMetrics::default();
        metrics.call("chat \"x\"", "ok", Some(Duration::from_millis(30)));
        metrics.attempt("openai", "retryable");
        metrics.tokens("chat \"x\"", 5, 3);
        metrics.first_token("chat \"x\"", Duration::from_millis(7));
        let mut out = String::new();
        metrics.render(&mut out);
        assert!(
            out.contains("loopline_gateway_calls_total{model=\"chat \\\"x\\\"\",outcome=\"ok\"} 1"),
            "{out}"
        );
        assert!(out.contains("loopline_gateway_upstream_attempts_total{provider=\"openai\",result=\"retryable\"} 1"));
        assert!(out.contains("loopline_gateway_tokens_total{model=\"chat \\\"x\\\"\",kind=\"completion\"} 3"));
        assert!(out.contains("loopline_gateway_call_duration_seconds_bucket{model=\"chat \\\"x\\\"\",le=\"0.025\"} 0"));
        assert!(out.contains("loopline_gateway_call_duration_seconds_bucket{model=\"chat \\\"x\\\"\",le=\"0.05\"} 1"));
        assert!(out.contains("loopline_gateway_time_to_first_token_seconds_count{model=\"chat \\\"x\\\"\"} 1"));
    }
}
