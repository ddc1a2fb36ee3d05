//! Online features joined into scoring requests. A registered model declares, with tags any MLflow client can
//! set, which feature service its inputs come from:
//!
//! - `loopline.features.service`: the feature service (required to turn the join on);
//! - `loopline.features.project`: its project (default: the server's only project);
//! - `loopline.features.on_missing`: `error` (default: a 404 naming the entity) or `defaults`;
//! - `loopline.features.defaults`: a JSON object of feature -> value used for entities without values (with
//!   `defaults`; a float feature without a default gets NaN);
//! - `loopline.features.keep_entity_columns`: `true` to pass the entity ids on to the model too;
//! - `loopline.features.full_feature_names`: `true` for `view__feature` column names.
//!
//! A request then carries the entity ids (the service's join keys) as columns; every call of the model, through
//! a deployment or a version's endpoint, gets the features added before it runs. A column the request already
//! has wins over the feature of that name (request-time values). The tags are read again after two seconds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::http::StatusCode;
use base64::Engine;
use loopline_feature_api::FeatureApi;
use loopline_features::online_read::{self, EntityColumns, LookupError};
use loopline_features::{ValueType, Wanted};
use loopline_metadata_store::{MetadataStore, StoreError};
use loopline_model_runtime_api::tensor::{DataType, Tensor, TensorData};
use serde_json::{Map, Value};

/// How long a model's tags are trusted before they are read again.
const TAGS_FOR: Duration = Duration::from_secs(2);

type Failure = (StatusCode, String);

/// A model's feature declaration.
#[derive(Debug, Clone)]
struct Binding {
    service: String,
    project: Option<String>,
    defaults: Option<Map<String, Value>>,
    keep_entities: bool,
    full_names: bool,
}

/// The server's feature join.
pub struct FeatureJoiner {
    metadata: Arc<dyn MetadataStore>,
    api: FeatureApi,
    bindings: Mutex<HashMap<String, (Instant, Option<Binding>)>>,
}

impl FeatureJoiner {
    /// A join over the feature store's API state.
    pub fn new(metadata: Arc<dyn MetadataStore>, api: FeatureApi) -> FeatureJoiner {
        FeatureJoiner {
            metadata,
            api,
            bindings: Mutex::new(HashMap::new()),
        }
    }

    async fn binding(&self, model: &str) -> Result<Option<Binding>, Failure> {
        if let Some((read, binding)) = self.bindings.lock().unwrap_or_else(PoisonError::into_inner).get(model)
            && read.elapsed() < TAGS_FOR
        {
            return Ok(binding.clone());
        }
        let binding = match self.metadata.get_registered_model(model).await {
            Ok(registered) => {
                let tag = |key: &str| {
                    registered
                        .tags
                        .iter()
                        .find(|t| t.key == format!("loopline.features.{key}"))
                        .map(|t| t.value.trim().to_string())
                };
                match tag("service").filter(|s| !s.is_empty()) {
                    None => None,
                    Some(service) => Some(parse_binding(model, service, &tag)?),
                }
            }
            // Unknown models are the catalog's to refuse.
            Err(StoreError::NotFound(_)) => None,
            Err(error) => {
                return Err((
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("reading model '{model}': {error}"),
                ));
            }
        };
        self.bindings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(model.to_string(), (Instant::now(), binding.clone()));
        Ok(binding)
    }
}

fn parse_binding(model: &str, service: String, tag: &dyn Fn(&str) -> Option<String>) -> Result<Binding, Failure> {
    let misconfigured = |message: String| (StatusCode::INTERNAL_SERVER_ERROR, format!("model '{model}': {message}"));
    let flag = |key: &str| -> Result<bool, Failure> {
        match tag(key).as_deref() {
            None | Some("" | "false") => Ok(false),
            Some("true") => Ok(true),
            Some(other) => Err(misconfigured(format!(
                "tag loopline.features.{key} is {other:?}; use true or false"
            ))),
        }
    };
    let defaults = match tag("on_missing").as_deref() {
        None | Some("" | "error") => None,
        Some("defaults") => Some(match tag("defaults") {
            None => Map::new(),
            Some(text) => match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(map)) => map,
                _ => {
                    return Err(misconfigured(
                        "tag loopline.features.defaults is not a JSON object of feature -> value".to_string(),
                    ));
                }
            },
        }),
        Some(other) => {
            return Err(misconfigured(format!(
                "tag loopline.features.on_missing is {other:?}; use error or defaults"
            )));
        }
    };
    Ok(Binding {
        service,
        project: tag("project").filter(|p| !p.is_empty()),
        defaults,
        keep_entities: flag("keep_entity_columns")?,
        full_names: flag("full_feature_names")?,
    })
}

#[async_trait]
impl loopline_serving::feature_join::FeatureJoin for FeatureJoiner {
    async fn join(&self, model: &str, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, Failure> {
        let Some(binding) = self.binding(model).await? else {
            return Ok(inputs);
        };
        let failed =
            |error: loopline_feature_api::ApiError| (error.status, format!("model '{model}': {}", error.message));
        let project = self
            .api
            .registry
            .project_for(binding.project.as_deref())
            .await
            .map_err(|error| {
                if error.message.contains("several feature projects") {
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!(
                            "model '{model}': the server holds several feature projects; tag the model \
                             loopline.features.project with the one its service is in"
                        ),
                    )
                } else {
                    failed(error)
                }
            })?;
        let Some((_, definitions)) = self.api.registry.current(&project).await.map_err(failed)? else {
            return Err((
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("model '{model}' takes features of project '{project}', which has no definitions"),
            ));
        };
        let selection = self
            .api
            .selections
            .select(
                &definitions,
                &Wanted::Service(binding.service.clone()),
                binding.full_names,
            )
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("model '{model}': {e}")))?;
        if let Some(defaults) = &binding.defaults {
            let outputs = selection.output_names();
            let unknown: Vec<&String> = defaults.keys().filter(|k| !outputs.contains(k)).collect();
            if !unknown.is_empty() {
                return Err((
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!(
                        "model '{model}': tag loopline.features.defaults names {unknown:?}, which service '{}' does \
                         not have; its features are {outputs:?}",
                        binding.service
                    ),
                ));
            }
        }
        let rows = inputs.first().map_or(0, |t| t.shape.first().copied().unwrap_or(0));
        let mut keys: Vec<String> = Vec::new();
        for view in &selection.views {
            for key in &view.view.join_keys {
                if !keys.contains(key) {
                    keys.push(key.clone());
                }
            }
        }
        let mut entity_pairs = Vec::with_capacity(keys.len());
        for key in &keys {
            let tensor = inputs.iter().find(|t| &t.name == key).ok_or_else(|| {
                (
                    StatusCode::BAD_REQUEST,
                    format!(
                        "model '{model}' looks its features up by '{key}': send it as a column (the request has {:?})",
                        inputs.iter().map(|t| &t.name).collect::<Vec<_>>()
                    ),
                )
            })?;
            entity_pairs.push((key.clone(), Value::Array(entity_values(tensor, rows)?)));
        }
        let mut columns = entity_pairs.clone();
        for (field, _) in &selection.request_fields {
            let tensor = inputs.iter().find(|t| &t.name == field).ok_or_else(|| {
                (
                    StatusCode::BAD_REQUEST,
                    format!(
                        "model '{model}' computes features from request field '{field}': send it as a column (the \
                         request has {:?})",
                        inputs.iter().map(|t| &t.name).collect::<Vec<_>>()
                    ),
                )
            })?;
            columns.push((field.clone(), Value::Array(request_values(tensor, rows)?)));
        }
        let fields: Vec<&str> = selection.request_fields.iter().map(|(f, _)| f.as_str()).collect();
        let entities =
            EntityColumns::with_request_fields(&columns, &fields).map_err(|m| (StatusCode::BAD_REQUEST, m))?;
        let answer = online_read::lookup(self.api.online.as_ref(), &definitions, &selection, &entities)
            .await
            .map_err(|error| match error {
                LookupError::Request(message) => (StatusCode::BAD_REQUEST, message),
                LookupError::Store(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
            })?;
        let mut joined: Vec<Tensor> = inputs
            .into_iter()
            .filter(|t| binding.keep_entities || !keys.contains(&t.name))
            .collect();
        let names = answer["metadata"]["feature_names"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let results = answer["results"].as_array().cloned().unwrap_or_default();
        let dtypes = selection.output_types();
        for (name, result) in names.iter().zip(&results).skip(keys.len()) {
            let name = name.as_str().unwrap_or_default();
            if joined.iter().any(|t| t.name == name) {
                continue;
            }
            let dtype = dtypes
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, d)| *d)
                .unwrap_or(ValueType::Float64);
            let values = result["values"].as_array().cloned().unwrap_or_default();
            let statuses = result["statuses"].as_array().cloned().unwrap_or_default();
            let mut cells = Vec::with_capacity(values.len());
            for (row, (value, status)) in values.into_iter().zip(statuses).enumerate() {
                if status == "PRESENT" && !value.is_null() {
                    cells.push(value);
                    continue;
                }
                let Some(defaults) = &binding.defaults else {
                    let who: Vec<String> = entity_pairs
                        .iter()
                        .map(|(k, v)| format!("{k}={}", v.get(row).cloned().unwrap_or(Value::Null)))
                        .collect();
                    let whom = if who.is_empty() {
                        "the request".to_string()
                    } else {
                        who.join(", ")
                    };
                    let message = if status == "PRESENT" {
                        format!(
                            "on-demand feature '{name}' has no value for {whom} (row {row}): a value its expression \
                             reads is missing (an unknown entity, a null request field) or the result is out of range; \
                             send the values, or tag the model loopline.features.on_missing=defaults"
                        )
                    } else {
                        format!(
                            "no online value of feature '{name}' for {whom} (row {row}): the entity is unknown or its \
                             view is not materialised; materialise it, or tag the model \
                             loopline.features.on_missing=defaults"
                        )
                    };
                    return Err((StatusCode::NOT_FOUND, message));
                };
                cells.push(defaults.get(name).cloned().unwrap_or(Value::Null));
            }
            joined.push(feature_tensor(model, name, dtype, &cells, rows)?);
        }
        Ok(joined)
    }
}

/// A float feature's JSON value: a number, or Feast's `"NaN"`, `"Infinity"` and `"-Infinity"` (a missing value
/// is NaN).
fn float_of(value: &Value) -> f64 {
    match value {
        Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
        Value::String(text) if text == "Infinity" => f64::INFINITY,
        Value::String(text) if text == "-Infinity" => f64::NEG_INFINITY,
        _ => f64::NAN,
    }
}

/// A request field's values as JSON, fractions kept (an on-demand feature reads them as its field's type).
fn request_values(tensor: &Tensor, rows: usize) -> Result<Vec<Value>, Failure> {
    let float = |x: f64| serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number);
    match &tensor.data {
        TensorData::F32(v) => column_values(tensor, rows, v.iter().map(|x| float(f64::from(*x))).collect()),
        TensorData::F64(v) => column_values(tensor, rows, v.iter().map(|x| float(*x)).collect()),
        _ => entity_values(tensor, rows),
    }
}

/// An entity column's values as JSON (integers, text or booleans); whole floats are integers.
fn entity_values(tensor: &Tensor, rows: usize) -> Result<Vec<Value>, Failure> {
    let values: Vec<Value> = match &tensor.data {
        TensorData::Int(v) => v.iter().map(|x| Value::from(*x)).collect(),
        TensorData::UInt(v) => v.iter().map(|x| Value::from(*x)).collect(),
        TensorData::Bool(v) => v.iter().map(|x| Value::from(*x)).collect(),
        TensorData::F32(v) => v.iter().map(|x| whole(f64::from(*x))).collect(),
        TensorData::F64(v) => v.iter().map(|x| whole(*x)).collect(),
        TensorData::Bytes(v) => v
            .iter()
            .map(|b| {
                String::from_utf8(b.clone()).map(Value::from).map_err(|_| {
                    (
                        StatusCode::BAD_REQUEST,
                        format!("entity column '{}' holds bytes that are not text", tensor.name),
                    )
                })
            })
            .collect::<Result<_, _>>()?,
    };
    column_values(tensor, rows, values)
}

/// The values of a one-value-per-row column, checked against the request's row count.
fn column_values(tensor: &Tensor, rows: usize, values: Vec<Value>) -> Result<Vec<Value>, Failure> {
    if tensor.shape.len() > 2 || tensor.shape.iter().skip(1).any(|d| *d != 1) {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("entity column '{}' must hold one value per row", tensor.name),
        ));
    }
    if values.len() != rows {
        return Err((
            StatusCode::BAD_REQUEST,
            format!(
                "entity column '{}' has {} values for {rows} rows",
                tensor.name,
                values.len()
            ),
        ));
    }
    Ok(values)
}

fn whole(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 9.0e15 {
        Value::from(x as i64)
    } else {
        Value::Null
    }
}

/// A feature column as the tensor its declared type calls for.
fn feature_tensor(model: &str, name: &str, dtype: ValueType, cells: &[Value], rows: usize) -> Result<Tensor, Failure> {
    let needs_default = || {
        (
            StatusCode::NOT_FOUND,
            format!(
                "feature '{name}' has no value for some entities and model '{model}' declares no default for it; add \
                 it to the loopline.features.defaults tag"
            ),
        )
    };
    let bad = |value: &Value| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "feature '{name}' of model '{model}': {value} is not a {} value",
                dtype.name()
            ),
        )
    };
    let (datatype, data) = match dtype {
        ValueType::Int32 | ValueType::Int64 | ValueType::UnixTimestamp => {
            let values = cells
                .iter()
                .map(|v| {
                    if v.is_null() {
                        Err(needs_default())
                    } else {
                        v.as_i64().ok_or_else(|| bad(v))
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            (DataType::Int64, TensorData::Int(values))
        }
        ValueType::Float32 => {
            let values = cells.iter().map(|v| float_of(v) as f32).collect();
            (DataType::Fp32, TensorData::F32(values))
        }
        ValueType::Float64 => (DataType::Fp64, TensorData::F64(cells.iter().map(float_of).collect())),
        ValueType::Bool => {
            let values = cells
                .iter()
                .map(|v| {
                    if v.is_null() {
                        Err(needs_default())
                    } else {
                        v.as_bool().ok_or_else(|| bad(v))
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            (DataType::Bool, TensorData::Bool(values))
        }
        ValueType::String | ValueType::Bytes => {
            let values = cells
                .iter()
                .map(|v| match v {
                    Value::Null => Err(needs_default()),
                    Value::String(s) if dtype == ValueType::Bytes => {
                        base64::engine::general_purpose::STANDARD.decode(s).map_err(|_| bad(v))
                    }
                    Value::String(s) => Ok(s.as_bytes().to_vec()),
                    other => Err(bad(other)),
                })
                .collect::<Result<Vec<_>, _>>()?;
            (DataType::Bytes, TensorData::Bytes(values))
        }
    };
    Tensor::new(name, datatype, vec![rows], data).map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infinite_and_missing_floats_reach_the_model_as_such() {
        assert_eq!(float_of(&Value::from("Infinity")), f64::INFINITY);
        assert_eq!(float_of(&Value::from("-Infinity")), f64::NEG_INFINITY);
        assert!(float_of(&Value::from("NaN")).is_nan());
        assert!(float_of(&Value::Null).is_nan());
        assert_eq!(float_of(&Value::from(2.5)), 2.5);
    }
}
