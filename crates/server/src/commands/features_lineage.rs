//! `loopline features historical --log-dataset NAME`: the training set is uploaded and registered on the
//! server as a version of a dataset, with its lineage: the definitions (a hash of them), the request, the
//! entity frame and every source read, each with the content id `loopline data add` would give it, so a
//! versioned source or entity frame is recognised by its hash. A run that logs the training set with the stock
//! client's `mlflow.log_input` (digest: the version's hash) joins the model's lineage to it.

use std::path::Path;

use loopline_features::{Definitions, Wanted};
use loopline_pipelines::data::files::identify;
use serde_json::{Value, json};

use super::data_remote::{push_file, table_facts_at};
use super::rollout::ServerArgs;

/// What the training set was built from.
pub struct Built<'a> {
    /// The definitions as read.
    pub definitions: &'a Definitions,
    /// The same with sources on S3 at their local copies (what was read and is hashed).
    pub local: &'a Definitions,
    /// Where they were read from.
    pub definitions_path: &'a Path,
    /// The features or service asked for.
    pub wanted: &'a Wanted,
    /// Whether columns are named `view__feature`.
    pub full_feature_names: bool,
    /// The entity frame.
    pub entities: &'a Path,
    /// The training set written.
    pub output: &'a Path,
}

fn absolute(path: &Path) -> String {
    std::fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

/// The lineage of a training set: hashes every input (sources may be large; BLAKE3 over all cores).
pub fn lineage(built: &Built) -> Result<Value, String> {
    let selection = loopline_features::resolve(built.definitions, built.wanted, built.full_feature_names)
        .map_err(|e| e.to_string())?;
    let mut sources = Vec::new();
    for view in &selection.views {
        let source = &built.definitions.sources[&view.view.source];
        if sources.iter().any(|s: &Value| s["name"] == source.name.as_str()) {
            continue;
        }
        let copy = &built.local.sources[&view.view.source].path;
        let (id, bytes, files) = identify(copy).map_err(|e| format!("hashing source `{}`: {e}", source.name))?;
        let path = if loopline_feature_api::remote_sources::is_remote(&source.path) {
            source.path.display().to_string()
        } else {
            absolute(&source.path)
        };
        sources.push(json!({
            "name": source.name, "path": path, "hash": id.key(), "bytes": bytes, "files": files,
            "views": selection.views.iter().filter(|v| v.view.source == source.name).map(|v| &v.view.name).collect::<Vec<_>>(),
        }));
    }
    let (entity_id, entity_bytes, _) =
        identify(built.entities).map_err(|e| format!("hashing the entity frame: {e}"))?;
    let definitions = serde_json::to_vec(built.definitions).map_err(|e| e.to_string())?;
    let (wanted_key, wanted_value) = match built.wanted {
        Wanted::Service(name) => ("service", json!(name)),
        Wanted::References(references) => ("features", json!(references)),
    };
    let mut lineage = json!({
        "kind": "feature_training_set",
        "built_by": format!("loopline {} features historical", env!("CARGO_PKG_VERSION")),
        "definitions": {
            "project": built.definitions.project,
            "path": absolute(built.definitions_path),
            "hash": blake3::hash(&definitions).to_hex().to_string(),
        },
        "full_feature_names": built.full_feature_names,
        "entity_frame": {"path": absolute(built.entities), "hash": entity_id.key(), "bytes": entity_bytes},
        "sources": sources,
        "columns": selection.output_names(),
    });
    lineage[wanted_key] = wanted_value;
    Ok(lineage)
}

/// Uploads and registers the training set as a version of `dataset`; prints which version it became.
pub fn log_training_set(server: &ServerArgs, dataset: &str, built: &Built) -> Result<(), String> {
    println!("hashing the training set and its inputs for its lineage");
    let lineage = lineage(built)?;
    let (id, size, _) = identify(built.output).map_err(|e| format!("hashing the training set: {e}"))?;
    let (rows, schema, mut profile) = table_facts_at(built.output, dataset)?;
    // The server keeps profiles of up to 16 MiB; a wider training set is logged without one.
    if profile.to_string().len() > 16 << 20 {
        println!("the training set's profile is larger than the server keeps; it is logged without one");
        profile = Value::Null;
    }
    let body = json!({
        "hash": id.key(), "size": size, "files": 1, "rows": rows, "schema": schema, "profile": profile,
        "source": absolute(built.output),
        "description": format!("training set of feature project {}", built.definitions.project),
        "lineage": lineage,
    });
    let answer = push_file(server, built.output, (&id, size), dataset, body)?;
    let version = answer["version"]["version"]
        .as_i64()
        .ok_or("the server's answer has no version number")?;
    let created = answer["created"].as_bool().unwrap_or(false);
    println!(
        "{} dataset {dataset} v{version} (datasets:/{dataset}/{version}, hash {})",
        if created { "logged as" } else { "already logged as" },
        id.key()
    );
    Ok(())
}
