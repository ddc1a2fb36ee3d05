//! Definitions and sources on S3 for the `loopline features` commands that read sources themselves
//! (`check`, `historical`): a registry given as `s3://bucket/repo/registry.db` is fetched and read, and the
//! sources on S3 are copied into a scratch directory beside the output, removed when the command ends (or is
//! interrupted; a killed run's copy is swept by the next one).

use std::path::Path;

use loopline_feature_api::remote_sources::{fetch_file, is_remote, localize};
use loopline_features::Definitions;

use super::rollout::runtime_block;

const SCRATCH_KIND: &str = ".loopline-sources";
/// The largest registry file read.
const MAX_REGISTRY_BYTES: u64 = 256 << 20;

/// Sources copied for one command; the copies go when it is dropped.
pub struct LocalSources {
    /// The definitions with every source on local disk.
    pub definitions: Definitions,
    scratch: Option<tempfile::TempDir>,
}

impl Drop for LocalSources {
    fn drop(&mut self) {
        if let Some(dir) = self.scratch.take() {
            loopline_features::scratch::untrack(dir.path());
        }
    }
}

/// Reads definitions from a file, a Feast repository, or a Feast registry on S3.
pub fn read_definitions(location: &Path) -> Result<Definitions, String> {
    if !is_remote(location) {
        return Definitions::from_file(location).map_err(|e| e.to_string());
    }
    remote_registry(location).map(|(_, definitions)| definitions)
}

/// A Feast registry on S3: its bytes and the definitions they hold (every source absolute or on S3).
pub fn remote_registry(location: &Path) -> Result<(Vec<u8>, Definitions), String> {
    let uri = location.display().to_string();
    let scratch = tempfile::tempdir().map_err(|e| format!("creating a temporary directory: {e}"))?;
    let local = runtime_block(fetch_file(&uri, scratch.path(), MAX_REGISTRY_BYTES))
        .map_err(|e| format!("{uri}: {e}; name the registry file itself (s3://bucket/repo/data/registry.db)"))?;
    let bytes =
        loopline_features::definitions::read_bounded(&local, MAX_REGISTRY_BYTES).map_err(|e| format!("{uri}: {e}"))?;
    let definitions = loopline_features::feast_registry::from_bytes(&bytes, None, scratch.path())
        .map_err(|e| format!("{uri}: {e}"))?;
    // A relative source path is the repository's, which a registry on S3 does not have.
    if let Some(source) = definitions
        .sources
        .values()
        .find(|s| s.path.starts_with(scratch.path()))
    {
        return Err(format!(
            "{uri}: source `{}` has a relative path, which a registry on S3 cannot resolve; give it an absolute \
             path or an s3:// URI",
            source.name
        ));
    }
    Ok((bytes, definitions))
}

/// Copies the sources on S3 into a scratch directory in `near` (nothing when every source is local).
pub fn local_sources(definitions: Definitions, near: &Path) -> Result<LocalSources, String> {
    if !definitions.sources.values().any(|s| is_remote(&s.path)) {
        return Ok(LocalSources {
            definitions,
            scratch: None,
        });
    }
    loopline_features::scratch::sweep(near, SCRATCH_KIND);
    let scratch = tempfile::Builder::new()
        .prefix(&loopline_features::scratch::prefix(SCRATCH_KIND))
        .tempdir_in(near)
        .map_err(|e| {
            format!(
                "creating a directory for the sources' copies in {}: {e}",
                near.display()
            )
        })?;
    loopline_features::scratch::track(scratch.path());
    println!("copying the sources on S3 into {}", scratch.path().display());
    let definitions = runtime_block(localize(&definitions, None, scratch.path()))?;
    Ok(LocalSources {
        definitions,
        scratch: Some(scratch),
    })
}
