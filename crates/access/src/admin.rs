//! Changes to users and tokens, each followed by dropping this replica's cached answers (other replicas
//! notice the store's generation move), and the first admin's bootstrap.

use crate::principal::Scope;
use crate::service::Access;
use crate::{password, token};
use loopline_metadata_store::{AccessToken, AccessUser, StoreError, StoreResult};

/// Longest user name.
pub const MAX_USERNAME_CHARS: usize = 256;

/// Checks a user name: not empty, bounded, printable, no `:` (it would split Basic credentials).
pub fn check_username(username: &str) -> Result<(), String> {
    if username.is_empty() {
        return Err("Username cannot be empty.".to_string());
    }
    if username.chars().count() > MAX_USERNAME_CHARS {
        return Err(format!(
            "Username must be at most {MAX_USERNAME_CHARS} characters long."
        ));
    }
    if username.contains(':') || username.chars().any(char::is_control) {
        return Err("Username cannot contain ':' or control characters.".to_string());
    }
    if username.trim() != username {
        return Err("Username cannot begin or end with spaces.".to_string());
    }
    // Invisible and direction-changing characters make one name look like another ("admin" and
    // "admin\u{200b}").
    let invisible = |character: char| matches!(character, '\u{00ad}' | '\u{034f}' | '\u{061c}' | '\u{115f}' | '\u{1160}' | '\u{17b4}' | '\u{17b5}' | '\u{180b}'..='\u{180f}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{3164}' | '\u{fe00}'..='\u{fe0f}' | '\u{feff}' | '\u{ffa0}' | '\u{fff0}'..='\u{fff8}');
    if username.chars().any(invisible) {
        return Err("Username cannot contain invisible or text-direction characters.".to_string());
    }
    Ok(())
}

/// A token just made: the text is shown once.
pub struct IssuedToken {
    /// What was stored.
    pub token: AccessToken,
    /// The whole token, never stored.
    pub text: String,
}

impl Access {
    /// Creates a user with a password (`kind` `user`) or a service account without one (`service`).
    pub async fn create_user(&self, username: &str, password: Option<&str>, is_admin: bool) -> StoreResult<AccessUser> {
        check_username(username).map_err(StoreError::InvalidParameter)?;
        let hash = match password {
            Some(password) => {
                password::check_strength(password).map_err(StoreError::InvalidParameter)?;
                let password = password.to_string();
                Some(
                    self.hash_work(move || password::hash(&password))
                        .await
                        .ok_or_else(|| StoreError::Embedded("hashing a password failed".to_string()))?,
                )
            }
            None => None,
        };
        let kind = if password.is_some() { "user" } else { "service" };
        let user = self
            .store()
            .create_user(
                username,
                hash.as_deref(),
                is_admin,
                kind,
                loopline_core::time::now_millis(),
            )
            .await?;
        self.forget();
        Ok(user)
    }

    /// Finds or creates a user signed in by an identity provider (`kind` names it, e.g. `oidc`). A local
    /// account of the same name is never taken over: `None` then.
    pub async fn external_user(&self, username: &str, kind: &str) -> StoreResult<Option<AccessUser>> {
        check_username(username).map_err(StoreError::InvalidParameter)?;
        let existing = match self.store().find_user(username).await? {
            Some(user) => user,
            None => match self
                .store()
                .create_user(username, None, false, kind, loopline_core::time::now_millis())
                .await
            {
                Ok(user) => {
                    self.forget();
                    user
                }
                Err(StoreError::AlreadyExists(_)) => self.user(username).await?,
                Err(error) => return Err(error),
            },
        };
        Ok((existing.kind == kind).then_some(existing))
    }

    /// A user by name, or `NotFound` in MLflow's words.
    pub async fn user(&self, username: &str) -> StoreResult<AccessUser> {
        self.store()
            .find_user(username)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("User with username={username} not found")))
    }

    /// Replaces a user's password.
    pub async fn set_password(&self, user_id: i64, password: &str) -> StoreResult<()> {
        password::check_strength(password).map_err(StoreError::InvalidParameter)?;
        let password = password.to_string();
        let hash = self
            .hash_work(move || password::hash(&password))
            .await
            .ok_or_else(|| StoreError::Embedded("hashing a password failed".to_string()))?;
        self.store().set_password_hash(user_id, &hash).await?;
        self.forget();
        Ok(())
    }

    /// Makes a user an admin or not. The last admin cannot be demoted.
    pub async fn set_admin(&self, user: &AccessUser, is_admin: bool) -> StoreResult<()> {
        if user.is_admin && !is_admin && self.store().count_admins().await? <= 1 {
            return Err(StoreError::InvalidParameter(
                "This is the last admin: make another user an admin first.".to_string(),
            ));
        }
        self.store().set_admin(user.user_id, is_admin).await?;
        self.forget();
        Ok(())
    }

    /// Deletes a user, their role assignments and tokens. The last admin cannot be deleted.
    pub async fn delete_user(&self, user: &AccessUser) -> StoreResult<()> {
        if user.is_admin && self.store().count_admins().await? <= 1 {
            return Err(StoreError::InvalidParameter(
                "This is the last admin: make another user an admin first.".to_string(),
            ));
        }
        self.store().delete_user(user.user_id).await?;
        self.forget();
        Ok(())
    }

    /// Issues a token for a user.
    pub async fn issue_token(
        &self,
        user_id: i64,
        name: &str,
        scopes: &[Scope],
        expires_time: Option<i64>,
    ) -> StoreResult<IssuedToken> {
        if name.chars().count() > 256 {
            return Err(StoreError::InvalidParameter(
                "A token name is at most 256 characters.".to_string(),
            ));
        }
        let now = loopline_core::time::now_millis();
        if expires_time.is_some_and(|expires| expires <= now) {
            return Err(StoreError::InvalidParameter(
                "The expiry time is in the past.".to_string(),
            ));
        }
        let fresh = token::generate();
        let mut scopes: Vec<String> = scopes.iter().map(|scope| scope.name().to_string()).collect();
        scopes.dedup();
        if scopes.is_empty() {
            scopes.push(Scope::All.name().to_string());
        }
        let stored = AccessToken {
            token_id: fresh.token_id,
            user_id,
            name: name.to_string(),
            secret_hash: fresh.secret_hash,
            scopes,
            created_time: now,
            expires_time,
            last_used_time: None,
            revoked_time: None,
        };
        self.store().create_token(&stored).await?;
        self.forget();
        Ok(IssuedToken {
            token: stored,
            text: fresh.text,
        })
    }

    /// Revokes a token for good.
    pub async fn revoke_token(&self, token_id: &str) -> StoreResult<()> {
        self.store()
            .revoke_token(token_id, loopline_core::time::now_millis())
            .await?;
        self.forget();
        Ok(())
    }
}

impl Access {
    /// A fresh write-scoped token for a service account holding `role` (both created when missing); earlier
    /// tokens of the account with the same name are revoked. The server's own pipelines use one.
    pub async fn service_token(&self, account: &str, role: &str, token_name: &str) -> StoreResult<String> {
        let user = match self.store().find_user(account).await? {
            Some(user) => user,
            None => match self.create_user(account, None, false).await {
                Ok(user) => user,
                Err(StoreError::AlreadyExists(_)) => self.user(account).await?,
                Err(error) => return Err(error),
            },
        };
        let role = self
            .store()
            .find_role_by_name(crate::service::DEFAULT_WORKSPACE, role)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("role '{role}'")))?;
        match self.store().assign_role(user.user_id, role.role_id).await {
            Ok(()) | Err(StoreError::AlreadyExists(_)) => {}
            Err(error) => return Err(error),
        }
        for earlier in self.store().list_tokens(Some(user.user_id)).await? {
            if earlier.name == token_name && earlier.revoked_time.is_none() {
                self.revoke_token(&earlier.token_id).await?;
            }
        }
        Ok(self
            .issue_token(user.user_id, token_name, &[Scope::Write], None)
            .await?
            .text)
    }
}

/// How the first admin comes to exist: never a default password.
pub enum Bootstrap {
    /// An admin exists already.
    Done,
    /// Created from the environment.
    Created(String),
    /// Waiting for someone to present this one-time code (printed at start) with a user name and password.
    Pending(String),
}

impl Access {
    /// Creates the first admin from `LOOPLINE_ADMIN_USERNAME` (default `admin`) and `LOOPLINE_ADMIN_PASSWORD`
    /// when no admin exists; without them, makes a one-time code for `POST /api/loopline/v1/access/bootstrap`.
    pub async fn bootstrap(&self, username: Option<&str>, password: Option<&str>) -> StoreResult<Bootstrap> {
        if self.store().count_admins().await? > 0 {
            return Ok(Bootstrap::Done);
        }
        if let Some(password) = password {
            let username = username.unwrap_or("admin");
            match self.create_user(username, Some(password), true).await {
                Ok(_) => return Ok(Bootstrap::Created(username.to_string())),
                // Another replica did it first.
                Err(StoreError::AlreadyExists(_)) if self.store().count_admins().await? > 0 => {
                    return Ok(Bootstrap::Done);
                }
                // The account exists but no admin does: whoever sets the server's environment recovers it.
                Err(StoreError::AlreadyExists(_)) => {
                    let user = self.user(username).await?;
                    self.set_password(user.user_id, password).await?;
                    self.store().set_admin(user.user_id, true).await?;
                    self.forget();
                    tracing::warn!(%username, "no admin existed: this account was made the admin again from LOOPLINE_ADMIN_PASSWORD");
                    return Ok(Bootstrap::Created(username.to_string()));
                }
                Err(error) => return Err(error),
            }
        }
        let code = token::generate().text.replace(token::TOKEN_PREFIX, "llb_");
        Ok(Bootstrap::Pending(code))
    }
}
