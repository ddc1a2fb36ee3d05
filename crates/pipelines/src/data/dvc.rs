//! `loopline data import-dvc`: a DVC project's `.dvc` files become pointer files, the objects of its local
//! cache (checked against DVC's MD5, both the DVC 3 and the 2.x text rule) enter Loopline's cache under their
//! BLAKE3 ids, and its `dvc.yaml` stages become a `loopline.yaml`. Formats: `../shared/protocols/dvc-formats.md`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};
use serde_json::{Map, Value, json};

use super::content::ContentId;
use super::files::hash_file;
use super::manifest::{Manifest, ManifestEntry, check_data_path, is_reserved_name};
use super::pointer::{Pointer, name_from, name_from_text, pointer_path};
use super::workspace::Project;
use crate::pipeline::Pipeline;

/// The largest `.dvc`, `dvc.yaml`, `params.yaml` or `.dir` file read.
const MAX_METADATA_BYTES: u64 = 64 << 20;
/// DVC 2.x reads text in chunks of this size when it replaces CRLF.
const LEGACY_CHUNK: usize = 1 << 20;

/// What an import did.
#[derive(Debug, Clone, Default)]
pub struct DvcImport {
    /// Pointer files written.
    pub pointers: Vec<PathBuf>,
    /// Outputs not imported, with why.
    pub skipped: Vec<String>,
    /// The pipeline converted from `dvc.yaml`, as text, when there was one.
    pub pipeline: Option<String>,
    /// Stages not converted, with why.
    pub stages_skipped: Vec<String>,
}

fn read_limited(path: &Path) -> Result<String, String> {
    let size = std::fs::metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    if size > MAX_METADATA_BYTES {
        return Err(format!(
            "{} is {size} bytes, too large for a DVC metadata file",
            path.display()
        ));
    }
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The cache directory `.dvc/config` (and `config.local`) name, else `.dvc/cache`.
fn cache_directory(root: &Path) -> PathBuf {
    let mut cache = root.join(".dvc/cache");
    for name in ["config", "config.local"] {
        let Ok(text) = read_limited(&root.join(".dvc").join(name)) else {
            continue;
        };
        let mut section = String::new();
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('[') {
                section = line.trim_matches(['[', ']']).trim().to_string();
            } else if section == "cache"
                && let Some((key, value)) = line.split_once('=')
                && key.trim() == "dir"
            {
                // Relative to the directory holding the config file.
                cache = root.join(".dvc").join(value.trim().trim_matches(['"', '\'']));
            }
        }
    }
    cache
}

/// Where DVC keeps an object: `files/md5/ab/cdef…` for DVC 3 hashes, `ab/cdef…` for legacy ones.
fn object_path(cache: &Path, md5: &str, legacy: bool) -> Result<PathBuf, String> {
    let hex = md5.strip_suffix(".dir").unwrap_or(md5);
    let valid = hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit());
    if !valid {
        return Err(format!("'{md5}' is not a DVC md5"));
    }
    let base = if legacy {
        cache.to_path_buf()
    } else {
        cache.join("files/md5")
    };
    Ok(base.join(&md5[..2]).join(&md5[2..]))
}

/// DVC's MD5 of a file: of its raw bytes for DVC 3; for 2.x text files (judged by their first 512 bytes)
/// with CRLF replaced by LF within each 1 MiB chunk.
pub fn dvc_md5(path: &Path, legacy: bool) -> Result<String, String> {
    let failed = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut file = std::fs::File::open(path).map_err(failed)?;
    let mut hasher = Md5::new();
    let mut head = vec![0u8; 512];
    let filled = read_full(&mut file, &mut head).map_err(failed)?;
    head.truncate(filled);
    let text = legacy && {
        let printable = |b: &u8| (32..=126).contains(b) || matches!(b, b'\n' | b'\r' | b'\t' | 0x0c | 0x08);
        head.is_empty() || (!head.contains(&0) && head.iter().filter(|b| !printable(b)).count() * 10 <= head.len() * 3)
    };
    let mut chunk = vec![0u8; LEGACY_CHUNK];
    chunk[..head.len()].copy_from_slice(&head);
    let mut length = head.len();
    loop {
        length += read_full(&mut file, &mut chunk[length..]).map_err(failed)?;
        if length == 0 {
            break;
        }
        if text {
            let mut cleaned = Vec::with_capacity(length);
            let mut index = 0;
            while index < length {
                if chunk[index] == b'\r' && index + 1 < length && chunk[index + 1] == b'\n' {
                    index += 1;
                }
                cleaned.push(chunk[index]);
                index += 1;
            }
            hasher.update(&cleaned);
        } else {
            hasher.update(&chunk[..length]);
        }
        if length < LEGACY_CHUNK {
            break;
        }
        length = 0;
    }
    Ok(format!("{:x}", hasher.finalize()))
}

fn read_full(file: &mut std::fs::File, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..])? {
            0 => break,
            read => filled += read,
        }
    }
    Ok(filled)
}

/// Imports a DVC project rooted at the project's root: its `.dvc` files and cache, and `dvc.yaml`.
pub fn import(project: &Project) -> Result<DvcImport, String> {
    let root = project.root().to_path_buf();
    if !root.join(".dvc").is_dir() {
        return Err(format!("{} is not a DVC project (no .dvc directory)", root.display()));
    }
    let cache = cache_directory(&root);
    let mut outcome = DvcImport::default();
    for dvc_file in dvc_files(&root) {
        let text = read_limited(&dvc_file)?;
        let document = loopline_model_runtime_api::yaml_bounds::load_json(&text)
            .map_err(|e| format!("{}: {e}", dvc_file.display()))?;
        let outs = document
            .get("outs")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for out in outs {
            match import_out(project, &cache, &dvc_file, &out) {
                Ok(pointer) => outcome.pointers.push(pointer),
                Err(why) => outcome.skipped.push(format!("{}: {why}", dvc_file.display())),
            }
        }
    }
    let stages = root.join("dvc.yaml");
    if stages.is_file() {
        let (text, skipped) = convert_stages(&root, &stages)?;
        outcome.pipeline = Some(text);
        outcome.stages_skipped = skipped;
    }
    Ok(outcome)
}

/// Every `.dvc` file below the root (hidden directories skipped), sorted.
fn dvc_files(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_dir() && !name.starts_with('.') {
                pending.push(entry.path());
            } else if kind.is_file() && name.ends_with(".dvc") && name.len() > 4 {
                found.push(entry.path());
            }
        }
    }
    found.sort();
    found
}

fn import_out(project: &Project, cache: &Path, dvc_file: &Path, out: &Value) -> Result<PathBuf, String> {
    let relative = out
        .get("path")
        .and_then(Value::as_str)
        .ok_or("an output without a path")?;
    check_data_path(relative)?;
    let legacy = out.get("hash").and_then(Value::as_str) != Some("md5");
    let directory = dvc_file.parent().ok_or("a .dvc file without a directory")?;
    let data = directory.join(relative);
    let (id, size, files) = if let Some(md5) = out.get("md5").and_then(Value::as_str) {
        if let Some(dir_md5) = md5.strip_suffix(".dir") {
            let listing_path = object_path(cache, md5, legacy)?;
            let listing = read_limited(&listing_path)
                .map_err(|_| format!("{md5} is not in DVC's cache; run `dvc pull` first"))?;
            if format!("{:x}", Md5::digest(listing.as_bytes())) != dir_md5 {
                return Err(format!("the cached directory listing {md5} does not match its md5"));
            }
            let entries: Vec<Value> =
                serde_json::from_str(&listing).map_err(|e| format!("directory listing {md5}: {e}"))?;
            import_directory(project, cache, &entries, legacy)?
        } else {
            let object = object_path(cache, md5, legacy)?;
            if !object.is_file() {
                return Err(format!(
                    "{relative} ({md5}) is not in DVC's cache; run `dvc pull` first"
                ));
            }
            if dvc_md5(&object, legacy)? != md5 {
                return Err(format!("the cached object of {relative} does not match its md5 {md5}"));
            }
            let (hash, size) = hash_file(&object)?;
            let id = ContentId::file(hash);
            project.cache().insert_file(&id, &object)?;
            (id, size, 1)
        }
    } else if let Some(entries) = out.get("files").and_then(Value::as_array) {
        import_directory(project, cache, entries, legacy)?
    } else {
        return Err(format!("{relative}: no md5 (an external or uncached output)"));
    };
    let pointer_file = pointer_path(&data);
    let pointer = Pointer {
        dataset: name_from(&data),
        path: data
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or("an output without a name")?
            .to_string(),
        hash: id.key(),
        size,
        files,
        version: None,
    };
    let parent = pointer_file.parent().ok_or("no directory for the pointer")?;
    std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    pointer.write(&pointer_file)?;
    Ok(pointer_file)
}

/// Imports the files of a DVC directory listing; returns the directory's id, bytes and file count.
fn import_directory(
    project: &Project,
    cache: &Path,
    entries: &[Value],
    legacy: bool,
) -> Result<(ContentId, u64, u64), String> {
    let mut files = Vec::new();
    for entry in entries {
        let relpath = entry
            .get("relpath")
            .and_then(Value::as_str)
            .ok_or("a listing entry without relpath")?;
        let md5 = entry
            .get("md5")
            .and_then(Value::as_str)
            .ok_or("a listing entry without md5")?;
        if relpath.split('/').any(is_reserved_name) {
            continue;
        }
        let object = object_path(cache, md5, legacy)?;
        if !object.is_file() {
            return Err(format!("{relpath} ({md5}) is not in DVC's cache; run `dvc pull` first"));
        }
        if dvc_md5(&object, legacy)? != md5 {
            return Err(format!("the cached object of {relpath} does not match its md5 {md5}"));
        }
        let (hash, size) = hash_file(&object)?;
        let id = ContentId::file(hash);
        project.cache().insert_file(&id, &object)?;
        let exec = entry.get("isexec").and_then(Value::as_bool).unwrap_or(false);
        files.push(ManifestEntry {
            path: relpath.to_string(),
            hash: id.key(),
            size,
            exec,
        });
    }
    let count = files.len() as u64;
    let manifest = Manifest::new(files)?;
    let id = manifest.id();
    project.cache().insert_bytes(&id, &manifest.to_bytes())?;
    Ok((id, manifest.size(), count))
}

/// The path of an output entry (a string, or a one-key mapping of the path to its settings).
fn entry_path(entry: &Value) -> Option<String> {
    match entry {
        Value::String(path) => Some(path.clone()),
        Value::Object(map) if map.len() == 1 => map.keys().next().cloned(),
        _ => None,
    }
}

/// A flattened view of `params.yaml` (`train.lr` -> value).
fn flat_params(value: &Value, prefix: &str, into: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                let key = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flat_params(value, &key, into);
            }
        }
        other => {
            into.insert(prefix.to_string(), other.clone());
        }
    }
}

/// `dvc.yaml`'s stages as a `loopline.yaml` (JSON, which YAML reads as it is), checked by the pipeline reader.
fn convert_stages(root: &Path, stages_file: &Path) -> Result<(String, Vec<String>), String> {
    let document = loopline_model_runtime_api::yaml_bounds::load_json(&read_limited(stages_file)?)?;
    let stages = document
        .get("stages")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut available = BTreeMap::new();
    if let Ok(text) = read_limited(&root.join("params.yaml")) {
        flat_params(
            &loopline_model_runtime_api::yaml_bounds::load_json(&text).unwrap_or(Value::Null),
            "",
            &mut available,
        );
    }
    let mut params = Map::new();
    let mut steps = Map::new();
    let mut skipped = Vec::new();
    for (name, stage) in stages {
        if stage.get("foreach").is_some() || stage.get("matrix").is_some() {
            skipped.push(format!(
                "{name}: foreach/matrix stages are not converted; write them out as steps"
            ));
            continue;
        }
        let Some(cmd) = stage.get("cmd") else {
            skipped.push(format!("{name}: no cmd"));
            continue;
        };
        let mut command = match cmd {
            Value::String(line) => line.clone(),
            Value::Array(lines) => lines.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" && "),
            _ => {
                skipped.push(format!("{name}: cmd is not a command"));
                continue;
            }
        };
        let wdir = stage
            .get("wdir")
            .and_then(Value::as_str)
            .filter(|w| *w != "." && !w.is_empty());
        let within = |path: String| match wdir {
            Some(wdir) => format!("{}/{path}", wdir.trim_end_matches('/')),
            None => path,
        };
        if let Some(wdir) = wdir {
            command = format!("cd {wdir} && {command}");
        }
        let list = |key: &str| -> Vec<String> {
            stage
                .get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(entry_path)
                .map(within)
                .collect()
        };
        let mut inputs = list("deps");
        let mut outputs = list("outs");
        outputs.extend(list("metrics"));
        outputs.extend(list("plots"));
        let mut step_params = Vec::new();
        for entry in stage.get("params").and_then(Value::as_array).into_iter().flatten() {
            match entry {
                Value::String(key) => {
                    if let Some(value) = available.get(key) {
                        params.insert(key.clone(), value.clone());
                        step_params.push(key.clone());
                    } else {
                        inputs.push("params.yaml".into());
                    }
                }
                Value::Object(map) => inputs.extend(map.keys().cloned().map(within)),
                _ => {}
            }
        }
        inputs.sort();
        inputs.dedup();
        let mut step = json!({"run": command});
        if !inputs.is_empty() {
            step["inputs"] = json!(inputs);
        }
        if !outputs.is_empty() {
            step["outputs"] = json!(outputs);
        }
        if !step_params.is_empty() {
            step["params"] = json!(step_params);
        }
        if stage.get("always_changed").and_then(Value::as_bool) == Some(true) {
            step["cache"] = json!(false);
        }
        if stage.get("frozen").and_then(Value::as_bool) == Some(true) {
            skipped.push(format!("{name}: frozen in DVC; converted as an ordinary step"));
        }
        steps.insert(name_from_text(&name), step);
    }
    if steps.is_empty() {
        return Err("dvc.yaml has no stage that could be converted".into());
    }
    let mut pipeline = Map::new();
    if !params.is_empty() {
        // Dotted keys as written in params.yaml; the pipeline reader takes dotted keys as they are.
        pipeline.insert("params".into(), Value::Object(params));
    }
    pipeline.insert("steps".into(), Value::Object(steps));
    let text = format!(
        "# Converted from dvc.yaml by `loopline data import-dvc`. JSON is YAML: edit it as either.\n{}\n",
        serde_json::to_string_pretty(&Value::Object(pipeline)).map_err(|e| e.to_string())?
    );
    Pipeline::parse(&text, "imported").map_err(|e| format!("the converted pipeline does not read back: {e}"))?;
    Ok((text, skipped))
}
