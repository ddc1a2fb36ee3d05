//! What the access store keeps: users and service accounts, roles and their grants, role assignments, API
//! tokens (a hash of the secret only), the audit log. The rules that read them live in the `access` crate.

use crate::entities::Page;
use crate::error::StoreResult;
use crate::queries::PageRequest;
use async_trait::async_trait;

/// A person or a service account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessUser {
    /// Numeric id (MLflow's `id`).
    pub user_id: i64,
    /// Unique name.
    pub username: String,
    /// PHC-format Argon2id hash; `None` for accounts that cannot log in with a password (service accounts).
    pub password_hash: Option<String>,
    /// Admins pass every permission check.
    pub is_admin: bool,
    /// `user` or `service`.
    pub kind: String,
    /// Creation time, ms since the epoch.
    pub created_time: i64,
    /// Password failures since the last success.
    pub failed_logins: i64,
    /// No password is checked before this time (ms since the epoch; 0: not locked).
    pub locked_until: i64,
}

/// A named set of grants, scoped to a workspace (MLflow's roles).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRole {
    /// Numeric id.
    pub role_id: i64,
    /// Workspace (`default` unless workspaces are used).
    pub workspace: String,
    /// Unique within the workspace.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
}

/// One grant of a role: a level on one resource, or on every resource of a kind (`*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessGrant {
    /// Numeric id (MLflow's role permission id).
    pub grant_id: i64,
    /// The role holding it.
    pub role_id: i64,
    /// `experiment`, `registered_model`, `deployment`, ...
    pub resource_type: String,
    /// A resource id or name, or `*`.
    pub resource_pattern: String,
    /// `READ`, `USE`, `EDIT`, `MANAGE`, `NO_PERMISSIONS` or `DENY`.
    pub permission: String,
}

/// An API token. The secret itself is never stored: only its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    /// Public id, part of the token text.
    pub token_id: String,
    /// Whose token it is.
    pub user_id: i64,
    /// The owner's label for it.
    pub name: String,
    /// Hex SHA-256 of the secret part.
    pub secret_hash: String,
    /// What the token may be used for (`all`, `read`, `write`, `predict`, `admin`).
    pub scopes: Vec<String>,
    /// ms since the epoch.
    pub created_time: i64,
    /// After this time the token is refused (ms since the epoch).
    pub expires_time: Option<i64>,
    /// Last time it authenticated a request (recorded at most about once a minute).
    pub last_used_time: Option<i64>,
    /// Set once revoked; a revoked token never works again.
    pub revoked_time: Option<i64>,
}

/// One audited request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditEntry {
    /// Numeric id (0 until stored).
    pub entry_id: i64,
    /// ms since the epoch.
    pub time: i64,
    /// Who, when known.
    pub principal: Option<String>,
    /// Which token, when one was used.
    pub token_id: Option<String>,
    /// HTTP method.
    pub method: String,
    /// Request path (never the query).
    pub path: String,
    /// What was attempted (`read`, `update`, `create`, `login`, ...).
    pub action: String,
    /// Kind of the resource touched.
    pub resource_type: Option<String>,
    /// Its id or name.
    pub resource_id: Option<String>,
    /// HTTP status answered.
    pub status: i64,
    /// `allowed`, `denied`, `unauthenticated`, `failed`.
    pub outcome: String,
    /// Client address.
    pub source: Option<String>,
}

/// Which audit entries to list.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only this principal.
    pub principal: Option<String>,
    /// Only this outcome.
    pub outcome: Option<String>,
    /// Only entries at or after this time.
    pub since: Option<i64>,
    /// Only entries before this time.
    pub until: Option<i64>,
}

/// A resource whose access is its owner's: an experiment's runs, traces and logged models, a pipeline's runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owned {
    /// A run, by run id.
    Run,
    /// A trace, by trace id.
    Trace,
    /// A logged model, by model id.
    LoggedModel,
    /// A pipeline run, by run id (owned by its pipeline).
    PipelineRun,
    /// An experiment, by name (its id is what grants name).
    ExperimentName,
    /// An issue found in an experiment's traces, by issue id.
    Issue,
    /// A deployment, by name (its own owner: the lookup says whether it exists).
    Deployment,
    /// The deployment a monitor watches, by monitor name.
    MonitorDeployment,
    /// The registered model a monitor watches, by monitor name.
    MonitorModel,
}

/// Users, roles, grants, tokens and the audit log. Every change increments the generation.
#[async_trait]
pub trait AccessStore: Send + Sync {
    /// Increments on every change to users, roles, grants or tokens (replicas compare it with their cache).
    async fn access_generation(&self) -> StoreResult<i64>;

    /// Creates a user; `AlreadyExists` when the name is taken.
    async fn create_user(
        &self,
        username: &str,
        password_hash: Option<&str>,
        is_admin: bool,
        kind: &str,
        now: i64,
    ) -> StoreResult<AccessUser>;
    /// A user by name.
    async fn find_user(&self, username: &str) -> StoreResult<Option<AccessUser>>;
    /// A user by id.
    async fn find_user_by_id(&self, user_id: i64) -> StoreResult<Option<AccessUser>>;
    /// Every user, by id.
    async fn list_users(&self) -> StoreResult<Vec<AccessUser>>;
    /// How many admins exist.
    async fn count_admins(&self) -> StoreResult<i64>;
    /// Replaces a password hash (and clears the failure count and lock).
    async fn set_password_hash(&self, user_id: i64, password_hash: &str) -> StoreResult<()>;
    /// Makes a user an admin or not.
    async fn set_admin(&self, user_id: i64, is_admin: bool) -> StoreResult<()>;
    /// Deletes a user with its role assignments and tokens.
    async fn delete_user(&self, user_id: i64) -> StoreResult<()>;
    /// Records the outcome of a password check (failures so far and the lock that follows).
    async fn record_password_check(&self, user_id: i64, failed_logins: i64, locked_until: i64) -> StoreResult<()>;

    /// Creates a role; `AlreadyExists` when the workspace has one of that name.
    async fn create_role(&self, workspace: &str, name: &str, description: Option<&str>) -> StoreResult<AccessRole>;
    /// A role by id.
    async fn find_role(&self, role_id: i64) -> StoreResult<Option<AccessRole>>;
    /// A role by workspace and name.
    async fn find_role_by_name(&self, workspace: &str, name: &str) -> StoreResult<Option<AccessRole>>;
    /// Roles of one workspace, or of all.
    async fn list_roles(&self, workspace: Option<&str>) -> StoreResult<Vec<AccessRole>>;
    /// Renames a role or changes its description.
    async fn update_role(&self, role_id: i64, name: Option<&str>, description: Option<&str>)
    -> StoreResult<AccessRole>;
    /// Deletes a role with its grants and assignments.
    async fn delete_role(&self, role_id: i64) -> StoreResult<()>;

    /// Adds a grant; `AlreadyExists` when the role has one on the same resource.
    async fn add_grant(
        &self,
        role_id: i64,
        resource_type: &str,
        resource_pattern: &str,
        permission: &str,
    ) -> StoreResult<AccessGrant>;
    /// A grant by id.
    async fn find_grant(&self, grant_id: i64) -> StoreResult<Option<AccessGrant>>;
    /// Changes a grant's level.
    async fn update_grant(&self, grant_id: i64, permission: &str) -> StoreResult<AccessGrant>;
    /// Removes a grant.
    async fn remove_grant(&self, grant_id: i64) -> StoreResult<()>;
    /// The grants of one role.
    async fn list_grants(&self, role_id: i64) -> StoreResult<Vec<AccessGrant>>;
    /// Every grant of every role a user holds.
    async fn grants_of_user(&self, user_id: i64) -> StoreResult<Vec<AccessGrant>>;
    /// Removes every grant on one resource (it was deleted) or moves them to a new name (it was renamed).
    async fn move_grants(&self, resource_type: &str, from: &str, to: Option<&str>) -> StoreResult<()>;

    /// Gives a user a role; `AlreadyExists` when held.
    async fn assign_role(&self, user_id: i64, role_id: i64) -> StoreResult<()>;
    /// Takes a role away; `NotFound` when not held.
    async fn unassign_role(&self, user_id: i64, role_id: i64) -> StoreResult<()>;
    /// The roles a user holds.
    async fn roles_of_user(&self, user_id: i64) -> StoreResult<Vec<AccessRole>>;
    /// The users holding a role.
    async fn users_of_role(&self, role_id: i64) -> StoreResult<Vec<AccessUser>>;

    /// Stores a new token.
    async fn create_token(&self, token: &AccessToken) -> StoreResult<()>;
    /// A token by its public id.
    async fn find_token(&self, token_id: &str) -> StoreResult<Option<AccessToken>>;
    /// Tokens of one user, or of all, newest first.
    async fn list_tokens(&self, user_id: Option<i64>) -> StoreResult<Vec<AccessToken>>;
    /// Revokes a token (for good).
    async fn revoke_token(&self, token_id: &str, now: i64) -> StoreResult<()>;
    /// Records that a token was used (does not change the generation).
    async fn touch_token(&self, token_id: &str, now: i64) -> StoreResult<()>;

    /// The experiment id a run, trace or logged model belongs to, or the pipeline a pipeline run belongs to
    /// (`None`: no such resource).
    async fn owner_of(&self, owned: Owned, id: &str) -> StoreResult<Option<String>>;

    /// The key replicas share for sealing page tokens: `candidate` is stored when none is yet, and the stored
    /// one is returned either way (so replicas starting together agree).
    async fn shared_page_key(&self, candidate: &str) -> StoreResult<String>;

    /// Appends audit entries (all or none).
    async fn append_audit(&self, entries: Vec<AuditEntry>) -> StoreResult<()>;
    /// Audit entries, newest first.
    async fn search_audit(&self, query: &AuditQuery, page: &PageRequest) -> StoreResult<Page<AuditEntry>>;
}
