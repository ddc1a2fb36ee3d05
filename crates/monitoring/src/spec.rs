//! What a monitor is: the traffic it watches (a deployment, or a registered model and alias), its window,
//! the checks it runs, the alert rules over the window's figures, and where notifications go. Parsed
//! strictly: an unknown field, a bad value or an impossible combination is refused with the field named.

use std::collections::BTreeMap;

use loopline_drift_statistics::method_choice::DriftMethod;
use serde::{Deserialize, Serialize};

/// Longest window: 31 days.
pub const MAX_WINDOW_SECONDS: u64 = 31 * 24 * 3600;
/// Largest count window.
pub const MAX_WINDOW_PREDICTIONS: u64 = 10_000_000;
/// Alert rules per monitor.
pub const MAX_RULES: usize = 100;
/// Notification channels per monitor.
pub const MAX_CHANNELS: usize = 20;
/// Columns named in one monitor.
pub const MAX_COLUMNS: usize = 2_000;
/// Longest name, label or text field.
pub const MAX_TEXT: usize = 2_048;
/// Latest time a monitor may start at or be silenced until: 2100-01-01, ms since the epoch.
pub const LATEST_TIME_MS: i64 = 4_102_444_800_000;

/// A monitor's specification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorSpec {
    /// The deployment whose traffic is watched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    /// Or a registered model (all its logged traffic) ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// ... optionally one alias of it (the reference is the aliased version's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// How traffic is cut into windows.
    pub window: WindowSpec,
    /// First moment watched, ms since the epoch (default: the start of the window in progress at creation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ms: Option<i64>,
    /// Input columns checked (default: every reference column logged as an input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
    /// The logged output compared with the reference's prediction column (default: the first output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// The reference column holding the model's predictions (default `prediction`).
    #[serde(default = "default_prediction_column")]
    pub prediction_column: String,
    /// The reference column holding labels (default `label`).
    #[serde(default = "default_label_column")]
    pub label_column: String,
    /// `classification` or `regression`: enables live performance from feedback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<Task>,
    /// The positive class of a binary classifier (default `1`).
    #[serde(default = "default_positive_label")]
    pub positive_label: String,
    /// The logged output holding the positive class's probability (enables ROC AUC and log loss).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability_output: Option<String>,
    /// When a version has no reference profile, profile its first window with traffic and use it.
    #[serde(default)]
    pub reference_window: bool,
    /// Latest a label is expected after its prediction, in seconds (default 7 days): feedback received later is
    /// not joined, and a window reads feedback only up to its end plus this delay.
    #[serde(default = "default_label_delay_seconds")]
    pub label_delay_seconds: u64,
    /// Most rows a window keeps for its statistics (counts stay exact; beyond it requests are sampled).
    #[serde(default = "default_sample_rows")]
    pub sample_rows: usize,
    /// A Great Expectations suite (GX JSON) run on each window's inputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expectations: Option<serde_json::Value>,
    /// Input columns whose most frequent values each get their own figures (`slice[<column>=<value>].<figure>`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slices: Vec<String>,
    /// Values per slice column (the most frequent in the window; default 10, at most 50).
    #[serde(default = "default_slice_values")]
    pub slice_values: usize,
    /// Drift settings.
    #[serde(default)]
    pub drift: DriftSpec,
    /// Alert rules.
    #[serde(default)]
    pub alerts: Vec<AlertRule>,
    /// Where notifications go.
    #[serde(default)]
    pub notifications: Vec<Channel>,
    /// Seconds after a time window ends before it is evaluated, so the prediction log has written it
    /// (default 90: the log writes at least every 60 seconds).
    #[serde(default = "default_grace_seconds")]
    pub grace_seconds: u64,
}

fn default_prediction_column() -> String {
    "prediction".to_string()
}
fn default_label_column() -> String {
    "label".to_string()
}
fn default_positive_label() -> String {
    "1".to_string()
}
fn default_label_delay_seconds() -> u64 {
    7 * 24 * 3600
}
fn default_sample_rows() -> usize {
    100_000
}
fn default_slice_values() -> usize {
    10
}
fn default_grace_seconds() -> u64 {
    90
}

/// A window: by time or by number of predictions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// Tumbling windows of this many seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<u64>,
    /// Or windows of this many logged predictions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predictions: Option<u64>,
}

/// What the monitor's model does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Predicts classes.
    Classification,
    /// Predicts numbers.
    Regression,
}

/// Drift settings, as `loopline drift` takes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftSpec {
    /// Whether windows are compared with the reference at all (drift and quality); off, a monitor only counts,
    /// joins labels and estimates, and reads no input column it does not need.
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// Method for every column (default: Evidently's choice by column kind and size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Threshold for every column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Per-column method and threshold.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub columns: BTreeMap<String, ColumnDrift>,
    /// Share of drifted columns at which the window drifts (default 0.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_share: Option<f64>,
}

fn enabled() -> bool {
    true
}

impl Default for DriftSpec {
    fn default() -> Self {
        DriftSpec {
            enabled: true,
            method: None,
            threshold: None,
            columns: BTreeMap::new(),
            drift_share: None,
        }
    }
}

/// One column's drift method and threshold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnDrift {
    /// Method name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
}

/// A rule over one window figure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    /// Unique within the monitor.
    pub name: String,
    /// The figure watched (see `figures::is_known_figure`), e.g. `drift.share`, `performance.accuracy`.
    pub figure: String,
    /// `>`, `>=`, `<` or `<=`.
    pub operator: String,
    /// The value compared with.
    pub threshold: f64,
    /// Consecutive breaching windows before it fires (default 1).
    #[serde(default = "one")]
    pub for_windows: u64,
    /// `critical`, `error`, `warning` or `info` (default `warning`).
    #[serde(default = "default_severity")]
    pub severity: String,
    /// Who answers it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Link to the runbook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook: Option<String>,
    /// Extra labels sent with notifications.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Channels notified, by name (default: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<Vec<String>>,
    /// What happens when it fires.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<Action>,
}

fn one() -> u64 {
    1
}
fn default_severity() -> String {
    "warning".to_string()
}

/// An action taken when a rule fires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Roll back a deployment (default: the monitor's).
    Rollback {
        /// The deployment.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deployment: Option<String>,
    },
    /// Point a registry alias at a version.
    MoveAlias {
        /// Registered model (default: the monitor's).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
        /// The alias.
        alias: String,
        /// The version it is moved to.
        version: String,
    },
    /// Send the alert to a webhook (as the `webhook` channel does).
    Webhook {
        /// http(s) URL.
        url: String,
    },
    /// Record a retraining request with its cause, for a pipeline runner to pick up.
    Retrain {
        /// The pipeline to run, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pipeline: Option<String>,
    },
}

/// A notification channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Channel {
    /// Unique within the monitor (default: its kind).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `webhook`, `slack`, `pagerduty` or `alertmanager`.
    pub kind: ChannelKind,
    /// http(s) URL: the webhook, the Slack incoming webhook, PagerDuty's enqueue URL (default
    /// `https://events.pagerduty.com/v2/enqueue`) or Alertmanager's base URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// PagerDuty integration key (secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_key: Option<String>,
    /// Extra request headers, e.g. `Authorization` (secret values).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

/// Kinds of notification channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// A generic JSON webhook (Alertmanager's webhook payload, version 4).
    Webhook,
    /// A Slack-compatible incoming webhook.
    Slack,
    /// PagerDuty Events API v2.
    Pagerduty,
    /// Prometheus Alertmanager's `/api/v2/alerts`.
    Alertmanager,
}

impl ChannelKind {
    /// Its name in specifications.
    pub fn name(self) -> &'static str {
        match self {
            ChannelKind::Webhook => "webhook",
            ChannelKind::Slack => "slack",
            ChannelKind::Pagerduty => "pagerduty",
            ChannelKind::Alertmanager => "alertmanager",
        }
    }
}

impl Channel {
    /// The channel's name.
    pub fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.kind.name().to_string())
    }
}

/// A specification refused, with the field at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    /// Path of the field, e.g. `alerts[0].figure`.
    pub field: String,
    /// What is wrong and what to do.
    pub message: String,
}

fn refuse(field: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError {
        field: field.into(),
        message: message.into(),
    }
}

/// Severities, most urgent first.
pub const SEVERITIES: [&str; 4] = ["critical", "error", "warning", "info"];
/// Comparison operators of rules.
pub const OPERATORS: [&str; 4] = [">", ">=", "<", "<="];

/// A monitor name: letters, digits, `.`, `_` and `-`, at most 64 characters.
pub fn check_name(name: &str) -> Result<(), SpecError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        && !name.chars().all(|c| c == '.');
    if valid {
        Ok(())
    } else {
        Err(refuse(
            "name",
            format!("monitor name '{name}' is not valid: use 1 to 64 letters, digits, '.', '_' or '-' (not only dots)"),
        ))
    }
}

/// An http(s) URL with a host.
pub fn check_url(field: &str, url: &str) -> Result<(), SpecError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| refuse(field, format!("'{url}' is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return Err(refuse(
            field,
            format!("'{}' is not an http(s) URL with a host", redact_url(url)),
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(refuse(
            field,
            "carries credentials; put them in the channel's headers (e.g. Authorization) instead",
        ));
    }
    Ok(())
}

/// A URL shown without what may be secret in it: only scheme and host remain.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(parsed) => format!("{}://{}/***", parsed.scheme(), parsed.host_str().unwrap_or_default()),
        Err(_) => "***".to_string(),
    }
}

fn check_text(field: &str, text: &str) -> Result<(), SpecError> {
    if text.len() > MAX_TEXT {
        return Err(refuse(
            field,
            format!("is {} bytes; at most {MAX_TEXT} are kept", text.len()),
        ));
    }
    Ok(())
}

fn check_method(field: &str, method: Option<&str>, threshold: Option<f64>) -> Result<(), SpecError> {
    if let Some(name) = method {
        let Some(chosen) = DriftMethod::from_name(name) else {
            return Err(refuse(
                format!("{field}.method"),
                format!("unknown drift method '{name}'; use one `loopline drift --help` lists"),
            ));
        };
        // A monitor compares windows with a reference profile, which keeps raw values only for references of
        // at most 1000 rows: the tests on raw samples would fail every window of any real reference.
        if matches!(chosen, DriftMethod::KolmogorovSmirnov | DriftMethod::AndersonDarling) {
            return Err(refuse(
                format!("{field}.method"),
                format!(
                    "'{name}' compares raw samples, but a monitor's reference is a profile (quantiles and \
                     histograms); use wasserstein, psi, jensenshannon, kl_div or hellinger (or `loopline drift` \
                     on the two data files for {name})"
                ),
            ));
        }
    }
    if let Some(value) = threshold
        && !(value.is_finite() && value >= 0.0)
    {
        return Err(refuse(format!("{field}.threshold"), "must be a non-negative number"));
    }
    Ok(())
}

impl MonitorSpec {
    /// Parses JSON, naming the field of a type error.
    pub fn parse(body: &[u8]) -> Result<MonitorSpec, SpecError> {
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        let spec: MonitorSpec = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
            let path = error.path().to_string();
            refuse(
                if path == "." { "spec".to_string() } else { path },
                error.inner().to_string(),
            )
        })?;
        deserializer
            .end()
            .map_err(|e| refuse("spec", format!("trailing characters after the specification: {e}")))?;
        spec.validate()?;
        Ok(spec)
    }

    /// The registered model whose log is read, once the deployment (if any) is resolved by the caller.
    pub fn check_target(&self) -> Result<(), SpecError> {
        match (&self.deployment, &self.model) {
            (Some(_), Some(_)) => Err(refuse("model", "give a deployment or a model, not both")),
            (None, None) => Err(refuse(
                "deployment",
                "say what is watched: a deployment, or a model (and alias)",
            )),
            (Some(_), None) if self.alias.is_some() => {
                Err(refuse("alias", "an alias goes with a model, not with a deployment"))
            }
            _ => Ok(()),
        }
    }

    /// Every check that needs no storage.
    pub fn validate(&self) -> Result<(), SpecError> {
        self.check_target()?;
        for (field, value) in [
            ("deployment", &self.deployment),
            ("model", &self.model),
            ("alias", &self.alias),
        ] {
            if let Some(text) = value {
                if text.is_empty() {
                    return Err(refuse(field, "must not be empty"));
                }
                check_text(field, text)?;
            }
        }
        match (self.window.seconds, self.window.predictions) {
            (Some(_), Some(_)) => return Err(refuse("window", "give seconds or predictions, not both")),
            (None, None) => {
                return Err(refuse(
                    "window",
                    "give its length: {\"seconds\": 3600} or {\"predictions\": 10000}",
                ));
            }
            (Some(seconds), None) if seconds == 0 || seconds > MAX_WINDOW_SECONDS => {
                return Err(refuse(
                    "window.seconds",
                    format!("must be from 1 to {MAX_WINDOW_SECONDS} (31 days), got {seconds}"),
                ));
            }
            (None, Some(count)) if count == 0 || count > MAX_WINDOW_PREDICTIONS => {
                return Err(refuse(
                    "window.predictions",
                    format!("must be from 1 to {MAX_WINDOW_PREDICTIONS}, got {count}"),
                ));
            }
            _ => {}
        }
        if self
            .start_ms
            .is_some_and(|start| !(0..=LATEST_TIME_MS).contains(&start))
        {
            return Err(refuse(
                "start_ms",
                "must be a time from 1970 to 2100, in ms since the epoch",
            ));
        }
        if self.grace_seconds > MAX_WINDOW_SECONDS {
            return Err(refuse("grace_seconds", format!("must be at most {MAX_WINDOW_SECONDS}")));
        }
        if let Some(columns) = &self.columns {
            if columns.is_empty() || columns.len() > MAX_COLUMNS {
                return Err(refuse("columns", format!("name 1 to {MAX_COLUMNS} columns")));
            }
            for (index, column) in columns.iter().enumerate() {
                if column.is_empty() {
                    return Err(refuse(format!("columns[{index}]"), "must not be empty"));
                }
                check_text(&format!("columns[{index}]"), column)?;
            }
        }
        for (field, text) in [
            ("prediction_column", &self.prediction_column),
            ("label_column", &self.label_column),
            ("positive_label", &self.positive_label),
        ] {
            check_text(field, text)?;
        }
        if let Some(suite) = &self.expectations
            && let Err(message) = crate::expectations::check_suite(suite)
        {
            return Err(refuse("expectations", message));
        }
        if !(60..=366 * 24 * 3600).contains(&self.label_delay_seconds) {
            return Err(refuse("label_delay_seconds", "must be from 60 seconds to 366 days"));
        }
        if !(1_000..=5_000_000).contains(&self.sample_rows) {
            return Err(refuse("sample_rows", "must be from 1,000 to 5,000,000"));
        }
        if self.slices.len() > 10 {
            return Err(refuse("slices", "at most 10 slice columns"));
        }
        for (index, column) in self.slices.iter().enumerate() {
            if self.slices[..index].contains(column) {
                return Err(refuse(format!("slices[{index}]"), format!("'{column}' is named twice")));
            }
            if column.is_empty() || column.contains(['[', ']', '=']) {
                return Err(refuse(
                    format!("slices[{index}]"),
                    "name an input column (without '[', ']' or '=')",
                ));
            }
            check_text(&format!("slices[{index}]"), column)?;
        }
        if self.slice_values == 0 || self.slice_values > 50 {
            return Err(refuse("slice_values", "must be from 1 to 50"));
        }
        if self.probability_output.is_some() && self.task == Some(Task::Regression) {
            return Err(refuse(
                "probability_output",
                "goes with a classifier, not with \"task\": \"regression\"",
            ));
        }
        check_method("drift", self.drift.method.as_deref(), self.drift.threshold)?;
        if self.drift.columns.len() > MAX_COLUMNS {
            return Err(refuse("drift.columns", format!("at most {MAX_COLUMNS} columns")));
        }
        for (column, choice) in &self.drift.columns {
            check_method(
                &format!("drift.columns.{column}"),
                choice.method.as_deref(),
                choice.threshold,
            )?;
        }
        if let Some(share) = self.drift.drift_share
            && !(share > 0.0 && share <= 1.0)
        {
            return Err(refuse(
                "drift.drift_share",
                format!("must be above 0 and at most 1, got {share}"),
            ));
        }
        self.validate_channels()?;
        self.validate_rules()
    }

    fn validate_channels(&self) -> Result<(), SpecError> {
        if self.notifications.len() > MAX_CHANNELS {
            return Err(refuse("notifications", format!("at most {MAX_CHANNELS} channels")));
        }
        let mut names = std::collections::BTreeSet::new();
        for (index, channel) in self.notifications.iter().enumerate() {
            let field = format!("notifications[{index}]");
            if !names.insert(channel.label()) {
                return Err(refuse(
                    format!("{field}.name"),
                    format!("a second channel is called '{}'; name each channel", channel.label()),
                ));
            }
            match (&channel.url, channel.kind) {
                (Some(url), _) => check_url(&format!("{field}.url"), url)?,
                (None, ChannelKind::Pagerduty) => {}
                (None, kind) => {
                    return Err(refuse(
                        format!("{field}.url"),
                        format!("a {} channel needs a url", kind.name()),
                    ));
                }
            }
            if channel.kind == ChannelKind::Pagerduty && channel.routing_key.as_deref().is_none_or(str::is_empty) {
                return Err(refuse(
                    format!("{field}.routing_key"),
                    "a pagerduty channel needs its integration key",
                ));
            }
            for (name, value) in &channel.headers {
                let valid = reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_ok()
                    && reqwest::header::HeaderValue::from_str(value).is_ok();
                if !valid {
                    return Err(refuse(format!("{field}.headers.{name}"), "is not a valid HTTP header"));
                }
            }
        }
        Ok(())
    }

    fn validate_rules(&self) -> Result<(), SpecError> {
        if self.alerts.len() > MAX_RULES {
            return Err(refuse("alerts", format!("at most {MAX_RULES} rules")));
        }
        let channels: Vec<String> = self.notifications.iter().map(Channel::label).collect();
        let mut names = std::collections::BTreeSet::new();
        for (index, rule) in self.alerts.iter().enumerate() {
            let field = format!("alerts[{index}]");
            if rule.name.is_empty() || !names.insert(rule.name.as_str()) {
                return Err(refuse(
                    format!("{field}.name"),
                    "give each rule its own, non-empty name",
                ));
            }
            check_text(&format!("{field}.name"), &rule.name)?;
            if !crate::figures::is_known_figure(&rule.figure) {
                return Err(refuse(
                    format!("{field}.figure"),
                    format!(
                        "unknown figure '{}'; use one of {}",
                        rule.figure,
                        crate::figures::FIGURE_PATTERNS.join(", ")
                    ),
                ));
            }
            if let Some(column) = crate::figures::figure_column(&rule.figure)
                && let Some(columns) = &self.columns
                && !columns.iter().any(|c| c == column)
            {
                return Err(refuse(
                    format!("{field}.figure"),
                    format!("column '{column}' is not among the monitor's columns {columns:?}"),
                ));
            }
            if let Some((column, _, _)) = crate::figures::slice_parts(&rule.figure)
                && !self.slices.iter().any(|c| c == column)
            {
                return Err(refuse(
                    format!("{field}.figure"),
                    format!("column '{column}' is not among the monitor's slices {:?}", self.slices),
                ));
            }
            if rule.figure.starts_with("estimated.") && self.probability_output.is_none() {
                return Err(refuse(
                    format!("{field}.figure"),
                    "estimated figures need a \"probability_output\"",
                ));
            }
            if rule.figure.starts_with("performance.") && self.task.is_none() {
                return Err(refuse(
                    format!("{field}.figure"),
                    "performance figures need \"task\": \"classification\" or \"regression\"",
                ));
            }
            if !OPERATORS.contains(&rule.operator.as_str()) {
                return Err(refuse(format!("{field}.operator"), format!("use one of {OPERATORS:?}")));
            }
            if !rule.threshold.is_finite() {
                return Err(refuse(format!("{field}.threshold"), "must be a finite number"));
            }
            if rule.for_windows == 0 || rule.for_windows > 1000 {
                return Err(refuse(format!("{field}.for_windows"), "must be from 1 to 1000"));
            }
            if !SEVERITIES.contains(&rule.severity.as_str()) {
                return Err(refuse(
                    format!("{field}.severity"),
                    format!("use one of {SEVERITIES:?}"),
                ));
            }
            for (name, text) in [("owner", &rule.owner), ("runbook", &rule.runbook)] {
                if let Some(text) = text {
                    check_text(&format!("{field}.{name}"), text)?;
                }
            }
            if rule.labels.len() > 50 {
                return Err(refuse(format!("{field}.labels"), "at most 50 labels"));
            }
            for (key, value) in &rule.labels {
                check_text(&format!("{field}.labels.{key}"), key)?;
                check_text(&format!("{field}.labels.{key}"), value)?;
            }
            for (position, name) in rule.notify.iter().flatten().enumerate() {
                if !channels.contains(name) {
                    return Err(refuse(
                        format!("{field}.notify[{position}]"),
                        format!("no channel is called '{name}'; channels: {channels:?}"),
                    ));
                }
            }
            self.validate_actions(&field, rule)?;
        }
        Ok(())
    }

    fn validate_actions(&self, field: &str, rule: &AlertRule) -> Result<(), SpecError> {
        if rule.actions.len() > 10 {
            return Err(refuse(format!("{field}.actions"), "at most 10 actions"));
        }
        for (index, action) in rule.actions.iter().enumerate() {
            let here = format!("{field}.actions[{index}]");
            match action {
                Action::Rollback { deployment: None } if self.deployment.is_none() => {
                    return Err(refuse(
                        format!("{here}.deployment"),
                        "the monitor watches no deployment; name the one to roll back",
                    ));
                }
                Action::MoveAlias { model, alias, version } => {
                    if model.is_none() && self.model.is_none() && self.deployment.is_none() {
                        return Err(refuse(format!("{here}.model"), "name the registered model"));
                    }
                    if alias.is_empty() || version.parse::<i64>().map_or(true, |v| v < 1) {
                        return Err(refuse(
                            format!("{here}.version"),
                            "give the alias and a version number (1 or more)",
                        ));
                    }
                }
                Action::Webhook { url } => check_url(&format!("{here}.url"), url)?,
                _ => {}
            }
        }
        Ok(())
    }

    /// The specification as the API shows it: URLs reduced to scheme and host, keys and header values masked.
    pub fn redacted(&self) -> MonitorSpec {
        let mut shown = self.clone();
        for channel in &mut shown.notifications {
            channel.url = channel.url.as_deref().map(redact_url);
            if channel.routing_key.is_some() {
                channel.routing_key = Some("***".to_string());
            }
            for value in channel.headers.values_mut() {
                *value = "***".to_string();
            }
        }
        for rule in &mut shown.alerts {
            for action in &mut rule.actions {
                if let Action::Webhook { url } = action {
                    *url = redact_url(url);
                }
            }
        }
        shown
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: serde_json::Value) -> Result<MonitorSpec, SpecError> {
        MonitorSpec::parse(value.to_string().as_bytes())
    }

    #[test]
    fn names_of_only_dots_are_refused() {
        for name in [".", "..", "...", "", "a/b"] {
            assert!(check_name(name).is_err(), "{name}");
        }
        assert!(check_name("churn.v2").is_ok());
    }

    #[test]
    fn a_plain_monitor_parses_with_defaults() {
        let spec = parse(json!({"deployment": "churn", "window": {"seconds": 3600}})).unwrap();
        assert_eq!(
            (spec.prediction_column.as_str(), spec.grace_seconds),
            ("prediction", 90)
        );
    }

    #[test]
    fn bad_fields_are_named() {
        let cases = [
            (json!({"window": {"seconds": 60}}), "deployment"),
            (json!({"deployment": "d", "window": {"seconds": 0}}), "window.seconds"),
            (
                json!({"deployment": "d", "window": {"predictions": 0}}),
                "window.predictions",
            ),
            (json!({"deployment": "d", "window": {"seconds": "x"}}), "window.seconds"),
            (json!({"deployment": "d", "window": {}, "extra": 1}), "extra"),
            (
                json!({"deployment": "d", "window": {"seconds": 60},
                       "alerts": [{"name": "a", "figure": "drift.nope", "operator": ">", "threshold": 1}]}),
                "alerts[0].figure",
            ),
            (
                json!({"deployment": "d", "window": {"seconds": 60},
                       "notifications": [{"kind": "webhook", "url": "file:///etc/passwd"}]}),
                "notifications[0].url",
            ),
            (
                json!({"deployment": "d", "window": {"seconds": 60}, "columns": ["a"],
                       "alerts": [{"name": "a", "figure": "drift.score.b", "operator": ">", "threshold": 1}]}),
                "alerts[0].figure",
            ),
            (
                json!({"deployment": "d", "window": {"seconds": 60}, "drift": {"method": "nope"}}),
                "drift.method",
            ),
            (
                json!({"deployment": "d", "window": {"seconds": 60}, "drift": {"method": "ks"}}),
                "drift.method",
            ),
            (
                json!({"deployment": "d", "window": {"seconds": 60}, "drift": {"columns": {"age": {"method": "anderson"}}}}),
                "drift.columns.age.method",
            ),
        ];
        for (body, field) in cases {
            let error = parse(body.clone()).unwrap_err();
            assert!(error.field.starts_with(field), "{body}: {error}");
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bodies_are_refused_or_parsed_never_panicking(body in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let _ = MonitorSpec::parse(&body);
        }

        #[test]
        fn hostile_values_in_known_fields_are_refused_by_name(
            seconds in proptest::num::i64::ANY,
            predictions in proptest::num::u64::ANY,
            threshold in proptest::num::f64::ANY,
            figure in "[a-z._]{0,30}",
            url in "[a-z]{0,8}://[a-z0-9.]{0,12}/?[a-z]{0,5}",
        ) {
            let body = json!({"model": "m", "window": {"seconds": seconds, "predictions": predictions},
                "alerts": [{"name": "a", "figure": figure, "operator": ">", "threshold": threshold}],
                "notifications": [{"kind": "webhook", "url": url}]});
            if let Err(error) = parse(body) {
                proptest::prop_assert!(!error.field.is_empty());
            }
            let single = json!({"model": "m", "window": {"predictions": predictions}});
            if let Err(error) = parse(single) {
                proptest::prop_assert!(error.field.starts_with("window"));
            }
        }
    }

    #[test]
    fn secrets_are_masked_when_shown() {
        let spec = parse(json!({"deployment": "d", "window": {"seconds": 60}, "notifications": [
            {"kind": "slack", "url": "https://hooks.slack.com/services/T0/B0/secret"},
            {"kind": "pagerduty", "routing_key": "e93facc04764012d7bfb002500d5d1a6"}]}))
        .unwrap();
        let shown = serde_json::to_string(&spec.redacted()).unwrap();
        assert!(!shown.contains("secret") && !shown.contains("e93facc"), "{shown}");
    }
}
