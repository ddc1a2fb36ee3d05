//! MLflow's gateway budget policies on each call: the policies that count a call (every call, an endpoint's,
//! a user's) claim its most possible cost in their current window alongside the key's limits, in the same
//! reservation, so a REJECT policy refuses the call that would pass its limit, across replicas and under
//! concurrency (MLflow lets that call through and refuses the next ones; holding the limit exactly is the
//! stricter promise this gateway makes for every budget). When a call is settled, each ALERT policy whose
//! window's spend reached its limit tells the `budget_policy.exceeded` webhooks, once per window across
//! replicas (the first replica to claim the window's single alert sends it).

use super::errors::OpenAiError;
use crate::ai_gateway::budgets::subject;
use axum::http::StatusCode;
use loopline_llm_gateway::Gateway;
use loopline_llm_gateway::catalog::{Action, BudgetPolicy, Named};
use loopline_metadata_store::{MetadataStore, Reservation, UsageClaim};
use serde_json::json;
use std::sync::Arc;

/// The policies counting a call of `group` by `user`, each with its window at `now`.
pub fn applicable(gateway: &Gateway, group: usize, user: Option<&str>, now: i64) -> Vec<(BudgetPolicy, (i64, i64))> {
    let config = gateway.config();
    let endpoint_id = config.models.get(group).and_then(|model| model.endpoint_id.as_deref());
    config
        .budget_policies
        .iter()
        .filter(|policy| policy.applies(endpoint_id, user))
        .map(|policy| (policy.clone(), policy.window(now)))
        .collect()
}

/// The claim of one policy on a call that may cost up to `cost` micro-dollars: limited for REJECT, only
/// tallied for ALERT.
pub fn claim(policy: &BudgetPolicy, window: (i64, i64), cost: i64) -> UsageClaim {
    UsageClaim {
        subject: subject(&policy.budget_policy_id),
        kind: "spend".into(),
        window: window.0,
        amount: cost,
        limit: (policy.budget_action == Action::Reject).then(|| policy.limit_micros()),
    }
}

/// The 429 of a REJECT policy, in MLflow's words.
pub fn refusal(policy: &BudgetPolicy, window: (i64, i64), cost: i64, now: i64) -> OpenAiError {
    let limit = policy.limit_micros();
    let mut message = policy.refusal(window.1);
    if cost > limit {
        message.push_str(&format!(
            " This request alone may cost up to ${:.6}; send a smaller request or a lower max_tokens.",
            cost as f64 / 1e6
        ));
    }
    OpenAiError {
        status: StatusCode::TOO_MANY_REQUESTS,
        message,
        kind: "insufficient_quota",
        param: None,
        code: Some("budget_exceeded"),
        retry_after: (cost <= limit).then(|| ((window.1 - now).max(1000) / 1000) as u64),
    }
}

/// After a call's usage is settled: tells the webhooks of each ALERT policy whose window's spend reached its
/// limit, once per window.
pub async fn alert(
    store: Arc<dyn MetadataStore>,
    webhooks: Option<crate::webhooks::Webhooks>,
    policies: Vec<(BudgetPolicy, (i64, i64))>,
) {
    for (policy, (start, _)) in policies
        .into_iter()
        .filter(|(policy, _)| policy.budget_action == Action::Alert)
    {
        let subject = subject(&policy.budget_policy_id);
        let spent: i64 = match store.usage_rows("spend", start).await {
            Ok(rows) => rows
                .iter()
                .filter(|row| row.subject == subject && row.window == start)
                .map(|row| row.used)
                .sum(),
            Err(error) => {
                tracing::warn!(%error, policy = %policy.budget_policy_id, "a budget policy's spend could not be read");
                continue;
            }
        };
        if spent < policy.limit_micros() {
            continue;
        }
        // One alert per window: the replica whose claim of it is granted sends it.
        let once = UsageClaim {
            subject: format!("budget-alert:{}", policy.budget_policy_id),
            kind: "requests".into(),
            window: start,
            amount: 1,
            limit: Some(1),
        };
        let now = loopline_core::time::now_millis();
        match store.reserve_usage(&[once], &[], now).await {
            Ok(Reservation::Granted(_)) => {}
            Ok(Reservation::Refused(_)) => continue,
            Err(error) => {
                tracing::warn!(%error, policy = %policy.budget_policy_id, "a budget policy's alert could not be claimed");
                continue;
            }
        }
        tracing::warn!(
            policy = %policy.budget_policy_id,
            spent_usd = spent as f64 / 1e6,
            limit_usd = policy.budget_amount,
            "a budget policy's limit was reached"
        );
        if let Some(webhooks) = &webhooks {
            webhooks.emit(
                store.clone(),
                "budget_policy",
                "exceeded",
                exceeded_payload(&policy, start, spent),
            );
        }
    }
}

/// The `budget_policy.exceeded` event's data, as MLflow sends it.
pub fn exceeded_payload(policy: &BudgetPolicy, window_start: i64, spent: i64) -> serde_json::Value {
    json!({
        "budget_policy_id": policy.budget_policy_id,
        "budget_unit": "USD",
        "budget_amount": policy.budget_amount,
        "current_spend": spent as f64 / 1e6,
        "duration_unit": policy.duration_unit.name(),
        "duration_value": policy.duration_value,
        "target_scope": policy.target_scope.name(),
        "workspace": "default",
        "target_value": policy.target_value,
        "window_start": window_start,
    })
}
