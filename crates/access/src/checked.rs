//! A check of credentials made without waiting, kept so the same credentials can be relied on again cheaply.
//! A client sends the same credentials with every request of a connection; once they were checked, what can
//! change the answer is only a change to access (every one passes through `Access::forget`, on this replica
//! directly and on others through the generation it reads), the token's expiry, and how recently this
//! replica read that generation. `Access::holds` looks at exactly those, so a kept check answers as a new
//! one would, without parsing, looking up or hashing anything.

use crate::principal::Principal;
use crate::service::{Access, CachedToken, Credentials, checkable};
use crate::token;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Credentials found good by `Access::check_now`.
pub struct Checked {
    /// The caller.
    pub principal: Principal,
    /// The token's cached entry (its expiry and last use), for a token.
    token: Option<Arc<CachedToken>>,
    /// The epoch of the caches the check read.
    epoch: u64,
}

impl Access {
    /// Checks credentials against what this replica has cached, when that is fresh; `None` is not a refusal,
    /// only "ask `authenticate`", which reads the store when it must.
    pub fn check_now(&self, credentials: Credentials<'_>) -> Option<Checked> {
        if !self.fresh(self.monotonic_ms()) {
            return None;
        }
        match credentials {
            Credentials::Password { username, password } => {
                if !checkable(username, password) {
                    return None;
                }
                let (principal, epoch) = self.remembered_password(username, &self.password_digest(password))?;
                Some(Checked {
                    principal,
                    token: None,
                    epoch,
                })
            }
            Credentials::Token(text) => {
                let (token_id, secret) = token::parse(text)?;
                let (cached, epoch) = self.remembered_token(token_id)?;
                let principal = self.token_principal(&cached, token_id, &token::secret_digest(secret))?;
                Some(Checked {
                    principal,
                    token: Some(cached),
                    epoch,
                })
            }
        }
    }

    /// True when an earlier check still holds: nothing about access changed on this replica since it was
    /// made, what this replica knows is fresh, and a token has not expired (its use is recorded as a new
    /// check would record it).
    pub fn holds(&self, checked: &Checked) -> bool {
        if checked.epoch != self.epoch.load(Ordering::Acquire) || !self.fresh(self.monotonic_ms()) {
            return false;
        }
        let Some(cached) = &checked.token else {
            return true;
        };
        let now = loopline_core::time::now_millis();
        if cached.expires_time.is_some_and(|expires| expires <= now) {
            return false;
        }
        if let Some(token_id) = &checked.principal.token_id {
            self.touch(cached, token_id, now);
        }
        true
    }
}
