//! Alert rules as a state machine over windows: inactive -> pending (breaching, not yet long enough) ->
//! firing -> resolved (back to inactive). Only the moves into firing and out of it notify, so an episode
//! notifies once when it starts and once when it ends, however many windows it spans. A window without the
//! figure (no traffic, no labels yet) changes nothing. Nothing here touches time, storage or the network.

use serde::{Deserialize, Serialize};

use crate::spec::AlertRule;

/// Where a rule stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    /// Not breaching.
    #[default]
    Inactive,
    /// Breaching for fewer windows than the rule asks.
    Pending,
    /// Firing.
    Firing,
}

/// A rule's state, kept in the monitor's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleState {
    /// Status.
    pub status: AlertStatus,
    /// Consecutive breaching windows.
    pub breaches: u64,
    /// When the current episode began (first breaching window's end), ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<i64>,
    /// The episode's id (one per firing episode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub episode: Option<String>,
    /// The figure's value in the last window that had it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_value: Option<f64>,
    /// The last window applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_window: Option<i64>,
    /// Who acknowledged the firing episode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_by: Option<String>,
    /// Notifications are held back until then, ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silenced_until_ms: Option<i64>,
    /// Who silenced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silenced_by: Option<String>,
    /// When Alertmanager was last told this episode fires (it forgets alerts not re-sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alertmanager_sent_ms: Option<i64>,
}

/// What a window did to a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Nothing worth telling.
    Unchanged,
    /// The rule started firing.
    Fired,
    /// The rule stopped firing.
    Resolved,
}

/// Whether `value` breaches the rule.
pub fn breaches(rule: &AlertRule, value: f64) -> bool {
    match rule.operator.as_str() {
        ">" => value > rule.threshold,
        ">=" => value >= rule.threshold,
        "<" => value < rule.threshold,
        "<=" => value <= rule.threshold,
        _ => false,
    }
}

/// Applies one window's value of the rule's figure (`None`: the window has no such figure).
/// `episode_id` names a new episode should one start.
pub fn apply(
    rule: &AlertRule,
    state: &RuleState,
    value: Option<f64>,
    window: (i64, i64),
    episode_id: impl FnOnce() -> String,
) -> (RuleState, Transition) {
    let (window_key, window_end_ms) = window;
    let mut next = state.clone();
    next.last_window = Some(window_key);
    let Some(value) = value.filter(|v| !v.is_nan()) else {
        return (next, Transition::Unchanged);
    };
    next.last_value = Some(value);
    if breaches(rule, value) {
        next.breaches = state.breaches.saturating_add(1);
        if state.status == AlertStatus::Inactive {
            next.since_ms = Some(window_end_ms);
        }
        if next.breaches >= rule.for_windows {
            if state.status != AlertStatus::Firing {
                next.status = AlertStatus::Firing;
                next.episode = Some(episode_id());
                next.acknowledged_by = None;
                return (next, Transition::Fired);
            }
        } else {
            next.status = AlertStatus::Pending;
        }
        return (next, Transition::Unchanged);
    }
    next.breaches = 0;
    let was_firing = state.status == AlertStatus::Firing;
    next.status = AlertStatus::Inactive;
    next.since_ms = None;
    next.acknowledged_by = None;
    next.alertmanager_sent_ms = None;
    if was_firing {
        (next, Transition::Resolved)
    } else {
        next.episode = None;
        (next, Transition::Unchanged)
    }
}

/// Whether notifications are held back at `now_ms`.
pub fn is_silenced(state: &RuleState, now_ms: i64) -> bool {
    state.silenced_until_ms.is_some_and(|until| until > now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rule(for_windows: u64) -> AlertRule {
        serde_json::from_value(serde_json::json!({
            "name": "drift", "figure": "drift.share", "operator": ">", "threshold": 0.3, "for_windows": for_windows
        }))
        .unwrap()
    }

    fn run(rule: &AlertRule, values: &[Option<f64>]) -> Vec<Transition> {
        let mut state = RuleState::default();
        let mut seen = Vec::new();
        for (key, value) in values.iter().enumerate() {
            let (next, transition) = apply(rule, &state, *value, (key as i64, key as i64 * 10), || {
                format!("e{key}")
            });
            state = next;
            seen.push(transition);
        }
        seen
    }

    #[test]
    fn an_episode_fires_once_and_resolves_once() {
        use Transition::*;
        let values = [Some(0.1), Some(0.5), Some(0.6), None, Some(0.7), Some(0.1), Some(0.2)];
        assert_eq!(
            run(&rule(1), &values),
            [Unchanged, Fired, Unchanged, Unchanged, Unchanged, Resolved, Unchanged]
        );
    }

    #[test]
    fn consecutive_windows_are_needed_before_firing() {
        use Transition::*;
        let values = [Some(0.5), Some(0.1), Some(0.5), Some(0.5), Some(0.5)];
        assert_eq!(
            run(&rule(2), &values),
            [Unchanged, Unchanged, Unchanged, Fired, Unchanged]
        );
    }

    proptest! {
        #[test]
        fn fired_and_resolved_alternate(values in proptest::collection::vec(proptest::option::of(0.0f64..1.0), 0..60), need in 1u64..4) {
            let transitions: Vec<Transition> =
                run(&rule(need), &values).into_iter().filter(|t| *t != Transition::Unchanged).collect();
            for (index, transition) in transitions.iter().enumerate() {
                let expected = if index % 2 == 0 { Transition::Fired } else { Transition::Resolved };
                prop_assert_eq!(*transition, expected);
            }
        }
    }
}
