//! MLflow 3's GenAI evaluation datasets (`/api/3.0/mlflow/datasets/...`), as `mlflow.genai.datasets`
//! calls them: create, get, search, delete, tags, experiments, and records upserted by their inputs (the same
//! inputs update one record, merging expectations and tags). Tags, schema, profile and records travel as JSON
//! text inside the JSON messages, as MLflow's protos declare them.

use super::{JsonResult, empty_object, page_response, single};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{MlflowMessage, one_or_many};
use axum::Json;
use axum::extract::{Path, State};
use loopline_core::proto_json::deserialize_optional_int64;
use loopline_core::time::now_millis;
use loopline_metadata_store::{EvalDatasetSearch, EvalRecord, PageRequest, RecordSummary};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// The longest dataset name.
const MAX_NAME_LENGTH: usize = 500;
/// The largest tags, or records, JSON text one call may carry.
const MAX_JSON_TEXT: usize = 16 << 20;

/// A JSON object sent as text (`tags`, `records`), or the 400 that names the field.
fn json_text(text: Option<&str>, field: &str) -> ApiResult<Option<Value>> {
    let Some(text) = text.filter(|text| !text.trim().is_empty()) else {
        return Ok(None);
    };
    if text.len() > MAX_JSON_TEXT {
        return Err(ApiError::invalid(format!(
            "'{field}' is longer than {MAX_JSON_TEXT} bytes"
        )));
    }
    serde_json::from_str(text)
        .map(Some)
        .map_err(|error| ApiError::invalid(format!("Invalid value for parameter '{field}': not JSON ({error})")))
}

fn string_map(value: Option<Value>, field: &str) -> ApiResult<Map<String, Value>> {
    match value {
        None => Ok(Map::new()),
        Some(Value::Object(map)) => {
            // Tags are text, as MLflow's are: a number stored as a number would never match `tags.k = '5'`.
            if let Some((key, _)) = map
                .iter()
                .find(|(key, value)| key.is_empty() || !(value.is_string() || value.is_null()))
            {
                return Err(ApiError::invalid(format!(
                    "Invalid value for parameter '{field}': '{key}' must be a non-empty key with a string value"
                )));
            }
            Ok(map)
        }
        Some(_) => Err(ApiError::invalid(format!(
            "Invalid value for parameter '{field}': expected a JSON object"
        ))),
    }
}

/// How a stored dataset document is sent: tags, schema and profile as JSON text, times as numbers.
fn wire(mut dataset: Value) -> Value {
    if let Some(object) = dataset.as_object_mut() {
        for field in ["tags", "schema", "profile"] {
            if let Some(value) = object
                .get(field)
                .filter(|value| !value.is_string() && !value.is_null())
                .cloned()
            {
                object.insert(field.into(), Value::String(value.to_string()));
            }
        }
    }
    dataset
}

/// The `mlflow.user` tag of a tag map, which MLflow takes as the author.
fn user_tag(tags: &Map<String, Value>) -> Option<String> {
    tags.get("mlflow.user").and_then(Value::as_str).map(str::to_string)
}

#[derive(Deserialize)]
pub(super) struct CreateRequest {
    name: Option<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    experiment_ids: Vec<String>,
    tags: Option<String>,
    created_by: Option<String>,
}

pub(super) async fn create(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<CreateRequest>,
) -> JsonResult {
    let name = super::required(&request.name, "name")?.to_string();
    if name.len() > MAX_NAME_LENGTH {
        return Err(ApiError::invalid(format!(
            "a dataset name may have at most {MAX_NAME_LENGTH} characters"
        )));
    }
    let mut tags = string_map(json_text(request.tags.as_deref(), "tags")?, "tags")?;
    tags.retain(|_, value| !value.is_null());
    // As MLflow: the author is the `mlflow.user` tag the client sets, when the request names none.
    let created_by = request.created_by.clone().or_else(|| user_tag(&tags));
    let now = now_millis();
    let dataset_id = format!("d-{}", loopline_core::ids::new_run_id());
    let dataset = json!({
        "dataset_id": dataset_id,
        "name": name,
        "tags": tags,
        "schema": null,
        "profile": {"num_records": 0},
        "digest": Summary::digest(Sha256::new(), &name),
        "created_time": now,
        "last_update_time": now,
        "created_by": created_by,
        "last_updated_by": created_by,
    });
    state
        .tracking
        .store()
        .create_eval_dataset(&dataset, &request.experiment_ids)
        .await?;
    single(
        "dataset",
        &wire(state.tracking.store().get_eval_dataset(&dataset_id).await?),
    )
}

pub(super) async fn get(State(state): State<AppState>, Path(dataset_id): Path<String>) -> JsonResult {
    single(
        "dataset",
        &wire(state.tracking.store().get_eval_dataset(&dataset_id).await?),
    )
}

pub(super) async fn delete(State(state): State<AppState>, Path(dataset_id): Path<String>) -> JsonResult {
    state.tracking.store().delete_eval_dataset(&dataset_id).await?;
    empty_object()
}

#[derive(Deserialize)]
pub(super) struct SearchRequest {
    #[serde(default, deserialize_with = "one_or_many")]
    experiment_ids: Vec<String>,
    filter_string: Option<String>,
    #[serde(default, deserialize_with = "deserialize_optional_int64")]
    max_results: Option<i64>,
    #[serde(default, deserialize_with = "one_or_many")]
    order_by: Vec<String>,
    page_token: Option<String>,
}

pub(super) async fn search(
    State(state): State<AppState>,
    viewer: crate::access::visibility::Viewer,
    MlflowMessage(request): MlflowMessage<SearchRequest>,
) -> JsonResult {
    let search = EvalDatasetSearch {
        experiment_ids: request.experiment_ids,
        filter: request.filter_string,
        order_by: request.order_by,
        page: PageRequest::default(),
    };
    let wanted = PageRequest {
        max_results: super::page_size(request.max_results, 1_000)?,
        page_token: request.page_token,
    };
    let page = viewer
        .page(
            "dataset",
            |dataset: &Value| dataset["dataset_id"].as_str().unwrap_or_default().to_string(),
            wanted,
            |page| {
                let search = EvalDatasetSearch { page, ..search.clone() };
                let store = state.tracking.store().clone();
                async move { Ok(store.search_eval_datasets(&search).await?) }
            },
        )
        .await?;
    let datasets: Vec<Value> = page.items.into_iter().map(wire).collect();
    page_response("datasets", &datasets, page.next_page_token)
}

#[derive(Deserialize)]
pub(super) struct TagsRequest {
    tags: Option<String>,
}

/// Merges tags into the dataset's (a null value removes one, as MLflow's upsert does).
pub(super) async fn set_tags(
    State(state): State<AppState>,
    Path(dataset_id): Path<String>,
    MlflowMessage(request): MlflowMessage<TagsRequest>,
) -> JsonResult {
    let tags = string_map(json_text(request.tags.as_deref(), "tags")?, "tags")?;
    let dataset = state
        .tracking
        .store()
        .change_eval_dataset(
            &dataset_id,
            Box::new(move |dataset| {
                merge_tags(dataset, tags);
                Ok(())
            }),
        )
        .await?;
    single("dataset", &wire(dataset))
}

fn merge_tags(dataset: &mut Value, tags: Map<String, Value>) {
    if let Some(object) = dataset.as_object_mut() {
        let known = object.entry("tags").or_insert_with(|| json!({}));
        if !known.is_object() {
            *known = json!({});
        }
        let known = known.as_object_mut().expect("made an object above");
        for (key, value) in tags {
            if value.is_null() {
                known.remove(&key);
            } else {
                known.insert(key, value);
            }
        }
        object.insert("last_update_time".into(), Value::from(now_millis()));
    }
}

pub(super) async fn delete_tag(
    State(state): State<AppState>,
    Path((dataset_id, key)): Path<(String, String)>,
) -> JsonResult {
    state
        .tracking
        .store()
        .change_eval_dataset(
            &dataset_id,
            Box::new(move |dataset| {
                merge_tags(dataset, Map::from_iter([(key, Value::Null)]));
                Ok(())
            }),
        )
        .await?;
    empty_object()
}

pub(super) async fn experiment_ids(State(state): State<AppState>, Path(dataset_id): Path<String>) -> JsonResult {
    let dataset = state.tracking.store().get_eval_dataset(&dataset_id).await?;
    single(
        "experiment_ids",
        &dataset.get("experiment_ids").cloned().unwrap_or_else(|| json!([])),
    )
}

#[derive(Deserialize)]
pub(super) struct ExperimentsRequest {
    #[serde(default, deserialize_with = "one_or_many")]
    experiment_ids: Vec<String>,
}

pub(super) async fn add_experiments(
    State(state): State<AppState>,
    Path(dataset_id): Path<String>,
    MlflowMessage(request): MlflowMessage<ExperimentsRequest>,
) -> JsonResult {
    let dataset = state
        .tracking
        .store()
        .change_eval_dataset_experiments(&dataset_id, &request.experiment_ids, &[])
        .await?;
    single("dataset", &wire(dataset))
}

pub(super) async fn remove_experiments(
    State(state): State<AppState>,
    Path(dataset_id): Path<String>,
    MlflowMessage(request): MlflowMessage<ExperimentsRequest>,
) -> JsonResult {
    let dataset = state
        .tracking
        .store()
        .change_eval_dataset_experiments(&dataset_id, &[], &request.experiment_ids)
        .await?;
    single("dataset", &wire(dataset))
}

#[derive(Deserialize)]
pub(super) struct UpsertRequest {
    records: Option<String>,
    updated_by: Option<String>,
}

/// The hash that makes records with equal inputs one record (keys sorted, so key order does not matter).
fn input_key(inputs: &Value) -> String {
    let digest = Sha256::digest(inputs.to_string().as_bytes());
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A record arriving for inputs the dataset already has: expectations and tags merge, outputs and the source
/// are replaced when given.
fn merge_record(stored: &mut Value, new: &Value) {
    let Some(stored) = stored.as_object_mut() else { return };
    for field in ["expectations", "tags"] {
        if let Some(added) = new.get(field).and_then(Value::as_object) {
            let known = stored.entry(field).or_insert_with(|| json!({}));
            if let Some(known) = known.as_object_mut() {
                known.extend(added.clone());
            } else {
                *known = Value::Object(added.clone());
            }
        }
    }
    for field in ["outputs", "source", "source_type", "source_id", "last_updated_by"] {
        if let Some(value) = new.get(field).filter(|value| !value.is_null()) {
            stored.insert(field.into(), value.clone());
        }
    }
    stored.insert("last_update_time".into(), Value::from(now_millis()));
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(number) if number.is_f64() => "float",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// What a dataset's document says about its records, built a record at a time: the schema (each field's JSON
/// type where first seen), the count, and a digest of the inputs and expectations in record order.
struct Summary {
    schema: [(&'static str, Map<String, Value>); 3],
    hasher: Sha256,
    count: usize,
    updated_by: Option<String>,
}

impl Summary {
    fn boxed(updated_by: Option<String>) -> Box<Self> {
        Box::new(Summary {
            schema: [
                ("inputs", Map::new()),
                ("expectations", Map::new()),
                ("outputs", Map::new()),
            ],
            hasher: Sha256::new(),
            count: 0,
            updated_by,
        })
    }

    /// The first 8 bytes of the digest, in hex. The dataset's name is part of it, so empty datasets differ.
    fn digest(mut hasher: Sha256, name: &str) -> String {
        hasher.update([0u8]);
        hasher.update(name.as_bytes());
        hasher
            .finalize()
            .iter()
            .take(8)
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }
}

impl RecordSummary for Summary {
    fn add(&mut self, record: &Value) {
        self.count += 1;
        self.hasher
            .update(record.get("inputs").map(Value::to_string).unwrap_or_default());
        self.hasher
            .update(record.get("expectations").map(Value::to_string).unwrap_or_default());
        for (part, fields) in &mut self.schema {
            if let Some(object) = record.get(*part).and_then(Value::as_object) {
                for (key, value) in object {
                    if !fields.contains_key(key) {
                        fields.insert(key.clone(), Value::String(json_type(value).into()));
                    }
                }
            }
        }
    }

    fn finish(self: Box<Self>, dataset: &mut Value) {
        let Summary {
            schema,
            hasher,
            count,
            updated_by,
        } = *self;
        let schema: Map<String, Value> = schema
            .into_iter()
            .filter(|(_, fields)| !fields.is_empty())
            .map(|(part, fields)| (part.to_string(), Value::Object(fields)))
            .collect();
        let name = dataset
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let digest = Summary::digest(hasher, &name);
        if let Some(object) = dataset.as_object_mut() {
            object.insert("schema".into(), Value::Object(schema));
            object.insert("profile".into(), json!({"num_records": count}));
            object.insert("digest".into(), Value::String(digest));
            object.insert("last_update_time".into(), Value::from(now_millis()));
            if let Some(by) = updated_by {
                object.insert("last_updated_by".into(), Value::String(by));
            }
        }
    }
}

pub(super) async fn upsert_records(
    State(state): State<AppState>,
    Path(dataset_id): Path<String>,
    MlflowMessage(request): MlflowMessage<UpsertRequest>,
) -> ApiResult<Json<Value>> {
    let records = match json_text(request.records.as_deref(), "records")? {
        Some(Value::Array(records)) => records,
        None => Vec::new(),
        Some(_) => {
            return Err(ApiError::invalid(
                "Invalid value for parameter 'records': expected a JSON array",
            ));
        }
    };
    let now = now_millis();
    let mut last_author = None;
    let mut prepared = Vec::with_capacity(records.len());
    for (index, record) in records.into_iter().enumerate() {
        let Value::Object(mut record) = record else {
            return Err(ApiError::invalid(format!(
                "Invalid value for parameter 'records[{index}]': expected an object"
            )));
        };
        let inputs = record
            .get("inputs")
            .filter(|inputs| inputs.is_object())
            .cloned()
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "Missing value for required parameter 'records[{index}].inputs': an object"
                ))
            })?;
        for field in ["expectations", "tags"] {
            if record
                .get(field)
                .is_some_and(|value| !value.is_object() && !value.is_null())
            {
                return Err(ApiError::invalid(format!(
                    "Invalid value for parameter 'records[{index}].{field}': expected an object"
                )));
            }
        }
        record.insert("dataset_id".into(), Value::String(dataset_id.clone()));
        // 32 hex digits as MLflow's, ordered by time and place in the call, so records list in the order added.
        let random = loopline_core::ids::new_run_id();
        record.insert(
            "dataset_record_id".into(),
            Value::String(format!("dr-{now:012x}{index:06x}{}", &random[..14])),
        );
        record.insert("created_time".into(), Value::from(now));
        record.insert("last_update_time".into(), Value::from(now));
        // The author: the request's, else the record's `mlflow.user` tag (as MLflow reads it).
        let by = request
            .updated_by
            .clone()
            .or_else(|| record.get("tags").and_then(Value::as_object).and_then(user_tag));
        if let Some(by) = by {
            record.entry("created_by").or_insert_with(|| Value::String(by.clone()));
            record.insert("last_updated_by".into(), Value::String(by.clone()));
            last_author = Some(by);
        }
        prepared.push(EvalRecord {
            input_key: input_key(&inputs),
            document: Value::Object(record),
        });
    }
    let (inserted, updated) = state
        .tracking
        .store()
        .upsert_eval_records(&dataset_id, prepared, merge_record, Summary::boxed(last_author))
        .await?;
    Ok(Json(json!({"inserted_count": inserted, "updated_count": updated})))
}

#[derive(Deserialize)]
pub(super) struct RecordsQuery {
    #[serde(default, deserialize_with = "deserialize_optional_int64")]
    max_results: Option<i64>,
    page_token: Option<String>,
}

pub(super) async fn get_records(
    State(state): State<AppState>,
    Path(dataset_id): Path<String>,
    MlflowMessage(request): MlflowMessage<RecordsQuery>,
) -> ApiResult<Json<Value>> {
    let page = state
        .tracking
        .store()
        .get_eval_records(
            &dataset_id,
            &PageRequest {
                max_results: super::page_size(request.max_results, 1_000)?,
                page_token: request.page_token,
            },
        )
        .await?;
    let mut answer = json!({"records": Value::Array(page.items).to_string()});
    if let Some(token) = page.next_page_token {
        answer["next_page_token"] = Value::String(token);
    }
    Ok(Json(answer))
}

#[derive(Deserialize)]
pub(super) struct DeleteRecordsRequest {
    #[serde(default, deserialize_with = "one_or_many")]
    dataset_record_ids: Vec<String>,
}

pub(super) async fn delete_records(
    State(state): State<AppState>,
    Path(dataset_id): Path<String>,
    MlflowMessage(request): MlflowMessage<DeleteRecordsRequest>,
) -> ApiResult<Json<Value>> {
    if request.dataset_record_ids.is_empty() {
        return Err(ApiError::invalid(
            "Missing value for required parameter 'dataset_record_ids': name the records to delete.",
        ));
    }
    let deleted = state
        .tracking
        .store()
        .delete_eval_records(&dataset_id, &request.dataset_record_ids, Summary::boxed(None))
        .await?;
    Ok(Json(json!({"deleted_count": deleted})))
}
