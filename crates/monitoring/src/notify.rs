//! Notifications on the wire: a firing or resolved alert as a generic JSON webhook (Alertmanager's webhook
//! payload, version 4), a Slack-compatible incoming-webhook message, a PagerDuty Events API v2 event and
//! Prometheus Alertmanager's `/api/v2/alerts`; and one delivery attempt, sorted into delivered, worth
//! retrying (network errors, 408, 429, 5xx) and refused for good (other answers).

use std::collections::BTreeMap;
use std::time::Duration;

use loopline_core::time::rfc3339_millis;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::spec::{Channel, ChannelKind};

/// Where PagerDuty events go when a channel names no URL.
pub const PAGERDUTY_ENQUEUE_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// Alertmanager's time for "not ended".
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// One alert's moment to tell, as kept in the monitor's outbox (no secrets: the channel is looked up in the
/// specification when sending).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertNotice {
    /// The monitor.
    pub monitor: String,
    /// The rule.
    pub rule: String,
    /// `firing` or `resolved`.
    pub status: String,
    /// The episode.
    pub episode: String,
    /// Severity.
    pub severity: String,
    /// The figure watched, its value and the rule's test.
    pub figure: String,
    /// The value that decided.
    pub value: Option<f64>,
    /// `> 0.3` etc.
    pub condition: String,
    /// The window that decided.
    pub window_key: i64,
    /// When the episode began, ms since the epoch.
    pub started_ms: i64,
    /// When it ended (resolved only).
    pub ended_ms: Option<i64>,
    /// Labels sent along (rule labels plus monitor, model, severity).
    pub labels: BTreeMap<String, String>,
    /// Owner, runbook, summary.
    pub annotations: BTreeMap<String, String>,
}

impl AlertNotice {
    /// A sentence for people.
    pub fn summary(&self) -> String {
        let value = self.value.map_or_else(|| "no value".to_string(), |v| format!("{v:.4}"));
        match self.status.as_str() {
            "firing" => format!(
                "[{}] monitor '{}': {} is {value} ({} ) in window {}",
                self.severity, self.monitor, self.figure, self.condition, self.window_key
            )
            .replace(" )", ")"),
            _ => format!(
                "[resolved] monitor '{}': {} is back to {value} in window {}",
                self.monitor, self.figure, self.window_key
            ),
        }
    }

    fn alert_labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.labels.clone();
        labels.insert("alertname".into(), self.rule.clone());
        labels
    }

    fn fingerprint(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.alert_labels().hash(&mut hasher);
        format!("{:016x}", hasher.finish())
    }

    fn ends_at(&self) -> String {
        self.ended_ms.map_or_else(|| ZERO_TIME.to_string(), rfc3339_millis)
    }

    fn annotations_with_summary(&self) -> BTreeMap<String, String> {
        let mut annotations = self.annotations.clone();
        annotations.insert("summary".into(), self.summary());
        annotations
    }
}

/// The request body a channel gets for a notice.
pub fn payload(channel: &Channel, notice: &AlertNotice) -> Value {
    match channel.kind {
        ChannelKind::Webhook => webhook_payload(&channel.label(), notice),
        ChannelKind::Slack => slack_payload(notice),
        ChannelKind::Pagerduty => pagerduty_payload(channel.routing_key.as_deref().unwrap_or_default(), notice),
        ChannelKind::Alertmanager => alertmanager_payload(notice),
    }
}

/// Alertmanager's webhook payload (version 4), one alert per group.
pub fn webhook_payload(receiver: &str, notice: &AlertNotice) -> Value {
    let labels = notice.alert_labels();
    let annotations = notice.annotations_with_summary();
    json!({
        "version": "4",
        "groupKey": format!("{{}}/{{monitor=\"{}\"}}:{{alertname=\"{}\"}}", notice.monitor, notice.rule),
        "truncatedAlerts": 0,
        "status": notice.status,
        "receiver": receiver,
        "groupLabels": {"alertname": notice.rule},
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": "",
        "alerts": [{
            "status": notice.status,
            "labels": labels,
            "annotations": annotations,
            "startsAt": rfc3339_millis(notice.started_ms),
            "endsAt": notice.ends_at(),
            "generatorURL": "",
            "fingerprint": notice.fingerprint(),
        }],
    })
}

fn slack_payload(notice: &AlertNotice) -> Value {
    let mut lines = vec![format!("*{}*", notice.summary())];
    for (key, value) in &notice.annotations {
        lines.push(format!("{key}: {value}"));
    }
    json!({
        "text": notice.summary(),
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": lines.join("\n")}}],
    })
}

fn pagerduty_payload(routing_key: &str, notice: &AlertNotice) -> Value {
    let dedup_key = format!("loopline/{}/{}/{}", notice.monitor, notice.rule, notice.episode);
    if notice.status != "firing" {
        return json!({"routing_key": routing_key, "event_action": "resolve", "dedup_key": dedup_key});
    }
    let severity = match notice.severity.as_str() {
        known @ ("critical" | "error" | "warning" | "info") => known,
        _ => "error",
    };
    let summary: String = notice.summary().chars().take(1024).collect();
    json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "payload": {
            "summary": summary,
            "source": format!("loopline monitor {}", notice.monitor),
            "severity": severity,
            "timestamp": rfc3339_millis(notice.started_ms),
            "component": notice.labels.get("model").cloned().unwrap_or_default(),
            "group": notice.monitor,
            "class": notice.figure,
            "custom_details": {
                "value": notice.value,
                "condition": notice.condition,
                "window": notice.window_key,
                "labels": notice.labels,
                "annotations": notice.annotations,
            },
        },
        "client": "loopline",
    })
}

fn alertmanager_payload(notice: &AlertNotice) -> Value {
    let mut alert = json!({
        "labels": notice.alert_labels(),
        "annotations": notice.annotations_with_summary(),
        "startsAt": rfc3339_millis(notice.started_ms),
        "generatorURL": "",
    });
    if let Some(ended) = notice.ended_ms {
        alert["endsAt"] = json!(rfc3339_millis(ended));
    }
    json!([alert])
}

/// The URL a channel posts to.
pub fn target_url(channel: &Channel) -> String {
    match (channel.kind, channel.url.as_deref()) {
        (ChannelKind::Pagerduty, None) => PAGERDUTY_ENQUEUE_URL.to_string(),
        (ChannelKind::Alertmanager, Some(url)) if !url.trim_end_matches('/').ends_with("/api/v2/alerts") => {
            format!("{}/api/v2/alerts", url.trim_end_matches('/'))
        }
        (_, url) => url.unwrap_or_default().to_string(),
    }
}

/// How one attempt went.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// The receiver took it.
    Delivered,
    /// Worth trying again later (network error, 408, 429, 5xx).
    Retry(String),
    /// Refused for good (another 4xx, a bad URL).
    Refused(String),
}

/// An HTTP client for notifications: bounded time, no redirects (a receiver cannot bounce the secret-bearing
/// request elsewhere).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("loopline/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

/// Posts `body` to `url` with the channel's headers.
pub async fn deliver(http: &reqwest::Client, url: &str, headers: &BTreeMap<String, String>, body: &Value) -> Delivery {
    let mut request = http.post(url).json(body);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let shown = crate::spec::redact_url(url);
    match request.send().await {
        Err(error) => Delivery::Retry(format!(
            "{shown} could not be reached: {}",
            loopline_core::redact::redact_server_paths(&error.without_url().to_string())
        )),
        Ok(response) => {
            let status = response.status();
            if status.is_success() {
                Delivery::Delivered
            } else if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
                Delivery::Retry(format!("{shown} answered {status}"))
            } else {
                Delivery::Refused(format!("{shown} refused the notification with {status}"))
            }
        }
    }
}

/// Seconds to wait before attempt `attempts + 1`: 2, 4, 8 ... capped at 5 minutes.
pub fn backoff_seconds(attempts: u32) -> i64 {
    2i64.saturating_pow(attempts.clamp(1, 9)).min(300)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(status: &str) -> AlertNotice {
        AlertNotice {
            monitor: "churn".into(),
            rule: "drift".into(),
            status: status.into(),
            episode: "e1".into(),
            severity: "critical".into(),
            figure: "drift.share".into(),
            value: Some(0.5),
            condition: "> 0.3".into(),
            window_key: 3,
            started_ms: 0,
            ended_ms: (status == "resolved").then_some(3_600_000),
            labels: BTreeMap::from([("model".to_string(), "churn".to_string())]),
            annotations: BTreeMap::new(),
        }
    }

    #[test]
    fn each_sink_gets_its_own_shape() {
        let hook = webhook_payload("ops", &notice("firing"));
        assert_eq!(hook["version"], "4");
        assert_eq!(hook["alerts"][0]["endsAt"], ZERO_TIME);
        assert_eq!(hook["alerts"][0]["labels"]["alertname"], "drift");
        let resolved = alertmanager_payload(&notice("resolved"));
        assert_eq!(resolved[0]["endsAt"], "1970-01-01T01:00:00.000Z");
        let firing = alertmanager_payload(&notice("firing"));
        assert!(firing[0].get("endsAt").is_none());
        let page = pagerduty_payload("k", &notice("firing"));
        assert_eq!(
            (page["event_action"].as_str(), page["payload"]["severity"].as_str()),
            (Some("trigger"), Some("critical"))
        );
        let resolve = pagerduty_payload("k", &notice("resolved"));
        assert_eq!(resolve["dedup_key"], page["dedup_key"]);
        assert!(
            slack_payload(&notice("firing"))["text"]
                .as_str()
                .unwrap()
                .contains("drift.share")
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(
            (
                backoff_seconds(0),
                backoff_seconds(1),
                backoff_seconds(3),
                backoff_seconds(20)
            ),
            (2, 2, 8, 300)
        );
    }
}
