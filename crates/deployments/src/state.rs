//! A deployment's rollout state, stored next to its spec, and the pure rules over it: which versions get what
//! share of traffic (the plan), and how a rollout begins, steps, completes and rolls back. The controller and
//! the API apply these and persist the result; nothing here touches time, storage or models.

use serde::{Deserialize, Serialize};

use crate::spec::{DeploymentSpec, Policy};

/// Where a deployment stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentState {
    /// The last good version: it answers whatever no rollout takes.
    pub stable: String,
    /// The version `stable` replaced: where a rollback returns. It stays loaded until `until_ms` (blue-green's
    /// keep-old window) for an instant switch back; after that a rollback loads it first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Previous>,
    /// The rollout under way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
    /// Rollbacks so far.
    #[serde(default)]
    pub rollbacks: u64,
}

/// The version before the stable one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Previous {
    /// Version.
    pub version: String,
    /// Kept loaded until then, ms since the epoch.
    pub until_ms: i64,
}

/// Rollout phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The candidate is loading; it takes no traffic.
    Warming,
    /// Traffic follows the policy.
    Running,
}

/// A rollout from the stable version to candidates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    /// Unique id.
    pub id: String,
    /// The versions being tried.
    pub candidates: Vec<String>,
    /// Phase.
    pub phase: Phase,
    /// Current step (canary) — 0 for the other policies.
    pub step: usize,
    /// When the current step (or phase) began, ms since the epoch.
    pub step_started_ms: i64,
    /// When the rollout began.
    pub started_ms: i64,
    /// What started it.
    pub trigger: String,
    /// Bandit posteriors (successes + 1, failures + 1) per arm: the stable version first, then candidates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bandit: Vec<(f64, f64)>,
}

impl Rollout {
    /// A rollout of `candidates` beginning now.
    pub fn begin(candidates: Vec<String>, trigger: &str, now_ms: i64) -> Rollout {
        let arms = candidates.len() + 1;
        Rollout {
            id: uuid::Uuid::new_v4().simple().to_string(),
            candidates,
            phase: Phase::Warming,
            step: 0,
            step_started_ms: now_ms,
            started_ms: now_ms,
            trigger: trigger.to_string(),
            bandit: vec![(1.0, 1.0); arms],
        }
    }
}

/// How traffic is split now.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Versions and their shares (summing to 1); the stable version first.
    pub arms: Vec<(String, f64)>,
    /// A version that receives copies of a share of requests.
    pub shadow: Option<(String, f64)>,
    /// Arms are chosen by Thompson sampling instead of shares.
    pub bandit: bool,
}

impl Plan {
    /// Every version that must be loaded.
    pub fn versions(&self) -> Vec<String> {
        let mut versions: Vec<String> = self.arms.iter().map(|(v, _)| v.clone()).collect();
        if let Some((shadow, _)) = &self.shadow {
            versions.push(shadow.clone());
        }
        versions
    }
}

/// The traffic split for `state` under `spec`.
pub fn plan(spec: &DeploymentSpec, state: &DeploymentState) -> Plan {
    let stable_only = Plan {
        arms: vec![(state.stable.clone(), 1.0)],
        shadow: None,
        bandit: false,
    };
    let Some(rollout) = state.rollout.as_ref().filter(|r| r.phase == Phase::Running) else {
        return stable_only;
    };
    let with_share = |share: f64| {
        let mut arms = vec![(state.stable.clone(), 1.0 - share)];
        arms.extend(rollout.candidates.iter().map(|c| (c.clone(), share)));
        arms
    };
    match &spec.policy {
        Policy::Canary { steps, .. } => Plan {
            arms: with_share(steps[rollout.step.min(steps.len() - 1)] / 100.0),
            shadow: None,
            bandit: false,
        },
        Policy::BlueGreen { .. } => Plan {
            arms: with_share(1.0),
            shadow: None,
            bandit: false,
        },
        Policy::Shadow { mirror_percent } => Plan {
            arms: vec![(state.stable.clone(), 1.0)],
            shadow: rollout.candidates.first().map(|c| (c.clone(), mirror_percent / 100.0)),
            bandit: false,
        },
        Policy::Ab {
            weights: Some(weights), ..
        } => {
            let total: f64 = weights.values().sum();
            let mut arms = vec![(
                state.stable.clone(),
                weights.get(&state.stable).copied().unwrap_or(0.0) / total,
            )];
            arms.extend(
                rollout
                    .candidates
                    .iter()
                    .map(|c| (c.clone(), weights.get(c).copied().unwrap_or(0.0) / total)),
            );
            Plan {
                arms,
                shadow: None,
                bandit: false,
            }
        }
        Policy::Ab { candidate_percent, .. } => {
            let share = candidate_percent.unwrap_or(50.0) / 100.0 / rollout.candidates.len().max(1) as f64;
            let mut arms = vec![(state.stable.clone(), 1.0 - share * rollout.candidates.len() as f64)];
            arms.extend(rollout.candidates.iter().map(|c| (c.clone(), share)));
            Plan {
                arms,
                shadow: None,
                bandit: false,
            }
        }
        Policy::Bandit { .. } => {
            let share = 1.0 / (rollout.candidates.len() + 1) as f64;
            let mut arms = vec![(state.stable.clone(), share)];
            arms.extend(rollout.candidates.iter().map(|c| (c.clone(), share)));
            Plan {
                arms,
                shadow: None,
                bandit: true,
            }
        }
    }
}

/// What the controller should do with a running rollout, given what it has seen on this step.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// Keep going.
    Wait,
    /// Move to the next canary step.
    Step(usize),
    /// The candidate becomes the stable version.
    Complete,
}

/// Whether a running rollout may move on: `dwell_ms` on this step, `candidate_requests` answered by the
/// candidate on it. Shadow, A/B and bandit rollouts wait for a person (or a rule outside) to promote.
pub fn progress(spec: &DeploymentSpec, rollout: &Rollout, dwell_ms: i64, candidate_requests: u64) -> Progress {
    if rollout.phase != Phase::Running {
        return Progress::Wait;
    }
    let ready = |min_dwell_seconds: u64, min_requests: u64| {
        dwell_ms >= (min_dwell_seconds as i64).saturating_mul(1000) && candidate_requests >= min_requests
    };
    match &spec.policy {
        Policy::Canary {
            steps,
            min_dwell_seconds,
            min_requests,
        } if ready(*min_dwell_seconds, *min_requests) => {
            if rollout.step + 1 >= steps.len() {
                Progress::Complete
            } else {
                Progress::Step(rollout.step + 1)
            }
        }
        Policy::BlueGreen {
            min_dwell_seconds,
            min_requests,
            ..
        } if ready(*min_dwell_seconds, *min_requests) => Progress::Complete,
        _ => Progress::Wait,
    }
}

/// How long the replaced version stays loaded after a completed rollout, ms.
pub fn keep_previous_ms(spec: &DeploymentSpec) -> i64 {
    match &spec.policy {
        Policy::BlueGreen { keep_old_seconds, .. } => (*keep_old_seconds as i64).saturating_mul(1000),
        _ => 0,
    }
}

/// Makes `winner` the stable version, ending the rollout.
pub fn complete(spec: &DeploymentSpec, state: &mut DeploymentState, winner: &str, now_ms: i64) {
    if winner != state.stable {
        state.previous = Some(Previous {
            version: std::mem::replace(&mut state.stable, winner.to_string()),
            until_ms: now_ms + keep_previous_ms(spec),
        });
    }
    state.rollout = None;
}

/// Rolls back: ends the rollout (the stable version keeps everything), or, with none under way, returns to
/// the previous version. Returns the version now stable, or `None` when there is nothing to roll back.
pub fn roll_back(state: &mut DeploymentState) -> Option<String> {
    if state.rollout.take().is_some() {
        state.rollbacks += 1;
        return Some(state.stable.clone());
    }
    let previous = state.previous.take()?;
    state.stable = previous.version;
    state.rollbacks += 1;
    Some(state.stable.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(policy: serde_json::Value) -> DeploymentSpec {
        serde_json::from_value(serde_json::json!({"model": "models:/m/1", "policy": policy})).unwrap()
    }

    fn running(candidates: &[&str]) -> DeploymentState {
        let mut rollout = Rollout::begin(candidates.iter().map(|c| c.to_string()).collect(), "test", 0);
        rollout.phase = Phase::Running;
        DeploymentState {
            stable: "1".into(),
            previous: None,
            rollout: Some(rollout),
            rollbacks: 0,
        }
    }

    #[test]
    fn plans_follow_the_policy_and_warming_candidates_get_nothing() {
        let canary = spec(serde_json::json!({"type": "canary", "steps": [10, 100]}));
        let mut state = running(&["2"]);
        assert_eq!(
            plan(&canary, &state).arms,
            vec![("1".to_string(), 0.9), ("2".to_string(), 0.1)]
        );
        state.rollout.as_mut().unwrap().phase = Phase::Warming;
        assert_eq!(plan(&canary, &state).arms, vec![("1".to_string(), 1.0)]);
        let shadow = spec(serde_json::json!({"type": "shadow", "mirror_percent": 30}));
        let shadowed = plan(&shadow, &running(&["2"]));
        assert_eq!(shadowed.arms, vec![("1".to_string(), 1.0)]);
        assert_eq!(shadowed.shadow, Some(("2".to_string(), 0.3)));
        let ab = spec(serde_json::json!({"type": "ab", "weights": {"1": 3, "2": 1}}));
        assert_eq!(
            plan(&ab, &running(&["2"])).arms,
            vec![("1".to_string(), 0.75), ("2".to_string(), 0.25)]
        );
        let blue_green = spec(serde_json::json!({"type": "blue_green"}));
        assert_eq!(plan(&blue_green, &running(&["2"])).arms[1], ("2".to_string(), 1.0));
    }

    #[test]
    fn canaries_step_after_dwell_and_requests_then_complete() {
        let canary = spec(
            serde_json::json!({"type": "canary", "steps": [10, 50, 100], "min_dwell_seconds": 5, "min_requests": 10}),
        );
        let mut state = running(&["2"]);
        let rollout = state.rollout.as_mut().unwrap();
        assert_eq!(progress(&canary, rollout, 4_999, 100), Progress::Wait);
        assert_eq!(progress(&canary, rollout, 5_000, 9), Progress::Wait);
        assert_eq!(progress(&canary, rollout, 5_000, 10), Progress::Step(1));
        rollout.step = 2;
        assert_eq!(progress(&canary, rollout, 5_000, 10), Progress::Complete);
        complete(&canary, &mut state, "2", 1_000);
        assert_eq!(state.stable, "2");
        assert_eq!(state.previous.as_ref().unwrap().version, "1");
        // With no rollout, a rollback returns to the previous version.
        assert_eq!(roll_back(&mut state).as_deref(), Some("1"));
        assert_eq!(roll_back(&mut state), None);
        assert_eq!(state.rollbacks, 1);
    }

    #[test]
    fn a_rollback_during_a_rollout_keeps_the_stable_version() {
        let mut state = running(&["2"]);
        assert_eq!(roll_back(&mut state).as_deref(), Some("1"));
        assert!(state.rollout.is_none());
        assert_eq!(state.stable, "1");
    }
}
