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
    /// OIDC provider (`--auth oidc`): its issuer URL, as its tokens name it (https, or http on loopback).
    #[arg(long, env = "LOOPLINE_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,
    /// OIDC audience: the client id tokens must be issued for.
    #[arg(long, env = "LOOPLINE_OIDC_AUDIENCE")]
    pub oidc_audience: Option<String>,
    /// The token claim that names the user.
    #[arg(long, env = "LOOPLINE_OIDC_USERNAME_CLAIM", default_value = "preferred_username")]
    pub oidc_username_claim: String,
    /// The token claim listing the user's groups.
    #[arg(long, env = "LOOPLINE_OIDC_GROUPS_CLAIM", default_value = "groups")]
    pub oidc_groups_claim: String,
    /// Group-to-role mappings, `GROUP=ROLE`, comma-separated (e.g. `ml-admins=admin,ml-team=editor`).
    #[arg(long = "oidc-group-role", env = "LOOPLINE_OIDC_GROUP_ROLES", value_delimiter = ',')]
    pub oidc_group_roles: Vec<String>,
    /// Seconds of clock difference tolerated in token times.
    #[arg(long, env = "LOOPLINE_OIDC_CLOCK_SKEW_SECONDS", default_value_t = 60)]
    pub oidc_clock_skew_seconds: u64,
    /// Least seconds between two fetches of the provider's keys (a token naming an unknown key fetches them).
    #[arg(long, env = "LOOPLINE_OIDC_JWKS_REFETCH_SECONDS", default_value_t = 10)]
    pub oidc_jwks_refetch_seconds: u64,
    /// Browser sign-in with the provider: this server's callback URL as registered there, ending in
    /// `/auth/callback` (https, or http on loopback). Without it, OIDC accepts bearer ID tokens only.
    #[arg(long, env = "LOOPLINE_OIDC_REDIRECT_URL")]
    pub oidc_redirect_url: Option<String>,
    /// The client secret, when the provider registered this server as a confidential client (PKCE is used
    /// either way). Prefer the environment variable: arguments show in process lists.
    #[arg(long, env = "LOOPLINE_OIDC_CLIENT_SECRET", hide_env_values = true)]
    pub oidc_client_secret: Option<String>,
    /// Scopes asked for at browser sign-in, space-separated (add the one your provider needs for groups).
    #[arg(long, env = "LOOPLINE_OIDC_SCOPES", default_value = "openid profile email")]
    pub oidc_scopes: String,
    /// Hours a browser session lasts.
    #[arg(long, env = "LOOPLINE_OIDC_SESSION_HOURS", default_value_t = 8)]
    pub oidc_session_hours: u64,
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
            .field("oidc_issuer", &self.oidc_issuer)
            .field("oidc_redirect_url", &self.oidc_redirect_url)
            .field("oidc_client_secret", &self.oidc_client_secret.as_ref().map(|_| "***"))
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
            oidc_issuer: None,
            oidc_audience: None,
            oidc_username_claim: "preferred_username".to_string(),
            oidc_groups_claim: "groups".to_string(),
            oidc_group_roles: Vec::new(),
            oidc_clock_skew_seconds: 60,
            oidc_jwks_refetch_seconds: 10,
            oidc_redirect_url: None,
            oidc_client_secret: None,
            oidc_scopes: "openid profile email".to_string(),
            oidc_session_hours: 8,
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
        if self.has(AuthMode::Oidc) {
            self.oidc_settings()?;
        }
        self.browser_login_settings()?;
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

impl AuthOptions {
    /// The OIDC settings, checked.
    pub fn oidc_settings(&self) -> Result<loopline_access::oidc::OidcSettings, String> {
        let issuer = self
            .oidc_issuer
            .clone()
            .ok_or("--auth oidc needs --oidc-issuer (the provider's issuer URL)")?;
        let audience = self
            .oidc_audience
            .clone()
            .ok_or("--auth oidc needs --oidc-audience (this server's client id at the provider)")?;
        if !https_or_loopback(&issuer) {
            return Err(format!(
                "--oidc-issuer '{issuer}' must be https (http only on loopback)"
            ));
        }
        let group_roles = self
            .oidc_group_roles
            .iter()
            .map(|pair| {
                pair.split_once('=')
                    .map(|(group, role)| (group.trim().to_string(), role.trim().to_string()))
                    .filter(|(group, role)| !group.is_empty() && !role.is_empty())
                    .ok_or_else(|| format!("--oidc-group-role '{pair}' is not GROUP=ROLE"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(loopline_access::oidc::OidcSettings {
            issuer,
            audience,
            username_claim: self.oidc_username_claim.clone(),
            groups_claim: self.oidc_groups_claim.clone(),
            group_roles,
            clock_skew: std::time::Duration::from_secs(self.oidc_clock_skew_seconds),
            refetch_interval: std::time::Duration::from_secs(self.oidc_jwks_refetch_seconds),
        })
    }
}

impl AuthOptions {
    /// Browser sign-in settings (`None` without --oidc-redirect-url), checked.
    pub fn browser_login_settings(
        &self,
    ) -> Result<Option<loopline_http_api::access::browser_login::BrowserLoginSettings>, String> {
        let Some(redirect_url) = self.oidc_redirect_url.clone() else {
            return Ok(None);
        };
        if !self.has(AuthMode::Oidc) {
            return Err("--oidc-redirect-url needs --auth oidc".to_string());
        }
        if !https_or_loopback(&redirect_url) || !redirect_url.trim_end_matches('/').ends_with("/auth/callback") {
            return Err(format!(
                "--oidc-redirect-url '{redirect_url}' must be this server's https URL ending in /auth/callback \
                 (http only on loopback), as registered at the provider"
            ));
        }
        if !self.oidc_scopes.split_whitespace().any(|scope| scope == "openid") {
            return Err("--oidc-scopes must include openid".to_string());
        }
        if self.oidc_session_hours == 0 || self.oidc_session_hours > 24 * 30 {
            return Err("--oidc-session-hours must be between 1 and 720".to_string());
        }
        Ok(Some(loopline_http_api::access::browser_login::BrowserLoginSettings {
            redirect_url,
            client_secret: self.oidc_client_secret.clone().filter(|secret| !secret.is_empty()),
            scopes: self.oidc_scopes.split_whitespace().collect::<Vec<_>>().join(" "),
            session_lifetime: std::time::Duration::from_secs(self.oidc_session_hours * 3600),
        }))
    }
}

/// True for https URLs, and http ones on this machine.
fn https_or_loopback(url: &str) -> bool {
    url.starts_with("https://")
        || url
            .strip_prefix("http://")
            .map(|rest| rest.split(['/', ':']).next().unwrap_or_default())
            .is_some_and(is_loopback)
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
