//! What a firing or resolved alert sets off: the notice told to each channel, the actions of the rule
//! (rollback, alias move, webhook, retraining request), re-sends to Alertmanager while an alert fires, and
//! delivery of the monitor's outbox with retries and backoff.

use std::collections::BTreeMap;

use loopline_core::time::now_millis;
use loopline_metadata_store::MonitorUpdate;
use serde_json::{Value, json};

use crate::alerts::{AlertStatus, is_silenced};
use crate::notify::{AlertNotice, Delivery, backoff_seconds, deliver, payload, target_url};
use crate::runner::Changes;
use crate::service::{MonitorError, Monitoring, monitor_event, to_json};
use crate::spec::{Action, AlertRule, ChannelKind, MonitorSpec};
use crate::state::{MonitorState, Outgoing};

/// Attempts before a notification is given up.
const MAX_ATTEMPTS: u32 = 12;
/// How often a firing alert is told to Alertmanager again (it forgets alerts not re-sent).
const ALERTMANAGER_RESEND_MS: i64 = 60_000;

impl Monitoring {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn notice(
        &self,
        name: &str,
        model: &str,
        spec: &MonitorSpec,
        rule: &AlertRule,
        rule_state: &crate::alerts::RuleState,
        window: (i64, i64),
        resolved: bool,
    ) -> AlertNotice {
        let (window_key, window_end) = window;
        let mut labels = rule.labels.clone();
        labels.insert("monitor".into(), name.to_string());
        labels.insert("model".into(), model.to_string());
        labels.insert("severity".into(), rule.severity.clone());
        if let Some(deployment) = &spec.deployment {
            labels.insert("deployment".into(), deployment.clone());
        }
        let mut annotations = BTreeMap::new();
        if let Some(owner) = &rule.owner {
            annotations.insert("owner".to_string(), owner.clone());
        }
        if let Some(runbook) = &rule.runbook {
            annotations.insert("runbook_url".to_string(), runbook.clone());
        }
        AlertNotice {
            monitor: name.to_string(),
            rule: rule.name.clone(),
            status: if resolved { "resolved" } else { "firing" }.to_string(),
            episode: rule_state.episode.clone().unwrap_or_default(),
            severity: rule.severity.clone(),
            figure: rule.figure.clone(),
            value: rule_state.last_value,
            condition: format!("{} {}", rule.operator, rule.threshold),
            window_key,
            started_ms: rule_state.since_ms.unwrap_or(window_end),
            ended_ms: resolved.then_some(window_end),
            labels,
            annotations,
        }
    }

    pub(crate) fn enqueue_notice(
        spec: &MonitorSpec,
        rule: &AlertRule,
        state: &mut MonitorState,
        notice: &AlertNotice,
        only_alertmanager: bool,
    ) {
        for channel in &spec.notifications {
            let wanted = rule
                .notify
                .as_ref()
                .is_none_or(|names| names.contains(&channel.label()));
            if !wanted || (only_alertmanager && channel.kind != ChannelKind::Alertmanager) {
                continue;
            }
            state.enqueue(Outgoing {
                id: uuid::Uuid::new_v4().simple().to_string(),
                channel: channel.label(),
                notice: notice.clone(),
                attempts: 0,
                next_attempt_ms: 0,
                last_error: None,
            });
        }
    }

    pub(crate) fn resend_to_alertmanager(
        &self,
        name: &str,
        spec: &MonitorSpec,
        model: &str,
        state: &mut MonitorState,
        now: i64,
    ) {
        if !spec.notifications.iter().any(|c| c.kind == ChannelKind::Alertmanager) {
            return;
        }
        let mut resend = Vec::new();
        for rule in &spec.alerts {
            let Some(rule_state) = state.rules.get_mut(&rule.name) else {
                continue;
            };
            let stale = rule_state
                .alertmanager_sent_ms
                .is_none_or(|sent| now - sent >= ALERTMANAGER_RESEND_MS);
            if rule_state.status == AlertStatus::Firing && stale && !is_silenced(rule_state, now) {
                rule_state.alertmanager_sent_ms = Some(now);
                resend.push(rule.clone());
            }
        }
        for rule in resend {
            let rule_state = state.rules.get(&rule.name).cloned().unwrap_or_default();
            let key = rule_state.last_window.unwrap_or_default();
            let notice = self.notice(
                name,
                model,
                spec,
                &rule,
                &rule_state,
                (key, rule_state.since_ms.unwrap_or(now)),
                false,
            );
            Self::enqueue_notice(spec, &rule, state, &notice, true);
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn act(
        &self,
        name: &str,
        spec: &MonitorSpec,
        model: &str,
        rule: &AlertRule,
        notice: &AlertNotice,
        state: &mut MonitorState,
        changes: &mut Changes,
    ) {
        let actor = format!("monitor:{name}");
        let reason = notice.summary();
        for (index, action) in rule.actions.iter().enumerate() {
            let outcome: Result<String, String> = match action {
                Action::Rollback { deployment } => {
                    let target = deployment.clone().or(spec.deployment.clone()).unwrap_or_default();
                    match &self.deployments {
                        None => Err("this server runs no deployments".to_string()),
                        Some(manager) => manager
                            .rollback(&target, Some(&reason), &actor)
                            .await
                            .map(|_| format!("deployment '{target}' rolled back"))
                            .map_err(|e| format!("deployment '{target}' could not be rolled back: {e}")),
                    }
                }
                Action::MoveAlias {
                    model: named,
                    alias,
                    version,
                } => {
                    let target = named.clone().unwrap_or_else(|| model.to_string());
                    let number: i64 = version.parse().unwrap_or_default();
                    let gate = match self.alias_gate.get() {
                        Some(gate) => gate.admit(&target, alias, number).await,
                        None => Ok(()),
                    };
                    match self.store.get_model_version(&target, number).await {
                        Err(error) => Err(format!("alias '{alias}' of '{target}' not moved: {error}")),
                        Ok(_) if gate.is_err() => Err(format!(
                            "alias '{alias}' of '{target}' not moved: {}",
                            gate.err().unwrap_or_default()
                        )),
                        Ok(_) => self
                            .store
                            .set_alias(&target, alias, number)
                            .await
                            .map(|()| format!("alias '{alias}' of '{target}' now names version {number}"))
                            .map_err(|e| format!("alias '{alias}' of '{target}' not moved: {e}")),
                    }
                }
                Action::Webhook { .. } => {
                    state.enqueue(Outgoing {
                        id: uuid::Uuid::new_v4().simple().to_string(),
                        channel: format!("action:{}:{index}", rule.name),
                        notice: notice.clone(),
                        attempts: 0,
                        next_attempt_ms: 0,
                        last_error: None,
                    });
                    Ok("webhook queued".to_string())
                }
                Action::Retrain { pipeline } => {
                    changes.events.push(monitor_event(
                        name,
                        "retraining_requested",
                        &actor,
                        format!("retraining of '{model}' requested: {reason}"),
                        json!({"model": model, "pipeline": pipeline, "rule": rule.name, "cause": notice}),
                    ));
                    Ok("retraining requested".to_string())
                }
            };
            let (kind, message) = match outcome {
                Ok(message) => ("action", message),
                Err(message) => ("action_failed", message),
            };
            changes.events.push(monitor_event(
                name,
                kind,
                &actor,
                message,
                json!({"rule": rule.name, "action": action}),
            ));
        }
    }

    /// Tries every notification that is due (all of them on demand); stores what changed.
    pub(crate) async fn deliver_outbox(
        &self,
        name: &str,
        spec: &MonitorSpec,
        revision: i64,
        state: &mut MonitorState,
        on_demand: bool,
    ) -> Result<usize, MonitorError> {
        let now = now_millis();
        if !state.outbox.iter().any(|o| on_demand || o.next_attempt_ms <= now) {
            return Ok(0);
        }
        let mut events = Vec::new();
        let mut delivered = 0;
        let mut kept = Vec::new();
        for mut outgoing in std::mem::take(&mut state.outbox) {
            if !on_demand && outgoing.next_attempt_ms > now {
                kept.push(outgoing);
                continue;
            }
            let (url, headers, body) = match self.channel_request(spec, &outgoing) {
                Some(request) => request,
                None => {
                    events.push(monitor_event(
                        name,
                        "notification_failed",
                        "monitor",
                        format!("channel '{}' no longer exists; notification dropped", outgoing.channel),
                        json!({"channel": outgoing.channel, "rule": outgoing.notice.rule}),
                    ));
                    continue;
                }
            };
            outgoing.attempts += 1;
            match deliver(&self.http, &url, &headers, &body).await {
                Delivery::Delivered => {
                    delivered += 1;
                    events.push(monitor_event(
                        name,
                        "notified",
                        "monitor",
                        format!("'{}' told of alert '{}' ({})", outgoing.channel, outgoing.notice.rule, outgoing.notice.status),
                        json!({"channel": outgoing.channel, "rule": outgoing.notice.rule, "status": outgoing.notice.status, "attempts": outgoing.attempts}),
                    ));
                }
                Delivery::Retry(reason) if outgoing.attempts < MAX_ATTEMPTS => {
                    tracing::warn!(monitor = name, channel = %outgoing.channel, %reason, "notification will be retried");
                    outgoing.next_attempt_ms = now + backoff_seconds(outgoing.attempts) * 1000;
                    outgoing.last_error = Some(reason);
                    kept.push(outgoing);
                }
                Delivery::Retry(reason) | Delivery::Refused(reason) => {
                    tracing::error!(monitor = name, channel = %outgoing.channel, %reason, "notification given up");
                    events.push(monitor_event(
                        name,
                        "notification_failed",
                        "monitor",
                        format!("'{}' was not told of alert '{}': {reason}", outgoing.channel, outgoing.notice.rule),
                        json!({"channel": outgoing.channel, "rule": outgoing.notice.rule, "attempts": outgoing.attempts}),
                    ));
                }
            }
        }
        state.outbox = kept;
        let record = self.store.get_monitor(name).await?;
        let update = MonitorUpdate {
            spec: &record.spec,
            state: &to_json(state),
            windows: &[],
            events: &events,
        };
        self.store.update_monitor(name, revision, &update).await?;
        Ok(delivered)
    }

    fn channel_request(
        &self,
        spec: &MonitorSpec,
        outgoing: &Outgoing,
    ) -> Option<(String, BTreeMap<String, String>, Value)> {
        if let Some(rest) = outgoing.channel.strip_prefix("action:") {
            let (rule, index) = rest.rsplit_once(':')?;
            let index: usize = index.parse().ok()?;
            let rule = spec.alerts.iter().find(|r| r.name == rule)?;
            let Action::Webhook { url } = rule.actions.get(index)? else {
                return None;
            };
            return Some((
                url.clone(),
                BTreeMap::new(),
                crate::notify::webhook_payload(&outgoing.channel, &outgoing.notice),
            ));
        }
        let channel = spec.notifications.iter().find(|c| c.label() == outgoing.channel)?;
        Some((
            target_url(channel),
            channel.headers.clone(),
            payload(channel, &outgoing.notice),
        ))
    }
}
