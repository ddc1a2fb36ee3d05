//! The LLM gateway's keys, team limits and spend under `/api/loopline/v1/gateway` (admins only). A key is an
//! API token (scope `predict`, shown once) of a user or service account, with the models it may call and its
//! limits: requests and tokens per minute, calls in flight, and a budget per day, week, month or in total.

use super::context::{AccessApi, Ctx, respond, store_error};
use crate::error::ApiError;
use axum::Router;
use axum::extract::Path;
use axum::routing::{get, post};
use loopline_access::Scope;
use loopline_core::ErrorCode;
use loopline_metadata_store::{GatewayKey, GatewayLimits, GatewayTeam};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

const BASE: &str = "/api/loopline/v1/gateway";
/// Longest key lifetime asked for.
const MAX_KEY_DAYS: i64 = 3_650;
/// Most models one key names.
const MAX_MODELS: usize = 1_000;
/// Largest limit or budget accepted (a budget of a million dollars, in micro-dollars, is 1e12).
const MAX_LIMIT: i64 = 1_000_000_000_000;
/// Fields of a limit.
const LIMIT_FIELDS: [&str; 5] = ["rpm", "tpm", "max_parallel", "budget_usd", "budget_period"];

fn fields(extra: &[&'static str]) -> Vec<&'static str> {
    extra.iter().copied().chain(LIMIT_FIELDS).collect()
}

/// The routes.
pub fn routes(api: Arc<AccessApi>) -> Router {
    Router::new()
        .route(
            &format!("{BASE}/keys"),
            post(|ctx: Ctx| async move { respond(create_key(ctx).await) })
                .get(|ctx: Ctx| async move { respond(list_keys(ctx).await) }),
        )
        .route(
            &format!("{BASE}/keys/{{token_id}}"),
            get(|Path(id): Path<String>, ctx: Ctx| async move { respond(get_key(ctx, id).await) })
                .patch(|Path(id): Path<String>, ctx: Ctx| async move { respond(update_key(ctx, id).await) })
                .delete(|Path(id): Path<String>, ctx: Ctx| async move { respond(revoke_key(ctx, id).await) }),
        )
        .route(
            &format!("{BASE}/teams"),
            get(|ctx: Ctx| async move { respond(list_teams(ctx).await) }),
        )
        .route(
            &format!("{BASE}/teams/{{team}}"),
            axum::routing::put(|Path(team): Path<String>, ctx: Ctx| async move { respond(put_team(ctx, team).await) })
                .delete(|Path(team): Path<String>, ctx: Ctx| async move { respond(delete_team(ctx, team).await) }),
        )
        .route(
            &format!("{BASE}/spend"),
            get(|ctx: Ctx| async move { respond(spend(ctx).await) }),
        )
        .with_state(api)
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::invalid(message)
}

/// A limit field: absent keeps `current`, `null` removes it, else a whole number from 1.
fn limit(ctx: &Ctx, name: &str, current: Option<i64>) -> Result<Option<i64>, ApiError> {
    match ctx.params.get(name) {
        None => Ok(current),
        Some(Value::Null) => Ok(None),
        Some(_) => {
            let value = ctx.params.integer(name)?;
            if !(1..=MAX_LIMIT).contains(&value) {
                return Err(invalid(format!(
                    "'{name}' must be a whole number from 1 to {MAX_LIMIT}."
                )));
            }
            Ok(Some(value))
        }
    }
}

/// Limits from the request, over `current` (fields left out keep their value).
fn limits(ctx: &Ctx, current: &GatewayLimits) -> Result<GatewayLimits, ApiError> {
    let budget_micros = match ctx.params.get("budget_usd") {
        None => current.budget_micros,
        Some(Value::Null) => None,
        Some(value) => {
            let dollars = value
                .as_f64()
                .or_else(|| value.as_str().and_then(|text| text.trim().parse().ok()))
                .ok_or_else(|| invalid("'budget_usd' must be a number of US dollars."))?;
            if !dollars.is_finite() || !(0.000001..=1_000_000.0).contains(&dollars) {
                return Err(invalid("'budget_usd' must be from 0.000001 to 1000000 US dollars."));
            }
            Some((dollars * 1e6).round() as i64)
        }
    };
    let budget_period = match ctx.params.optional_text("budget_period")? {
        Some(period) if ["day", "week", "month", "total"].contains(&period.as_str()) => period,
        Some(period) => {
            return Err(invalid(format!(
                "'budget_period' must be day, week, month or total, not '{period}'."
            )));
        }
        None => current.budget_period.clone(),
    };
    Ok(GatewayLimits {
        rpm: limit(ctx, "rpm", current.rpm)?,
        tpm: limit(ctx, "tpm", current.tpm)?,
        max_parallel: limit(ctx, "max_parallel", current.max_parallel)?,
        budget_micros,
        budget_period,
    })
}

fn default_limits() -> GatewayLimits {
    GatewayLimits {
        budget_period: "month".into(),
        ..GatewayLimits::default()
    }
}

fn name_field(ctx: &Ctx, field: &str) -> Result<Option<String>, ApiError> {
    let Some(text) = ctx.params.optional_text(field)? else {
        return Ok(None);
    };
    if text.trim().is_empty() || text.trim() != text || text.chars().count() > 256 || text.chars().any(char::is_control)
    {
        return Err(invalid(format!(
            "'{field}' must be 1 to 256 characters without control characters."
        )));
    }
    Ok(Some(text))
}

fn models(ctx: &Ctx, current: &[String]) -> Result<Vec<String>, ApiError> {
    let Some(value) = ctx.params.get("models") else {
        return Ok(current.to_vec());
    };
    let names: Vec<String> = match value {
        Value::Null => Vec::new(),
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(|| invalid("'models' must be a list of gateway model names."))?,
        Value::String(text) => text
            .split(',')
            .map(|name| name.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect(),
        _ => return Err(invalid("'models' must be a list of gateway model names.")),
    };
    if names.len() > MAX_MODELS || names.iter().any(|name| name.is_empty() || name.len() > 256) {
        return Err(invalid(format!(
            "'models' holds 1 to {MAX_MODELS} names of 1 to 256 characters."
        )));
    }
    Ok(names)
}

fn limits_json(limits: &GatewayLimits) -> Value {
    json!({
        "rpm": limits.rpm,
        "tpm": limits.tpm,
        "max_parallel": limits.max_parallel,
        "budget_usd": limits.budget_micros.map(|micros| micros as f64 / 1e6),
        "budget_period": limits.budget_period,
    })
}

/// What key records are drawn from, read once for a whole list.
struct Lookup {
    tokens: HashMap<String, loopline_metadata_store::AccessToken>,
    users: HashMap<i64, String>,
    /// Spend rows by subject and window: used and reserved.
    spend: HashMap<(String, i64), (i64, i64)>,
}

async fn lookup(ctx: &Ctx) -> Result<Lookup, ApiError> {
    let store = ctx.api.access.store();
    let tokens = store.list_tokens(None).await.map_err(store_error)?;
    let users = store.list_users().await.map_err(store_error)?;
    let rows = ctx.api.store.usage_rows("spend", 0).await.map_err(store_error)?;
    Ok(Lookup {
        tokens: tokens
            .into_iter()
            .map(|token| (token.token_id.clone(), token))
            .collect(),
        users: users.into_iter().map(|user| (user.user_id, user.username)).collect(),
        spend: rows
            .into_iter()
            .map(|row| ((row.subject, row.window), (row.used, row.reserved)))
            .collect(),
    })
}

fn key_json(lookup: &Lookup, key: &GatewayKey) -> Value {
    let token = lookup.tokens.get(&key.token_id);
    let owner = token.and_then(|token| lookup.users.get(&token.user_id));
    let now = loopline_core::time::now_millis();
    let (start, _) = crate::openai::limits::period(&key.limits.budget_period, now);
    let (spent, reserved) = lookup
        .spend
        .get(&(format!("key:{}", key.token_id), start))
        .copied()
        .unwrap_or((0, 0));
    let mut body = limits_json(&key.limits);
    let extra = json!({
        "token_id": key.token_id,
        "name": token.map(|token| token.name.clone()),
        "username": owner,
        "team": key.team,
        "models": key.models,
        "spend_usd": spent as f64 / 1e6,
        "reserved_usd": reserved as f64 / 1e6,
        "period_start": start,
        "created_time": key.created_time,
        "updated_time": key.updated_time,
        "expires_time": token.and_then(|token| token.expires_time),
        "revoked": token.is_none_or(|token| token.revoked_time.is_some()),
    });
    if let (Value::Object(body), Value::Object(extra)) = (&mut body, extra) {
        body.extend(extra);
    }
    body
}

/// POST: a new key for a user or service account (the caller when none is named). The key is shown once.
async fn create_key(ctx: Ctx) -> Result<Value, ApiError> {
    ctx.require_admin()?;
    ctx.params
        .only(&fields(&["username", "name", "team", "models", "expires_in_days"]))?;
    let username = match ctx.params.optional_text("username")? {
        Some(username) => username,
        None => ctx.principal()?.username.to_string(),
    };
    let owner = ctx.api.access.user(&username).await.map_err(store_error)?;
    let limits = limits(&ctx, &default_limits())?;
    let models = models(&ctx, &[])?;
    let team = name_field(&ctx, "team")?;
    let name = name_field(&ctx, "name")?.unwrap_or_else(|| "gateway key".to_string());
    let expires_time = match ctx.params.get("expires_in_days") {
        None | Some(Value::Null) => None,
        Some(_) => {
            let days = ctx.params.integer("expires_in_days")?;
            if !(1..=MAX_KEY_DAYS).contains(&days) {
                return Err(invalid(format!("'expires_in_days' must be 1 to {MAX_KEY_DAYS}.")));
            }
            Some(loopline_core::time::now_millis() + days * 86_400_000)
        }
    };
    let issued = ctx
        .api
        .access
        .issue_token(owner.user_id, &name, &[Scope::Predict], expires_time)
        .await
        .map_err(store_error)?;
    let now = loopline_core::time::now_millis();
    let key = GatewayKey {
        token_id: issued.token.token_id.clone(),
        team,
        models,
        limits,
        created_time: now,
        updated_time: now,
    };
    if let Err(error) = ctx.api.store.put_gateway_key(&key).await {
        // A key without its limits must not stay usable.
        let _ = ctx.api.access.revoke_token(&key.token_id).await;
        return Err(store_error(error));
    }
    let mut body = key_json(&lookup(&ctx).await?, &key);
    body["key"] = Value::String(issued.text);
    Ok(body)
}

async fn find_key(ctx: &Ctx, token_id: &str) -> Result<GatewayKey, ApiError> {
    ctx.api
        .store
        .get_gateway_key(token_id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::ResourceDoesNotExist,
                format!("Gateway key '{token_id}' not found."),
            )
        })
}

async fn list_keys(ctx: Ctx) -> Result<Value, ApiError> {
    ctx.require_admin()?;
    let keys = ctx.api.store.list_gateway_keys().await.map_err(store_error)?;
    let lookup = lookup(&ctx).await?;
    Ok(json!({"keys": keys.iter().map(|key| key_json(&lookup, key)).collect::<Vec<_>>()}))
}

async fn get_key(ctx: Ctx, token_id: String) -> Result<Value, ApiError> {
    ctx.require_admin()?;
    let key = find_key(&ctx, &token_id).await?;
    Ok(key_json(&lookup(&ctx).await?, &key))
}

/// PATCH: changes a key's models, team or limits (fields left out keep their value; `null` removes a limit).
async fn update_key(ctx: Ctx, token_id: String) -> Result<Value, ApiError> {
    ctx.require_admin()?;
    ctx.params.only(&fields(&["team", "models"]))?;
    let mut key = find_key(&ctx, &token_id).await?;
    key.limits = limits(&ctx, &key.limits)?;
    key.models = models(&ctx, &key.models)?;
    if ctx.params.get("team").is_some_and(Value::is_null) {
        key.team = None;
    } else if let Some(team) = name_field(&ctx, "team")? {
        key.team = Some(team);
    }
    key.updated_time = loopline_core::time::now_millis();
    ctx.api.store.put_gateway_key(&key).await.map_err(store_error)?;
    Ok(key_json(&lookup(&ctx).await?, &key))
}

/// DELETE: revokes the key's token for good; the key stays listed, marked revoked, with its spend.
async fn revoke_key(ctx: Ctx, token_id: String) -> Result<Value, ApiError> {
    ctx.require_admin()?;
    find_key(&ctx, &token_id).await?;
    ctx.api.access.revoke_token(&token_id).await.map_err(store_error)?;
    Ok(json!({"token_id": token_id, "revoked": true}))
}

fn team_json(team: &GatewayTeam) -> Value {
    let mut body = limits_json(&team.limits);
    body["team"] = json!(team.team);
    body["created_time"] = json!(team.created_time);
    body["updated_time"] = json!(team.updated_time);
    body
}

/// PUT: sets a team's limits (they apply to every key of the team, on top of the key's own).
async fn put_team(ctx: Ctx, team: String) -> Result<Value, ApiError> {
    ctx.require_admin()?;
    ctx.params.only(&fields(&[]))?;
    if team.trim().is_empty() || team.trim() != team || team.chars().count() > 256 || team.chars().any(char::is_control)
    {
        return Err(invalid(
            "A team name is 1 to 256 characters without control characters.",
        ));
    }
    let now = loopline_core::time::now_millis();
    let current = ctx.api.store.get_gateway_team(&team).await.map_err(store_error)?;
    let limits = limits(&ctx, current.as_ref().map_or(&default_limits(), |team| &team.limits))?;
    let record = GatewayTeam {
        team,
        limits,
        created_time: current.map_or(now, |team| team.created_time),
        updated_time: now,
    };
    ctx.api.store.put_gateway_team(&record).await.map_err(store_error)?;
    Ok(team_json(&record))
}

async fn list_teams(ctx: Ctx) -> Result<Value, ApiError> {
    ctx.require_admin()?;
    let teams = ctx.api.store.list_gateway_teams().await.map_err(store_error)?;
    Ok(json!({"teams": teams.iter().map(team_json).collect::<Vec<_>>()}))
}

async fn delete_team(ctx: Ctx, team: String) -> Result<Value, ApiError> {
    ctx.require_admin()?;
    ctx.api.store.delete_gateway_team(&team).await.map_err(store_error)?;
    Ok(json!({"team": team, "deleted": true}))
}

/// GET: spend per key, team and model since `since` (`YYYY-MM-DD`, UTC; the start of this month by default).
async fn spend(ctx: Ctx) -> Result<Value, ApiError> {
    ctx.require_admin()?;
    let now = loopline_core::time::now_millis();
    let since = match ctx.params.optional_text("since")? {
        Some(day) => loopline_core::time::parse_utc_millis(&format!("{day}T00:00:00Z"))
            .ok_or_else(|| invalid(format!("'since' must be a date as YYYY-MM-DD, not '{day}'.")))?,
        None => crate::openai::limits::period("month", now).0,
    };
    // Spend is tallied per day for keys, teams and models as calls settle.
    let rows = ctx.api.store.usage_rows("daily", since).await.map_err(store_error)?;
    let mut sums: BTreeMap<(&str, String), i64> = BTreeMap::new();
    for row in &rows {
        let Some((kind, name)) = row.subject.split_once(':') else {
            continue;
        };
        let kind = match kind {
            "key" => "keys",
            "team" => "teams",
            "model" => "models",
            _ => continue,
        };
        *sums.entry((kind, name.to_string())).or_default() += row.used;
    }
    let mut body = json!({"since": since, "keys": [], "teams": [], "models": []});
    for ((kind, name), used) in sums {
        let label = match kind {
            "keys" => "token_id",
            "teams" => "team",
            _ => "model",
        };
        if let Some(list) = body[kind].as_array_mut() {
            list.push(json!({label: name, "spend_usd": used as f64 / 1e6}));
        }
    }
    Ok(body)
}
