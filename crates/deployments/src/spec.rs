//! What a deployment is: the model it serves (an alias it follows, or a version), its runtime settings, its
//! rollout policy, guardrails and stickiness, as sent to `/api/loopline/v1/deployments` and stored. Every
//! field is checked here, with messages that name the field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A deployment's specification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentSpec {
    /// `models:/<name>@<alias>` (follow the alias) or `models:/<name>/<version>`.
    pub model: String,
    /// Batching and concurrency of this deployment's versions.
    #[serde(default)]
    pub runtime: Runtime,
    /// How a new version takes over.
    #[serde(default)]
    pub policy: Policy,
    /// When a candidate is rolled back on its own.
    #[serde(default)]
    pub guardrails: Guardrails,
    /// Keeps each caller on one version (weighted splits only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky: Option<Sticky>,
    /// Seeds the random split so an experiment can be replayed (tests, audits); random when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_seed: Option<u64>,
}

/// Runtime settings; absent fields take the server's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Runtime {
    /// Largest batch, in rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batch_rows: Option<usize>,
    /// Longest a request waits for a batch to fill, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batch_wait_ms: Option<u64>,
    /// Batches running at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    /// Seconds a request waits for its prediction before it is answered 504.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
}

/// Where the sticky key comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum Sticky {
    /// A request header.
    Header(String),
    /// An input column (its first value).
    Column(String),
}

/// How a new version takes over from the stable one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Policy {
    /// Traffic moves to the candidate in steps.
    Canary {
        /// Candidate share per step, in percent, increasing, ending at 100.
        #[serde(default = "default_steps")]
        steps: Vec<f64>,
        /// Least time on a step, seconds.
        #[serde(default = "default_dwell")]
        min_dwell_seconds: u64,
        /// Least candidate requests on a step.
        #[serde(default = "default_min_requests")]
        min_requests: u64,
    },
    /// The candidate is warmed, then takes all traffic at once; the old version stays loaded for switching back.
    BlueGreen {
        /// How long the old version stays ready for an instant switch back, seconds.
        #[serde(default = "default_keep_old")]
        keep_old_seconds: u64,
        /// Least time watched after the switch before the rollout completes, seconds.
        #[serde(default = "default_dwell")]
        min_dwell_seconds: u64,
        /// Least requests watched after the switch.
        #[serde(default = "default_min_requests")]
        min_requests: u64,
    },
    /// A share of requests is mirrored to the candidate; its answers are compared and logged, never returned.
    Shadow {
        /// Share mirrored, percent.
        #[serde(default = "default_mirror")]
        mirror_percent: f64,
    },
    /// A fixed weighted split, until promoted or rolled back.
    Ab {
        /// Candidate share when a new version arrives (percent), for deployments following an alias.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        candidate_percent: Option<f64>,
        /// Explicit weights by version (the stable version among them).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        weights: Option<BTreeMap<String, f64>>,
    },
    /// Thompson sampling over versions, fed by rewards posted to the feedback endpoint.
    Bandit {
        /// The versions competing (the stable one among them); for an alias: the stable one and the new one.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        versions: Vec<String>,
    },
}

impl Default for Policy {
    fn default() -> Self {
        Policy::Canary {
            steps: default_steps(),
            min_dwell_seconds: default_dwell(),
            min_requests: default_min_requests(),
        }
    }
}

impl Policy {
    /// The policy's wire name.
    pub fn name(&self) -> &'static str {
        match self {
            Policy::Canary { .. } => "canary",
            Policy::BlueGreen { .. } => "blue_green",
            Policy::Shadow { .. } => "shadow",
            Policy::Ab { .. } => "ab",
            Policy::Bandit { .. } => "bandit",
        }
    }

    /// Versions named by the policy itself (an A/B split or a bandit), which start an experiment at once.
    pub fn named_versions(&self) -> Vec<String> {
        match self {
            Policy::Ab {
                weights: Some(weights), ..
            } => weights.keys().cloned().collect(),
            Policy::Bandit { versions } => versions.clone(),
            _ => Vec::new(),
        }
    }
}

fn default_steps() -> Vec<f64> {
    vec![5.0, 25.0, 50.0, 100.0]
}
fn default_dwell() -> u64 {
    60
}
fn default_min_requests() -> u64 {
    100
}
fn default_keep_old() -> u64 {
    600
}
fn default_mirror() -> f64 {
    100.0
}

/// Limits a candidate must stay within; a breach rolls the deployment back at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guardrails {
    /// Highest share of failed requests (0 to 1).
    #[serde(default = "default_error_rate")]
    pub max_error_rate: f64,
    /// Highest 99th-percentile latency, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p99_ms: Option<f64>,
    /// Highest ratio of the candidate's p99 latency to the stable version's on the same step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p99_ratio: Option<f64>,
    /// Highest Kolmogorov-Smirnov distance between the candidate's and the stable version's predictions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_divergence: Option<f64>,
    /// Requests a version needs on a step before it is judged.
    #[serde(default = "default_guard_requests")]
    pub min_requests: u64,
}

impl Default for Guardrails {
    fn default() -> Self {
        Guardrails {
            max_error_rate: default_error_rate(),
            max_p99_ms: None,
            max_p99_ratio: None,
            max_divergence: None,
            min_requests: default_guard_requests(),
        }
    }
}

fn default_error_rate() -> f64 {
    0.05
}
fn default_guard_requests() -> u64 {
    20
}

/// The model a spec names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Follow `alias` of registered model `name`.
    Alias {
        /// Registered model.
        name: String,
        /// Alias.
        alias: String,
    },
    /// Serve `version` of `name`.
    Version {
        /// Registered model.
        name: String,
        /// Version number.
        version: String,
    },
}

impl Target {
    /// The registered model.
    pub fn name(&self) -> &str {
        match self {
            Target::Alias { name, .. } | Target::Version { name, .. } => name,
        }
    }

    /// Parses `models:/<name>@<alias>` or `models:/<name>/<version>`.
    pub fn parse(uri: &str) -> Result<Target, String> {
        let usage = "use models:/<name>@<alias> to follow an alias or models:/<name>/<version> for one version";
        let Some(rest) = uri.strip_prefix("models:/") else {
            return Err(format!("'model' must be a registry URI, got '{uri}'; {usage}"));
        };
        if let Some((name, alias)) = rest.split_once('@') {
            if name.is_empty() || alias.is_empty() || alias.contains('/') {
                return Err(format!("'model' '{uri}' is not valid; {usage}"));
            }
            return Ok(Target::Alias {
                name: name.to_string(),
                alias: alias.to_string(),
            });
        }
        match rest.rsplit_once('/') {
            Some((name, version))
                if !name.is_empty() && !version.is_empty() && version.chars().all(|c| c.is_ascii_digit()) =>
            {
                Ok(Target::Version {
                    name: name.to_string(),
                    version: version.trim_start_matches('0').to_string(),
                })
            }
            _ => Err(format!("'model' '{uri}' names no version or alias; {usage}")),
        }
    }

    /// The URI form.
    pub fn uri(&self) -> String {
        match self {
            Target::Alias { name, alias } => format!("models:/{name}@{alias}"),
            Target::Version { name, version } => format!("models:/{name}/{version}"),
        }
    }
}

/// A deployment name: letters, digits, `.`, `_` and `-`, at most 64 characters.
pub fn check_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !name.starts_with('.');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "deployment name '{name}' is not valid: use 1 to 64 letters, digits, '.', '_' or '-'"
        ))
    }
}

fn percent(field: &str, value: f64) -> Result<(), String> {
    if value.is_finite() && (0.0..=100.0).contains(&value) {
        Ok(())
    } else {
        Err(format!("'{field}' must be a percentage from 0 to 100, got {value}"))
    }
}

impl DeploymentSpec {
    /// Checks every field that needs no registry lookup; returns the parsed target.
    pub fn validate(&self) -> Result<Target, String> {
        let target = Target::parse(&self.model)?;
        if self.runtime.max_batch_rows == Some(0) {
            return Err("'runtime.max_batch_rows' must be at least 1".to_string());
        }
        let max_concurrency = loopline_serving::runner::MAX_CONCURRENCY;
        if let Some(concurrency) = self.runtime.concurrency
            && !(1..=max_concurrency).contains(&concurrency)
        {
            return Err(format!(
                "'runtime.concurrency' must be between 1 and {max_concurrency}, got {concurrency}"
            ));
        }
        let max_batch_rows = loopline_serving::runner::MAX_BATCH_ROWS;
        if let Some(rows) = self.runtime.max_batch_rows
            && rows > max_batch_rows
        {
            return Err(format!(
                "'runtime.max_batch_rows' must be at most {max_batch_rows}, got {rows}"
            ));
        }
        let max_seconds = loopline_serving::runner::MAX_TIMEOUT.as_secs();
        if self.runtime.timeout_seconds == Some(0) {
            return Err("'runtime.timeout_seconds' must be at least 1".to_string());
        }
        if let Some(seconds) = self.runtime.timeout_seconds
            && seconds > max_seconds
        {
            return Err(format!(
                "'runtime.timeout_seconds' must be at most {max_seconds}, got {seconds}"
            ));
        }
        if let Some(wait) = self.runtime.max_batch_wait_ms
            && wait > max_seconds * 1000
        {
            return Err(format!(
                "'runtime.max_batch_wait_ms' must be at most {}, got {wait}",
                max_seconds * 1000
            ));
        }
        match &self.policy {
            Policy::Canary { steps, .. } => {
                if steps.is_empty() {
                    return Err("'policy.steps' needs at least one step".to_string());
                }
                for (index, step) in steps.iter().enumerate() {
                    percent(&format!("policy.steps[{index}]"), *step)?;
                    if *step <= 0.0 {
                        return Err(format!("'policy.steps[{index}]' must be above 0, got {step}"));
                    }
                    if index > 0 && *step <= steps[index - 1] {
                        return Err(format!(
                            "'policy.steps' must increase: step {index} ({step}) is not above {}",
                            steps[index - 1]
                        ));
                    }
                }
                if steps.last() != Some(&100.0) {
                    return Err("'policy.steps' must end at 100 so the rollout can complete".to_string());
                }
            }
            Policy::BlueGreen { .. } => {}
            Policy::Shadow { mirror_percent } => {
                percent("policy.mirror_percent", *mirror_percent)?;
                if *mirror_percent <= 0.0 {
                    return Err("'policy.mirror_percent' must be above 0".to_string());
                }
            }
            Policy::Ab {
                candidate_percent,
                weights,
            } => {
                match (candidate_percent, weights) {
                    (Some(_), Some(_)) => {
                        return Err("give 'policy.candidate_percent' or 'policy.weights', not both".to_string());
                    }
                    (None, None) => {
                        return Err(
                            "an A/B policy needs 'policy.weights' (version to weight) or 'policy.candidate_percent'"
                                .to_string(),
                        );
                    }
                    _ => {}
                }
                if let Some(share) = candidate_percent {
                    percent("policy.candidate_percent", *share)?;
                }
                if let Some(weights) = weights {
                    if weights.len() < 2 {
                        return Err("'policy.weights' needs at least two versions".to_string());
                    }
                    for (version, weight) in weights {
                        if !weight.is_finite() || *weight < 0.0 {
                            return Err(format!(
                                "'policy.weights.{version}' must be a non-negative number, got {weight}"
                            ));
                        }
                    }
                    if weights.values().sum::<f64>() <= 0.0 {
                        return Err("'policy.weights' must not all be zero".to_string());
                    }
                }
            }
            Policy::Bandit { versions } => {
                if !versions.is_empty() && versions.len() < 2 {
                    return Err("'policy.versions' needs at least two versions".to_string());
                }
                let mut seen = std::collections::HashSet::new();
                if let Some(repeated) = versions.iter().find(|v| !seen.insert(*v)) {
                    return Err(format!("'policy.versions' lists version {repeated} twice"));
                }
            }
        }
        for version in self.policy.named_versions() {
            if version.is_empty() || !version.chars().all(|c| c.is_ascii_digit()) {
                return Err(format!(
                    "'policy' names version '{version}', which is not a version number"
                ));
            }
        }
        if !self.policy.named_versions().is_empty() && matches!(target, Target::Alias { .. }) {
            return Err(format!(
                "the {} policy names its versions, so 'model' must name one of them (models:/<name>/<version>), not an alias",
                self.policy.name()
            ));
        }
        if let Target::Version { version, .. } = &target {
            let named = self.policy.named_versions();
            if !named.is_empty() && !named.contains(version) {
                return Err(format!(
                    "the policy's versions ({}) must include the deployment's version {version}",
                    named.join(", ")
                ));
            }
        }
        let g = &self.guardrails;
        if !(0.0..=1.0).contains(&g.max_error_rate) {
            return Err(format!(
                "'guardrails.max_error_rate' must be from 0 to 1, got {}",
                g.max_error_rate
            ));
        }
        for (field, value) in [
            ("guardrails.max_p99_ms", g.max_p99_ms),
            ("guardrails.max_p99_ratio", g.max_p99_ratio),
            ("guardrails.max_divergence", g.max_divergence),
        ] {
            if let Some(value) = value
                && (!value.is_finite() || value <= 0.0)
            {
                return Err(format!("'{field}' must be a positive number, got {value}"));
            }
        }
        if g.max_divergence.is_some_and(|d| d > 1.0) {
            return Err("'guardrails.max_divergence' is a Kolmogorov-Smirnov distance, at most 1".to_string());
        }
        match &self.sticky {
            Some(Sticky::Header(name) | Sticky::Column(name)) if name.trim().is_empty() => {
                return Err("'sticky' needs a header or column name".to_string());
            }
            Some(Sticky::Header(name)) if axum::http::HeaderName::from_bytes(name.as_bytes()).is_err() => {
                return Err(format!("'sticky.header' '{name}' is not a valid header name"));
            }
            _ => {}
        }
        Ok(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> Result<Target, String> {
        serde_json::from_value::<DeploymentSpec>(json)
            .map_err(|e| e.to_string())?
            .validate()
    }

    #[test]
    fn targets_parse_from_registry_uris() {
        assert_eq!(
            Target::parse("models:/churn@champion").unwrap(),
            Target::Alias {
                name: "churn".into(),
                alias: "champion".into()
            }
        );
        assert_eq!(Target::parse("models:/churn/3").unwrap().uri(), "models:/churn/3");
        for bad in ["runs:/x/model", "models:/churn", "models:/@a", "models:/churn/latest"] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_specs_are_refused_naming_the_field() {
        let cases = [
            (
                serde_json::json!({"model": "models:/m@a", "policy": {"type": "canary", "steps": [5, 50]}}),
                "end at 100",
            ),
            (
                serde_json::json!({"model": "models:/m@a", "policy": {"type": "canary", "steps": [50, 5, 100]}}),
                "must increase",
            ),
            (
                serde_json::json!({"model": "models:/m@a", "policy": {"type": "canary", "steps": [0, 100]}}),
                "above 0",
            ),
            (
                serde_json::json!({"model": "models:/m@a", "policy": {"type": "shadow", "mirror_percent": 150}}),
                "mirror_percent",
            ),
            (
                serde_json::json!({"model": "models:/m/1", "policy": {"type": "ab", "weights": {"1": -1, "2": 1}}}),
                "weights.1",
            ),
            (
                serde_json::json!({"model": "models:/m/1", "policy": {"type": "ab", "weights": {"2": 1, "3": 1}}}),
                "must include",
            ),
            (
                serde_json::json!({"model": "models:/m@a", "policy": {"type": "ab", "weights": {"1": 1, "2": 1}}}),
                "not an alias",
            ),
            (
                serde_json::json!({"model": "models:/m@a", "policy": {"type": "ab"}}),
                "needs 'policy.weights'",
            ),
            (
                serde_json::json!({"model": "models:/m@a", "guardrails": {"max_error_rate": 2}}),
                "max_error_rate",
            ),
            (
                serde_json::json!({"model": "models:/m@a", "guardrails": {"max_p99_ms": -1}}),
                "max_p99_ms",
            ),
            (
                serde_json::json!({"model": "models:/m@a", "sticky": {"header": "bad header"}}),
                "sticky.header",
            ),
            (
                serde_json::json!({"model": "models:/m@a", "policy": {"type": "rainbow"}}),
                "rainbow",
            ),
            (serde_json::json!({"model": "models:/m@a", "surprise": 1}), "surprise"),
        ];
        for (json, expected) in cases {
            let error = spec(json.clone()).unwrap_err();
            assert!(error.contains(expected), "{json}: {error}");
        }
        assert!(spec(serde_json::json!({"model": "models:/m@champion"})).is_ok());
        assert!(
            spec(serde_json::json!({"model": "models:/m/1", "policy": {"type": "bandit", "versions": ["1", "2"]}}))
                .is_ok()
        );
    }

    #[test]
    fn names_are_confined() {
        assert!(check_name("churn-v2.prod").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
