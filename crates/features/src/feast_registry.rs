//! Definitions read from a Feast repository: the protobuf registry (`registry.db`) that `feast apply` writes,
//! found through the repository's `feature_store.yaml`, so a Feast project needs no rewrite.
//!
//! Only the messages and fields Loopline uses are declared (field numbers from Feast's `Registry.proto`,
//! `Entity.proto`, `FeatureView.proto`, `DataSource.proto`, `FeatureService.proto`); protobuf skips the rest.
//! Objects Loopline cannot serve (on-demand and stream feature views, non-file sources) are named in the
//! error rather than dropped silently.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use prost::Message;

use crate::definitions::Definitions;
use crate::error::FeatureError;
use crate::value_type::ValueType;

/// The largest registry read.
pub const MAX_REGISTRY_BYTES: u64 = 64 << 20;
/// The registry schema versions understood (Feast has written "1" since 0.10).
const SCHEMA_VERSIONS: &[&str] = &["", "1"];
/// Feast's entity for views without entities.
const DUMMY_ENTITY: &str = "__dummy";

#[derive(Clone, PartialEq, Message)]
struct Registry {
    #[prost(message, repeated, tag = "1")]
    entities: Vec<EntityProto>,
    #[prost(bytes = "vec", repeated, tag = "2")]
    feature_tables: Vec<Vec<u8>>,
    #[prost(string, tag = "3")]
    registry_schema_version: String,
    #[prost(message, repeated, tag = "6")]
    feature_views: Vec<FeatureViewProto>,
    #[prost(message, repeated, tag = "7")]
    feature_services: Vec<FeatureServiceProto>,
    #[prost(message, repeated, tag = "8")]
    on_demand_feature_views: Vec<NamedSpec>,
    #[prost(message, repeated, tag = "12")]
    data_sources: Vec<DataSourceProto>,
    #[prost(message, repeated, tag = "14")]
    stream_feature_views: Vec<NamedSpec>,
}

/// Any object whose spec starts with `name` (1) and `project` (2).
#[derive(Clone, PartialEq, Message)]
struct NamedSpec {
    #[prost(message, optional, tag = "1")]
    spec: Option<NameProject>,
}

#[derive(Clone, PartialEq, Message)]
struct NameProject {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    project: String,
}

#[derive(Clone, PartialEq, Message)]
struct EntityProto {
    #[prost(message, optional, tag = "1")]
    spec: Option<EntitySpec>,
}

#[derive(Clone, PartialEq, Message)]
struct EntitySpec {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(int32, tag = "2")]
    value_type: i32,
    #[prost(string, tag = "3")]
    description: String,
    #[prost(string, tag = "4")]
    join_key: String,
    #[prost(string, tag = "9")]
    project: String,
}

#[derive(Clone, PartialEq, Message)]
struct FeatureViewProto {
    #[prost(message, optional, tag = "1")]
    spec: Option<FeatureViewSpec>,
}

#[derive(Clone, PartialEq, Message)]
struct FeatureViewSpec {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    project: String,
    #[prost(string, repeated, tag = "3")]
    entities: Vec<String>,
    #[prost(message, repeated, tag = "4")]
    features: Vec<FeatureSpec>,
    #[prost(message, optional, tag = "6")]
    ttl: Option<Duration>,
    #[prost(message, optional, tag = "7")]
    batch_source: Option<DataSourceProto>,
    #[prost(bool, tag = "8")]
    online: bool,
    #[prost(message, optional, tag = "9")]
    stream_source: Option<DataSourceProto>,
    #[prost(message, repeated, tag = "12")]
    entity_columns: Vec<FeatureSpec>,
}

#[derive(Clone, PartialEq, Message)]
struct FeatureSpec {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(int32, tag = "2")]
    value_type: i32,
}

#[derive(Clone, PartialEq, Message)]
struct Duration {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

#[derive(Clone, PartialEq, Message)]
struct DataSourceProto {
    #[prost(int32, tag = "1")]
    kind: i32,
    #[prost(map = "string, string", tag = "2")]
    field_mapping: std::collections::HashMap<String, String>,
    #[prost(string, tag = "3")]
    timestamp_field: String,
    #[prost(string, tag = "5")]
    created_timestamp_column: String,
    #[prost(message, optional, tag = "11")]
    file_options: Option<FileOptions>,
    #[prost(string, tag = "20")]
    name: String,
    #[prost(string, tag = "21")]
    project: String,
    #[prost(message, optional, boxed, tag = "26")]
    batch_source: Option<Box<DataSourceProto>>,
}

#[derive(Clone, PartialEq, Message)]
struct FileOptions {
    #[prost(string, tag = "2")]
    uri: String,
}

#[derive(Clone, PartialEq, Message)]
struct FeatureServiceProto {
    #[prost(message, optional, tag = "1")]
    spec: Option<FeatureServiceSpec>,
}

#[derive(Clone, PartialEq, Message)]
struct FeatureServiceSpec {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    project: String,
    #[prost(message, repeated, tag = "3")]
    features: Vec<Projection>,
}

#[derive(Clone, PartialEq, Message)]
struct Projection {
    #[prost(string, tag = "1")]
    feature_view_name: String,
    #[prost(message, repeated, tag = "2")]
    feature_columns: Vec<FeatureSpec>,
    #[prost(string, tag = "3")]
    feature_view_name_alias: String,
}

/// Feast's source types.
const BATCH_FILE: i32 = 1;
const PUSH_SOURCE: i32 = 9;

/// Whether `path` is a Feast repository (a directory with `feature_store.yaml`) or a registry file.
pub fn is_feast(path: &Path) -> bool {
    path.join("feature_store.yaml").is_file()
        || path.file_name().is_some_and(|n| n == "feature_store.yaml")
        || path.extension().is_some_and(|e| e == "db" || e == "pb")
}

/// Reads a Feast repository (its `feature_store.yaml` names the registry and the project) or a registry file
/// (whose one project is taken, or `project` when given).
pub fn read(path: &Path, project: Option<&str>) -> Result<Definitions, FeatureError> {
    let origin = path.display().to_string();
    let fail = |message: String| FeatureError::definitions(&origin, message);
    // Relative paths in the registry are the repository's; they are made absolute here, once.
    let path = &std::path::absolute(path).map_err(|e| fail(e.to_string()))?;
    let path = if path.file_name().is_some_and(|n| n == "feature_store.yaml") {
        path.parent().unwrap_or(path)
    } else {
        path.as_path()
    };
    let (registry_path, repo_dir, project) = if path.is_dir() {
        let (registry, config_project) = repository(path)?;
        (
            registry,
            path.to_path_buf(),
            project.map(str::to_string).or(config_project),
        )
    } else {
        // A registry file: its repository is the nearest directory above it with feature_store.yaml.
        let repo = path
            .ancestors()
            .skip(1)
            .take(3)
            .find(|dir| dir.join("feature_store.yaml").is_file())
            .or_else(|| path.parent())
            .unwrap_or(Path::new("/"))
            .to_path_buf();
        (path.to_path_buf(), repo, project.map(str::to_string))
    };
    let size = std::fs::metadata(&registry_path)
        .map_err(|e| {
            fail(format!(
                "registry {}: {e}; run `feast apply` first",
                registry_path.display()
            ))
        })?
        .len();
    if size > MAX_REGISTRY_BYTES {
        return Err(fail(format!(
            "the registry is {size} bytes, more than the {MAX_REGISTRY_BYTES} read"
        )));
    }
    let bytes = std::fs::read(&registry_path).map_err(|e| fail(format!("{}: {e}", registry_path.display())))?;
    from_bytes(&bytes, project.as_deref(), &repo_dir).map_err(fail)
}

/// The registry file a Feast repository's `feature_store.yaml` names.
pub fn registry_path(repo: &Path) -> Result<PathBuf, FeatureError> {
    repository(repo).map(|(registry, _)| registry)
}

/// The registry path and project of a Feast repository.
fn repository(path: &Path) -> Result<(PathBuf, Option<String>), FeatureError> {
    let origin = path.display().to_string();
    let fail = |message: String| FeatureError::definitions(&origin, message);
    let config_path = path.join("feature_store.yaml");
    let text = std::fs::read_to_string(&config_path).map_err(|e| fail(format!("{}: {e}", config_path.display())))?;
    let config = loopline_model_runtime_api::yaml_bounds::load_json(&text)
        .map_err(|e| fail(format!("feature_store.yaml: {e}")))?;
    let registry = match &config["registry"] {
        serde_json::Value::String(p) => p.clone(),
        serde_json::Value::Object(map) => map
            .get("path")
            .and_then(|p| p.as_str())
            .map(str::to_string)
            .ok_or_else(|| fail("feature_store.yaml: `registry` has no `path`".into()))?,
        _ => return Err(fail("feature_store.yaml names no `registry`".into())),
    };
    if registry.contains("://") && !registry.starts_with("file://") {
        return Err(fail(format!(
            "the registry {registry} is not a local file; copy it here (e.g. `aws s3 cp {registry} registry.db`) \
             and read that file"
        )));
    }
    let registry = PathBuf::from(registry.trim_start_matches("file://"));
    let registry = if registry.is_absolute() {
        registry
    } else {
        path.join(registry)
    };
    Ok((registry, config["project"].as_str().map(str::to_string)))
}

/// Builds definitions from registry bytes; relative source paths are taken from `repo_dir`.
pub fn from_bytes(bytes: &[u8], project: Option<&str>, repo_dir: &Path) -> Result<Definitions, String> {
    let registry = Registry::decode(bytes).map_err(|e| format!("not a Feast registry (protobuf): {e}"))?;
    if !SCHEMA_VERSIONS.contains(&registry.registry_schema_version.as_str()) {
        return Err(format!(
            "registry schema version {:?} is not one this Loopline reads (it reads version 1, written by Feast 0.10 \
             up to at least 0.67); re-apply the repository with such a Feast",
            registry.registry_schema_version
        ));
    }
    if !registry.feature_tables.is_empty() && registry.feature_views.is_empty() {
        return Err(
            "the registry holds feature tables, written by Feast 0.9 or older, which Loopline does not read; \
             upgrade the repository to feature views (Feast 0.10 or later) and apply it again"
                .to_string(),
        );
    }
    let mut projects: Vec<&str> = registry
        .entities
        .iter()
        .filter_map(|e| e.spec.as_ref().map(|s| s.project.as_str()))
        .chain(
            registry
                .feature_views
                .iter()
                .filter_map(|v| v.spec.as_ref().map(|s| s.project.as_str())),
        )
        .filter(|p| !p.is_empty())
        .collect();
    projects.sort_unstable();
    projects.dedup();
    let project = match (project, projects.as_slice()) {
        (Some(wanted), _) if projects.contains(&wanted) => wanted.to_string(),
        (Some(wanted), _) => return Err(format!("the registry has no project `{wanted}`; it has {projects:?}")),
        (None, [only]) => only.to_string(),
        (None, []) => return Err("the registry is empty; run `feast apply` in the repository".to_string()),
        (None, many) => return Err(format!("the registry holds several projects {many:?}; name one")),
    };
    let in_project = |p: &str| p.is_empty() || p == project;
    let unsupported: Vec<String> = registry
        .on_demand_feature_views
        .iter()
        .chain(&registry.stream_feature_views)
        .filter_map(|o| o.spec.as_ref())
        .filter(|s| in_project(&s.project))
        .map(|s| s.name.clone())
        .collect();

    let mut yaml = YamlOut::default();
    yaml.line(&format!("project: {}", quote(&project)));
    let mut entities = Vec::new();
    for entity in registry.entities.iter().filter_map(|e| e.spec.as_ref()) {
        if !in_project(&entity.project) || entity.name == DUMMY_ENTITY {
            continue;
        }
        let key = if entity.join_key.is_empty() {
            &entity.name
        } else {
            &entity.join_key
        };
        let mut line = format!("  - {{name: {}, join_keys: [{}]", quote(&entity.name), quote(key));
        if let Some(t) = value_type(entity.value_type) {
            line.push_str(&format!(", value_type: {}", t.name()));
        }
        if !entity.description.is_empty() {
            line.push_str(&format!(", description: {}", quote(&entity.description)));
        }
        line.push('}');
        entities.push(line);
    }
    yaml.list("entities", &entities);
    let mut sources: BTreeMap<String, String> = BTreeMap::new();
    let mut pushes: BTreeMap<String, String> = BTreeMap::new();
    let mut views = Vec::new();
    for view in registry.feature_views.iter().filter_map(|v| v.spec.as_ref()) {
        if !in_project(&view.project) {
            continue;
        }
        let context = format!("feature view `{}`", view.name);
        let batch = view
            .batch_source
            .as_ref()
            .ok_or_else(|| format!("{context} has no batch source"))?;
        let batch_name = source_entry(batch, repo_dir, &mut sources).map_err(|e| format!("{context}: {e}"))?;
        let source_name = match &view.stream_source {
            Some(stream) if stream.kind == PUSH_SOURCE => {
                pushes.insert(stream.name.clone(), batch_name.clone());
                stream.name.clone()
            }
            Some(stream) if stream.kind != 0 => {
                return Err(format!(
                    "{context} reads stream source `{}` (type {}), which Loopline does not serve; only push sources",
                    stream.name, stream.kind
                ));
            }
            _ => batch_name,
        };
        let entities: Vec<String> = view
            .entities
            .iter()
            .filter(|e| *e != DUMMY_ENTITY)
            .map(|e| quote(e))
            .collect();
        let mut fields = Vec::new();
        for feature in &view.features {
            let dtype = value_type(feature.value_type).ok_or_else(|| {
                format!(
                    "{context}: feature `{}` has Feast type {}, which Loopline does not serve (scalars only)",
                    feature.name, feature.value_type
                )
            })?;
            fields.push(format!("{{name: {}, dtype: {}}}", quote(&feature.name), dtype.name()));
        }
        let ttl = view.ttl.as_ref().map_or(0, |d| d.seconds);
        views.push(format!(
            "  - {{name: {}, entities: [{}], ttl: {ttl}, source: {}, online: {}, schema: [{}]}}",
            quote(&view.name),
            entities.join(", "),
            quote(&source_name),
            view.online,
            fields.join(", ")
        ));
    }
    yaml.list("sources", &sources.values().cloned().collect::<Vec<_>>());
    let pushes: Vec<String> = pushes
        .iter()
        .map(|(push, batch)| format!("  - {{name: {}, batch_source: {}}}", quote(push), quote(batch)))
        .collect();
    yaml.list("push_sources", &pushes);
    yaml.list("feature_views", &views);
    let mut services = Vec::new();
    for service in registry.feature_services.iter().filter_map(|s| s.spec.as_ref()) {
        if !in_project(&service.project) {
            continue;
        }
        let mut items = Vec::new();
        for projection in &service.features {
            if unsupported.contains(&projection.feature_view_name) {
                return Err(format!(
                    "feature service `{}` uses `{}`, an on-demand or stream feature view, which Loopline does not \
                     serve yet",
                    service.name, projection.feature_view_name
                ));
            }
            if !projection.feature_view_name_alias.is_empty() {
                return Err(format!(
                    "feature service `{}` renames view `{}` to `{}`; aliases are not read yet",
                    service.name, projection.feature_view_name, projection.feature_view_name_alias
                ));
            }
            let names: Vec<String> = projection.feature_columns.iter().map(|f| quote(&f.name)).collect();
            if names.is_empty() {
                items.push(quote(&projection.feature_view_name));
            } else {
                items.push(format!(
                    "{{{}: [{}]}}",
                    quote(&projection.feature_view_name),
                    names.join(", ")
                ));
            }
        }
        services.push(format!(
            "  - {{name: {}, features: [{}]}}",
            quote(&service.name),
            items.join(", ")
        ));
    }
    yaml.list("feature_services", &services);
    Definitions::from_yaml(&yaml.text, repo_dir, "the Feast registry").map_err(|e| e.to_string())
}

/// The source's YAML entry (added once), returning its name.
fn source_entry(
    source: &DataSourceProto,
    repo_dir: &Path,
    sources: &mut BTreeMap<String, String>,
) -> Result<String, String> {
    if source.kind != BATCH_FILE {
        return Err(format!(
            "source `{}` is of Feast type {}, not a file source; Loopline reads Parquet and CSV files",
            source.name, source.kind
        ));
    }
    let uri = source.file_options.as_ref().map(|f| f.uri.clone()).unwrap_or_default();
    if uri.contains("://") && !uri.starts_with("file://") && !uri.starts_with("s3://") {
        return Err(format!(
            "source `{}` is at {uri}, which is neither a local file nor on S3; copy it and point the source at \
             the copy",
            source.name
        ));
    }
    let path = PathBuf::from(uri.trim_start_matches("file://"));
    let path = if path.is_absolute() || uri.starts_with("s3://") {
        path
    } else {
        repo_dir.join(path)
    };
    let name = if source.name.is_empty() {
        format!("source_{}", sources.len())
    } else {
        source.name.clone()
    };
    let mut entry = format!(
        "  - {{name: {}, path: {}, timestamp_field: {}",
        quote(&name),
        quote(&path.display().to_string()),
        quote(&source.timestamp_field)
    );
    if !source.created_timestamp_column.is_empty() {
        entry.push_str(&format!(
            ", created_timestamp_column: {}",
            quote(&source.created_timestamp_column)
        ));
    }
    if !source.field_mapping.is_empty() {
        let mut pairs: Vec<String> = source
            .field_mapping
            .iter()
            .map(|(from, to)| format!("{}: {}", quote(from), quote(to)))
            .collect();
        pairs.sort();
        entry.push_str(&format!(", field_mapping: {{{}}}", pairs.join(", ")));
    }
    entry.push('}');
    sources.entry(name.clone()).or_insert(entry);
    Ok(name)
}

/// Feast's scalar value types; lists, maps and the rest are not served.
fn value_type(code: i32) -> Option<ValueType> {
    Some(match code {
        1 => ValueType::Bytes,
        2 => ValueType::String,
        3 => ValueType::Int32,
        4 => ValueType::Int64,
        5 => ValueType::Float64,
        6 => ValueType::Float32,
        7 => ValueType::Bool,
        8 => ValueType::UnixTimestamp,
        _ => return None,
    })
}

/// A YAML double-quoted scalar.
fn quote(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

#[derive(Default)]
struct YamlOut {
    text: String,
}

impl YamlOut {
    fn line(&mut self, line: &str) {
        self.text.push_str(line);
        self.text.push('\n');
    }

    fn list(&mut self, key: &str, items: &[String]) {
        if items.is_empty() {
            self.line(&format!("{key}: []"));
            return;
        }
        self.line(&format!("{key}:"));
        for item in items {
            self.line(item);
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn registry(version: &str) -> Vec<u8> {
        let source = DataSourceProto {
            kind: BATCH_FILE,
            timestamp_field: "ts".into(),
            file_options: Some(FileOptions {
                uri: "data/stats.parquet".into(),
            }),
            name: "stats".into(),
            project: "p".into(),
            ..Default::default()
        };
        Registry {
            registry_schema_version: version.into(),
            entities: vec![EntityProto {
                spec: Some(EntitySpec {
                    name: "driver".into(),
                    value_type: 4,
                    join_key: "driver_id".into(),
                    project: "p".into(),
                    ..Default::default()
                }),
            }],
            feature_views: vec![FeatureViewProto {
                spec: Some(FeatureViewSpec {
                    name: "v".into(),
                    project: "p".into(),
                    entities: vec!["driver".into()],
                    features: vec![FeatureSpec {
                        name: "rate".into(),
                        value_type: 5,
                    }],
                    ttl: Some(Duration {
                        seconds: 7200,
                        nanos: 0,
                    }),
                    batch_source: Some(source),
                    online: true,
                    ..Default::default()
                }),
            }],
            ..Default::default()
        }
        .encode_to_vec()
    }

    #[test]
    fn a_registry_becomes_definitions_with_paths_from_the_repository() {
        let definitions = from_bytes(&registry("1"), None, Path::new("/repo")).unwrap();
        assert_eq!(definitions.project, "p");
        let view = &definitions.views["v"];
        assert_eq!(
            (view.ttl_seconds, view.join_keys.clone()),
            (Some(7200), vec!["driver_id".to_string()])
        );
        assert_eq!(definitions.sources["stats"].path, Path::new("/repo/data/stats.parquet"));
        assert_eq!(definitions.entities["driver"].value_type, Some(ValueType::Int64));
    }

    #[test]
    fn unsupported_versions_and_projects_are_named() {
        let message = from_bytes(&registry("2"), None, Path::new("/")).unwrap_err();
        assert!(message.contains("schema version \"2\""), "{message}");
        let message = from_bytes(&registry("1"), Some("other"), Path::new("/")).unwrap_err();
        assert!(message.contains("no project `other`"), "{message}");
        assert!(
            from_bytes(b"\xff\xff\xff", None, Path::new("/"))
                .unwrap_err()
                .contains("not a Feast registry")
        );
    }

    proptest! {
        #[test]
        fn any_bytes_are_read_or_refused_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = from_bytes(&bytes, None, Path::new("/"));
        }
    }
}
