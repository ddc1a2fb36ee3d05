//! The rollout controller: one pass over every deployment each tick — follow a moved alias, warm candidates
//! before they take traffic, judge the step against the guardrails (rolling back at once on a breach), and
//! move to the next step or complete when the step has had its dwell time and requests.

use std::sync::Arc;

use loopline_core::time::now_millis;
use loopline_metadata_store::{DeploymentEvent, StoreError};
use loopline_serving::Catalog;
use serde_json::{Value, json};

use crate::live::Live;
use crate::manager::{Manager, event, to_json};
use crate::spec::{Policy, Target};
use crate::state::{self, Phase, Progress, Rollout, plan};
use crate::window::{judge, judge_shadow};

impl Manager {
    /// One controller pass over every deployment.
    pub async fn tick(&self) {
        let _serial = self.serial.lock().await;
        let records = match self.store.list_deployments().await {
            Ok(records) => records,
            Err(error) => {
                tracing::warn!(%error, "deployments could not be read; the controller will try again");
                return;
            }
        };
        let names: std::collections::HashSet<&str> = records.iter().map(|r| r.name.as_str()).collect();
        self.live
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|name, _| names.contains(name.as_str()));
        let now = now_millis();
        for record in &records {
            match self.live_for(record).await {
                Ok(live) => self.advance(&live, now).await,
                Err(error) => tracing::error!(deployment = record.name, %error, "deployment skipped"),
            }
        }
    }

    /// Moves one deployment along: alias changes, warming, guardrails, steps.
    pub(crate) async fn advance(&self, live: &Arc<Live>, now: i64) {
        let (mut spec, mut state, revision) = {
            let inner = live.read();
            (inner.spec.clone(), inner.state.clone(), inner.record.revision)
        };
        let controller = "controller";
        let mut events = Vec::new();
        if let Ok(Target::Alias { name, alias }) = Target::parse(&spec.model)
            && let Ok(current) = self.store.get_model_version_by_alias(&name, &alias).await
        {
            let version = current.version;
            match &state.rollout {
                None if version != state.stable => {
                    let trigger = format!("alias '{alias}' moved to version {version}");
                    events.push(started(
                        &live.name,
                        controller,
                        std::slice::from_ref(&version),
                        &trigger,
                    ));
                    state.rollout = Some(Rollout::begin(vec![version], &trigger, now));
                }
                Some(_) if version == state.stable => {
                    events.push(event(
                        &live.name,
                        "rollout_cancelled",
                        controller,
                        format!("alias '{alias}' moved back to the stable version {version}; rollout cancelled"),
                        json!({"alias": alias, "version": version}),
                    ));
                    state.rollout = None;
                }
                Some(rollout) if !rollout.candidates.contains(&version) => {
                    let trigger = format!("alias '{alias}' moved to version {version} during the rollout");
                    events.push(event(
                        &live.name,
                        "rollout_superseded",
                        controller,
                        format!(
                            "the rollout of {} was replaced: {trigger}",
                            rollout.candidates.join(", ")
                        ),
                        json!({"replaced": rollout.candidates, "version": version}),
                    ));
                    state.rollout = Some(Rollout::begin(vec![version], &trigger, now));
                }
                _ => {}
            }
        }
        if let Some(rollout) = state.rollout.as_mut()
            && rollout.phase == Phase::Warming
        {
            let mut failure = None;
            for candidate in &rollout.candidates {
                if let Err(error) = live.catalog.get(&live.model, Some(candidate)).await {
                    failure = Some(format!("candidate version {candidate} failed to load: {error}"));
                    break;
                }
            }
            match failure {
                Some(reason) => {
                    let from = rollout.candidates.clone();
                    state.rollout = None;
                    state.rollbacks += 1;
                    events.push(event(
                        &live.name,
                        "rolled_back",
                        controller,
                        format!("rolled back to version {}: {reason}", state.stable),
                        json!({"from": from, "to": state.stable}),
                    ));
                    let stable = state.stable.clone();
                    if let Err(error) = self
                        .point_model_at(live, &mut spec, &stable, controller, &mut events)
                        .await
                    {
                        tracing::error!(deployment = live.name, %error, "could not point the model back at the stable version");
                    }
                    tracing::warn!(deployment = live.name, %reason, "rollout abandoned");
                }
                None => {
                    rollout.phase = Phase::Running;
                    rollout.step_started_ms = now;
                    let rollout = rollout.clone();
                    let planned = plan(&spec, &state);
                    events.push(step_event(
                        &live.name,
                        &planned,
                        &rollout,
                        "candidates loaded and warm; traffic starts",
                    ));
                }
            }
        }
        if let Some(rollout) = state.rollout.clone().filter(|r| r.phase == Phase::Running)
            && events.is_empty()
        {
            let breach = {
                let window = live.window.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                match &spec.policy {
                    Policy::Shadow { .. } => rollout
                        .candidates
                        .first()
                        .and_then(|c| judge_shadow(&spec.guardrails, &window.shadow, c)),
                    _ => rollout
                        .candidates
                        .iter()
                        .find_map(|c| judge(&spec.guardrails, &window, &state.stable, c)),
                }
            };
            if let Some(breach) = breach {
                let _ = self
                    .append(event(
                        &live.name,
                        "guardrail_breach",
                        controller,
                        breach.reason.clone(),
                        breach.details.clone(),
                    ))
                    .await;
                tracing::warn!(deployment = live.name, reason = %breach.reason, "guardrail breached; rolling back");
                if let Err(error) = self.roll_back(live, &breach.reason, controller, breach.details).await {
                    tracing::error!(deployment = live.name, %error, "automatic rollback failed");
                }
                return;
            }
            let candidate_requests = rollout
                .candidates
                .iter()
                .map(|c| {
                    live.window
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .requests(c)
                })
                .sum();
            match state::progress(&spec, &rollout, now - rollout.step_started_ms, candidate_requests) {
                Progress::Wait => {}
                Progress::Step(next) => {
                    let figures = self.figures(live);
                    if let Some(r) = state.rollout.as_mut() {
                        r.step = next;
                        r.step_started_ms = now;
                        let r = r.clone();
                        let planned = plan(&spec, &state);
                        let mut step = step_event(
                            &live.name,
                            &planned,
                            &r,
                            "the previous step met its dwell time and request count within the guardrails",
                        );
                        step.details =
                            json!({"shares": shares(&planned), "step": next, "previous_step": figures}).to_string();
                        events.push(step);
                    }
                }
                Progress::Complete => {
                    let winner = rollout.candidates[0].clone();
                    let figures = self.figures(live);
                    state::complete(&spec, &mut state, &winner, now);
                    events.push(event(
                        &live.name,
                        "promoted",
                        controller,
                        format!("version {winner} completed its rollout and is now stable"),
                        figures,
                    ));
                }
            }
        }
        if state.previous.as_ref().is_some_and(|p| p.until_ms <= now) {
            // Past the switch-back window the old version no longer needs to stay loaded.
            let mut keep = plan(&spec, &state).versions();
            keep.extend(state.rollout.iter().flat_map(|r| r.candidates.clone()));
            live.catalog.retain(&live.model, &keep);
        }
        if let Some(posteriors) = live.take_posteriors()
            && let Some(rollout) = state.rollout.as_mut()
            && rollout.bandit.len() == posteriors.len()
        {
            rollout.bandit = posteriors;
        }
        let changed = state != live.read().state || spec != live.read().spec;
        if changed {
            match self
                .store
                .update_deployment(&live.name, revision, &to_json(&spec), &to_json(&state), &events)
                .await
            {
                Ok(record) => {
                    live.adopt(record, spec, state);
                    self.rebuild(live).await;
                }
                Err(error) => {
                    tracing::debug!(deployment = live.name, %error, "deployment changed meanwhile; next pass")
                }
            }
        } else if live.table_is_stale() {
            self.rebuild(live).await;
        }
    }

    async fn append(&self, event: DeploymentEvent) -> Result<(), StoreError> {
        self.store.append_deployment_event(&event).await
    }
}

fn shares(planned: &state::Plan) -> Value {
    planned
        .arms
        .iter()
        .map(|(v, share)| (v.clone(), json!(share)))
        .collect::<serde_json::Map<String, Value>>()
        .into()
}

pub(crate) fn started(deployment: &str, actor: &str, candidates: &[String], trigger: &str) -> DeploymentEvent {
    event(
        deployment,
        "rollout_started",
        actor,
        format!("rollout of version {} started: {trigger}", candidates.join(", ")),
        json!({"candidates": candidates, "trigger": trigger}),
    )
}

fn step_event(deployment: &str, planned: &state::Plan, rollout: &Rollout, why: &str) -> DeploymentEvent {
    let described: Vec<String> = planned
        .arms
        .iter()
        .map(|(v, share)| format!("version {v} {:.0}%", share * 100.0))
        .collect();
    let shadow = planned
        .shadow
        .as_ref()
        .map(|(v, share)| format!("; {:.0}% mirrored to {v}", share * 100.0))
        .unwrap_or_default();
    event(
        deployment,
        "step",
        "controller",
        format!("step {}: {}{shadow} ({why})", rollout.step + 1, described.join(", ")),
        json!({"shares": shares(planned), "step": rollout.step}),
    )
}
