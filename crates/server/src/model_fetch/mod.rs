//! Model URIs as the mlflow CLI takes them — a local directory, `file://`, `models:/name/version`,
//! `models:/name@alias`, `models:/name/Stage`, `models:/name/latest`, `models:/m-<id>` and
//! `runs:/<run-id>/<path>` — resolved to an artifact location through a registry (this server's own, or a
//! tracking server at `MLFLOW_TRACKING_URI`) and downloaded into a local directory.

pub mod content_digest;
pub mod local;
pub mod remote;
pub mod source;

use std::path::{Path, PathBuf};

use async_trait::async_trait;

/// What a model URI names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelUri {
    /// A model directory on this machine.
    Local(PathBuf),
    /// A registered model version: `reference` is a version number, an alias (`@name`), a stage, `latest`,
    /// or `None` for the newest version.
    Registered {
        /// Registered model name.
        name: String,
        /// Which version.
        reference: Option<String>,
    },
    /// A logged model by id (`models:/m-...`).
    Logged(String),
    /// A path in a run's artifacts (or a logged model of that run with that name).
    Run {
        /// Run id.
        run_id: String,
        /// Path inside the run.
        path: String,
    },
}

impl ModelUri {
    /// Parses a URI, refusing schemes that name storage directly.
    pub fn parse(uri: &str) -> Result<ModelUri, String> {
        if let Some(rest) = uri.strip_prefix("models:/") {
            let rest = rest.trim_matches('/');
            if rest.starts_with("m-") && !rest.contains('/') && !rest.contains('@') {
                return Ok(ModelUri::Logged(rest.to_string()));
            }
            if let Some((name, alias)) = rest.split_once('@') {
                if name.is_empty() || alias.is_empty() {
                    return Err(format!("{uri}: write models:/<name>@<alias>"));
                }
                return Ok(ModelUri::Registered {
                    name: name.to_string(),
                    reference: Some(format!("@{alias}")),
                });
            }
            return match rest.rsplit_once('/') {
                Some((name, reference)) if !name.is_empty() && !reference.is_empty() => Ok(ModelUri::Registered {
                    name: name.to_string(),
                    reference: Some(reference.to_string()),
                }),
                _ => Err(format!(
                    "{uri}: write models:/<name>/<version>, models:/<name>@<alias> or models:/<name>/latest"
                )),
            };
        }
        if let Some(rest) = uri.strip_prefix("runs:/") {
            return match rest.trim_start_matches('/').split_once('/') {
                Some((run_id, path)) if !run_id.is_empty() && !path.trim_matches('/').is_empty() => Ok(ModelUri::Run {
                    run_id: run_id.to_string(),
                    path: path.trim_matches('/').to_string(),
                }),
                _ => Err(format!("{uri}: write runs:/<run-id>/<path to the model>")),
            };
        }
        if let Some(scheme) = [
            "mlflow-artifacts:",
            "s3://",
            "gs://",
            "wasbs://",
            "abfss://",
            "http://",
            "https://",
        ]
        .iter()
        .find(|s| uri.starts_with(**s))
        {
            return Err(format!(
                "{uri}: {scheme} locations are not read directly; use models:/ or runs:/ URIs with MLFLOW_TRACKING_URI \
                 set, or download the model directory and pass its path"
            ));
        }
        let path = PathBuf::from(uri.strip_prefix("file://").unwrap_or(uri));
        if !path.join("MLmodel").is_file() {
            return Err(format!(
                "{} is not an MLflow model directory (it has no MLmodel file)",
                path.display()
            ));
        }
        Ok(ModelUri::Local(path))
    }
}

/// An entry of an artifact directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its name inside the listed directory.
    pub name: String,
    /// True for a directory.
    pub is_dir: bool,
}

/// A registry and the artifact store behind it.
#[async_trait]
pub trait ModelRepository: Send + Sync {
    /// The version number `reference` names (see [`ModelUri::Registered`]) and its artifact location.
    async fn version_location(&self, name: &str, reference: Option<&str>) -> Result<(String, String), String>;
    /// A logged model's artifact location.
    async fn logged_model_location(&self, model_id: &str) -> Result<String, String>;
    /// A run's artifact location and experiment.
    async fn run_location(&self, run_id: &str) -> Result<(String, String), String>;
    /// The artifact location of the run's logged model called `name`, if there is one.
    async fn run_model_location(&self, run_id: &str, experiment_id: &str, name: &str)
    -> Result<Option<String>, String>;
    /// Lists an artifact directory (path below the artifact root).
    async fn list(&self, path: &str) -> Result<Vec<Entry>, String>;
    /// Reads an artifact file.
    async fn read(&self, path: &str) -> Result<Vec<u8>, String>;
    /// The digest of a registered version's files taken at registration (`version` is a number), when this
    /// registry records one.
    async fn version_digest(&self, _name: &str, _version: &str) -> Result<Option<String>, String> {
        Ok(None)
    }
    /// Records the digest taken at a version's first load, when it had none.
    async fn record_version_digest(&self, _name: &str, _version: &str, _digest: &str) -> Result<(), String> {
        Ok(())
    }
}

/// The logged-model search filter for a run's models.
fn runs_models_filter(run_id: &str) -> String {
    format!("source_run_id = '{}'", run_id.replace('\'', ""))
}

/// The artifact path below the root for an `mlflow-artifacts:` location.
fn artifact_path(location: &str) -> Result<String, String> {
    let rest = location.strip_prefix("mlflow-artifacts:").ok_or_else(|| {
        format!("the model is stored at {location}, which this server cannot read; only proxied (mlflow-artifacts:) storage is supported")
    })?;
    // `mlflow-artifacts://host:port/path` carries an authority; `mlflow-artifacts:/path` does not.
    let path = match rest.strip_prefix("//") {
        Some(with_authority) => with_authority.split_once('/').map(|(_, p)| p).unwrap_or_default(),
        None => rest,
    };
    Ok(path.trim_matches('/').to_string())
}

/// The version label and artifact location of a registry-backed URI.
pub async fn locate(repository: &dyn ModelRepository, uri: &ModelUri) -> Result<(String, String), String> {
    let (label, location) = match uri {
        ModelUri::Local(path) => return Ok(("local".to_string(), path.display().to_string())),
        ModelUri::Registered { name, reference } => repository.version_location(name, reference.as_deref()).await?,
        ModelUri::Logged(id) => (id.clone(), repository.logged_model_location(id).await?),
        ModelUri::Run { run_id, path } => (run_id.clone(), run_location(repository, run_id, path).await?),
    };
    // A version's location may itself be a models:/ or runs:/ URI (its source).
    let location = match ModelUri::parse(&location) {
        Ok(ModelUri::Logged(id)) => repository.logged_model_location(&id).await?,
        Ok(ModelUri::Run { run_id, path }) => run_location(repository, &run_id, &path).await?,
        _ => location,
    };
    Ok((label, location))
}

/// The artifact location a version's stored location names: `models:/m-...` and `runs:/...` sources are
/// resolved to where their files are; anything else is already a location.
pub async fn resolve_storage_location(repository: &dyn ModelRepository, location: &str) -> Result<String, String> {
    match ModelUri::parse(location) {
        Ok(uri @ (ModelUri::Logged(_) | ModelUri::Run { .. })) => Ok(locate(repository, &uri).await?.1),
        _ => Ok(location.to_string()),
    }
}

async fn run_location(repository: &dyn ModelRepository, run_id: &str, path: &str) -> Result<String, String> {
    let (root, experiment) = repository.run_location(run_id).await?;
    let candidate = format!("{}/{path}", root.trim_end_matches('/'));
    let listing = repository.list(&artifact_path(&candidate)?).await?;
    if listing.iter().any(|e| e.name == "MLmodel" && !e.is_dir) {
        return Ok(candidate);
    }
    repository
        .run_model_location(run_id, &experiment, path)
        .await?
        .ok_or_else(|| {
            format!(
                "run {run_id} has no model at '{path}' (no MLmodel in its artifacts and no logged model of that name)"
            )
        })
}

/// Downloads the model at `location` into `into` (created), refusing entries that would leave it.
pub async fn download(repository: &dyn ModelRepository, location: &str, into: &Path) -> Result<(), String> {
    let root = artifact_path(location)?;
    let mut pending = vec![String::new()];
    let mut files = 0usize;
    while let Some(relative) = pending.pop() {
        let listed = if relative.is_empty() {
            root.clone()
        } else {
            format!("{root}/{relative}")
        };
        for entry in repository.list(&listed).await? {
            let name = entry.name.rsplit('/').next().unwrap_or_default();
            if name.is_empty() || name == "." || name == ".." || name.contains('\\') {
                return Err(format!(
                    "the artifact listing of {location} holds an unusable name {:?}",
                    entry.name
                ));
            }
            let child = if relative.is_empty() {
                name.to_string()
            } else {
                format!("{relative}/{name}")
            };
            if entry.is_dir {
                pending.push(child);
                continue;
            }
            let bytes = repository.read(&format!("{root}/{child}")).await?;
            let target = loopline_model_runtime_api::descriptor::inside(into, &child).map_err(|e| e.to_string())?;
            if let Some(parent) = target.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
            }
            tokio::fs::write(&target, bytes)
                .await
                .map_err(|e| format!("cannot write {}: {e}", target.display()))?;
            files += 1;
        }
    }
    if files == 0 || !into.join("MLmodel").is_file() {
        return Err(format!("{location} holds no MLflow model (no MLmodel file)"));
    }
    Ok(())
}

/// A model ready on local disk for a CLI command.
pub struct FetchedModel {
    /// Its directory.
    pub directory: PathBuf,
    /// The name to serve it under: the registered name, or the directory's name.
    pub name: String,
    /// Its version (a number for registered models, else a label such as `local` or the run id).
    pub version: String,
    /// Keeps a downloaded copy alive.
    _download: Option<tempfile::TempDir>,
}

/// Resolves a model URI for a CLI command: local directories as they are; registry URIs through the tracking
/// server in `MLFLOW_TRACKING_URI`, downloaded into a temporary directory.
pub async fn fetch_for_cli(uri: &str) -> Result<FetchedModel, String> {
    let parsed = ModelUri::parse(uri)?;
    if let ModelUri::Local(directory) = &parsed {
        let canonical = directory
            .canonicalize()
            .map_err(|e| format!("{}: {e}", directory.display()))?;
        let name = canonical
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".to_string());
        return Ok(FetchedModel {
            directory: canonical,
            name,
            version: "1".to_string(),
            _download: None,
        });
    }
    let tracking = std::env::var("MLFLOW_TRACKING_URI").map_err(|_| {
        format!("{uri}: set MLFLOW_TRACKING_URI to the tracking server that holds the model (for example http://127.0.0.1:5000)")
    })?;
    let repository = remote::RemoteRepository::new(&tracking)?;
    let (version, location) = locate(&repository, &parsed).await?;
    let temporary = tempfile::Builder::new()
        .prefix("loopline-model-")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    download(&repository, &location, temporary.path()).await?;
    let name = match &parsed {
        ModelUri::Registered { name, .. } => name.clone(),
        ModelUri::Logged(id) => id.clone(),
        ModelUri::Run { path, .. } => path.rsplit('/').next().unwrap_or("model").to_string(),
        ModelUri::Local(_) => unreachable!("handled above"),
    };
    Ok(FetchedModel {
        directory: temporary.path().to_path_buf(),
        name,
        version,
        _download: Some(temporary),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_parse_as_the_mlflow_cli_takes_them() {
        let registered = |name: &str, reference: &str| ModelUri::Registered {
            name: name.to_string(),
            reference: Some(reference.to_string()),
        };
        assert_eq!(ModelUri::parse("models:/iris/3").unwrap(), registered("iris", "3"));
        assert_eq!(
            ModelUri::parse("models:/iris@champion").unwrap(),
            registered("iris", "@champion")
        );
        assert_eq!(
            ModelUri::parse("models:/iris/Production").unwrap(),
            registered("iris", "Production")
        );
        assert_eq!(
            ModelUri::parse("models:/m-abc").unwrap(),
            ModelUri::Logged("m-abc".to_string())
        );
        assert_eq!(
            ModelUri::parse("runs:/r1/model").unwrap(),
            ModelUri::Run {
                run_id: "r1".to_string(),
                path: "model".to_string()
            }
        );
        assert!(ModelUri::parse("models:/iris").is_err());
        assert!(ModelUri::parse("runs:/r1").is_err());
        assert!(
            ModelUri::parse("s3://bucket/model")
                .unwrap_err()
                .contains("not read directly")
        );
        assert!(ModelUri::parse("/nonexistent/dir").unwrap_err().contains("no MLmodel"));
    }

    #[test]
    fn only_proxied_locations_are_read() {
        assert_eq!(
            artifact_path("mlflow-artifacts:/1/models/m-1/artifacts").unwrap(),
            "1/models/m-1/artifacts"
        );
        assert_eq!(artifact_path("mlflow-artifacts://host:5000/1/a").unwrap(), "1/a");
        assert!(artifact_path("s3://bucket/x").is_err());
    }
}
