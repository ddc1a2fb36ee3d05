//! Who is calling, once authenticated, and what their credentials allow.

use crate::level::{Held, Level, effective_level};
use std::sync::Arc;

/// What a token may be used for. A password (or an OIDC login) may be used for everything its user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Every action.
    All,
    /// Reading.
    Read,
    /// Creating and changing (reading and calling models included).
    Write,
    /// Calling served models and nothing else.
    Predict,
    /// Managing users, roles, grants and tokens.
    Admin,
}

impl Scope {
    /// Parses a scope name.
    pub fn parse(text: &str) -> Option<Scope> {
        Some(match text {
            "all" => Scope::All,
            "read" => Scope::Read,
            "write" => Scope::Write,
            "predict" => Scope::Predict,
            "admin" => Scope::Admin,
            _ => return None,
        })
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Scope::All => "all",
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Predict => "predict",
            Scope::Admin => "admin",
        }
    }
}

/// The kind of action a route performs, which a token's scopes must cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Reads.
    Read,
    /// Creates, changes or deletes.
    Write,
    /// Calls a served model.
    Predict,
    /// Manages access itself.
    Admin,
}

/// An authenticated caller. Its parts are shared, so handing a copy to every request of a remembered caller
/// allocates nothing.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Numeric user id.
    pub user_id: i64,
    /// Name.
    pub username: Arc<str>,
    /// Passes every permission check (still bounded by a token's scopes).
    pub is_admin: bool,
    /// The token used, if any.
    pub token_id: Option<Arc<str>>,
    /// What the credentials may be used for.
    pub scopes: Arc<[Scope]>,
    /// Grants from every role held.
    pub held: Arc<Vec<Held>>,
    /// Level on resources no grant names.
    pub default_level: Level,
}

impl Principal {
    /// True when the credentials' scopes cover the action.
    pub fn scopes_allow(&self, action: Action) -> bool {
        self.scopes.iter().any(|scope| match scope {
            Scope::All => true,
            Scope::Read => action == Action::Read,
            Scope::Write => matches!(action, Action::Read | Action::Write | Action::Predict),
            Scope::Predict => action == Action::Predict,
            Scope::Admin => matches!(action, Action::Read | Action::Admin),
        })
    }

    /// The caller's level on one resource (`None`: on the kind as a whole, as creating one asks).
    pub fn level(&self, resource_type: &str, resource_id: Option<&str>) -> Level {
        if self.is_admin {
            return Level::Manage;
        }
        effective_level(&self.held, self.default_level, resource_type, resource_id)
    }

    /// True when the caller holds at least `required` on the resource.
    pub fn may(&self, resource_type: &str, resource_id: Option<&str>, required: Level) -> bool {
        self.level(resource_type, resource_id) >= required
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_predict_token_may_call_models_and_do_nothing_else() {
        let principal = Principal {
            user_id: 1,
            username: "app".into(),
            is_admin: true,
            token_id: Some("t".into()),
            scopes: Arc::from([Scope::Predict]),
            held: Arc::default(),
            default_level: Level::Read,
        };
        assert!(principal.scopes_allow(Action::Predict));
        for action in [Action::Read, Action::Write, Action::Admin] {
            assert!(!principal.scopes_allow(action));
        }
    }
}
