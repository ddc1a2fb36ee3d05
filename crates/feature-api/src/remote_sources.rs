//! Sources on S3: `path: s3://bucket/key.parquet` for a file, `s3://bucket/prefix/` for a directory of files
//! (credentials, region and endpoint from the usual `AWS_*` variables, as for artifacts). The join and
//! materialisation read local files, so a job first brings the sources it reads into a cache directory.
//!
//! - Keys are used exactly as S3 lists them (any characters S3 allows).
//! - Every object is streamed to a temporary file, its length checked against the listing, and renamed into
//!   place; a temporary file left by a killed process is removed by the next fetch.
//! - An object is fetched again only when its listing (size, ETag, time) changed; the listings of the copies
//!   are kept apart from the data (`.fetched/`), so the copy of a prefix holds exactly its objects.
//! - Files no longer listed are removed, and a key that turned from a file into a prefix (or back) is
//!   replaced.
//!
//! The definitions a job then uses point at the local copies.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use loopline_features::Definitions;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use tokio::io::AsyncWriteExt;

/// The most objects one remote source may hold.
pub const MAX_OBJECTS: usize = 100_000;

/// Whether a source path is a remote URI.
pub fn is_remote(path: &Path) -> bool {
    path.to_str().is_some_and(|p| p.starts_with("s3://"))
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
        let copy = fetch(&uri, cache, None)
            .await
            .map_err(|e| format!("source `{}` ({uri}): {e}", source.name))?;
        source.path = copy;
    }
    Ok(local)
}

/// One object, refused before anything is fetched when it is a prefix or larger than `limit` bytes.
pub async fn fetch_file(uri: &str, cache: &Path, limit: u64) -> Result<PathBuf, String> {
    fetch(uri, cache, Some(limit)).await
}

/// The bucket and key of an `s3://` URI.
fn split(uri: &str) -> Result<(&str, ObjectPath), String> {
    let rest = uri
        .strip_prefix("s3://")
        .ok_or("only s3:// sources are read remotely")?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if key.trim_matches('/').is_empty() {
        return Err("name a bucket and a key: s3://bucket/path/file.parquet or s3://bucket/prefix/".to_string());
    }
    let key = ObjectPath::parse(key).map_err(|e| format!("the key: {e}"))?;
    Ok((bucket, key))
}

/// Copies one remote file or prefix into `cache` (a prefix refused when `single` limits the size), returning
/// the local file or directory.
async fn fetch(uri: &str, cache: &Path, single: Option<u64>) -> Result<PathBuf, String> {
    let (bucket, key) = split(uri)?;
    let store = loopline_artifact_store::s3_bucket(bucket)?;
    let below: Vec<ObjectMeta> = store
        .list(Some(&key))
        .take(MAX_OBJECTS + 1)
        .try_collect()
        .await
        .map_err(|e| e.to_string())?;
    if below.len() > MAX_OBJECTS {
        return Err(format!("more than {MAX_OBJECTS} objects; partition the source"));
    }
    let prefix = !below.is_empty();
    let objects = if prefix {
        below
    } else {
        vec![store.head(&key).await.map_err(|e| match e {
            object_store::Error::NotFound { .. } => "no such object or prefix".to_string(),
            other => other.to_string(),
        })?]
    };
    if let Some(limit) = single {
        if prefix {
            return Err("it is a prefix; name one object".to_string());
        }
        if objects[0].size > limit {
            return Err(format!("it is {} bytes, more than the {limit} read", objects[0].size));
        }
    }
    let local = cache.join(bucket).join(key.as_ref());
    // A key that turned from a file into a prefix, or back, replaces the old copy.
    match std::fs::symlink_metadata(&local) {
        Ok(meta) if meta.is_dir() && !prefix => remove(&local, true)?,
        Ok(meta) if !meta.is_dir() && prefix => remove(&local, false)?,
        _ => {}
    }
    let stamps_path = stamps_of(cache, uri);
    let mut stamps: BTreeMap<String, String> = std::fs::read(&stamps_path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    let mut wanted = BTreeSet::new();
    let mut listed = Vec::with_capacity(objects.len());
    for object in &objects {
        let relative = if prefix {
            object
                .location
                .prefix_match(&key)
                .map(|parts| parts.map(|p| p.as_ref().to_string()).collect::<Vec<_>>().join("/"))
                .ok_or_else(|| format!("{} is not below the prefix", object.location))?
        } else {
            String::new()
        };
        let target = if prefix { local.join(&relative) } else { local.clone() };
        wanted.insert(target.clone());
        listed.push((relative, target, object));
    }
    if prefix {
        remove_unlisted(&local, &wanted);
    }
    // What the listing declares is checked against the disk before anything is fetched.
    let needed = listed
        .iter()
        .filter(|(relative, target, object)| {
            !(stamps.contains_key(relative) && std::fs::metadata(target).is_ok_and(|m| m.len() == object.size))
        })
        .fold(0u64, |total, (_, _, object)| total.saturating_add(object.size));
    std::fs::create_dir_all(cache).map_err(|e| format!("{}: {e}", cache.display()))?;
    let free = rustix::fs::statvfs(cache)
        .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
        .map_err(|e| format!("{}: {e}", cache.display()))?;
    if needed > free {
        return Err(format!(
            "copying it needs {needed} bytes, and the disk of {} has {free} free",
            cache.display()
        ));
    }
    sweep_partials(if prefix {
        &local
    } else {
        local.parent().unwrap_or(cache)
    });
    let mut kept = BTreeMap::new();
    for (relative, target, object) in listed {
        let stamp = format!(
            "{}:{}:{}",
            object.size,
            object.e_tag.as_deref().unwrap_or(""),
            object.last_modified.timestamp_nanos_opt().unwrap_or(0)
        );
        let current = stamps.get(&relative) == Some(&stamp)
            && std::fs::metadata(&target).is_ok_and(|m| m.is_file() && m.len() == object.size);
        if !current {
            stamps.remove(&relative);
            download(&store, object, &target).await?;
        }
        kept.insert(relative, stamp);
    }
    if let Some(parent) = stamps_path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    let bytes = serde_json::to_vec(&kept).map_err(|e| e.to_string())?;
    write_atomically(&stamps_path, &bytes)?;
    Ok(local)
}

/// Where the listing a copy was fetched at is kept (out of the data tree).
fn stamps_of(cache: &Path, uri: &str) -> PathBuf {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    uri.hash(&mut hasher);
    cache.join(".fetched").join(format!("{:016x}.json", hasher.finish()))
}

/// Writes a small file through a temporary file renamed over it (removed if anything fails).
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let failed = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut staged = tempfile::NamedTempFile::new_in(path.parent().unwrap_or(Path::new("."))).map_err(failed)?;
    staged.write_all(bytes).map_err(failed)?;
    staged.persist(path).map_err(|e| failed(e.error))?;
    Ok(())
}

fn remove(path: &Path, directory: bool) -> Result<(), String> {
    let removed = if directory {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    removed.map_err(|e| format!("replacing the old copy {}: {e}", path.display()))
}

/// The name of a temporary file of this process.
fn partial_name() -> String {
    format!(".partial-{}-{}", std::process::id(), uuid::Uuid::new_v4().simple())
}

/// Removes temporary files that processes no longer running left in `dir` (a server killed mid-copy).
fn sweep_partials(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(pid) = name
            .strip_prefix(".partial-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Streams one object to `target` through a temporary file renamed into place once its length is right.
async fn download(store: &Arc<dyn ObjectStore>, object: &ObjectMeta, target: &Path) -> Result<(), String> {
    let parent = target.parent().ok_or("the cache path has no directory")?;
    tokio::fs::create_dir_all(parent)
        .await
        .map_err(|e| format!("{}: {e}", parent.display()))?;
    let got = store.get(&object.location).await.map_err(|e| e.to_string())?;
    let size = object.size;
    if got.meta.size != size {
        return Err(format!(
            "{} changed while it was listed ({size} bytes, now {}); run again",
            object.location, got.meta.size
        ));
    }
    let partial = parent.join(partial_name());
    let written = async {
        let mut file = tokio::fs::File::create(&partial).await?;
        let mut body = got.into_stream();
        let mut total = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(std::io::Error::other)?;
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
    let outcome = match written {
        Ok(total) if total == size => tokio::fs::rename(&partial, target)
            .await
            .map_err(|e| format!("{}: {e}", target.display())),
        Ok(total) => Err(format!(
            "{} gave {total} bytes where {size} were listed",
            object.location
        )),
        Err(error) => Err(format!("downloading {}: {error}", object.location)),
    };
    if outcome.is_err() {
        let _ = tokio::fs::remove_file(&partial).await;
    }
    outcome
}

/// Removes files (and then empty directories) of an earlier copy of a prefix that the listing no longer has.
fn remove_unlisted(root: &Path, wanted: &BTreeSet<PathBuf>) {
    let mut directories = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().to_string();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                if wanted.iter().any(|w| w.starts_with(&path)) {
                    directories.push(path.clone());
                    pending.push(path);
                } else {
                    let _ = std::fs::remove_dir_all(&path);
                }
            } else if !name.starts_with(".partial-") && !wanted.contains(&path) {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    for dir in directories.iter().rev() {
        let _ = std::fs::remove_dir(dir);
    }
}
