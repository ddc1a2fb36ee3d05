//! Collections: create, describe, list, check, delete; payload indexes.

use crate::envelope::{QdrantError, blocking, ok, read};
use crate::{Target, VectorApi};
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use loopline_vector_index::segment::MAX_DIMENSION;
use loopline_vector_index::{Distance, FieldType, HnswParams, Operation, Segment, VectorParams};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::time::Instant;

/// Qdrant's default `full_scan_threshold` (kilobytes of vectors below which search is exact).
const FULL_SCAN_THRESHOLD_KB: usize = 10_000;

pub(crate) async fn list(State(api): State<VectorApi>) -> Response {
    let started = Instant::now();
    let names: Vec<Value> = api
        .store
        .names()
        .into_iter()
        .map(|name| json!({"name": name}))
        .collect();
    ok(json!({"collections": names}), started)
}

pub(crate) async fn exists(Target { api, name }: Target) -> Response {
    let started = Instant::now();
    ok(json!({"exists": api.store.get(&name).is_some()}), started)
}

pub(crate) async fn info(Target { api, name }: Target) -> Result<Response, QdrantError> {
    let started = Instant::now();
    let collection = api.store.get(&name).ok_or_else(|| QdrantError::no_collection(&name))?;
    let described = blocking(move || {
        let stored = collection
            .read()
            .ok_or_else(|| QdrantError::no_collection(collection.name()))?;
        Ok(describe(stored.segment()))
    })
    .await?;
    Ok(ok(described, started))
}

fn distance_name(distance: Distance) -> &'static str {
    match distance {
        Distance::Cosine => "Cosine",
        Distance::Dot => "Dot",
        Distance::Euclid => "Euclid",
        Distance::Manhattan => "Manhattan",
    }
}

fn hnsw_json(params: &VectorParams) -> Value {
    json!({
        "m": params.hnsw.m,
        "ef_construct": params.hnsw.ef_construction,
        "full_scan_threshold": params.full_scan_threshold_kb,
        "max_indexing_threads": 0,
        "on_disk": false,
    })
}

fn quantization_json(int8: bool) -> Value {
    if int8 {
        json!({"scalar": {"type": "int8", "quantile": 0.99, "always_ram": true}})
    } else {
        Value::Null
    }
}

/// Qdrant's CollectionInfo for a segment.
fn describe(segment: &Segment) -> Value {
    let vectors: Vec<(&str, &VectorParams)> = segment.vector_params().collect();
    let first = vectors.first().map(|(_, params)| (*params).clone());
    let one = |params: &VectorParams| {
        let mut described = json!({"size": params.size, "distance": distance_name(params.distance)});
        if first.as_ref().is_some_and(|first| first.hnsw != params.hnsw) {
            described["hnsw_config"] = hnsw_json(params);
        }
        if params.int8 {
            described["quantization_config"] = quantization_json(true);
        }
        if params.on_disk {
            described["on_disk"] = Value::Bool(true);
        }
        described
    };
    let vectors_json = match vectors.as_slice() {
        [("", params)] => one(params),
        named => Value::Object(
            named
                .iter()
                .map(|(name, params)| (name.to_string(), one(params)))
                .collect(),
        ),
    };
    let payload_schema: Map<String, Value> = segment
        .payload_schema()
        .map(|(key, field_type, points)| {
            (
                key.to_string(),
                json!({"data_type": field_type.name(), "params": null, "points": points}),
            )
        })
        .collect();
    let points = segment.len();
    let default = first.unwrap_or(VectorParams {
        size: 1,
        distance: Distance::Cosine,
        hnsw: HnswParams::default(),
        full_scan_threshold_kb: FULL_SCAN_THRESHOLD_KB,
        int8: false,
        on_disk: false,
    });
    json!({
        "status": "green",
        "optimizer_status": "ok",
        "points_count": points,
        "vectors_count": points,
        "indexed_vectors_count": points,
        "segments_count": 1,
        "payload_schema": payload_schema,
        "config": {
            "params": {
                "vectors": vectors_json,
                "shard_number": 1,
                "replication_factor": 1,
                "write_consistency_factor": 1,
                "on_disk_payload": false,
            },
            "hnsw_config": hnsw_json(&default),
            "optimizer_config": {
                "deleted_threshold": 0.2,
                "vacuum_min_vector_number": 1000,
                "default_segment_number": 0,
                "max_segment_size": null,
                "memmap_threshold": null,
                "indexing_threshold": 10000,
                "flush_interval_sec": 5,
                "max_optimization_threads": null,
            },
            "wal_config": {"wal_capacity_mb": 32, "wal_segments_ahead": 0},
            "quantization_config": quantization_json(default.int8),
        },
    })
}

/// Reads `hnsw_config` over `base` (the collection's, for a vector's own).
fn hnsw(value: Option<&Value>, base: (HnswParams, usize), at: &str) -> Result<(HnswParams, usize), QdrantError> {
    let Some(value) = value.filter(|value| !value.is_null()) else {
        return Ok(base);
    };
    let map = value
        .as_object()
        .ok_or_else(|| QdrantError::format(format!("{at}: an object is expected")))?;
    let number = |key: &str| -> Result<Option<usize>, QdrantError> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => value
                .as_u64()
                .and_then(|number| usize::try_from(number).ok())
                .map(Some)
                .ok_or_else(|| QdrantError::format(format!("{at}.{key}: a non-negative integer is expected"))),
        }
    };
    if map
        .get("on_disk")
        .is_some_and(|value| !value.is_null() && !value.is_boolean())
    {
        return Err(QdrantError::format(format!("{at}.on_disk: true or false is expected")));
    }
    let (mut params, mut threshold) = base;
    if let Some(m) = number("m")? {
        if m == 0 {
            // No graph: every search is exact.
            threshold = usize::MAX / 1024;
        } else if !(2..=512).contains(&m) {
            return Err(QdrantError::wrong_input(format!(
                "{at}.m: {m} is out of range (2 to 512, or 0 for no graph)"
            )));
        } else {
            params.m = m;
        }
    }
    if let Some(ef) = number("ef_construct")? {
        if !(4..=4096).contains(&ef) {
            return Err(QdrantError::wrong_input(format!(
                "{at}.ef_construct: {ef} is out of range (4 to 4096)"
            )));
        }
        params.ef_construction = ef;
    }
    if let Some(kb) = number("full_scan_threshold")? {
        threshold = kb;
    }
    Ok((params, threshold))
}

/// Reads `quantization_config`: scalar int8 is supported; `None` when absent.
fn quantization(value: Option<&Value>, at: &str) -> Result<Option<bool>, QdrantError> {
    match value {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(false)),
        Some(Value::Object(map)) if map.contains_key("scalar") => {
            let scalar = map["scalar"]
                .as_object()
                .ok_or_else(|| QdrantError::format(format!("{at}.scalar: an object is expected")))?;
            match scalar.get("type") {
                None | Some(Value::Null) => {}
                Some(Value::String(kind)) if kind == "int8" => {}
                Some(Value::String(_)) => {
                    return Err(QdrantError::wrong_input(format!(
                        "{at}.scalar.type: only int8 is supported"
                    )));
                }
                Some(_) => return Err(QdrantError::format(format!("{at}.scalar.type: \"int8\" is expected"))),
            }
            // The grid's quantiles are fixed (0.5% and 99.5%); Qdrant's `quantile` is accepted when valid.
            match scalar.get("quantile") {
                None | Some(Value::Null) => {}
                Some(value) if value.as_f64().is_some_and(|quantile| (0.5..=1.0).contains(&quantile)) => {}
                Some(_) => {
                    return Err(QdrantError::format(format!(
                        "{at}.scalar.quantile: a number from 0.5 to 1 is expected"
                    )));
                }
            }
            if scalar
                .get("always_ram")
                .is_some_and(|value| !value.is_null() && !value.is_boolean())
            {
                return Err(QdrantError::format(format!(
                    "{at}.scalar.always_ram: true or false is expected"
                )));
            }
            Ok(Some(true))
        }
        Some(_) => Err(QdrantError::wrong_input(format!(
            "{at}: only scalar int8 quantisation is supported"
        ))),
    }
}

fn vector_params(
    value: &Value,
    at: &str,
    hnsw_base: (HnswParams, usize),
    int8_base: bool,
) -> Result<VectorParams, QdrantError> {
    let map = value
        .as_object()
        .ok_or_else(|| QdrantError::format(format!("{at}: vector parameters are an object")))?;
    let size = map
        .get("size")
        .and_then(Value::as_u64)
        .and_then(|size| usize::try_from(size).ok())
        .ok_or_else(|| QdrantError::format(format!("{at}.size: a positive integer is required")))?;
    if size == 0 || size > MAX_DIMENSION {
        return Err(QdrantError::wrong_input(format!(
            "{at}.size: {size} is out of range (1 to {MAX_DIMENSION})"
        )));
    }
    let distance = match map.get("distance").and_then(Value::as_str) {
        Some("Cosine") => Distance::Cosine,
        Some("Dot") => Distance::Dot,
        Some("Euclid") => Distance::Euclid,
        Some("Manhattan") => Distance::Manhattan,
        Some(other) => {
            return Err(QdrantError::format(format!(
                "{at}.distance: unknown variant `{other}`, expected one of `Cosine`, `Euclid`, `Dot`, `Manhattan`"
            )));
        }
        None => return Err(QdrantError::format(format!("{at}: missing field `distance`"))),
    };
    if let Some(datatype) = map
        .get("datatype")
        .and_then(Value::as_str)
        .filter(|datatype| *datatype != "float32")
    {
        return Err(QdrantError::wrong_input(format!(
            "{at}.datatype: {datatype} vectors are not supported (float32 only)"
        )));
    }
    if map.get("multivector_config").is_some_and(|value| !value.is_null()) {
        return Err(QdrantError::wrong_input(format!(
            "{at}.multivector_config: multi-vectors are not supported"
        )));
    }
    let (hnsw, full_scan_threshold_kb) = hnsw(map.get("hnsw_config"), hnsw_base, &format!("{at}.hnsw_config"))?;
    let int8 = quantization(map.get("quantization_config"), &format!("{at}.quantization_config"))?.unwrap_or(int8_base);
    let on_disk = match map.get("on_disk") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(on_disk)) => *on_disk,
        Some(_) => return Err(QdrantError::format(format!("{at}.on_disk: true or false is expected"))),
    };
    Ok(VectorParams {
        size,
        distance,
        hnsw,
        full_scan_threshold_kb,
        int8,
        on_disk,
    })
}

/// The vectors of a create request.
fn create_params(body: &Map<String, Value>) -> Result<BTreeMap<String, VectorParams>, QdrantError> {
    if body
        .get("sparse_vectors")
        .is_some_and(|value| value.as_object().is_some_and(|map| !map.is_empty()))
    {
        return Err(QdrantError::wrong_input(
            "sparse_vectors: sparse vectors are not supported",
        ));
    }
    let base = hnsw(
        body.get("hnsw_config"),
        (
            HnswParams {
                m: 16,
                ef_construction: 100,
            },
            FULL_SCAN_THRESHOLD_KB,
        ),
        "hnsw_config",
    )?;
    let int8 = quantization(body.get("quantization_config"), "quantization_config")?.unwrap_or(false);
    let vectors = body
        .get("vectors")
        .ok_or_else(|| QdrantError::format("missing field `vectors`"))?;
    let map = vectors
        .as_object()
        .ok_or_else(|| QdrantError::format("vectors: an object is expected"))?;
    if map.contains_key("size") || map.contains_key("distance") {
        return Ok(BTreeMap::from([(
            String::new(),
            vector_params(vectors, "vectors", base, int8)?,
        )]));
    }
    if map.is_empty() {
        return Err(QdrantError::wrong_input(
            "vectors: a collection needs at least one vector",
        ));
    }
    map.iter()
        .map(|(name, params)| {
            if name.is_empty() || name.len() > 255 {
                return Err(QdrantError::wrong_input(
                    "vectors: vector names are 1 to 255 characters",
                ));
            }
            Ok((
                name.clone(),
                vector_params(params, &format!("vectors.{name}"), base, int8)?,
            ))
        })
        .collect()
}

pub(crate) async fn create(Target { api, name }: Target, body: Body) -> Result<Response, QdrantError> {
    let started = Instant::now();
    let body = read(body).await?;
    if let Some(problem) = loopline_vector_index::storage::catalog::name_problem(&name) {
        return Err(QdrantError::wrong_input(format!("collection name '{name}': {problem}")));
    }
    let params = create_params(&body)?;
    let created = blocking(move || Ok(api.store.create(&name, params)?)).await?;
    if !created {
        return Err(QdrantError::new(
            StatusCode::CONFLICT,
            "Wrong input: Collection already exists!",
        ));
    }
    Ok(ok(json!(true), started))
}

pub(crate) async fn update(Target { api, name }: Target, body: Body) -> Result<Response, QdrantError> {
    let started = Instant::now();
    let body = read(body).await?;
    api.store.get(&name).ok_or_else(|| QdrantError::no_collection(&name))?;
    // Loopline has no optimizers to tune; anything else would change how stored points are indexed.
    if let Some(key) = body.keys().find(|key| key.as_str() != "optimizers_config") {
        return Err(QdrantError::wrong_input(format!(
            "{key}: changing it on an existing collection is not supported"
        )));
    }
    Ok(ok(json!(true), started))
}

pub(crate) async fn remove(Target { api, name }: Target) -> Result<Response, QdrantError> {
    let started = Instant::now();
    let existed = blocking(move || Ok(api.store.delete(&name)?)).await?;
    Ok(ok(json!(existed), started))
}

pub(crate) async fn create_index(Target { api, name }: Target, body: Body) -> Result<Response, QdrantError> {
    let started = Instant::now();
    let body = read(body).await?;
    let key = body
        .get("field_name")
        .and_then(Value::as_str)
        .ok_or_else(|| QdrantError::format("missing field `field_name`"))?
        .to_string();
    let schema = match body.get("field_schema") {
        Some(Value::String(name)) => name.clone(),
        Some(Value::Object(map)) => map.get("type").and_then(Value::as_str).unwrap_or_default().to_string(),
        _ => {
            return Err(QdrantError::format(
                "field_schema: a type name such as \"keyword\" is required",
            ));
        }
    };
    let field_type = FieldType::from_name(&schema).ok_or_else(|| {
        QdrantError::format(format!(
            "field_schema: unknown type '{schema}' (keyword, integer, float, bool, datetime, text, uuid)"
        ))
    })?;
    let collection = api.store.get(&name).ok_or_else(|| QdrantError::no_collection(&name))?;
    let operation = blocking(move || {
        collection.update(
            |_| Ok(Operation::CreateIndex { key, field_type }),
            || QdrantError::no_collection(collection.name()),
        )
    })
    .await?;
    Ok(ok(json!({"operation_id": operation, "status": "completed"}), started))
}

pub(crate) async fn delete_index(
    State(api): State<VectorApi>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, QdrantError> {
    let Path((name, field)) = path.map_err(|rejection| QdrantError::format(rejection.body_text()))?;
    let started = Instant::now();
    let collection = api.store.get(&name).ok_or_else(|| QdrantError::no_collection(&name))?;
    let operation = blocking(move || {
        collection.update(
            |_| Ok(Operation::DropIndex(field)),
            || QdrantError::no_collection(collection.name()),
        )
    })
    .await?;
    Ok(ok(json!({"operation_id": operation, "status": "completed"}), started))
}
