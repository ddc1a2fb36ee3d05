//! Credentials the CLI (and the server's own pipeline hooks) present to a Loopline server, read as the mlflow
//! client reads them: MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (HTTP Basic, which wins when both
//! kinds are set), else MLFLOW_TRACKING_TOKEN or LOOPLINE_TOKEN (Bearer).

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};

/// What to send.
#[derive(Clone, Default)]
pub enum ClientCredentials {
    /// Nothing (a server without auth).
    #[default]
    None,
    /// User name and password.
    Basic(String, String),
    /// A bearer token.
    Bearer(String),
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            ClientCredentials::None => "None",
            ClientCredentials::Basic(..) => "Basic(***)",
            ClientCredentials::Bearer(_) => "Bearer(***)",
        })
    }
}

impl ClientCredentials {
    /// From the environment.
    pub fn from_env() -> ClientCredentials {
        let variable = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        match (
            variable("MLFLOW_TRACKING_USERNAME"),
            variable("MLFLOW_TRACKING_PASSWORD"),
        ) {
            (Some(username), Some(password)) => ClientCredentials::Basic(username, password),
            _ => match variable("MLFLOW_TRACKING_TOKEN").or_else(|| variable("LOOPLINE_TOKEN")) {
                Some(token) => ClientCredentials::Bearer(token),
                None => ClientCredentials::None,
            },
        }
    }

    /// The Authorization header, when there is one.
    pub fn headers(&self) -> HeaderMap {
        use base64::Engine;
        let mut headers = HeaderMap::new();
        let value = match self {
            ClientCredentials::None => return headers,
            ClientCredentials::Basic(username, password) => format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            ),
            ClientCredentials::Bearer(token) => format!("Bearer {token}"),
        };
        if let Ok(mut value) = HeaderValue::from_str(&value) {
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        headers
    }

    /// The environment a child process (a pipeline's train step) needs to present the same credentials with
    /// the stock mlflow client.
    pub fn environment(&self) -> Vec<(String, String)> {
        match self {
            ClientCredentials::None => Vec::new(),
            ClientCredentials::Basic(username, password) => vec![
                ("MLFLOW_TRACKING_USERNAME".to_string(), username.clone()),
                ("MLFLOW_TRACKING_PASSWORD".to_string(), password.clone()),
            ],
            ClientCredentials::Bearer(token) => vec![("MLFLOW_TRACKING_TOKEN".to_string(), token.clone())],
        }
    }
}
