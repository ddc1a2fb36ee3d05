//! The digest of a model's files: taken when a version is registered (kept with the version, apart from its
//! tags) and taken again of every download before it is loaded, so files replaced
//! through the artifact proxy after registration are refused instead of served.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use super::{ModelRepository, download, resolve_storage_location};

/// `sha256:<hex>` over every file below `directory`: its path, size and own SHA-256, in path order.
pub fn directory_digest(directory: &Path) -> std::io::Result<String> {
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    let mut pending = vec![directory.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                pending.push(path);
                continue;
            }
            let relative = path
                .strip_prefix(directory)
                .map(|relative| relative.to_string_lossy().replace('\\', "/"))
                .unwrap_or_default();
            files.push((relative, path));
        }
    }
    files.sort();
    let mut whole = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    for (relative, path) in files {
        let mut file = std::fs::File::open(&path)?;
        let mut single = Sha256::new();
        let mut size = 0u64;
        loop {
            let read = file.read(&mut buffer)?;
            if read == 0 {
                break;
            }
            size += read as u64;
            single.update(&buffer[..read]);
        }
        whole.update(format!("{relative}\0{size}\0{:x}\n", single.finalize()).as_bytes());
    }
    Ok(format!("sha256:{:x}", whole.finalize()))
}

/// Digests of new versions' files, read through this server's own artifact store.
pub struct RegistrySealer {
    repository: Arc<dyn ModelRepository>,
}

impl RegistrySealer {
    /// Over `repository`.
    pub fn new(repository: Arc<dyn ModelRepository>) -> RegistrySealer {
        RegistrySealer { repository }
    }

    async fn read_digest(&self, location: &str) -> Result<String, String> {
        let copy = tempfile::Builder::new()
            .prefix("loopline-seal-")
            .tempdir()
            .map_err(|e| format!("cannot create a directory to read the model into: {e}"))?;
        download(self.repository.as_ref(), location, copy.path()).await?;
        let directory = copy.path().to_path_buf();
        tokio::task::spawn_blocking(move || directory_digest(&directory))
            .await
            .map_err(|e| format!("taking the digest stopped: {e}"))?
            .map_err(|e| format!("cannot read the downloaded model: {e}"))
    }
}

#[async_trait]
impl loopline_model_registry::ContentSealer for RegistrySealer {
    async fn digest(&self, storage_location: &str) -> Result<Option<loopline_model_registry::Sealed>, String> {
        let location = resolve_storage_location(self.repository.as_ref(), storage_location).await?;
        // Storage this server does not read (an external bucket) is not sealed.
        if !location.starts_with("mlflow-artifacts:") {
            return Ok(None);
        }
        let artifact_path = super::artifact_path(&location)?;
        // The place is protected from now on even when nothing is there yet; the digest then waits for the
        // first load.
        let digest = match self.read_digest(&location).await {
            Ok(digest) => Some(digest),
            Err(reason) => {
                tracing::info!(%location, %reason, "no model to take a digest of yet; the first load will take it");
                None
            }
        };
        Ok(Some(loopline_model_registry::Sealed { digest, artifact_path }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_follows_names_and_contents() {
        let directory = tempfile::tempdir().unwrap();
        std::fs::create_dir(directory.path().join("data")).unwrap();
        std::fs::write(directory.path().join("MLmodel"), "flavors: {}").unwrap();
        std::fs::write(directory.path().join("data/model.json"), "{}").unwrap();
        let first = directory_digest(directory.path()).unwrap();
        assert!(first.starts_with("sha256:") && first.len() == 7 + 64);
        assert_eq!(directory_digest(directory.path()).unwrap(), first);
        std::fs::write(directory.path().join("data/model.json"), "{ }").unwrap();
        let changed = directory_digest(directory.path()).unwrap();
        assert_ne!(changed, first);
        std::fs::rename(
            directory.path().join("data/model.json"),
            directory.path().join("data/other.json"),
        )
        .unwrap();
        assert_ne!(directory_digest(directory.path()).unwrap(), changed);
    }
}
