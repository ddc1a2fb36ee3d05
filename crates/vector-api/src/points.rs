//! Points: upsert, retrieve, delete, payload changes, scroll and count.

use crate::envelope::{QdrantError, blocking, ok, read};
use crate::select::{self, WithPayload, WithVector};
use crate::{Target, VectorApi};
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use loopline_vector_index::{Operation, PointId, Segment};
use serde_json::{Map, Value, json};
use std::time::Instant;

/// Most points one scroll page may hold.
const MAX_PAGE: usize = 10_000;

fn updated(operation: u64, started: Instant) -> Response {
    ok(json!({"operation_id": operation, "status": "completed"}), started)
}

/// Applies the operation `make` builds from the body and the collection as it is (under its write lock, so
/// a filter is resolved against the same points the write changes); an upsert is linked into the graph
/// after, with searches going on (`Collection::update`).
async fn write(
    api: VectorApi,
    name: String,
    body: Body,
    make: impl FnOnce(&mut Map<String, Value>, &Segment) -> Result<Operation, QdrantError> + Send + 'static,
) -> Result<Response, QdrantError> {
    let started = Instant::now();
    let mut body = read(body).await?;
    let collection = api.store.get(&name).ok_or_else(|| QdrantError::no_collection(&name))?;
    let operation = blocking(move || {
        collection.update(
            |segment| make(&mut body, segment),
            || QdrantError::no_collection(collection.name()),
        )
    })
    .await?;
    Ok(updated(operation, started))
}

pub(crate) async fn upsert(Target { api, name }: Target, body: Body) -> Result<Response, QdrantError> {
    write(api, name, body, |body, _| {
        Ok(Operation::Upsert(select::upsert_points(body)?))
    })
    .await
}

pub(crate) async fn delete(Target { api, name }: Target, body: Body) -> Result<Response, QdrantError> {
    write(api, name, body, |body, segment| {
        Ok(Operation::Delete(select::selected(body, segment)?))
    })
    .await
}

fn payload_object(body: &Map<String, Value>) -> Result<Map<String, Value>, QdrantError> {
    match body.get("payload") {
        Some(Value::Object(map)) => Ok(map.clone()),
        _ => Err(QdrantError::format("payload: a JSON object is required")),
    }
}

pub(crate) async fn set_payload(Target { api, name }: Target, body: Body) -> Result<Response, QdrantError> {
    write(api, name, body, |body, segment| {
        let key = match body.get("key") {
            None | Some(Value::Null) => None,
            Some(Value::String(key)) => Some(key.clone()),
            Some(_) => return Err(QdrantError::format("key: a string is expected")),
        };
        Ok(Operation::SetPayload {
            ids: select::selected(body, segment)?,
            payload: payload_object(body)?,
            key,
        })
    })
    .await
}

pub(crate) async fn overwrite_payload(Target { api, name }: Target, body: Body) -> Result<Response, QdrantError> {
    write(api, name, body, |body, segment| {
        Ok(Operation::OverwritePayload {
            ids: select::selected(body, segment)?,
            payload: payload_object(body)?,
        })
    })
    .await
}

pub(crate) async fn delete_payload(Target { api, name }: Target, body: Body) -> Result<Response, QdrantError> {
    write(api, name, body, |body, segment| {
        let keys = body
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| QdrantError::format("keys: a list of keys is required"))?
            .iter()
            .map(|key| {
                key.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| QdrantError::format("keys: keys are strings"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Operation::DeletePayload {
            ids: select::selected(body, segment)?,
            keys,
        })
    })
    .await
}

pub(crate) async fn clear_payload(Target { api, name }: Target, body: Body) -> Result<Response, QdrantError> {
    write(api, name, body, |body, segment| {
        Ok(Operation::ClearPayload(select::selected(body, segment)?))
    })
    .await
}

/// Runs a read on the collection on a blocking thread.
async fn reading(
    api: VectorApi,
    name: String,
    body: Map<String, Value>,
    work: impl FnOnce(&Map<String, Value>, &Segment) -> Result<Value, QdrantError> + Send + 'static,
) -> Result<Response, QdrantError> {
    crate::query::searching(api, name, move |segment| work(&body, segment)).await
}

pub(crate) async fn retrieve(Target { api, name }: Target, body: Body) -> Result<Response, QdrantError> {
    let body = read(body).await?;
    reading(api, name, body, |body, segment| {
        let mut ids = select::ids(body.get("ids").unwrap_or(&Value::Null), "ids")?;
        // Each point once, however often it is named (a short request must not multiply a large answer).
        let mut seen = std::collections::HashSet::new();
        ids.retain(|id| seen.insert(*id));
        let payload = WithPayload::parse(body.get("with_payload"), true)?;
        let vector = WithVector::parse(body.get("with_vector"))?;
        let records: Vec<Value> = ids
            .into_iter()
            .filter_map(|id| segment.node_of(id))
            .map(|node| select::record(segment, node, &payload, &vector, None))
            .collect();
        Ok(Value::Array(records))
    })
    .await
}

pub(crate) async fn get_one(
    State(api): State<VectorApi>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, QdrantError> {
    let Path((name, id)) = path.map_err(|rejection| QdrantError::format(rejection.body_text()))?;
    let id_json = match id.parse::<u64>() {
        Ok(number) => json!(number),
        Err(_) => json!(id),
    };
    let id = PointId::from_json(&id_json).map_err(QdrantError::format)?;
    reading(api, name, Map::new(), move |_, segment| {
        let node = segment.node_of(id).ok_or_else(|| {
            QdrantError::new(StatusCode::NOT_FOUND, format!("Not found: No point with id {id} found"))
        })?;
        Ok(select::record(segment, node, &WithPayload::All, &WithVector::All, None))
    })
    .await
}

fn limit(body: &Map<String, Value>, default: usize) -> Result<usize, QdrantError> {
    match body.get("limit") {
        None | Some(Value::Null) => Ok(default),
        Some(value) => value
            .as_u64()
            .and_then(|limit| usize::try_from(limit).ok())
            .filter(|limit| *limit <= MAX_PAGE)
            .ok_or_else(|| QdrantError::format(format!("limit: an integer from 0 to {MAX_PAGE}"))),
    }
}

pub(crate) async fn scroll(Target { api, name }: Target, body: Body) -> Result<Response, QdrantError> {
    let body = read(body).await?;
    reading(api, name, body, |body, segment| {
        if body.get("order_by").is_some_and(|value| !value.is_null()) {
            return Err(QdrantError::wrong_input(
                "order_by: ordering a scroll by a payload field is not supported",
            ));
        }
        let filter = select::filter(body, "filter")?;
        let from = match body.get("offset") {
            None | Some(Value::Null) => None,
            Some(value) => {
                Some(PointId::from_json(value).map_err(|message| QdrantError::format(format!("offset: {message}")))?)
            }
        };
        let payload = WithPayload::parse(body.get("with_payload"), true)?;
        let vector = WithVector::parse(body.get("with_vector"))?;
        let (page, next) = segment.scroll(from, limit(body, 10)?, filter.as_ref());
        let points: Vec<Value> = page
            .into_iter()
            .map(|node| select::record(segment, node, &payload, &vector, None))
            .collect();
        Ok(json!({"points": points, "next_page_offset": next.map(PointId::to_json)}))
    })
    .await
}

pub(crate) async fn count(Target { api, name }: Target, body: Body) -> Result<Response, QdrantError> {
    let body = read(body).await?;
    reading(api, name, body, |body, segment| {
        let filter = select::filter(body, "filter")?;
        let count = match &filter {
            None => segment.len(),
            Some(filter) => segment.matching(Some(filter)).len(),
        };
        Ok(json!({"count": count}))
    })
    .await
}
