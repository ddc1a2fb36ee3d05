//! The access store on SQL. Every change to users, roles, grants or tokens runs in one transaction that also
//! increments `access_state.generation`, so a replica that sees the same generation knows its cache is current.

use super::rows::{integer, text};
use super::{SqlStore, into_page, is_unique_violation, page_limits};
use crate::access::{AccessGrant, AccessRole, AccessStore, AccessToken, AccessUser, AuditEntry, AuditQuery, Owned};
use crate::entities::Page;
use crate::error::{StoreError, StoreResult};
use crate::queries::PageRequest;
use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;

const USER_COLUMNS: &str =
    "user_id, username, password_hash, is_admin, kind, created_time, failed_logins, locked_until";
const ROLE_COLUMNS: &str = "role_id, workspace, name, description";
const GRANT_COLUMNS: &str = "grant_id, role_id, resource_type, resource_pattern, permission";
const TOKEN_COLUMNS: &str =
    "token_id, user_id, name, secret_hash, scopes, created_time, expires_time, last_used_time, revoked_time";
const AUDIT_COLUMNS: &str =
    "entry_id, time, principal, token_id, method, path, action, resource_type, resource_id, status, outcome, source";
/// Most users and most roles one server keeps (the whole set is read when an admin lists them).
const MAX_USERS: i64 = 100_000;
const MAX_ROLES: i64 = 100_000;
/// Audit rows per INSERT (11 values each, far below either database's bound on parameters).
const AUDIT_ROWS_PER_STATEMENT: usize = 100;
/// Most grants one role holds.
const MAX_GRANTS_PER_ROLE: i64 = 10_000;

fn optional_text(row: &AnyRow, column: &str) -> StoreResult<Option<String>> {
    Ok(row.try_get::<Option<String>, _>(column)?)
}

fn optional_integer(row: &AnyRow, column: &str) -> StoreResult<Option<i64>> {
    Ok(row.try_get::<Option<i64>, _>(column)?)
}

fn user_from_row(row: &AnyRow) -> StoreResult<AccessUser> {
    Ok(AccessUser {
        user_id: integer(row, "user_id")?,
        username: text(row, "username")?,
        password_hash: optional_text(row, "password_hash")?,
        is_admin: integer(row, "is_admin")? != 0,
        kind: text(row, "kind")?,
        created_time: integer(row, "created_time")?,
        failed_logins: integer(row, "failed_logins")?,
        locked_until: integer(row, "locked_until")?,
    })
}

fn role_from_row(row: &AnyRow) -> StoreResult<AccessRole> {
    Ok(AccessRole {
        role_id: integer(row, "role_id")?,
        workspace: text(row, "workspace")?,
        name: text(row, "name")?,
        description: optional_text(row, "description")?,
    })
}

fn grant_from_row(row: &AnyRow) -> StoreResult<AccessGrant> {
    Ok(AccessGrant {
        grant_id: integer(row, "grant_id")?,
        role_id: integer(row, "role_id")?,
        resource_type: text(row, "resource_type")?,
        resource_pattern: text(row, "resource_pattern")?,
        permission: text(row, "permission")?,
    })
}

fn token_from_row(row: &AnyRow) -> StoreResult<AccessToken> {
    Ok(AccessToken {
        token_id: text(row, "token_id")?,
        user_id: integer(row, "user_id")?,
        name: text(row, "name")?,
        secret_hash: text(row, "secret_hash")?,
        scopes: text(row, "scopes")?
            .split(',')
            .filter(|scope| !scope.is_empty())
            .map(str::to_string)
            .collect(),
        created_time: integer(row, "created_time")?,
        expires_time: optional_integer(row, "expires_time")?,
        last_used_time: optional_integer(row, "last_used_time")?,
        revoked_time: optional_integer(row, "revoked_time")?,
    })
}

fn audit_from_row(row: &AnyRow) -> StoreResult<AuditEntry> {
    Ok(AuditEntry {
        entry_id: integer(row, "entry_id")?,
        time: integer(row, "time")?,
        principal: optional_text(row, "principal")?,
        token_id: optional_text(row, "token_id")?,
        method: text(row, "method")?,
        path: text(row, "path")?,
        action: text(row, "action")?,
        resource_type: optional_text(row, "resource_type")?,
        resource_id: optional_text(row, "resource_id")?,
        status: integer(row, "status")?,
        outcome: text(row, "outcome")?,
        source: optional_text(row, "source")?,
    })
}

type Transaction = sqlx::Transaction<'static, sqlx::Any>;

async fn bump(transaction: &mut Transaction) -> StoreResult<()> {
    sqlx::query("UPDATE access_state SET generation = generation + 1 WHERE id = 1")
        .execute(&mut **transaction)
        .await?;
    Ok(())
}

async fn count(transaction: &mut Transaction, sql: &'static str, bound: Option<i64>) -> StoreResult<i64> {
    let mut query = sqlx::query(sql);
    if let Some(value) = bound {
        query = query.bind(value);
    }
    let row = query.fetch_one(&mut **transaction).await?;
    integer(&row, "n")
}

/// Refuses a change that leaves no admin (checked inside the change's transaction).
async fn keeps_an_admin(transaction: &mut Transaction) -> StoreResult<()> {
    if count(
        transaction,
        "SELECT COUNT(*) AS n FROM access_users WHERE is_admin <> 0",
        None,
    )
    .await?
        == 0
    {
        return Err(StoreError::InvalidParameter(
            "This would leave no admin: make another user an admin first.".to_string(),
        ));
    }
    Ok(())
}

fn already_exists(error: sqlx::Error, message: impl FnOnce() -> String) -> StoreError {
    if is_unique_violation(&error) {
        StoreError::AlreadyExists(message())
    } else {
        StoreError::Database(error)
    }
}

fn user_not_found(user_id: i64) -> StoreError {
    StoreError::NotFound(format!("User with id {user_id} not found"))
}

impl SqlStore {
    /// Runs one change to the access tables in a transaction that also increments the generation.
    async fn access_change<T>(
        &self,
        change: impl for<'t> FnOnce(&'t mut Transaction) -> futures::future::BoxFuture<'t, StoreResult<T>>,
    ) -> StoreResult<T> {
        let _writer = self.writer_guard().await;
        let mut transaction = self.begin_write().await?;
        // First: on PostgreSQL the state row's lock then orders every access change, so a check made inside
        // one (the last admin) sees the changes committed before it.
        bump(&mut transaction).await?;
        let result = change(&mut transaction).await?;
        transaction.commit().await?;
        Ok(result)
    }

    async fn one_user(&self, sql: String, bound: impl Into<BoundKey>) -> StoreResult<Option<AccessUser>> {
        let query = super::query_text(sql);
        let query = match bound.into() {
            BoundKey::Text(value) => query.bind(value),
            BoundKey::Integer(value) => query.bind(value),
        };
        query
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(user_from_row)
            .transpose()
    }
}

enum BoundKey {
    Text(String),
    Integer(i64),
}

impl From<&str> for BoundKey {
    fn from(value: &str) -> Self {
        BoundKey::Text(value.to_string())
    }
}

impl From<i64> for BoundKey {
    fn from(value: i64) -> Self {
        BoundKey::Integer(value)
    }
}

#[async_trait]
impl AccessStore for SqlStore {
    async fn access_generation(&self) -> StoreResult<i64> {
        let row = sqlx::query("SELECT generation FROM access_state WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        integer(&row, "generation")
    }

    async fn create_user(
        &self,
        username: &str,
        password_hash: Option<&str>,
        is_admin: bool,
        kind: &str,
        now: i64,
    ) -> StoreResult<AccessUser> {
        let (username, password_hash, kind) = (
            username.to_string(),
            password_hash.map(str::to_string),
            kind.to_string(),
        );
        self.access_change(move |transaction| {
            Box::pin(async move {
                if count(transaction, "SELECT COUNT(*) AS n FROM access_users", None).await? >= MAX_USERS {
                    return Err(StoreError::InvalidParameter(format!(
                        "a server keeps at most {MAX_USERS} users: delete unused ones first"
                    )));
                }
                let row = super::query_text(format!(
                    "INSERT INTO access_users (username, password_hash, is_admin, kind, created_time, failed_logins, \
                     locked_until) VALUES ($1, $2, $3, $4, $5, 0, 0) RETURNING {USER_COLUMNS}"
                ))
                .bind(username.clone())
                .bind(password_hash)
                .bind(i64::from(is_admin))
                .bind(kind)
                .bind(now)
                .fetch_one(&mut **transaction)
                .await
                .map_err(|error| already_exists(error, || format!("User '{username}' already exists.")))?;
                user_from_row(&row)
            })
        })
        .await
    }

    async fn find_user(&self, username: &str) -> StoreResult<Option<AccessUser>> {
        self.one_user(
            format!("SELECT {USER_COLUMNS} FROM access_users WHERE username = $1"),
            username,
        )
        .await
    }

    async fn find_user_by_id(&self, user_id: i64) -> StoreResult<Option<AccessUser>> {
        self.one_user(
            format!("SELECT {USER_COLUMNS} FROM access_users WHERE user_id = $1"),
            user_id,
        )
        .await
    }

    async fn list_users(&self) -> StoreResult<Vec<AccessUser>> {
        super::query_text(format!("SELECT {USER_COLUMNS} FROM access_users ORDER BY user_id"))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(user_from_row)
            .collect()
    }

    async fn count_admins(&self) -> StoreResult<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM access_users WHERE is_admin <> 0")
            .fetch_one(&self.pool)
            .await?;
        integer(&row, "n")
    }

    async fn set_password_hash(&self, user_id: i64, password_hash: &str) -> StoreResult<()> {
        let password_hash = password_hash.to_string();
        self.access_change(move |transaction| {
            Box::pin(async move {
                let done = sqlx::query(
                    "UPDATE access_users SET password_hash = $1, failed_logins = 0, locked_until = 0 WHERE user_id = $2",
                )
                .bind(password_hash)
                .bind(user_id)
                .execute(&mut **transaction)
                .await?;
                if done.rows_affected() == 0 {
                    return Err(user_not_found(user_id));
                }
                Ok(())
            })
        })
        .await
    }

    async fn set_admin(&self, user_id: i64, is_admin: bool) -> StoreResult<()> {
        self.access_change(move |transaction| {
            Box::pin(async move {
                let done = sqlx::query("UPDATE access_users SET is_admin = $1 WHERE user_id = $2")
                    .bind(i64::from(is_admin))
                    .bind(user_id)
                    .execute(&mut **transaction)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err(user_not_found(user_id));
                }
                keeps_an_admin(transaction).await
            })
        })
        .await
    }

    async fn delete_user(&self, user_id: i64) -> StoreResult<()> {
        self.access_change(move |transaction| {
            Box::pin(async move {
                let done = sqlx::query("DELETE FROM access_users WHERE user_id = $1")
                    .bind(user_id)
                    .execute(&mut **transaction)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err(user_not_found(user_id));
                }
                for sql in [
                    "DELETE FROM access_assignments WHERE user_id = $1",
                    "DELETE FROM access_tokens WHERE user_id = $1",
                ] {
                    sqlx::query(sql).bind(user_id).execute(&mut **transaction).await?;
                }
                // The user's own role goes too: a later user given the same id must not inherit its grants.
                let personal = format!("__user_{user_id}__");
                for sql in [
                    "DELETE FROM access_grants WHERE role_id IN (SELECT role_id FROM access_roles WHERE name = $1)",
                    "DELETE FROM access_assignments WHERE role_id IN (SELECT role_id FROM access_roles WHERE name = $1)",
                    "DELETE FROM access_roles WHERE name = $1",
                ] {
                    sqlx::query(sql).bind(personal.clone()).execute(&mut **transaction).await?;
                }
                keeps_an_admin(transaction).await
            })
        })
        .await
    }

    async fn record_password_check(&self, user_id: i64, failed_logins: i64, locked_until: i64) -> StoreResult<()> {
        // Not a change of who may do what: the generation stays.
        sqlx::query("UPDATE access_users SET failed_logins = $1, locked_until = $2 WHERE user_id = $3")
            .bind(failed_logins)
            .bind(locked_until)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn create_role(&self, workspace: &str, name: &str, description: Option<&str>) -> StoreResult<AccessRole> {
        let (workspace, name, description) = (workspace.to_string(), name.to_string(), description.map(str::to_string));
        self.access_change(move |transaction| {
            Box::pin(async move {
                if count(transaction, "SELECT COUNT(*) AS n FROM access_roles", None).await? >= MAX_ROLES {
                    return Err(StoreError::InvalidParameter(format!(
                        "a server keeps at most {MAX_ROLES} roles: delete unused ones first"
                    )));
                }
                let row = super::query_text(format!(
                    "INSERT INTO access_roles (workspace, name, description) VALUES ($1, $2, $3) RETURNING {ROLE_COLUMNS}"
                ))
                .bind(workspace.clone())
                .bind(name.clone())
                .bind(description)
                .fetch_one(&mut **transaction)
                .await
                .map_err(|error| {
                    already_exists(error, || format!("Role '{name}' already exists in workspace '{workspace}'."))
                })?;
                role_from_row(&row)
            })
        })
        .await
    }

    async fn find_role(&self, role_id: i64) -> StoreResult<Option<AccessRole>> {
        super::query_text(format!("SELECT {ROLE_COLUMNS} FROM access_roles WHERE role_id = $1"))
            .bind(role_id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(role_from_row)
            .transpose()
    }

    async fn find_role_by_name(&self, workspace: &str, name: &str) -> StoreResult<Option<AccessRole>> {
        super::query_text(format!(
            "SELECT {ROLE_COLUMNS} FROM access_roles WHERE workspace = $1 AND name = $2"
        ))
        .bind(workspace.to_string())
        .bind(name.to_string())
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(role_from_row)
        .transpose()
    }

    async fn list_roles(&self, workspace: Option<&str>) -> StoreResult<Vec<AccessRole>> {
        let rows = match workspace {
            Some(workspace) => {
                super::query_text(format!(
                    "SELECT {ROLE_COLUMNS} FROM access_roles WHERE workspace = $1 ORDER BY role_id"
                ))
                .bind(workspace.to_string())
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                super::query_text(format!("SELECT {ROLE_COLUMNS} FROM access_roles ORDER BY role_id"))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(role_from_row).collect()
    }

    async fn update_role(
        &self,
        role_id: i64,
        name: Option<&str>,
        description: Option<&str>,
    ) -> StoreResult<AccessRole> {
        let (name, description) = (name.map(str::to_string), description.map(str::to_string));
        self.access_change(move |transaction| {
            Box::pin(async move {
                let row = super::query_text(format!(
                    "UPDATE access_roles SET name = COALESCE($1, name), description = COALESCE($2, description) \
                     WHERE role_id = $3 RETURNING {ROLE_COLUMNS}"
                ))
                .bind(name.clone())
                .bind(description)
                .bind(role_id)
                .fetch_optional(&mut **transaction)
                .await
                .map_err(|error| {
                    already_exists(error, || {
                        format!("Role '{}' already exists.", name.clone().unwrap_or_default())
                    })
                })?
                .ok_or_else(|| StoreError::NotFound(format!("Role with id {role_id} not found")))?;
                role_from_row(&row)
            })
        })
        .await
    }

    async fn delete_role(&self, role_id: i64) -> StoreResult<()> {
        self.access_change(move |transaction| {
            Box::pin(async move {
                let done = sqlx::query("DELETE FROM access_roles WHERE role_id = $1")
                    .bind(role_id)
                    .execute(&mut **transaction)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound(format!("Role with id {role_id} not found")));
                }
                for sql in [
                    "DELETE FROM access_grants WHERE role_id = $1",
                    "DELETE FROM access_assignments WHERE role_id = $1",
                ] {
                    sqlx::query(sql).bind(role_id).execute(&mut **transaction).await?;
                }
                Ok(())
            })
        })
        .await
    }

    async fn add_grant(
        &self,
        role_id: i64,
        resource_type: &str,
        resource_pattern: &str,
        permission: &str,
    ) -> StoreResult<AccessGrant> {
        let (resource_type, resource_pattern, permission) = (
            resource_type.to_string(),
            resource_pattern.to_string(),
            permission.to_string(),
        );
        self.access_change(move |transaction| {
            Box::pin(async move {
                if count(
                    transaction,
                    "SELECT COUNT(*) AS n FROM access_roles WHERE role_id = $1",
                    Some(role_id),
                )
                .await?
                    == 0
                {
                    return Err(StoreError::NotFound(format!("Role with id {role_id} not found")));
                }
                if count(
                    transaction,
                    "SELECT COUNT(*) AS n FROM access_grants WHERE role_id = $1",
                    Some(role_id),
                )
                .await?
                    >= MAX_GRANTS_PER_ROLE
                {
                    return Err(StoreError::InvalidParameter(format!(
                        "a role holds at most {MAX_GRANTS_PER_ROLE} grants: use a '*' pattern or another role"
                    )));
                }
                let row = super::query_text(format!(
                    "INSERT INTO access_grants (role_id, resource_type, resource_pattern, permission) \
                     VALUES ($1, $2, $3, $4) RETURNING {GRANT_COLUMNS}"
                ))
                .bind(role_id)
                .bind(resource_type.clone())
                .bind(resource_pattern.clone())
                .bind(permission)
                .fetch_one(&mut **transaction)
                .await
                .map_err(|error| {
                    already_exists(error, || {
                        format!("The role already has a permission on {resource_type} '{resource_pattern}'.")
                    })
                })?;
                grant_from_row(&row)
            })
        })
        .await
    }

    async fn find_grant(&self, grant_id: i64) -> StoreResult<Option<AccessGrant>> {
        super::query_text(format!("SELECT {GRANT_COLUMNS} FROM access_grants WHERE grant_id = $1"))
            .bind(grant_id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(grant_from_row)
            .transpose()
    }

    async fn update_grant(&self, grant_id: i64, permission: &str) -> StoreResult<AccessGrant> {
        let permission = permission.to_string();
        self.access_change(move |transaction| {
            Box::pin(async move {
                let row = super::query_text(format!(
                    "UPDATE access_grants SET permission = $1 WHERE grant_id = $2 RETURNING {GRANT_COLUMNS}"
                ))
                .bind(permission)
                .bind(grant_id)
                .fetch_optional(&mut **transaction)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("Role permission with id {grant_id} not found")))?;
                grant_from_row(&row)
            })
        })
        .await
    }

    async fn remove_grant(&self, grant_id: i64) -> StoreResult<()> {
        self.access_change(move |transaction| {
            Box::pin(async move {
                let done = sqlx::query("DELETE FROM access_grants WHERE grant_id = $1")
                    .bind(grant_id)
                    .execute(&mut **transaction)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound(format!(
                        "Role permission with id {grant_id} not found"
                    )));
                }
                Ok(())
            })
        })
        .await
    }

    async fn list_grants(&self, role_id: i64) -> StoreResult<Vec<AccessGrant>> {
        super::query_text(format!(
            "SELECT {GRANT_COLUMNS} FROM access_grants WHERE role_id = $1 ORDER BY grant_id"
        ))
        .bind(role_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(grant_from_row)
        .collect()
    }

    async fn grants_of_user(&self, user_id: i64) -> StoreResult<Vec<AccessGrant>> {
        sqlx::query(
            "SELECT g.grant_id, g.role_id, g.resource_type, g.resource_pattern, g.permission \
             FROM access_grants g JOIN access_assignments a ON a.role_id = g.role_id \
             WHERE a.user_id = $1 ORDER BY g.grant_id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(grant_from_row)
        .collect()
    }

    async fn move_grants(&self, resource_type: &str, from: &str, to: Option<&str>) -> StoreResult<()> {
        // `*` grants are about every resource of the kind, never about one that is renamed or deleted.
        if from == "*" || to == Some("*") {
            return Ok(());
        }
        let (resource_type, from, to) = (resource_type.to_string(), from.to_string(), to.map(str::to_string));
        self.access_change(move |transaction| {
            Box::pin(async move {
                match to {
                    Some(to) => {
                        sqlx::query(
                            "UPDATE access_grants SET resource_pattern = $1 WHERE resource_type = $2 \
                             AND resource_pattern = $3 AND resource_pattern <> '*'",
                        )
                        .bind(to)
                        .bind(resource_type)
                        .bind(from)
                        .execute(&mut **transaction)
                        .await?;
                    }
                    None => {
                        sqlx::query(
                            "DELETE FROM access_grants WHERE resource_type = $1 AND resource_pattern = $2 \
                             AND resource_pattern <> '*'",
                        )
                        .bind(resource_type)
                        .bind(from)
                        .execute(&mut **transaction)
                        .await?;
                    }
                }
                Ok(())
            })
        })
        .await
    }

    async fn assign_role(&self, user_id: i64, role_id: i64) -> StoreResult<()> {
        self.access_change(move |transaction| {
            Box::pin(async move {
                sqlx::query("INSERT INTO access_assignments (user_id, role_id) VALUES ($1, $2)")
                    .bind(user_id)
                    .bind(role_id)
                    .execute(&mut **transaction)
                    .await
                    .map_err(|error| already_exists(error, || "The user already holds this role.".to_string()))?;
                Ok(())
            })
        })
        .await
    }

    async fn unassign_role(&self, user_id: i64, role_id: i64) -> StoreResult<()> {
        self.access_change(move |transaction| {
            Box::pin(async move {
                let done = sqlx::query("DELETE FROM access_assignments WHERE user_id = $1 AND role_id = $2")
                    .bind(user_id)
                    .bind(role_id)
                    .execute(&mut **transaction)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound("The user does not hold this role.".to_string()));
                }
                Ok(())
            })
        })
        .await
    }

    async fn roles_of_user(&self, user_id: i64) -> StoreResult<Vec<AccessRole>> {
        sqlx::query(
            "SELECT r.role_id, r.workspace, r.name, r.description FROM access_roles r \
             JOIN access_assignments a ON a.role_id = r.role_id WHERE a.user_id = $1 ORDER BY r.role_id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(role_from_row)
        .collect()
    }

    async fn users_of_role(&self, role_id: i64) -> StoreResult<Vec<AccessUser>> {
        super::query_text(format!(
            "SELECT {} FROM access_users u JOIN access_assignments a ON a.user_id = u.user_id \
             WHERE a.role_id = $1 ORDER BY u.user_id",
            USER_COLUMNS
                .split(", ")
                .map(|column| format!("u.{column}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .bind(role_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(user_from_row)
        .collect()
    }

    async fn create_token(&self, token: &AccessToken) -> StoreResult<()> {
        let token = token.clone();
        self.access_change(move |transaction| {
            Box::pin(async move {
                super::query_text(format!(
                    "INSERT INTO access_tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                ))
                .bind(token.token_id.clone())
                .bind(token.user_id)
                .bind(token.name.clone())
                .bind(token.secret_hash.clone())
                .bind(token.scopes.join(","))
                .bind(token.created_time)
                .bind(token.expires_time)
                .bind(token.last_used_time)
                .bind(token.revoked_time)
                .execute(&mut **transaction)
                .await
                .map_err(|error| already_exists(error, || "A token with this id already exists.".to_string()))?;
                Ok(())
            })
        })
        .await
    }

    async fn find_token(&self, token_id: &str) -> StoreResult<Option<AccessToken>> {
        super::query_text(format!("SELECT {TOKEN_COLUMNS} FROM access_tokens WHERE token_id = $1"))
            .bind(token_id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(token_from_row)
            .transpose()
    }

    async fn list_tokens(&self, user_id: Option<i64>) -> StoreResult<Vec<AccessToken>> {
        let rows =
            match user_id {
                Some(user_id) => super::query_text(format!(
                    "SELECT {TOKEN_COLUMNS} FROM access_tokens WHERE user_id = $1 ORDER BY created_time DESC, token_id"
                ))
                .bind(user_id)
                .fetch_all(&self.pool)
                .await?,
                None => {
                    super::query_text(format!(
                        "SELECT {TOKEN_COLUMNS} FROM access_tokens ORDER BY created_time DESC, token_id"
                    ))
                    .fetch_all(&self.pool)
                    .await?
                }
            };
        rows.iter().map(token_from_row).collect()
    }

    async fn revoke_token(&self, token_id: &str, now: i64) -> StoreResult<()> {
        let token_id = token_id.to_string();
        self.access_change(move |transaction| {
            Box::pin(async move {
                let done = sqlx::query(
                    "UPDATE access_tokens SET revoked_time = COALESCE(revoked_time, $1) WHERE token_id = $2",
                )
                .bind(now)
                .bind(token_id.clone())
                .execute(&mut **transaction)
                .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound(format!("Token '{token_id}' not found")));
                }
                Ok(())
            })
        })
        .await
    }

    async fn touch_token(&self, token_id: &str, now: i64) -> StoreResult<()> {
        sqlx::query("UPDATE access_tokens SET last_used_time = $1 WHERE token_id = $2")
            .bind(now)
            .bind(token_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn owner_of(&self, owned: Owned, id: &str) -> StoreResult<Option<String>> {
        let sql = match owned {
            Owned::Run => "SELECT experiment_id FROM runs WHERE run_id = $1",
            Owned::Trace => "SELECT experiment_id FROM traces WHERE trace_id = $1",
            Owned::LoggedModel => "SELECT experiment_id FROM logged_models WHERE model_id = $1",
            Owned::PipelineRun => "SELECT pipeline FROM pipeline_runs WHERE run_id = $1",
            Owned::ExperimentName => "SELECT experiment_id FROM experiments WHERE name = $1",
            Owned::Issue => "SELECT experiment_id FROM issues WHERE issue_id = $1",
            Owned::Deployment => "SELECT name FROM deployments WHERE name = $1",
            Owned::MonitorDeployment | Owned::MonitorModel => "SELECT spec FROM monitors WHERE name = $1",
        };
        let Some(row) = sqlx::query(sql).bind(id.to_string()).fetch_optional(&self.pool).await? else {
            return Ok(None);
        };
        Ok(Some(match owned {
            Owned::PipelineRun => text(&row, "pipeline")?,
            Owned::Deployment => text(&row, "name")?,
            Owned::MonitorDeployment | Owned::MonitorModel => {
                let field = if owned == Owned::MonitorDeployment {
                    "deployment"
                } else {
                    "model"
                };
                let spec: serde_json::Value = serde_json::from_str(&text(&row, "spec")?).unwrap_or_default();
                match spec.get(field).and_then(serde_json::Value::as_str) {
                    Some(watched) => watched.to_string(),
                    None => return Ok(None),
                }
            }
            // Stored as text there.
            Owned::Issue => text(&row, "experiment_id")?,
            Owned::Run | Owned::Trace | Owned::LoggedModel | Owned::ExperimentName => {
                integer(&row, "experiment_id")?.to_string()
            }
        }))
    }

    async fn shared_page_key(&self, candidate: &str) -> StoreResult<String> {
        {
            let _writer = self.writer_guard().await;
            let mut transaction = self.begin_write().await?;
            sqlx::query("UPDATE access_state SET page_key = $1 WHERE id = 1 AND page_key IS NULL")
                .bind(candidate.to_string())
                .execute(&mut *transaction)
                .await?;
            transaction.commit().await?;
        }
        let row = sqlx::query("SELECT page_key FROM access_state WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        text(&row, "page_key")
    }

    async fn append_audit(&self, entries: Vec<AuditEntry>) -> StoreResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        // On SQLite the trail goes through the writer thread, in its group commits and with one prepared
        // statement: through the pool, the batch waited for the write lock the tracking writes hold and cost
        // a quarter of a metric write per entry in SQL text and bindings.
        if let Some(writer) = &self.sqlite_writer {
            return writer
                .write(move |connection| super::sqlite_batch::append_audit(connection, &entries))
                .await;
        }
        let _writer = self.writer_guard().await;
        let mut transaction = self.begin_write().await?;
        // Many rows per statement, bound as anonymous placeholders on SQLite (`built_query`): the trail of a
        // busy server is written in a few statements a batch without SQLite's per-name parameter scan.
        for chunk in entries.chunks(AUDIT_ROWS_PER_STATEMENT) {
            let mut builder = crate::search::SqlBuilder::new(
                "INSERT INTO access_audit (time, principal, token_id, method, path, action, resource_type, \
                 resource_id, status, outcome, source) VALUES ",
            );
            for (index, entry) in chunk.iter().enumerate() {
                if index > 0 {
                    builder.push(", ");
                }
                let time = builder.bind_integer(entry.time);
                builder.push(&format!("({time}"));
                let texts = [
                    entry.principal.as_deref(),
                    entry.token_id.as_deref(),
                    Some(entry.method.as_str()),
                    Some(entry.path.as_str()),
                    Some(entry.action.as_str()),
                    entry.resource_type.as_deref(),
                    entry.resource_id.as_deref(),
                ];
                for text in texts {
                    let placeholder = builder.bind_optional_text(text);
                    builder.push(&format!(", {placeholder}"));
                }
                let status = builder.bind_integer(entry.status);
                let outcome = builder.bind_text(&entry.outcome);
                let source = builder.bind_optional_text(entry.source.as_deref());
                builder.push(&format!(", {status}, {outcome}, {source})"));
            }
            super::built_query(&builder, self.dialect)
                .execute(&mut *transaction)
                .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    async fn search_audit(&self, query: &AuditQuery, page: &PageRequest) -> StoreResult<Page<AuditEntry>> {
        let (max_results, offset) = page_limits(page, 1_000, 10_000, "the audit log")?;
        let mut conditions = Vec::new();
        let mut values: Vec<super::SqlValue> = Vec::new();
        let mut add = |condition: &str, value: super::SqlValue| {
            values.push(value);
            conditions.push(condition.replace('?', &format!("${}", values.len())));
        };
        if let Some(principal) = &query.principal {
            add("principal = ?", super::SqlValue::Text(principal.clone()));
        }
        if let Some(outcome) = &query.outcome {
            add("outcome = ?", super::SqlValue::Text(outcome.clone()));
        }
        if let Some(since) = query.since {
            add("time >= ?", super::SqlValue::Integer(since));
        }
        if let Some(until) = query.until {
            add("time < ?", super::SqlValue::Integer(until));
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM access_audit {filter} ORDER BY time DESC, entry_id DESC LIMIT {} OFFSET {offset}",
            max_results + 1
        );
        let rows = super::bind_values(super::query_text(sql), &values)
            .fetch_all(&self.pool)
            .await?;
        let items = rows.iter().map(audit_from_row).collect::<StoreResult<Vec<_>>>()?;
        Ok(into_page(items, max_results, offset))
    }
}
