//! Server configuration: defaults < environment (`LOOPLINE_*`) < command line, with MLflow's flag names.

use clap::Args;
use std::path::PathBuf;

/// Settings of `loopline server`.
#[derive(Debug, Clone, Args)]
pub struct ServerConfig {
    /// Address to listen on.
    #[arg(long, env = "LOOPLINE_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "LOOPLINE_PORT", default_value_t = 5000)]
    pub port: u16,
    /// Metadata database: `sqlite:///relative.db`, `sqlite:////absolute.db` or `postgresql://user:pass@host/db`.
    /// Defaults to a SQLite file in the data directory.
    #[arg(long, env = "LOOPLINE_BACKEND_STORE_URI", default_value = "")]
    pub backend_store_uri: String,
    /// Where artifacts are stored: a local directory or `s3://bucket/prefix`. Defaults to `artifacts/` in
    /// the data directory.
    #[arg(long, env = "LOOPLINE_ARTIFACTS_DESTINATION", default_value = "")]
    pub artifacts_destination: String,
    /// Directory for the embedded defaults.
    #[arg(long, env = "LOOPLINE_DATA_DIR", default_value = "loopline-data")]
    pub data_dir: PathBuf,
}

impl ServerConfig {
    /// Fills the storage defaults from the data directory.
    pub fn with_defaults(mut self) -> Self {
        if self.backend_store_uri.is_empty() {
            let database = self.data_dir.join("loopline.db");
            let absolute = std::path::absolute(&database).unwrap_or(database);
            // An absolute path after `sqlite:///` gives MLflow's four-slash absolute form.
            self.backend_store_uri = format!("sqlite:///{}", absolute.display());
        }
        if self.artifacts_destination.is_empty() {
            self.artifacts_destination = self.data_dir.join("artifacts").display().to_string();
        }
        self
    }
}

/// Hides the password of a database URL for logs and errors.
pub fn redact_uri(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_string();
    };
    let Some((credentials, host)) = rest.rsplit_once('@') else {
        return uri.to_string();
    };
    let user = credentials.split(':').next().unwrap_or_default();
    format!("{scheme}://{user}:***@{host}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_uri("postgresql://me:secret@db:5432/x"),
            "postgresql://me:***@db:5432/x"
        );
        assert_eq!(redact_uri("sqlite:///x.db"), "sqlite:///x.db");
    }
}
