//! `--auth` and its companions: which credentials the server takes, and whether it may listen beyond this
//! machine without any.

use clap::{Args, ValueEnum};

/// A kind of credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    /// No authentication: every caller may do everything (loopback only unless --allow-unauthenticated).
    None,
    /// Users and passwords over HTTP Basic (the mlflow client's MLFLOW_TRACKING_USERNAME/PASSWORD).
    Basic,
    /// Loopline API tokens as bearer tokens (the mlflow client's MLFLOW_TRACKING_TOKEN).
    Token,
    /// OpenID Connect ID tokens as bearer tokens.
    Oidc,
}

/// Authentication settings (the admin password never appears in their debug form).
#[derive(Clone, Args)]
pub struct AuthOptions {
    /// Credentials the server takes, comma-separated: none, basic, token, oidc (`basic,token` is usual).
    #[arg(long = "auth", env = "LOOPLINE_AUTH", value_delimiter = ',', default_value = "none")]
    pub modes: Vec<AuthMode>,
    /// Listen on a non-loopback address without authentication (anyone who can reach the port may delete
    /// every experiment and move production aliases).
    #[arg(long, env = "LOOPLINE_ALLOW_UNAUTHENTICATED", default_value_t = false)]
    pub allow_unauthenticated: bool,
    /// Level on resources no grant names, for non-admin users: READ (MLflow's default), USE, EDIT, MANAGE or
    /// NO_PERMISSIONS.
    #[arg(long, env = "LOOPLINE_DEFAULT_PERMISSION", default_value = "READ")]
    pub default_permission: String,
    /// Name of the first admin, created at start when no admin exists and a password is given.
    #[arg(long, env = "LOOPLINE_ADMIN_USERNAME", default_value = "admin")]
    pub admin_username: String,
    /// Password of the first admin (12 or more characters). Without it, the server prints a one-time code
    /// that creates the first admin. Never has a default.
    #[arg(long, env = "LOOPLINE_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
}

impl std::fmt::Debug for AuthOptions {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("AuthOptions")
            .field("modes", &self.modes)
            .field("allow_unauthenticated", &self.allow_unauthenticated)
            .field("default_permission", &self.default_permission)
            .field("admin_username", &self.admin_username)
            .field("admin_password", &self.admin_password.as_ref().map(|_| "***"))
            .finish()
    }
}

impl Default for AuthOptions {
    fn default() -> Self {
        AuthOptions {
            modes: vec![AuthMode::None],
            allow_unauthenticated: false,
            default_permission: "READ".to_string(),
            admin_username: "admin".to_string(),
            admin_password: None,
        }
    }
}

impl AuthOptions {
    /// True when any authentication is on.
    pub fn enabled(&self) -> bool {
        self.modes.iter().any(|mode| *mode != AuthMode::None)
    }

    /// True when `mode` is on.
    pub fn has(&self, mode: AuthMode) -> bool {
        self.modes.contains(&mode)
    }

    /// The default level, checked.
    pub fn default_level(&self) -> Result<loopline_access::Level, String> {
        match loopline_access::Grant::parse(&self.default_permission) {
            Some(loopline_access::Grant::Level(level)) => Ok(level),
            _ => Err(format!(
                "--default-permission '{}' is not a level: use READ, USE, EDIT, MANAGE or NO_PERMISSIONS",
                self.default_permission
            )),
        }
    }

    /// Checks the settings against the address the server listens on.
    pub fn validate(&self, host: &str) -> Result<(), String> {
        if self.enabled() && self.has(AuthMode::None) {
            return Err("--auth none cannot be combined with other modes".to_string());
        }
        self.default_level()?;
        if !self.enabled() && !is_loopback(host) {
            if !self.allow_unauthenticated {
                return Err(format!(
                    "refusing to listen on {host} without authentication: anyone who can reach it could delete \
                     experiments and move production aliases. Turn auth on (--auth basic,token), listen on \
                     127.0.0.1, or pass --allow-unauthenticated if a proxy in front authenticates"
                ));
            }
            tracing::warn!(
                %host,
                "listening beyond this machine WITHOUT authentication (--allow-unauthenticated): every caller \
                 may do everything"
            );
        }
        Ok(())
    }
}

/// True for addresses only this machine can reach.
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_auth_beyond_loopback_needs_an_explicit_yes() {
        let off = AuthOptions::default();
        assert!(off.validate("127.0.0.1").is_ok());
        assert!(off.validate("::1").is_ok());
        assert!(off.validate("localhost").is_ok());
        assert!(off.validate("0.0.0.0").unwrap_err().contains("--allow-unauthenticated"));
        assert!(off.validate("10.0.0.5").is_err());
        let allowed = AuthOptions {
            allow_unauthenticated: true,
            ..AuthOptions::default()
        };
        assert!(allowed.validate("0.0.0.0").is_ok());
        let on = AuthOptions {
            modes: vec![AuthMode::Basic, AuthMode::Token],
            ..AuthOptions::default()
        };
        assert!(on.validate("0.0.0.0").is_ok());
        let mixed = AuthOptions {
            modes: vec![AuthMode::None, AuthMode::Basic],
            ..AuthOptions::default()
        };
        assert!(mixed.validate("127.0.0.1").is_err());
        let bad_level = AuthOptions {
            default_permission: "ADMIN".into(),
            ..on
        };
        assert!(bad_level.validate("127.0.0.1").is_err());
    }
}
