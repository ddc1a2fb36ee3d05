//! Feature definitions: entities, data sources, feature views and feature services, read from Loopline's YAML
//! and checked as a whole before anything uses them (every reference resolves, names are unique and valid).
//!
//! ```yaml
//! project: driver_ranking
//! entities:
//!   - name: driver
//!     join_keys: [driver_id]
//!     value_type: int64
//! sources:
//!   - name: driver_stats
//!     path: data/driver_stats.parquet     # a file or a directory of files, relative to this file
//!     timestamp_field: event_timestamp
//!     created_timestamp_column: created   # optional: breaks ties between rows with the same event time
//!     field_mapping: {trips: avg_daily_trips}
//! feature_views:
//!   - name: driver_hourly_stats
//!     entities: [driver]
//!     ttl: 2h                              # 0 or absent: no limit on a value's age
//!     source: driver_stats
//!     schema:
//!       - {name: conv_rate, dtype: float32}
//!       - {name: avg_daily_trips, dtype: int64}
//! feature_services:
//!   - name: driver_activity
//!     features:
//!       - driver_hourly_stats               # every feature of the view
//!       - other_view: [feature_a]           # or some of them
//! push_sources:                            # rows pushed through the API go to every view reading it
//!   - {name: driver_stats_push, batch_source: driver_stats}
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::FeatureError;
use crate::on_demand::{OnDemandSpec, OnDemandView, RequestSource, RequestSpec, build_on_demand, build_request_source};
use crate::value_type::ValueType;

/// The longest definitions file read.
pub const MAX_DEFINITIONS_BYTES: usize = 4 << 20;
/// The most objects of each kind one project may define.
pub const MAX_OBJECTS: usize = 10_000;
/// The most features one view may declare.
pub const MAX_FEATURES_PER_VIEW: usize = 10_000;

/// An entity: the thing features describe, identified by its join keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    /// Its name.
    pub name: String,
    /// The columns that identify one instance (Feast allows exactly one per entity; several are accepted).
    pub join_keys: Vec<String>,
    /// The type of the join key, checked against entity frames when given.
    pub value_type: Option<ValueType>,
    /// Free text.
    pub description: String,
}

/// A batch data source: a table file or a directory of table files with an event-time column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    /// Its name.
    pub name: String,
    /// The file or directory (absolute once read from a file).
    pub path: PathBuf,
    /// The column holding each row's event time.
    pub timestamp_field: String,
    /// The column holding when each row was written, used to break ties on event time.
    pub created_timestamp_column: Option<String>,
    /// Source column -> feature or join-key name.
    pub field_mapping: BTreeMap<String, String>,
}

impl Source {
    /// The source column that holds `name` (a feature or join key) after the field mapping.
    pub fn column_for(&self, name: &str) -> String {
        self.field_mapping
            .iter()
            .find(|(_, to)| to.as_str() == name)
            .map(|(from, _)| from.clone())
            .unwrap_or_else(|| name.to_string())
    }
}

/// A typed feature of a view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Field {
    /// Its name.
    pub name: String,
    /// Its type.
    pub dtype: ValueType,
}

/// A feature view: features of some entities, read from one source, valid for `ttl` after their event time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureView {
    /// Its name.
    pub name: String,
    /// The entities it is keyed by (none: joined on time only).
    pub entities: Vec<String>,
    /// The join keys of those entities, in order.
    pub join_keys: Vec<String>,
    /// How long a value stays valid after its event time, in seconds; `None` for no limit.
    pub ttl_seconds: Option<i64>,
    /// The name of its source.
    pub source: String,
    /// Its features.
    pub features: Vec<Field>,
    /// Whether it is materialised into the online store.
    pub online: bool,
    /// The push source whose pushed rows it takes, if its source is one.
    #[serde(default)]
    pub push_source: Option<String>,
}

impl FeatureView {
    /// The name its online rows and watermark are kept under: the view's name and a fingerprint of its keys and
    /// features (names, order and types). Online rows hold values by position, so a view whose schema changes
    /// starts afresh under a new name (lookups say NOT_FOUND until it is materialised again) instead of
    /// reading old values under the wrong names.
    pub fn storage_name(&self) -> String {
        let mut canonical = String::new();
        for key in &self.join_keys {
            canonical.push_str(key);
            canonical.push('\u{1}');
        }
        canonical.push('\u{2}');
        for feature in &self.features {
            canonical.push_str(&feature.name);
            canonical.push(':');
            canonical.push_str(feature.dtype.name());
            canonical.push('\u{1}');
        }
        format!("{}#{:08x}", self.name, crc32fast::hash(canonical.as_bytes()))
    }
}

/// A named set of features, possibly from several views.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureService {
    /// Its name.
    pub name: String,
    /// (view, features of it), in order.
    pub features: Vec<(String, Vec<String>)>,
}

/// Every definition of a project, checked.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Definitions {
    /// The project's name.
    pub project: String,
    /// Entities by name.
    pub entities: BTreeMap<String, Entity>,
    /// Sources by name.
    pub sources: BTreeMap<String, Source>,
    /// Feature views by name.
    pub views: BTreeMap<String, FeatureView>,
    /// Feature services by name.
    pub services: BTreeMap<String, FeatureService>,
    /// Push sources by name: rows pushed to one go to every view reading it; its batch source holds the
    /// history the views are trained and materialised from.
    #[serde(default)]
    pub push_sources: BTreeMap<String, String>,
    /// Request sources by name: fields a request carries for on-demand features.
    #[serde(default)]
    pub request_sources: BTreeMap<String, RequestSource>,
    /// On-demand feature views by name: features computed from request fields and other views' features.
    #[serde(default)]
    pub on_demand_views: BTreeMap<String, OnDemandView>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    project: Option<String>,
    #[serde(default)]
    entities: Vec<EntitySpec>,
    #[serde(default)]
    sources: Vec<SourceSpec>,
    #[serde(default)]
    feature_views: Vec<ViewSpec>,
    #[serde(default)]
    feature_services: Vec<ServiceSpec>,
    #[serde(default)]
    push_sources: Vec<PushSpec>,
    #[serde(default)]
    request_sources: Vec<RequestSpec>,
    #[serde(default)]
    on_demand_feature_views: Vec<OnDemandSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PushSpec {
    name: String,
    batch_source: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntitySpec {
    name: String,
    #[serde(default)]
    join_keys: Vec<String>,
    join_key: Option<String>,
    value_type: Option<String>,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceSpec {
    name: String,
    path: String,
    timestamp_field: String,
    created_timestamp_column: Option<String>,
    #[serde(default)]
    field_mapping: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ViewSpec {
    name: String,
    #[serde(default)]
    entities: Vec<String>,
    ttl: Option<Value>,
    source: String,
    schema: Vec<FieldSpec>,
    #[serde(default = "yes")]
    online: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FieldSpec {
    pub(crate) name: String,
    pub(crate) dtype: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceSpec {
    name: String,
    features: Vec<Value>,
}

impl Definitions {
    /// Reads and checks definitions: a Loopline YAML file (relative source paths are taken from its
    /// directory), or a Feast repository (a directory with `feature_store.yaml`) or its registry file.
    pub fn from_file(path: &Path) -> Result<Definitions, FeatureError> {
        if crate::feast_registry::is_feast(path) {
            return crate::feast_registry::read(path, None);
        }
        let origin = path.display().to_string();
        let text =
            read_bounded(path, MAX_DEFINITIONS_BYTES as u64).map_err(|e| FeatureError::definitions(&origin, e))?;
        let text = String::from_utf8(text).map_err(|_| FeatureError::definitions(&origin, "it is not UTF-8 text"))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let base = std::fs::canonicalize(if base.as_os_str().is_empty() {
            Path::new(".")
        } else {
            &base
        })
        .map_err(|e| FeatureError::definitions(&origin, e.to_string()))?;
        Definitions::from_yaml(&text, &base, &origin)
    }

    /// Reads and checks definitions written in YAML; `base` resolves relative source paths and `origin` names
    /// the text in messages.
    pub fn from_yaml(text: &str, base: &Path, origin: &str) -> Result<Definitions, FeatureError> {
        let document = loopline_model_runtime_api::yaml_bounds::load_json(text)
            .map_err(|e| FeatureError::definitions(origin, e))?;
        if document.is_null() {
            return Err(FeatureError::definitions(
                origin,
                "it is empty; define entities, sources and feature_views",
            ));
        }
        let spec: FileSpec = serde_path_to_error::deserialize(document)
            .map_err(|e| FeatureError::definitions(origin, format!("at `{}`: {}", e.path(), e.inner())))?;
        build(spec, base).map_err(|message| FeatureError::definitions(origin, message))
    }

    /// The view named `name`, or an error listing the views there are.
    pub fn view(&self, name: &str) -> Result<&FeatureView, FeatureError> {
        self.views.get(name).ok_or_else(|| {
            FeatureError::UnknownFeature(format!(
                "no feature view `{name}`; the views are {:?}",
                self.views.keys().collect::<Vec<_>>()
            ))
        })
    }
}

/// A regular file's bytes, at most `limit` of them (a device or a pipe reports no length, so the read itself
/// is bounded too).
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let metadata = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !metadata.is_file() {
        return Err("it is not a regular file".to_string());
    }
    if metadata.len() > limit {
        return Err(format!("it is {} bytes, more than the {limit} read", metadata.len()));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(|e| e.to_string())?
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > limit {
        return Err(format!("it is more than the {limit} bytes read"));
    }
    Ok(bytes)
}

fn build(spec: FileSpec, base: &Path) -> Result<Definitions, String> {
    let counts = [
        ("entities", spec.entities.len()),
        ("sources", spec.sources.len()),
        ("feature_views", spec.feature_views.len()),
        ("feature_services", spec.feature_services.len()),
        ("request_sources", spec.request_sources.len()),
        ("on_demand_feature_views", spec.on_demand_feature_views.len()),
    ];
    if let Some((kind, count)) = counts.iter().find(|(_, count)| *count > MAX_OBJECTS) {
        return Err(format!("{count} {kind}, more than the {MAX_OBJECTS} accepted"));
    }
    let project = spec.project.unwrap_or_else(|| "default".to_string());
    check_name("project", &project)?;
    let mut definitions = Definitions {
        project,
        ..Definitions::default()
    };
    for entity in spec.entities {
        check_name("entity", &entity.name)?;
        let mut join_keys = entity.join_keys;
        if let Some(key) = entity.join_key {
            join_keys.push(key);
        }
        if join_keys.is_empty() {
            join_keys.push(entity.name.clone());
        }
        for key in &join_keys {
            check_name(&format!("join key of entity `{}`", entity.name), key)?;
        }
        let value_type = entity
            .value_type
            .map(|t| ValueType::parse(&t).map_err(|e| format!("entity `{}`: value_type: {e}", entity.name)))
            .transpose()?;
        let name = entity.name.clone();
        let entity = Entity {
            name: entity.name,
            join_keys,
            value_type,
            description: entity.description,
        };
        if definitions.entities.insert(name.clone(), entity).is_some() {
            return Err(format!("entity `{name}` is defined twice"));
        }
    }
    for source in spec.sources {
        check_name("source", &source.name)?;
        if source.path.trim().is_empty() {
            return Err(format!("source `{}`: path is empty", source.name));
        }
        // A source on S3 is kept as its URI; the job reading it copies it to local disk first.
        let path = if source.path.starts_with("s3://") {
            PathBuf::from(&source.path)
        } else if source.path.contains("://") {
            return Err(format!(
                "source `{}`: {:?} is neither a local path nor an s3:// URI",
                source.name, source.path
            ));
        } else {
            base.join(&source.path)
        };
        let name = source.name.clone();
        let mut targets = BTreeSet::new();
        for (from, to) in &source.field_mapping {
            if !targets.insert(to.as_str()) {
                return Err(format!(
                    "source `{name}`: field_mapping maps two columns to `{to}` (one is `{from}`)"
                ));
            }
        }
        let source = Source {
            name: source.name,
            path,
            timestamp_field: source.timestamp_field,
            created_timestamp_column: source.created_timestamp_column,
            field_mapping: source.field_mapping,
        };
        if definitions.sources.insert(name.clone(), source).is_some() {
            return Err(format!("source `{name}` is defined twice"));
        }
    }
    for push in spec.push_sources {
        check_name("push source", &push.name)?;
        if definitions.sources.contains_key(&push.name) {
            return Err(format!("push source `{}` has the name of a source", push.name));
        }
        if !definitions.sources.contains_key(&push.batch_source) {
            return Err(format!(
                "push source `{}`: no source `{}`; the sources are {:?}",
                push.name,
                push.batch_source,
                definitions.sources.keys().collect::<Vec<_>>()
            ));
        }
        if definitions
            .push_sources
            .insert(push.name.clone(), push.batch_source)
            .is_some()
        {
            return Err(format!("push source `{}` is defined twice", push.name));
        }
    }
    for request in spec.request_sources {
        let built = build_request_source(request, &definitions)?;
        let name = built.name.clone();
        if definitions.request_sources.insert(name.clone(), built).is_some() {
            return Err(format!("request source `{name}` is defined twice"));
        }
    }
    for view in spec.feature_views {
        let built = build_view(view, &definitions)?;
        let name = built.name.clone();
        if definitions.views.insert(name.clone(), built).is_some() {
            return Err(format!("feature view `{name}` is defined twice"));
        }
    }
    for view in spec.on_demand_feature_views {
        let built = build_on_demand(view, &definitions)?;
        let name = built.name.clone();
        if definitions.on_demand_views.insert(name.clone(), built).is_some() {
            return Err(format!("on-demand feature view `{name}` is defined twice"));
        }
    }
    for service in spec.feature_services {
        let built = build_service(service, &definitions)?;
        let name = built.name.clone();
        if definitions.services.insert(name.clone(), built).is_some() {
            return Err(format!("feature service `{name}` is defined twice"));
        }
    }
    Ok(definitions)
}

fn build_view(view: ViewSpec, definitions: &Definitions) -> Result<FeatureView, String> {
    check_name("feature view", &view.name)?;
    let context = format!("feature view `{}`", view.name);
    if definitions.request_sources.contains_key(&view.name) {
        // On-demand views name both in one list of sources.
        return Err(format!("{context} has the name of a request source"));
    }
    let mut join_keys = Vec::new();
    for entity in &view.entities {
        let found = definitions.entities.get(entity).ok_or_else(|| {
            format!(
                "{context}: no entity `{entity}`; the entities are {:?}",
                definitions.entities.keys().collect::<Vec<_>>()
            )
        })?;
        for key in &found.join_keys {
            if join_keys.contains(key) {
                return Err(format!("{context}: join key `{key}` comes from two of its entities"));
            }
            join_keys.push(key.clone());
        }
    }
    let (source, push_source) = match definitions.push_sources.get(&view.source) {
        Some(batch) => (batch.clone(), Some(view.source.clone())),
        None if definitions.sources.contains_key(&view.source) => (view.source.clone(), None),
        None => {
            return Err(format!(
                "{context}: no source or push source `{}`; the sources are {:?}",
                view.source,
                definitions
                    .sources
                    .keys()
                    .chain(definitions.push_sources.keys())
                    .collect::<Vec<_>>()
            ));
        }
    };
    if view.schema.is_empty() {
        return Err(format!(
            "{context}: schema is empty; declare its features with name and dtype"
        ));
    }
    if view.schema.len() > MAX_FEATURES_PER_VIEW {
        return Err(format!("{context}: more than {MAX_FEATURES_PER_VIEW} features"));
    }
    let mut features = Vec::with_capacity(view.schema.len());
    let mut seen = BTreeSet::new();
    for field in view.schema {
        check_name(&format!("feature of {context}"), &field.name)?;
        if !seen.insert(field.name.clone()) {
            return Err(format!("{context}: feature `{}` is declared twice", field.name));
        }
        if join_keys.contains(&field.name) {
            // Feast lists join keys in a view's schema too; they are keys, not features.
            continue;
        }
        let batch = definitions.sources.get(&source).expect("resolved above");
        if field.name == batch.timestamp_field || batch.created_timestamp_column.as_deref() == Some(field.name.as_str())
        {
            return Err(format!(
                "{context}: feature `{}` is the name of its source's time column; rename the feature",
                field.name
            ));
        }
        let dtype = ValueType::parse(&field.dtype).map_err(|e| format!("{context}: feature `{}`: {e}", field.name))?;
        features.push(Field {
            name: field.name,
            dtype,
        });
    }
    if features.is_empty() {
        return Err(format!(
            "{context}: its schema names only join keys; declare at least one feature"
        ));
    }
    let ttl_seconds = match &view.ttl {
        None | Some(Value::Null) => None,
        Some(value) => parse_ttl(value).map_err(|e| format!("{context}: ttl: {e}"))?,
    };
    Ok(FeatureView {
        name: view.name,
        entities: view.entities,
        join_keys,
        ttl_seconds,
        source,
        features,
        online: view.online,
        push_source,
    })
}

fn build_service(service: ServiceSpec, definitions: &Definitions) -> Result<FeatureService, String> {
    check_name("feature service", &service.name)?;
    let context = format!("feature service `{}`", service.name);
    if service.features.is_empty() {
        return Err(format!("{context}: features is empty"));
    }
    let mut features: Vec<(String, Vec<String>)> = Vec::new();
    for item in service.features {
        let (view_name, wanted) = match item {
            Value::String(view) => (view, None),
            Value::Object(map) if map.len() == 1 => {
                let (view, list) = map.into_iter().next().expect("one entry");
                let names = list
                    .as_array()
                    .and_then(|items| {
                        items
                            .iter()
                            .map(|v| v.as_str().map(str::to_string))
                            .collect::<Option<Vec<_>>>()
                    })
                    .ok_or_else(|| format!("{context}: `{view}` must map to a list of feature names"))?;
                (view, Some(names))
            }
            _ => {
                return Err(format!("{context}: each item is a view name or `view: [feature, ...]`"));
            }
        };
        let declared: Vec<&String> = match (
            definitions.views.get(&view_name),
            definitions.on_demand_views.get(&view_name),
        ) {
            (Some(view), _) => view.features.iter().map(|f| &f.name).collect(),
            (None, Some(view)) => view.features.iter().map(|f| &f.name).collect(),
            (None, None) => {
                return Err(format!(
                    "{context}: no feature view `{view_name}`; the views are {:?}",
                    definitions
                        .views
                        .keys()
                        .chain(definitions.on_demand_views.keys())
                        .collect::<Vec<_>>()
                ));
            }
        };
        let names = match wanted {
            None => declared.iter().map(|f| f.to_string()).collect(),
            Some(names) => {
                for name in &names {
                    if !declared.contains(&name) {
                        return Err(format!(
                            "{context}: feature view `{view_name}` has no feature `{name}`; its features are \
                             {declared:?}"
                        ));
                    }
                }
                names
            }
        };
        if features.iter().any(|(v, _)| v == &view_name) {
            return Err(format!("{context}: feature view `{view_name}` is listed twice"));
        }
        features.push((view_name, names));
    }
    Ok(FeatureService {
        name: service.name,
        features,
    })
}

/// Names are what Feast accepts: letters, digits, `_` and `-`, starting with a letter or `_`, at most 255 bytes.
pub(crate) fn check_name(kind: &str, name: &str) -> Result<(), String> {
    let valid_start = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let valid_rest = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if name.len() > 255 {
        return Err(format!(
            "{kind} name of {} bytes is too long; names are at most 255 bytes",
            name.len()
        ));
    }
    if !valid_start || !valid_rest {
        return Err(format!(
            "{kind} name {name:?} is not valid: use letters, digits, `_` and `-`, starting with a letter or `_`"
        ));
    }
    Ok(())
}

/// A TTL: a number of seconds, or a number with a unit (`90s`, `15m`, `2h`, `7d`, `1w`); 0 means no limit.
pub fn parse_ttl(value: &Value) -> Result<Option<i64>, String> {
    let seconds = match value {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| format!("{n} is not a whole number of seconds"))?,
        Value::String(text) => {
            let text = text.trim();
            let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
            let (digits, unit) = text.split_at(split);
            let count: i64 = digits
                .parse()
                .map_err(|_| format!("{text:?} is not a duration such as `3600`, `90s`, `15m`, `2h`, `7d`"))?;
            let scale = match unit.trim() {
                "" | "s" => 1,
                "m" => 60,
                "h" => 3600,
                "d" => 86_400,
                "w" => 604_800,
                other => return Err(format!("unknown unit {other:?} in {text:?}; use s, m, h, d or w")),
            };
            count
                .checked_mul(scale)
                .ok_or_else(|| format!("{text:?} is too long"))?
        }
        other => return Err(format!("{other} is not a duration")),
    };
    if seconds < 0 {
        return Err(format!("{seconds} is negative"));
    }
    // Longer than about 290 years cannot be expressed in nanoseconds, and is no limit in practice.
    if seconds == 0 || seconds > 9_000_000_000 {
        return Ok(None);
    }
    Ok(Some(seconds))
}
