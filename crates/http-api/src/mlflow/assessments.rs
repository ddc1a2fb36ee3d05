//! Assessments of traces (feedback and expectations): create, get, update, override and delete, as
//! `mlflow.log_feedback`, `log_expectation`, `get_assessment`, `update_assessment`, `override_feedback` and
//! `delete_assessment` call them. They live in the trace's info; each change is one transaction.

use super::{JsonResult, empty_object, single};
use crate::AppState;
use crate::error::ApiError;
use crate::extract::MlflowMessage;
use axum::extract::{Path, State};
use loopline_metadata_store::StoreError;
use serde::Deserialize;
use serde_json::{Map, Value};

fn now() -> Value {
    Value::String(loopline_core::time::rfc3339_millis(loopline_core::time::now_millis()))
}

fn not_found(trace_id: &str, assessment_id: &str) -> StoreError {
    StoreError::NotFound(format!(
        "Assessment with ID '{assessment_id}' not found for trace '{trace_id}'"
    ))
}

fn find<'a>(list: &'a mut [Value], assessment_id: &str) -> Option<&'a mut Map<String, Value>> {
    list.iter_mut()
        .filter_map(Value::as_object_mut)
        .find(|entry| entry.get("assessment_id").and_then(Value::as_str) == Some(assessment_id))
}

#[derive(Deserialize)]
pub(super) struct CreateRequest {
    assessment: Option<Value>,
}

/// Records feedback or an expectation on a trace; one that `overrides` another marks that one invalid.
pub(super) async fn create(
    State(state): State<AppState>,
    Path(trace_id): Path<String>,
    MlflowMessage(request): MlflowMessage<CreateRequest>,
) -> JsonResult {
    let mut assessment = request
        .assessment
        .filter(Value::is_object)
        .ok_or_else(|| ApiError::invalid("Missing value for required parameter 'assessment'."))?;
    super::assessment_shape::check_new(assessment.as_object_mut().expect("checked to be an object above"))?;
    let object = assessment.as_object_mut().expect("checked to be an object above");
    object.insert(
        "assessment_id".to_string(),
        Value::String(loopline_core::ids::new_assessment_id()),
    );
    object.insert("trace_id".to_string(), Value::String(trace_id.clone()));
    // As MLflow stores them: valid unless the client says otherwise, and timestamped.
    object.entry("valid").or_insert(Value::Bool(true));
    let created = object.entry("create_time").or_insert_with(now).clone();
    object.entry("last_update_time").or_insert(created);
    let overrides = object
        .get("overrides")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map(str::to_string);
    let trace = trace_id.clone();
    let stored = state
        .tracking
        .store()
        .change_trace_assessments(
            &trace_id,
            Box::new(move |list| {
                if let Some(overridden) = &overrides {
                    let old = find(list, overridden).ok_or_else(|| not_found(&trace, overridden))?;
                    old.insert("valid".into(), Value::Bool(false));
                    old.insert("last_update_time".into(), now());
                }
                list.push(assessment.clone());
                Ok(assessment)
            }),
        )
        .await?;
    single("assessment", &stored)
}

/// One assessment.
pub(super) async fn get(
    State(state): State<AppState>,
    Path((trace_id, assessment_id)): Path<(String, String)>,
) -> JsonResult {
    let info = state.tracking.store().get_trace_info(&trace_id).await?;
    let found = info
        .get("assessments")
        .and_then(Value::as_array)
        .and_then(|list| {
            list.iter()
                .find(|entry| entry.get("assessment_id").and_then(Value::as_str) == Some(&assessment_id))
        })
        .cloned()
        .ok_or_else(|| not_found(&trace_id, &assessment_id))?;
    single("assessment", &found)
}

#[derive(Deserialize)]
pub(super) struct UpdateRequest {
    assessment: Option<Value>,
    update_mask: Option<Value>,
}

/// The fields an update names: a field mask in its JSON form (`"assessmentName,feedback"`) or as paths, in
/// snake case.
fn mask_fields(mask: Option<&Value>) -> Result<Vec<String>, ApiError> {
    let paths: Vec<String> = match mask {
        Some(Value::String(text)) => text.split(',').map(str::to_string).collect(),
        Some(Value::Object(object)) => object
            .get("paths")
            .and_then(Value::as_array)
            .map(|paths| paths.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let mut fields = Vec::new();
    for path in paths.iter().map(|path| path.trim()).filter(|path| !path.is_empty()) {
        if !path
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || character == '_')
        {
            let shown: String = path.chars().take(100).collect();
            return Err(ApiError::invalid(format!(
                "Invalid value '{shown}' for parameter 'update_mask': field names are letters, digits and '_'"
            )));
        }
        fields.push(crate::graphql::snake_case(path));
    }
    Ok(fields)
}

/// "a feedback", "an expectation".
fn with_article(kind: &str) -> String {
    if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
        format!("an {kind}")
    } else {
        format!("a {kind}")
    }
}

/// Changes the fields the mask names: the name, the feedback or the expectation (not one for the other), the
/// rationale, metadata (merged).
pub(super) async fn update(
    State(state): State<AppState>,
    Path((trace_id, assessment_id)): Path<(String, String)>,
    MlflowMessage(request): MlflowMessage<UpdateRequest>,
) -> JsonResult {
    let changes = request
        .assessment
        .filter(Value::is_object)
        .ok_or_else(|| ApiError::invalid("Missing value for required parameter 'assessment'."))?;
    let mut changes = changes;
    let fields = mask_fields(request.update_mask.as_ref())?;
    if fields.is_empty() {
        return Err(ApiError::invalid(
            "Missing value for required parameter 'update_mask': name the fields to change.",
        ));
    }
    const CHANGEABLE: [&str; 6] = [
        "assessment_name",
        "feedback",
        "expectation",
        "rationale",
        "metadata",
        "valid",
    ];
    if let Some(unknown) = fields.iter().find(|field| !CHANGEABLE.contains(&field.as_str())) {
        return Err(ApiError::invalid(format!(
            "Invalid value '{unknown}' for parameter 'update_mask': assessments can change {}",
            CHANGEABLE.join(", ")
        )));
    }
    let changes_object = changes.as_object_mut().expect("checked to be an object above");
    for field in &fields {
        let value = changes_object.entry(field.clone()).or_insert(Value::Null);
        super::assessment_shape::check_field(field, value)?;
    }
    let trace = trace_id.clone();
    let updated = state
        .tracking
        .store()
        .change_trace_assessments(
            &trace_id,
            Box::new(move |list| {
                let entry = find(list, &assessment_id).ok_or_else(|| not_found(&trace, &assessment_id))?;
                for field in &fields {
                    let value = changes.get(field).cloned().unwrap_or(Value::Null);
                    match field.as_str() {
                        "feedback" | "expectation" => {
                            let other = if field == "feedback" { "expectation" } else { "feedback" };
                            if entry.contains_key(other) {
                                return Err(StoreError::InvalidParameter(format!(
                                    "Assessment '{assessment_id}' holds {}; it cannot be updated with {}",
                                    with_article(other),
                                    with_article(field)
                                )));
                            }
                            entry.insert(field.clone(), value);
                        }
                        "metadata" => {
                            let merged = entry.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
                            if let (Some(merged), Some(new)) = (merged.as_object_mut(), value.as_object()) {
                                merged.extend(new.clone());
                            }
                        }
                        _ => {
                            entry.insert(field.clone(), value);
                        }
                    }
                }
                entry.insert("last_update_time".into(), now());
                Ok(Value::Object(entry.clone()))
            }),
        )
        .await?;
    single("assessment", &updated)
}

/// Removes an assessment; one it had overridden becomes valid again.
pub(super) async fn delete(
    State(state): State<AppState>,
    Path((trace_id, assessment_id)): Path<(String, String)>,
) -> JsonResult {
    let trace = trace_id.clone();
    state
        .tracking
        .store()
        .change_trace_assessments(
            &trace_id,
            Box::new(move |list| {
                let at = list
                    .iter()
                    .position(|entry| entry.get("assessment_id").and_then(Value::as_str) == Some(&assessment_id))
                    .ok_or_else(|| not_found(&trace, &assessment_id))?;
                let removed = list.remove(at);
                if let Some(overridden) = removed.get("overrides").and_then(Value::as_str)
                    && let Some(old) = find(list, overridden)
                {
                    old.insert("valid".into(), Value::Bool(true));
                    old.insert("last_update_time".into(), now());
                }
                Ok(Value::Null)
            }),
        )
        .await?;
    empty_object()
}
