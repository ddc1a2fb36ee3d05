//! Registry versions for the serving catalog: a version number, an alias or `latest` resolved through a
//! [`ModelRepository`], and the model directory downloaded once into a cache directory that lives as long as
//! the server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use loopline_serving::catalog::FetchedModel;
use loopline_serving::{CatalogError, ModelSource};

use super::{ModelRepository, download};

/// Registry versions downloaded into a private cache directory.
pub struct RegistrySource {
    repository: Arc<dyn ModelRepository>,
    cache: tempfile::TempDir,
    locations: Mutex<HashMap<(String, String), String>>,
}

impl RegistrySource {
    /// Over `repository`, caching downloads in a new temporary directory.
    pub fn new(repository: Arc<dyn ModelRepository>) -> std::io::Result<RegistrySource> {
        let parent = std::env::temp_dir();
        remove_abandoned_caches(&parent);
        Ok(RegistrySource {
            repository,
            cache: tempfile::Builder::new()
                .prefix(&format!("{CACHE_PREFIX}{}-", std::process::id()))
                .tempdir_in(&parent)?,
            locations: Mutex::new(HashMap::new()),
        })
    }

    fn locations(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), String>> {
        self.locations.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Refuses a download whose files differ from those the version was registered with.
    async fn check_sealed_content(
        &self,
        name: &str,
        version: &str,
        directory: &std::path::Path,
    ) -> Result<(), CatalogError> {
        let sealed = self
            .repository
            .version_digest(name, version)
            .await
            .map_err(CatalogError::NotReady)?;
        let copy = directory.to_path_buf();
        let found = tokio::task::spawn_blocking(move || super::content_digest::directory_digest(&copy))
            .await
            .map_err(|e| CatalogError::NotReady(format!("taking the digest of the model stopped: {e}")))?
            .map_err(|e| CatalogError::NotReady(format!("cannot read the downloaded model: {e}")))?;
        let Some(sealed) = sealed else {
            // Registered before its files were there (or before digests existed): the first load takes it.
            self.repository
                .record_version_digest(name, version, &found)
                .await
                .map_err(CatalogError::NotReady)?;
            return Ok(());
        };
        if found != sealed {
            tracing::error!(model = name, version, %sealed, %found, "a registered version's files were changed after registration");
            return Err(CatalogError::NotReady(format!(
                "the files of model '{name}' version {version} changed after it was registered (digest {found}, \
                 registered {sealed}); they are not served: register the new files as a new version"
            )));
        }
        Ok(())
    }
}

/// Cache directories are named `loopline-models-<pid>-<random>`, so that caches left by a server that was
/// killed can be told from those of servers still running.
const CACHE_PREFIX: &str = "loopline-models-";

/// Removes model caches whose server is gone (killed before it could remove its own).
fn remove_abandoned_caches(parent: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(owner) = name
            .strip_prefix(CACHE_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let owner_alive = std::path::Path::new(&format!("/proc/{owner}")).exists();
        if owner_alive || !cfg!(target_os = "linux") {
            continue;
        }
        match std::fs::remove_dir_all(entry.path()) {
            Ok(()) => {
                tracing::info!(directory = %entry.path().display(), "removed the model cache of a stopped server")
            }
            Err(error) => {
                tracing::warn!(directory = %entry.path().display(), %error, "cannot remove an old model cache")
            }
        }
    }
}

/// A URL's version segment as a registry reference: digits are a version, `latest` the newest, anything else
/// an alias.
fn reference(segment: Option<&str>) -> Option<String> {
    match segment {
        None => None,
        Some(s) if s.eq_ignore_ascii_case("latest") => None,
        Some(s) if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) => Some(s.to_string()),
        Some(alias) => Some(format!("@{}", alias.trim_start_matches('@'))),
    }
}

#[async_trait]
impl ModelSource for RegistrySource {
    async fn resolve(&self, name: &str, segment: Option<&str>) -> Result<String, CatalogError> {
        let (version, location) = self
            .repository
            .version_location(name, reference(segment).as_deref())
            .await
            .map_err(CatalogError::NotFound)?;
        self.locations().insert((name.to_string(), version.clone()), location);
        Ok(version)
    }

    async fn fetch(&self, name: &str, version: &str) -> Result<FetchedModel, CatalogError> {
        let key = (name.to_string(), version.to_string());
        let location = self.locations().get(&key).cloned();
        let location = match location {
            Some(location) => location,
            None => {
                self.repository
                    .version_location(name, Some(version))
                    .await
                    .map_err(CatalogError::NotFound)?
                    .1
            }
        };
        let location = super::resolve_storage_location(self.repository.as_ref(), &location)
            .await
            .map_err(CatalogError::NotReady)?;
        // Removed when dropped: on a failed download here, or when the served model is unloaded.
        let directory = tempfile::Builder::new()
            .prefix("model-")
            .tempdir_in(self.cache.path())
            .map_err(|e| CatalogError::NotReady(format!("cannot create a cache directory: {e}")))?;
        download(self.repository.as_ref(), &location, directory.path())
            .await
            .map_err(|e| CatalogError::NotReady(format!("model '{name}' version {version} cannot be fetched: {e}")))?;
        self.check_sealed_content(name, version, directory.path()).await?;
        Ok(FetchedModel {
            directory: directory.path().to_path_buf(),
            cleanup: Some(Box::new(directory)),
        })
    }
}
