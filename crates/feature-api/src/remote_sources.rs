//! Sources on S3: `path: s3://bucket/key.parquet` for a file, `s3://bucket/prefix/` for a directory of files
//! (credentials, region and endpoint from the usual `AWS_*` variables, as for artifacts). The join and
//! materialisation read local files, so a job first brings the sources it reads into a cache directory:
//! every object is streamed to a temporary file, its length checked against the listing, and renamed into
//! place; an object is fetched again only when its size or time in the listing changed, and files no longer
//! listed are removed. The definitions the job then uses point at the local copies.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use loopline_artifact_store::{ArtifactError, ArtifactPath, ArtifactStore, ObjectArtifactStore};
use loopline_features::Definitions;
use tokio::io::AsyncWriteExt;

/// The most objects one remote source may hold.
pub const MAX_OBJECTS: usize = 100_000;

/// Whether a source path is a remote URI.
pub fn is_remote(path: &Path) -> bool {
    path.to_str().is_some_and(|p| p.starts_with("s3://"))
}

/// One object of a remote source.
struct Object {
    /// Its key below the source's key ("" for a source that is one file).
    relative: String,
    size: u64,
    modified_ms: Option<i64>,
}

/// Brings the remote sources among `names` (every source when `None`) into `cache`, and gives definitions with
/// those sources at their local copies. Sources on local disk are left as they are.
pub async fn localize(
    definitions: &Definitions,
    names: Option<&[String]>,
    cache: &Path,
) -> Result<Definitions, String> {
    let mut local = definitions.clone();
    for source in local.sources.values_mut() {
        if !is_remote(&source.path) || names.is_some_and(|n| !n.contains(&source.name)) {
            continue;
        }
        let uri = source.path.display().to_string();
        let copy = fetch(&uri, cache)
            .await
            .map_err(|e| format!("source `{}` ({uri}): {e}", source.name))?;
        source.path = copy;
    }
    Ok(local)
}

/// Copies one remote file or prefix into `cache`, returning the local file or directory.
pub async fn fetch(uri: &str, cache: &Path) -> Result<PathBuf, String> {
    let rest = uri
        .strip_prefix("s3://")
        .ok_or("only s3:// sources are read remotely")?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() || key.trim_matches('/').is_empty() {
        return Err("name a bucket and a key: s3://bucket/path/file.parquet or s3://bucket/prefix/".to_string());
    }
    let key = ArtifactPath::parse(key.trim_matches('/')).map_err(|e| e.to_string())?;
    let store = ObjectArtifactStore::open(&format!("s3://{bucket}")).map_err(|e| e.to_string())?;
    let objects = list(&store, &key).await?;
    let local = cache.join(bucket).join(key.segments().join("/"));
    let single = objects.len() == 1 && objects[0].relative.is_empty();
    let wanted: BTreeSet<PathBuf> = objects
        .iter()
        .map(|o| if single { local.clone() } else { local.join(&o.relative) })
        .collect();
    if !single {
        remove_unlisted(&local, &wanted);
    }
    for object in &objects {
        let target = if single {
            local.clone()
        } else {
            local.join(&object.relative)
        };
        let stamp = format!("{}:{}", object.size, object.modified_ms.unwrap_or(0));
        let stamp_path = stamp_of(&target);
        let current = std::fs::metadata(&target).is_ok_and(|m| m.len() == object.size)
            && std::fs::read_to_string(&stamp_path).is_ok_and(|s| s == stamp);
        if current {
            continue;
        }
        let path = if object.relative.is_empty() {
            key.clone()
        } else {
            key.join(&ArtifactPath::parse(&object.relative).map_err(|e| e.to_string())?)
        };
        download(&store, &path, object.size, &target).await?;
        std::fs::write(&stamp_path, stamp).map_err(|e| format!("{}: {e}", stamp_path.display()))?;
    }
    Ok(local)
}

/// The hidden file beside a copy that records which listing it was fetched at.
fn stamp_of(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}.fetched"))
}

/// The objects at `key`: the file itself, or every file below the prefix.
async fn list(store: &ObjectArtifactStore, key: &ArtifactPath) -> Result<Vec<Object>, String> {
    let mut objects = Vec::new();
    let mut pending = vec![String::new()];
    while let Some(prefix) = pending.pop() {
        let at = if prefix.is_empty() {
            key.clone()
        } else {
            key.join(&ArtifactPath::parse(&prefix).map_err(|e| e.to_string())?)
        };
        for entry in store.list(&at).await.map_err(|e| e.to_string())? {
            let relative = if prefix.is_empty() {
                entry.name.clone()
            } else {
                format!("{prefix}/{}", entry.name)
            };
            if entry.is_dir {
                pending.push(relative);
            } else {
                objects.push(Object {
                    relative,
                    size: entry.size.unwrap_or(0),
                    modified_ms: entry.modified_ms,
                });
            }
            if objects.len() + pending.len() > MAX_OBJECTS {
                return Err(format!("more than {MAX_OBJECTS} objects; partition the source"));
            }
        }
    }
    if objects.is_empty() {
        // Not a prefix: the key is one file (whose time the listing of its prefix gives), or nothing.
        let size = store.size(key).await.map_err(|e| match e {
            ArtifactError::NotFound(_) => "no such object or prefix".to_string(),
            other => other.to_string(),
        })?;
        let segments = key.segments();
        let parent = ArtifactPath::parse(&segments[..segments.len() - 1].join("/"));
        let listed = match parent {
            Ok(parent) => store.list(&parent).await.unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        let modified_ms = listed
            .iter()
            .find(|e| !e.is_dir && Some(&e.name) == segments.last())
            .and_then(|e| e.modified_ms);
        objects.push(Object {
            relative: String::new(),
            size,
            modified_ms,
        });
    }
    objects.sort_by(|a, b| a.relative.cmp(&b.relative));
    Ok(objects)
}

/// Streams one object to `target` through a temporary file renamed into place once its length is right.
async fn download(store: &ObjectArtifactStore, path: &ArtifactPath, size: u64, target: &Path) -> Result<(), String> {
    let parent = target.parent().ok_or("the cache path has no directory")?;
    tokio::fs::create_dir_all(parent)
        .await
        .map_err(|e| format!("{}: {e}", parent.display()))?;
    let download = store.get(path).await.map_err(|e| e.to_string())?;
    if download.size != size {
        return Err(format!(
            "{} changed while it was listed ({size} bytes, now {}); run again",
            path.as_string(),
            download.size
        ));
    }
    let partial = parent.join(format!(".partial-{}", uuid::Uuid::new_v4().simple()));
    let written = async {
        let mut file = tokio::fs::File::create(&partial).await?;
        let mut body = download.body;
        let mut total = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            total += chunk.len() as u64;
            if total > size {
                break;
            }
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        Ok::<u64, std::io::Error>(total)
    }
    .await;
    match written {
        Ok(total) if total == size => tokio::fs::rename(&partial, target)
            .await
            .map_err(|e| format!("{}: {e}", target.display())),
        Ok(total) => {
            let _ = tokio::fs::remove_file(&partial).await;
            Err(format!(
                "{} gave {total} bytes where {size} were listed",
                path.as_string()
            ))
        }
        Err(error) => {
            let _ = tokio::fs::remove_file(&partial).await;
            Err(format!("downloading {}: {error}", path.as_string()))
        }
    }
}

/// Removes files of an earlier copy of a prefix that the listing no longer has (with their stamps).
fn remove_unlisted(root: &Path, wanted: &BTreeSet<PathBuf>) {
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().to_string();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pending.push(path);
            } else if name.starts_with(".partial-") {
                continue;
            } else if let Some(data) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".fetched")) {
                if !wanted.contains(&path.with_file_name(data)) {
                    let _ = std::fs::remove_file(&path);
                }
            } else if !wanted.contains(&path) {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}
