//! MLflow's auth REST API as the pinned mlflow 3.17.2 client calls it (`mlflow.server.get_app_client(
//! "basic-auth")`): users, roles, role grants with DENY, per-user grants, the current user. Who may call each
//! route is declared in the permission table; the checks that depend on the parameters (oneself or an admin,
//! MANAGE on the resource granted on) are made here.

use super::context::{AccessApi, Ctx, denied, respond, store_error};
use crate::error::ApiError;
use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use loopline_access::level::{Grant, Level, is_resource_type};
use loopline_access::service::DEFAULT_WORKSPACE;
use loopline_core::ErrorCode;
use loopline_metadata_store::{AccessGrant, AccessRole, AccessUser, StoreError};
use serde_json::{Value, json};
use std::sync::Arc;

const V2: &str = "/api/2.0/mlflow";
const V3: &str = "/api/3.0/mlflow";
/// Longest role name, description or resource pattern.
const MAX_TEXT_CHARS: usize = 1024;

/// The routes.
pub fn routes(api: Arc<AccessApi>) -> Router {
    Router::new()
        .route(
            &format!("{V2}/users/create"),
            post(|ctx: Ctx| async move { create_user(ctx).await }),
        )
        .route(
            &format!("{V2}/users/get"),
            get(|ctx: Ctx| async move { respond(get_user(ctx).await) }),
        )
        .route(
            &format!("{V2}/users/current"),
            get(|ctx: Ctx| async move { respond(current_user(ctx)) }),
        )
        .route(
            &format!("{V2}/users/list"),
            get(|ctx: Ctx| async move { respond(list_users(ctx).await) }),
        )
        .route(
            &format!("{V2}/users/update-password"),
            patch(|ctx: Ctx| async move { respond(update_password(ctx).await) }),
        )
        .route(
            &format!("{V2}/users/update-admin"),
            patch(|ctx: Ctx| async move { respond(update_admin(ctx).await) }),
        )
        .route(
            &format!("{V2}/users/delete"),
            delete(|ctx: Ctx| async move { respond(delete_user(ctx).await) }),
        )
        .route(
            &format!("{V3}/roles/create"),
            post(|ctx: Ctx| async move { respond(create_role(ctx).await) }),
        )
        .route(
            &format!("{V3}/roles/get"),
            get(|ctx: Ctx| async move { respond(get_role(ctx).await) }),
        )
        .route(
            &format!("{V3}/roles/list"),
            get(|ctx: Ctx| async move { respond(list_roles(ctx).await) }),
        )
        .route(
            &format!("{V3}/roles/update"),
            patch(|ctx: Ctx| async move { respond(update_role(ctx).await) }),
        )
        .route(
            &format!("{V3}/roles/delete"),
            delete(|ctx: Ctx| async move { respond(delete_role(ctx).await) }),
        )
        .route(
            &format!("{V3}/roles/permissions/add"),
            post(|ctx: Ctx| async move { respond(add_grant(ctx).await) }),
        )
        .route(
            &format!("{V3}/roles/permissions/remove"),
            delete(|ctx: Ctx| async move { respond(remove_grant(ctx).await) }),
        )
        .route(
            &format!("{V3}/roles/permissions/list"),
            get(|ctx: Ctx| async move { respond(list_grants(ctx).await) }),
        )
        .route(
            &format!("{V3}/roles/permissions/update"),
            patch(|ctx: Ctx| async move { respond(update_grant(ctx).await) }),
        )
        .route(
            &format!("{V3}/roles/assign"),
            post(|ctx: Ctx| async move { respond(assign(ctx).await) }),
        )
        .route(
            &format!("{V3}/roles/unassign"),
            delete(|ctx: Ctx| async move { respond(unassign(ctx).await) }),
        )
        .route(
            &format!("{V3}/users/roles/list"),
            get(|ctx: Ctx| async move { respond(user_roles(ctx).await) }),
        )
        .route(
            &format!("{V3}/roles/users/list"),
            get(|ctx: Ctx| async move { respond(role_users(ctx).await) }),
        )
        .route(
            &format!("{V3}/users/current/permissions"),
            get(|ctx: Ctx| async move { respond(current_permissions(ctx).await) }),
        )
        .route(
            &format!("{V3}/users/permissions/list"),
            get(|ctx: Ctx| async move { respond(user_permissions(ctx).await) }),
        )
        .route(
            &format!("{V3}/users/permissions/grant"),
            post(|ctx: Ctx| async move { respond(grant_user(ctx).await) }),
        )
        .route(
            &format!("{V3}/users/permissions/revoke"),
            post(|ctx: Ctx| async move { respond(revoke_user(ctx).await) }),
        )
        .route(
            &format!("{V3}/users/permissions/get"),
            get(|ctx: Ctx| async move { respond(user_permission(ctx).await) }),
        )
        .with_state(api)
}

fn user_json(user: &AccessUser) -> Value {
    json!({"id": user.user_id, "username": user.username, "is_admin": user.is_admin})
}

fn grant_json(grant: &AccessGrant) -> Value {
    json!({
        "id": grant.grant_id,
        "role_id": grant.role_id,
        "resource_type": grant.resource_type,
        "resource_pattern": grant.resource_pattern,
        "permission": grant.permission,
    })
}

async fn role_json(ctx: &Ctx, role: &AccessRole) -> Result<Value, ApiError> {
    let grants = ctx
        .api
        .access
        .store()
        .list_grants(role.role_id)
        .await
        .map_err(store_error)?;
    Ok(json!({
        "id": role.role_id,
        "name": role.name,
        "workspace": role.workspace,
        "description": role.description,
        "permissions": grants.iter().map(grant_json).collect::<Vec<_>>(),
    }))
}

async fn roles_json(ctx: &Ctx, roles: &[AccessRole]) -> Result<Vec<Value>, ApiError> {
    let mut listed = Vec::with_capacity(roles.len());
    for role in roles {
        listed.push(role_json(ctx, role).await?);
    }
    Ok(listed)
}

fn bounded_text(name: &str, value: &str) -> Result<(), ApiError> {
    if value.trim().is_empty() {
        return Err(ApiError::invalid(format!("{name} cannot be empty.")));
    }
    if value.chars().count() > MAX_TEXT_CHARS || value.chars().any(char::is_control) {
        return Err(ApiError::invalid(format!(
            "{name} must be at most {MAX_TEXT_CHARS} characters, without control characters."
        )));
    }
    Ok(())
}

/// MLflow answers a malformed create with plain text.
fn text_400(message: &str) -> Response {
    (axum::http::StatusCode::BAD_REQUEST, message.to_string()).into_response()
}

async fn create_user(ctx: Ctx) -> Response {
    if let Err(error) = ctx.require_admin() {
        return error.into_response();
    }
    if !super::params::is_json(&ctx.headers) {
        return text_400("Invalid content type. Must be application/json");
    }
    let username = ctx.params.optional_text("username").ok().flatten().unwrap_or_default();
    let password = ctx.params.optional_text("password").ok().flatten().unwrap_or_default();
    if username.is_empty() || password.is_empty() {
        return text_400("Username and password cannot be empty.");
    }
    respond(
        ctx.api
            .access
            .create_user(&username, Some(&password), false)
            .await
            .map(|user| json!({"user": user_json(&user)}))
            .map_err(store_error),
    )
}

async fn get_user(ctx: Ctx) -> Result<Value, ApiError> {
    let username = ctx.params.text("username")?;
    ctx.require_self_or_admin(&username)?;
    let user = ctx.api.access.user(&username).await.map_err(store_error)?;
    Ok(json!({"user": user_json(&user)}))
}

fn current_user(ctx: Ctx) -> Result<Value, ApiError> {
    let principal = ctx.principal()?;
    Ok(json!({
        "user": {"id": principal.user_id, "username": &*principal.username, "is_admin": principal.is_admin},
        "is_basic_auth": principal.token_id.is_none(),
    }))
}

async fn list_users(ctx: Ctx) -> Result<Value, ApiError> {
    ctx.require_admin()?;
    let store = ctx.api.access.store();
    let mut users = Vec::new();
    for user in store.list_users().await.map_err(store_error)? {
        let roles = roles_json(&ctx, &store.roles_of_user(user.user_id).await.map_err(store_error)?).await?;
        users.push(json!({"id": user.user_id, "username": user.username, "is_admin": user.is_admin, "roles": roles}));
    }
    Ok(json!({"users": users}))
}

async fn update_password(ctx: Ctx) -> Result<Value, ApiError> {
    let username = ctx.params.text("username")?;
    let password = ctx.params.text("password")?;
    let principal = ctx.require_self_or_admin(&username)?.clone();
    let user = ctx.api.access.user(&username).await.map_err(store_error)?;
    if *principal.username == *username {
        // Changing one's own password asks for the current one, so a stolen session cannot rotate it.
        let Some(current) = ctx
            .params
            .optional_text("current_password")?
            .filter(|text| !text.is_empty())
        else {
            return Err(ApiError::invalid(
                "Current password is required when changing your own password.",
            ));
        };
        if !ctx.api.access.confirm_password(&user.username, &current).await {
            return Err(ApiError::invalid("Current password does not match."));
        }
        if current == password {
            return Err(ApiError::invalid("New password must differ from the current password."));
        }
    }
    ctx.api
        .access
        .set_password(user.user_id, &password)
        .await
        .map_err(store_error)?;
    Ok(json!({}))
}

async fn update_admin(ctx: Ctx) -> Result<Value, ApiError> {
    ctx.require_admin()?;
    let username = ctx.params.text("username")?;
    let is_admin = ctx.params.boolean("is_admin")?;
    let user = ctx.api.access.user(&username).await.map_err(store_error)?;
    ctx.api.access.set_admin(&user, is_admin).await.map_err(store_error)?;
    Ok(json!({}))
}

async fn delete_user(ctx: Ctx) -> Result<Value, ApiError> {
    let principal = ctx.require_admin()?;
    let username = ctx.params.text("username")?;
    if *principal.username == *username {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "Users cannot delete their own account. Ask another admin to delete this user instead.",
        ));
    }
    let user = ctx.api.access.user(&username).await.map_err(store_error)?;
    ctx.api.access.delete_user(&user).await.map_err(store_error)?;
    Ok(json!({}))
}

async fn role(ctx: &Ctx, role_id: i64) -> Result<AccessRole, ApiError> {
    ctx.api
        .access
        .store()
        .find_role(role_id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::ResourceDoesNotExist,
                format!("Role with id {role_id} not found"),
            )
        })
}

async fn create_role(ctx: Ctx) -> Result<Value, ApiError> {
    ctx.require_admin()?;
    let name = ctx.params.text("name")?;
    let workspace = ctx.params.text("workspace")?;
    let description = ctx.params.optional_text("description")?;
    bounded_text("Role name", &name)?;
    bounded_text("Workspace", &workspace)?;
    if let Some(description) = &description
        && description.chars().count() > MAX_TEXT_CHARS
    {
        return Err(ApiError::invalid(format!(
            "A description is at most {MAX_TEXT_CHARS} characters."
        )));
    }
    if name.starts_with("__user_") {
        return Err(ApiError::invalid("Role names beginning with '__user_' are reserved."));
    }
    let store = ctx.api.access.store();
    let created = store
        .create_role(&workspace, &name, description.as_deref())
        .await
        .map_err(store_error)?;
    ctx.api.access.forget();
    Ok(json!({"role": role_json(&ctx, &created).await?}))
}

async fn get_role(ctx: Ctx) -> Result<Value, ApiError> {
    ctx.require_admin()?;
    let found = role(&ctx, ctx.params.integer("role_id")?).await?;
    Ok(json!({"role": role_json(&ctx, &found).await?}))
}

async fn list_roles(ctx: Ctx) -> Result<Value, ApiError> {
    ctx.require_admin()?;
    let workspace = ctx.params.optional_text("workspace")?;
    let roles = ctx
        .api
        .access
        .store()
        .list_roles(workspace.as_deref())
        .await
        .map_err(store_error)?;
    Ok(json!({"roles": roles_json(&ctx, &roles).await?}))
}

async fn update_role(ctx: Ctx) -> Result<Value, ApiError> {
    ctx.require_admin()?;
    let role_id = ctx.params.integer("role_id")?;
    let name = ctx.params.optional_text("name")?;
    let description = ctx.params.optional_text("description")?;
    if name.is_none() && description.is_none() {
        return Err(ApiError::invalid(
            "At least one of 'name' or 'description' must be provided to update a role.",
        ));
    }
    if let Some(name) = &name {
        bounded_text("Role name", name)?;
    }
    let existing = role(&ctx, role_id).await?;
    if is_builtin_or_personal(&existing) && name.is_some() {
        return Err(ApiError::invalid(format!(
            "The role '{}' cannot be renamed.",
            existing.name
        )));
    }
    let updated = ctx
        .api
        .access
        .store()
        .update_role(role_id, name.as_deref(), description.as_deref())
        .await
        .map_err(store_error)?;
    ctx.api.access.forget();
    Ok(json!({"role": role_json(&ctx, &updated).await?}))
}

fn is_builtin_or_personal(role: &AccessRole) -> bool {
    role.workspace == DEFAULT_WORKSPACE
        && (role.name.starts_with("__user_")
            || loopline_access::service::BUILTIN_ROLES
                .iter()
                .any(|(name, _, _)| *name == role.name))
}

async fn delete_role(ctx: Ctx) -> Result<Value, ApiError> {
    ctx.require_admin()?;
    let existing = role(&ctx, ctx.params.integer("role_id")?).await?;
    if is_builtin_or_personal(&existing) {
        return Err(ApiError::invalid(format!(
            "The role '{}' cannot be deleted.",
            existing.name
        )));
    }
    ctx.api
        .access
        .store()
        .delete_role(existing.role_id)
        .await
        .map_err(store_error)?;
    ctx.api.access.forget();
    Ok(json!({}))
}

/// Checks a grant's kind, pattern and level, and that a named resource exists.
async fn checked_grant(ctx: &Ctx, resource_type: &str, pattern: &str, permission: &str) -> Result<Grant, ApiError> {
    if !is_resource_type(resource_type) {
        return Err(ApiError::invalid(format!(
            "Invalid resource type '{resource_type}': use one of {}.",
            loopline_access::level::RESOURCE_TYPES.join(", ")
        )));
    }
    bounded_text("A resource pattern", pattern)?;
    let grant = Grant::parse(permission).ok_or_else(|| {
        ApiError::invalid(format!(
            "Invalid permission '{permission}': use READ, USE, EDIT, MANAGE, NO_PERMISSIONS or DENY."
        ))
    })?;
    if pattern != "*" {
        resource_exists(ctx, resource_type, pattern).await?;
    }
    Ok(grant)
}

/// A resource id as grants store it (experiment ids as the store reads them).
fn stored_pattern(resource_type: &str, pattern: &str) -> String {
    loopline_access::level::canonical_id(resource_type, pattern).into_owned()
}

/// `RESOURCE_DOES_NOT_EXIST` when a grant names a resource that is not there (kinds Loopline stores).
async fn resource_exists(ctx: &Ctx, resource_type: &str, id: &str) -> Result<(), ApiError> {
    let store = &ctx.api.store;
    let found = match resource_type {
        "experiment" => store.get_experiment(id).await.map(|_| ()),
        "registered_model" | "prompt" => store.get_registered_model(id).await.map(|_| ()),
        "deployment" => store.get_deployment(id).await.map(|_| ()),
        "monitor" => store.get_monitor(id).await.map(|_| ()),
        "pipeline" => store.get_pipeline(id).await.map(|_| ()),
        "dataset" => store.latest_dataset_version(id).await.map(|_| ()),
        _ => Ok(()),
    };
    match found {
        Ok(()) => Ok(()),
        Err(StoreError::NotFound(_) | StoreError::InvalidParameter(_)) => Err(ApiError::new(
            ErrorCode::ResourceDoesNotExist,
            format!("No {resource_type} '{id}' exists to grant on."),
        )),
        Err(error) => Err(store_error(error)),
    }
}

async fn add_grant(ctx: Ctx) -> Result<Value, ApiError> {
    ctx.require_admin()?;
    let role_id = ctx.params.integer("role_id")?;
    let resource_type = ctx.params.text("resource_type")?;
    let pattern = ctx.params.text("resource_pattern")?;
    let permission = ctx.params.text("permission")?;
    let grant = checked_grant(&ctx, &resource_type, &pattern, &permission).await?;
    role(&ctx, role_id).await?;
    let added = ctx
        .api
        .access
        .store()
        .add_grant(
            role_id,
            &resource_type,
            &stored_pattern(&resource_type, &pattern),
            grant.name(),
        )
        .await
        .map_err(store_error)?;
    ctx.api.access.forget();
    Ok(json!({"role_permission": grant_json(&added)}))
}

async fn remove_grant(ctx: Ctx) -> Result<Value, ApiError> {
    ctx.require_admin()?;
    let grant_id = ctx.params.integer("role_permission_id")?;
    ctx.api
        .access
        .store()
        .remove_grant(grant_id)
        .await
        .map_err(store_error)?;
    ctx.api.access.forget();
    Ok(json!({}))
}

async fn list_grants(ctx: Ctx) -> Result<Value, ApiError> {
    ctx.require_admin()?;
    let role_id = ctx.params.integer("role_id")?;
    role(&ctx, role_id).await?;
    let grants = ctx.api.access.store().list_grants(role_id).await.map_err(store_error)?;
    Ok(json!({"role_permissions": grants.iter().map(grant_json).collect::<Vec<_>>()}))
}

async fn update_grant(ctx: Ctx) -> Result<Value, ApiError> {
    ctx.require_admin()?;
    let grant_id = ctx.params.integer("role_permission_id")?;
    let permission = ctx.params.text("permission")?;
    let grant =
        Grant::parse(&permission).ok_or_else(|| ApiError::invalid(format!("Invalid permission '{permission}'.")))?;
    let updated = ctx
        .api
        .access
        .store()
        .update_grant(grant_id, grant.name())
        .await
        .map_err(store_error)?;
    ctx.api.access.forget();
    Ok(json!({"role_permission": grant_json(&updated)}))
}

fn assignment_json(user_id: i64, role_id: i64) -> Value {
    // Assignments have no row id of their own: the pair is the identity.
    json!({"id": (user_id << 32) | (role_id & 0xffff_ffff), "user_id": user_id, "role_id": role_id})
}

async fn assign(ctx: Ctx) -> Result<Value, ApiError> {
    ctx.require_admin()?;
    let username = ctx.params.text("username")?;
    let role_id = ctx.params.integer("role_id")?;
    let user = ctx.api.access.user(&username).await.map_err(store_error)?;
    role(&ctx, role_id).await?;
    ctx.api
        .access
        .store()
        .assign_role(user.user_id, role_id)
        .await
        .map_err(store_error)?;
    ctx.api.access.forget();
    Ok(json!({"assignment": assignment_json(user.user_id, role_id)}))
}

async fn unassign(ctx: Ctx) -> Result<Value, ApiError> {
    ctx.require_admin()?;
    let username = ctx.params.text("username")?;
    let role_id = ctx.params.integer("role_id")?;
    let user = ctx.api.access.user(&username).await.map_err(store_error)?;
    ctx.api
        .access
        .store()
        .unassign_role(user.user_id, role_id)
        .await
        .map_err(store_error)?;
    ctx.api.access.forget();
    Ok(json!({}))
}

async fn user_roles(ctx: Ctx) -> Result<Value, ApiError> {
    let username = ctx.params.text("username")?;
    ctx.require_self_or_admin(&username)?;
    let user = ctx.api.access.user(&username).await.map_err(store_error)?;
    let roles = ctx
        .api
        .access
        .store()
        .roles_of_user(user.user_id)
        .await
        .map_err(store_error)?;
    Ok(json!({"roles": roles_json(&ctx, &roles).await?}))
}

async fn role_users(ctx: Ctx) -> Result<Value, ApiError> {
    ctx.require_admin()?;
    let role_id = ctx.params.integer("role_id")?;
    role(&ctx, role_id).await?;
    let users = ctx
        .api
        .access
        .store()
        .users_of_role(role_id)
        .await
        .map_err(store_error)?;
    Ok(json!({"assignments": users.iter().map(|user| assignment_json(user.user_id, role_id)).collect::<Vec<_>>()}))
}

async fn permissions_of(ctx: &Ctx, user: &AccessUser) -> Result<Value, ApiError> {
    let store = ctx.api.access.store();
    let mut rows = Vec::new();
    for role in store.roles_of_user(user.user_id).await.map_err(store_error)? {
        for grant in store.list_grants(role.role_id).await.map_err(store_error)? {
            rows.push(json!({
                "role_id": role.role_id,
                "role_name": role.name,
                "workspace": role.workspace,
                "resource_type": grant.resource_type,
                "resource_pattern": grant.resource_pattern,
                "permission": grant.permission,
            }));
        }
    }
    Ok(json!({"is_admin": user.is_admin, "permissions": rows}))
}

async fn current_permissions(ctx: Ctx) -> Result<Value, ApiError> {
    let username = ctx.principal()?.username.clone();
    let user = ctx.api.access.user(&username).await.map_err(store_error)?;
    permissions_of(&ctx, &user).await
}

async fn user_permissions(ctx: Ctx) -> Result<Value, ApiError> {
    let username = ctx.params.text("username")?;
    ctx.require_self_or_admin(&username)?;
    let user = ctx.api.access.user(&username).await.map_err(store_error)?;
    permissions_of(&ctx, &user).await
}

/// Granting or revoking on a resource needs MANAGE on it (so nobody raises their own level).
async fn grant_target(ctx: &Ctx) -> Result<(AccessUser, String, String), ApiError> {
    let principal = ctx.principal()?;
    let username = ctx.params.text("username")?;
    let resource_type = ctx.params.text("resource_type")?;
    let resource_id = ctx.params.text("resource_id")?;
    if !is_resource_type(&resource_type) {
        return Err(ApiError::invalid(format!("Invalid resource type '{resource_type}'.")));
    }
    if !principal.may(&resource_type, Some(&resource_id), Level::Manage) {
        return Err(denied());
    }
    let user = ctx.api.access.user(&username).await.map_err(store_error)?;
    let resource_id = stored_pattern(&resource_type, &resource_id);
    Ok((user, resource_type, resource_id))
}

async fn grant_user(ctx: Ctx) -> Result<Value, ApiError> {
    let (user, resource_type, resource_id) = grant_target(&ctx).await?;
    let permission = ctx.params.text("permission")?;
    let grant = checked_grant(&ctx, &resource_type, &resource_id, &permission).await?;
    ctx.api
        .access
        .grant_to_user(user.user_id, &resource_type, &resource_id, grant)
        .await
        .map_err(store_error)?;
    Ok(json!({}))
}

async fn revoke_user(ctx: Ctx) -> Result<Value, ApiError> {
    let (user, resource_type, resource_id) = grant_target(&ctx).await?;
    let store = ctx.api.access.store();
    let role_id = ctx.api.access.personal_role(user.user_id).await.map_err(store_error)?;
    let held = store
        .list_grants(role_id)
        .await
        .map_err(store_error)?
        .into_iter()
        .find(|grant| grant.resource_type == resource_type && grant.resource_pattern == resource_id)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::ResourceDoesNotExist,
                format!(
                    "User '{}' holds no grant of their own on {resource_type} '{resource_id}'.",
                    user.username
                ),
            )
        })?;
    store.remove_grant(held.grant_id).await.map_err(store_error)?;
    ctx.api.access.forget();
    Ok(json!({}))
}

async fn user_permission(ctx: Ctx) -> Result<Value, ApiError> {
    let username = ctx.params.text("username")?;
    ctx.require_self_or_admin(&username)?;
    let resource_type = ctx.params.text("resource_type")?;
    let resource_id = ctx.params.text("resource_id")?;
    if !is_resource_type(&resource_type) {
        return Err(ApiError::invalid(format!("Invalid resource type '{resource_type}'.")));
    }
    let user = ctx.api.access.user(&username).await.map_err(store_error)?;
    let principal = ctx
        .api
        .access
        .principal_of(user, &[loopline_access::Scope::All])
        .await
        .map_err(store_error)?;
    let level = principal.level(&resource_type, Some(&resource_id));
    Ok(json!({"allowed": level >= Level::Use, "permission": level.name()}))
}
