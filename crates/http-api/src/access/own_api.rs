//! Loopline's own access API under `/api/loopline/v1/access`: API tokens (shown once, stored hashed),
//! service accounts, the audit trail (query and JSON-lines export), and the first admin's bootstrap.

use super::context::{AccessApi, Ctx, denied, respond, store_error};
use crate::error::ApiError;
use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use loopline_access::Scope;
use loopline_core::ErrorCode;
use loopline_metadata_store::{AccessToken, AuditEntry, AuditQuery, PageRequest};
use serde_json::{Value, json};
use std::sync::Arc;

const BASE: &str = "/api/loopline/v1/access";
/// Longest token lifetime asked for.
const MAX_TOKEN_DAYS: i64 = 3_650;
/// Most entries one export writes.
const MAX_EXPORT: usize = 1_000_000;

/// The routes.
pub fn routes(api: Arc<AccessApi>) -> Router {
    Router::new()
        .route(
            &format!("{BASE}/tokens"),
            post(|ctx: Ctx| async move { respond(issue(ctx).await) })
                .get(|ctx: Ctx| async move { respond(list(ctx).await) }),
        )
        .route(
            &format!("{BASE}/tokens/{{token_id}}"),
            delete(
                |axum::extract::Path(token_id): axum::extract::Path<String>, ctx: Ctx| async move {
                    respond(revoke(ctx, token_id).await)
                },
            ),
        )
        .route(
            &format!("{BASE}/service-accounts"),
            post(|ctx: Ctx| async move { respond(create_service_account(ctx).await) }),
        )
        .route(
            &format!("{BASE}/audit"),
            get(|ctx: Ctx| async move { respond(audit(ctx).await) }),
        )
        .route(
            &format!("{BASE}/audit/export"),
            get(|ctx: Ctx| async move { export(ctx).await }),
        )
        .route(
            &format!("{BASE}/bootstrap"),
            post(|ctx: Ctx| async move { respond(bootstrap(ctx).await) }),
        )
        .with_state(api)
}

fn token_json(token: &AccessToken, owner: &str) -> Value {
    json!({
        "token_id": token.token_id,
        "name": token.name,
        "username": owner,
        "scopes": token.scopes,
        "created_time": token.created_time,
        "expires_time": token.expires_time,
        "last_used_time": token.last_used_time,
        "revoked_time": token.revoked_time,
    })
}

fn scopes(ctx: &Ctx) -> Result<Vec<Scope>, ApiError> {
    let Some(value) = ctx.params.get("scopes") else {
        return Ok(Vec::new());
    };
    let names: Vec<String> = match value {
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(|| ApiError::invalid("'scopes' must be a list of names."))?,
        Value::String(text) => text.split(',').map(|name| name.trim().to_string()).collect(),
        _ => return Err(ApiError::invalid("'scopes' must be a list of names.")),
    };
    if names.len() > 8 {
        return Err(ApiError::invalid("A token has at most 8 scopes."));
    }
    names
        .iter()
        .map(|name| {
            Scope::parse(name).ok_or_else(|| {
                ApiError::invalid(format!(
                    "Unknown scope '{name}': use all, read, write, predict or admin."
                ))
            })
        })
        .collect()
}

/// POST: issues a token for the caller (or, for an admin, for a named user or service account).
async fn issue(ctx: Ctx) -> Result<Value, ApiError> {
    let principal = ctx.principal()?.clone();
    let owner = match ctx.params.optional_text("username")? {
        Some(username) if *username != *principal.username => {
            if !principal.is_admin {
                return Err(denied());
            }
            ctx.api.access.user(&username).await.map_err(store_error)?
        }
        _ => ctx.api.access.user(&principal.username).await.map_err(store_error)?,
    };
    let mut wanted = scopes(&ctx)?;
    // No scopes named: those of the credentials making the token.
    if wanted.is_empty() {
        wanted = principal.scopes.to_vec();
    }
    // A token never gets more than the credentials that made it.
    if principal.token_id.is_some() && !principal.scopes.contains(&Scope::All) {
        let covered = wanted.iter().all(|scope| principal.scopes.contains(scope));
        if !covered {
            return Err(ApiError::new(
                ErrorCode::PermissionDenied,
                "A token can only issue tokens with scopes it has itself.",
            ));
        }
    }
    let name = ctx.params.optional_text("name")?.unwrap_or_default();
    let expires_time = match ctx.params.get("expires_in_days") {
        None | Some(Value::Null) => None,
        Some(_) => {
            let days = ctx.params.integer("expires_in_days")?;
            if !(1..=MAX_TOKEN_DAYS).contains(&days) {
                return Err(ApiError::invalid(format!(
                    "'expires_in_days' must be 1 to {MAX_TOKEN_DAYS}."
                )));
            }
            Some(loopline_core::time::now_millis() + days * 86_400_000)
        }
    };
    let issued = ctx
        .api
        .access
        .issue_token(owner.user_id, &name, &wanted, expires_time)
        .await
        .map_err(store_error)?;
    let mut body = token_json(&issued.token, &owner.username);
    body["token"] = Value::String(issued.text);
    Ok(body)
}

/// GET: the caller's tokens (an admin may name a user, or `all`).
async fn list(ctx: Ctx) -> Result<Value, ApiError> {
    let principal = ctx.principal()?.clone();
    let store = ctx.api.access.store();
    let wanted = ctx.params.optional_text("username")?;
    let user_id = match wanted.as_deref() {
        None => Some(principal.user_id),
        Some(name) if name == &*principal.username => Some(principal.user_id),
        Some(_) if !principal.is_admin => return Err(denied()),
        Some("*") => None,
        Some(name) => Some(ctx.api.access.user(name).await.map_err(store_error)?.user_id),
    };
    let users: std::collections::HashMap<i64, String> = store
        .list_users()
        .await
        .map_err(store_error)?
        .into_iter()
        .map(|user| (user.user_id, user.username))
        .collect();
    let tokens = store.list_tokens(user_id).await.map_err(store_error)?;
    Ok(json!({
        "tokens": tokens
            .iter()
            .map(|token| token_json(token, users.get(&token.user_id).map_or("", String::as_str)))
            .collect::<Vec<_>>()
    }))
}

/// DELETE: revokes a token (one's own, or any for an admin). Unknown and foreign tokens answer alike.
async fn revoke(ctx: Ctx, token_id: String) -> Result<Value, ApiError> {
    let principal = ctx.principal()?.clone();
    let not_found = || {
        ApiError::new(
            ErrorCode::ResourceDoesNotExist,
            format!("Token '{token_id}' not found."),
        )
    };
    let token = ctx
        .api
        .access
        .store()
        .find_token(&token_id)
        .await
        .map_err(store_error)?
        .ok_or_else(not_found)?;
    if token.user_id != principal.user_id && !principal.is_admin {
        return Err(not_found());
    }
    ctx.api.access.revoke_token(&token_id).await.map_err(store_error)?;
    Ok(json!({"token_id": token_id, "revoked": true}))
}

/// POST: a service account (no password; it authenticates with tokens an admin issues for it).
async fn create_service_account(ctx: Ctx) -> Result<Value, ApiError> {
    ctx.require_admin()?;
    let name = ctx.params.text("name")?;
    let user = ctx
        .api
        .access
        .create_user(&name, None, false)
        .await
        .map_err(store_error)?;
    Ok(json!({"service_account": {"id": user.user_id, "username": user.username, "kind": user.kind}}))
}

fn audit_query(ctx: &Ctx) -> Result<AuditQuery, ApiError> {
    let time = |name: &str| -> Result<Option<i64>, ApiError> {
        match ctx.params.get(name) {
            None => Ok(None),
            Some(_) => ctx.params.integer(name).map(Some),
        }
    };
    Ok(AuditQuery {
        principal: ctx.params.optional_text("principal")?,
        outcome: ctx.params.optional_text("outcome")?,
        since: time("since")?,
        until: time("until")?,
    })
}

fn entry_json(entry: &AuditEntry) -> Value {
    json!({
        "id": entry.entry_id,
        "time": entry.time,
        "principal": entry.principal,
        "token_id": entry.token_id,
        "method": entry.method,
        "path": entry.path,
        "action": entry.action,
        "resource_type": entry.resource_type,
        "resource_id": entry.resource_id,
        "status": entry.status,
        "outcome": entry.outcome,
        "source": entry.source,
    })
}

/// GET: audit entries, newest first, a page at a time.
async fn audit(ctx: Ctx) -> Result<Value, ApiError> {
    ctx.require_admin()?;
    ctx.api.audit.flush().await;
    let query = audit_query(&ctx)?;
    let page = PageRequest {
        max_results: match ctx.params.get("max_results") {
            None => 0,
            Some(_) => u64::try_from(ctx.params.integer("max_results")?)
                .map_err(|_| ApiError::invalid("'max_results' must not be negative."))?,
        },
        page_token: ctx.params.optional_text("page_token")?,
    };
    let found = ctx
        .api
        .access
        .store()
        .search_audit(&query, &page)
        .await
        .map_err(store_error)?;
    let mut body = json!({"entries": found.items.iter().map(entry_json).collect::<Vec<_>>()});
    if let Some(token) = found.next_page_token {
        body["next_page_token"] = Value::String(token);
    }
    Ok(body)
}

/// GET: the matching entries as JSON lines, for archiving elsewhere.
async fn export(ctx: Ctx) -> Response {
    if let Err(error) = ctx.require_admin() {
        return error.into_response();
    }
    ctx.api.audit.flush().await;
    let query = match audit_query(&ctx) {
        Ok(query) => query,
        Err(error) => return error.into_response(),
    };
    let store = ctx.api.access.store();
    let mut lines = String::new();
    let mut page = PageRequest {
        max_results: 10_000,
        page_token: None,
    };
    let mut written = 0;
    loop {
        let found = match store.search_audit(&query, &page).await {
            Ok(found) => found,
            Err(error) => return store_error(error).into_response(),
        };
        for entry in &found.items {
            lines.push_str(&entry_json(entry).to_string());
            lines.push('\n');
        }
        written += found.items.len();
        match found.next_page_token {
            Some(token) if written < MAX_EXPORT => page.page_token = Some(token),
            _ => break,
        }
    }
    ([(header::CONTENT_TYPE, "application/x-ndjson")], lines).into_response()
}

/// POST (no credentials): creates the first admin with the one-time code printed at start.
async fn bootstrap(ctx: Ctx) -> Result<Value, ApiError> {
    let code = ctx.params.text("code")?;
    let username = ctx.params.text("username")?;
    let password = ctx.params.text("password")?;
    // The code is taken before the admin is created, so it works once even under parallel requests.
    let taken = {
        let mut held = ctx.api.bootstrap_code.lock().expect("bootstrap code");
        match held.as_deref() {
            Some(expected) if loopline_access::token::same_hash(expected, &code) => held.take(),
            _ => None,
        }
    };
    let Some(taken) = taken else {
        return Err(ApiError::new(
            ErrorCode::PermissionDenied,
            "The bootstrap code is wrong, or an admin exists already.",
        ));
    };
    let user = match ctx.api.access.create_user(&username, Some(&password), true).await {
        Ok(user) => user,
        Err(error) => {
            // A refused name or password leaves the code usable.
            *ctx.api.bootstrap_code.lock().expect("bootstrap code") = Some(taken);
            return Err(store_error(error));
        }
    };
    tracing::info!(username = %user.username, "first admin created with the bootstrap code");
    Ok(json!({"user": {"id": user.user_id, "username": user.username, "is_admin": true}}))
}
