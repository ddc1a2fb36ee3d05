//! MLflow's gateway budget-policy routes (`/api/3.0/mlflow/gateway/budgets/...`), as MLflow's server answers
//! them: policies kept in the gateway catalog (so every replica enforces the same ones), MLflow's message
//! shapes and words, and the windows with the spend each has so far, read from the usage ledger the calls
//! are settled in (see `openai::limits`).

use super::params::{Params, invalid_value, max_results, named, number, offset, page_token, params};
use super::{CatalogSync, now_ms, refusal};
use crate::error::ApiError;
use axum::Router;
use axum::extract::Request;
use loopline_access::Principal;
use loopline_core::ErrorCode;
use loopline_llm_gateway::catalog::{Action, BudgetChange, BudgetPolicy, DurationUnit, Named, Scope, new_id};
use serde_json::{Value, json};
use std::sync::Arc;

const PREFIX: &str = "/api/3.0/mlflow/gateway/budgets";

/// The ledger subject a policy's spend is counted under.
pub fn subject(policy_id: &str) -> String {
    format!("budget:{policy_id}")
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Create,
    Get,
    Update,
    Delete,
    List,
    Windows,
}

/// Every route: method, path under the prefix, operation.
const ROUTES: &[(&str, &str, Op)] = &[
    ("POST", "/create", Op::Create),
    ("GET", "/get", Op::Get),
    ("POST", "/update", Op::Update),
    ("DELETE", "/delete", Op::Delete),
    ("GET", "/list", Op::List),
    ("GET", "/windows", Op::Windows),
];

/// Every route (method, full path), for the permission table.
pub fn route_list() -> Vec<(&'static str, String)> {
    super::op_route_list(PREFIX, ROUTES)
}

/// The routes over `sync`.
pub fn routes(sync: Arc<CatalogSync>) -> Router {
    super::op_routes(PREFIX, ROUTES, sync, |sync: Arc<CatalogSync>, op, request| async move {
        answer(&sync, op, request).await
    })
}

/// A policy as MLflow's server writes it.
pub fn policy_json(policy: &BudgetPolicy) -> Value {
    let mut value = json!({
        "budget_policy_id": policy.budget_policy_id,
        "budget_unit": "USD",
        "budget_amount": policy.budget_amount,
        "duration": {"unit": policy.duration_unit.name(), "value": policy.duration_value},
        "target_scope": policy.target_scope.name(),
        "budget_action": policy.budget_action.name(),
        "created_by": policy.created_by.clone().unwrap_or_default(),
        "created_at": policy.created_at,
        "last_updated_by": policy.last_updated_by.clone().unwrap_or_default(),
        "last_updated_at": policy.last_updated_at,
    });
    if let Some(target) = &policy.target_value {
        value["target_value"] = json!(target);
    }
    value
}

fn invalid(message: String) -> ApiError {
    ApiError::new(ErrorCode::InvalidParameterValue, message)
}

/// The fields of a create or update.
fn change(params: &Params) -> Result<BudgetChange, ApiError> {
    if params.0.get("budget_unit").is_some_and(|unit| !unit.is_null())
        && !matches!(params.0.get("budget_unit"), Some(Value::String(unit)) if unit == "USD")
        && params.0.get("budget_unit").and_then(Value::as_u64) != Some(1)
    {
        return Err(invalid(format!(
            "Invalid budget_unit: {}",
            params.0.get("budget_unit").unwrap_or(&Value::Null)
        )));
    }
    let budget_amount = match params.0.get("budget_amount") {
        None | Some(Value::Null) => None,
        // `+ 0.0` makes a negative zero plain zero.
        Some(value) => Some(number(value).ok_or_else(|| invalid_value(value, "budget_amount"))? + 0.0),
    };
    let duration = match params.0.get("duration") {
        None | Some(Value::Null) => None,
        Some(Value::Object(fields)) => {
            let unit = fields.get("unit").and_then(DurationUnit::parse).ok_or_else(|| {
                invalid(format!(
                    "Invalid duration.unit: {}",
                    fields.get("unit").unwrap_or(&Value::Null)
                ))
            })?;
            let value = fields.get("value").and_then(number).unwrap_or(0.0);
            if value < 1.0 || value.fract() != 0.0 || value > f64::from(u32::MAX) {
                return Err(invalid(format!(
                    "duration.value must be a positive integer, got {value}"
                )));
            }
            Some((unit, value as u32))
        }
        Some(other) => return Err(invalid_value(other, "duration")),
    };
    Ok(BudgetChange {
        budget_amount,
        duration,
        target_scope: named::<Scope>(params, "target_scope", "target_scope")?,
        target_value: params.text("target_value")?.filter(|target| !target.is_empty()),
        budget_action: named::<Action>(params, "budget_action", "budget_action")?,
    })
}

/// A USER policy counts a signed-in caller's calls: without auth there are none, so it is refused (as MLflow
/// does) rather than kept and never applied. A request made without auth carries no caller.
fn user_scope_needs_auth(change: &BudgetChange, signed_in: bool) -> Result<(), ApiError> {
    if change.target_scope == Some(Scope::User) && !signed_in {
        return Err(invalid(
            "USER-scoped budget policies require server authentication to be enabled (`--auth`); without it no \
             call has a user."
                .into(),
        ));
    }
    Ok(())
}

async fn answer(sync: &CatalogSync, op: Op, request: Request) -> Result<Value, ApiError> {
    let caller = request
        .extensions()
        .get::<Principal>()
        .map(|principal| principal.username.to_string());
    let params = Params(params(request).await?);
    let now = now_ms();
    match op {
        Op::Create => {
            if params.0.get("budget_unit").is_none_or(Value::is_null) {
                return Err(super::params::missing("budget_unit"));
            }
            let change = change(&params)?;
            user_scope_needs_auth(&change, caller.is_some())?;
            let created_by = params.text("created_by")?.filter(|by| !by.is_empty()).or(caller);
            let id = new_id("bp");
            let made = sync
                .change(|catalog| {
                    catalog
                        .create_budget_policy(id.clone(), change.clone(), created_by.clone(), now)
                        .cloned()
                })
                .await?;
            Ok(json!({"budget_policy": policy_json(&made)}))
        }
        Op::Get => {
            let id = params.required("budget_policy_id")?;
            let (_, catalog) = sync.load().await?;
            Ok(json!({"budget_policy": policy_json(catalog.budget_policy(&id).map_err(refusal)?)}))
        }
        Op::Update => {
            let id = params.required("budget_policy_id")?;
            let change = change(&params)?;
            user_scope_needs_auth(&change, caller.is_some())?;
            let updated_by = params.text("updated_by")?.filter(|by| !by.is_empty()).or(caller);
            let made = sync
                .change(|catalog| {
                    catalog
                        .update_budget_policy(&id, change.clone(), updated_by.clone(), now)
                        .cloned()
                })
                .await?;
            Ok(json!({"budget_policy": policy_json(&made)}))
        }
        Op::Delete => {
            let id = params.required("budget_policy_id")?;
            sync.change(|catalog| catalog.delete_budget_policy(&id)).await?;
            Ok(json!({}))
        }
        Op::List => {
            let wanted = max_results(&params)?;
            let start = offset(params.text("page_token")?)?;
            let (_, catalog) = sync.load().await?;
            let mut policies: Vec<&BudgetPolicy> = catalog.budget_policies.iter().collect();
            policies.sort_by(|a, b| a.budget_policy_id.cmp(&b.budget_policy_id));
            let page: Vec<Value> = policies
                .iter()
                .skip(start)
                .take(wanted)
                .map(|policy| policy_json(policy))
                .collect();
            // MLflow leaves an empty list out; the UI reads either, so it is always there.
            let mut answer = json!({"budget_policies": page});
            if let Some(token) = page_token(start, wanted, policies.len()) {
                answer["next_page_token"] = json!(token);
            }
            Ok(answer)
        }
        Op::Windows => {
            let (_, catalog) = sync.load().await?;
            let windows: Vec<(&BudgetPolicy, (i64, i64))> = catalog
                .budget_policies
                .iter()
                .map(|policy| (policy, policy.window(now)))
                .collect();
            let earliest = windows.iter().map(|(_, (start, _))| *start).min().unwrap_or(now);
            let rows = if windows.is_empty() {
                Vec::new()
            } else {
                sync.store.usage_rows("spend", earliest).await?
            };
            let windows: Vec<Value> = windows
                .into_iter()
                .map(|(policy, (start, end))| {
                    let subject = subject(&policy.budget_policy_id);
                    let spent: i64 = rows
                        .iter()
                        .filter(|row| row.subject == subject && row.window == start)
                        .map(|row| row.used)
                        .sum();
                    json!({
                        "budget_policy_id": policy.budget_policy_id,
                        "window_start_ms": start,
                        "window_end_ms": end,
                        "current_spend": spent as f64 / 1_000_000.0,
                    })
                })
                .collect();
            Ok(json!({"windows": windows}))
        }
    }
}
