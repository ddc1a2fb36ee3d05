//! Pipelines on the server: the loop's hooks talk to this server's own API (its address is known once it
//! listens), and the server's lasting identity lets a restart find the runs it left behind.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use loopline_pipelines::data::Project;
use loopline_pipelines::pipeline::LoopHooks;
use loopline_pipelines::pipeline::service::HooksFactory;

use crate::commands::loop_hooks::ServerHooks;

/// Hooks for the server's pipelines, through its own HTTP API.
#[derive(Default)]
pub struct OwnApi {
    base: OnceLock<String>,
    credentials: OnceLock<crate::commands::credentials::ClientCredentials>,
}

impl OwnApi {
    /// The credentials pipelines present (the server's service account, with auth on).
    pub fn set_credentials(&self, credentials: crate::commands::credentials::ClientCredentials) {
        let _ = self.credentials.set(credentials);
    }

    /// Records where the server listens (a wildcard address is reached through loopback).
    pub fn set_address(&self, address: std::net::SocketAddr) {
        let host = if address.ip().is_unspecified() {
            if address.is_ipv4() {
                "127.0.0.1".to_string()
            } else {
                "[::1]".to_string()
            }
        } else if address.is_ipv6() {
            format!("[{}]", address.ip())
        } else {
            address.ip().to_string()
        };
        let _ = self.base.set(format!("http://{host}:{}", address.port()));
    }
}

impl HooksFactory for OwnApi {
    fn hooks(&self, project: Arc<Project>) -> Result<Arc<dyn LoopHooks>, String> {
        let base = self.base.get().ok_or("the server is not listening yet")?;
        let credentials = self.credentials.get().cloned().unwrap_or_default();
        Ok(Arc::new(ServerHooks::with_credentials(base, project, &credentials)?))
    }
}

/// This server's identity, kept in its data directory so a restart on the same directory is the same
/// replica (and fails the runs it was running) while other replicas have their own.
pub fn replica_id(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("replica-id");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let id = text.trim();
        if !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Ok(id.to_string());
        }
    }
    std::fs::create_dir_all(data_dir)?;
    let id = format!("{}-{}", hostname(), &uuid::Uuid::new_v4().simple().to_string()[..12]);
    loopline_pipelines::data::write_atomically(&path, id.as_bytes()).map_err(anyhow::Error::msg)?;
    Ok(id)
}

fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(40)
        .collect();
    if name.is_empty() { "loopline".to_string() } else { name }
}
