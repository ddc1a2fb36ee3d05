//! The shape of an assessment as MLflow's `Assessment` message defines it, checked before anything is stored:
//! a field of the wrong type, stored, would make every client that reads the trace fail to parse it (and with
//! it a whole `search_traces` page). Fields the message does not have are dropped.

use crate::error::ApiError;
use serde_json::{Map, Value, json};

/// The fields of MLflow's `Assessment` message (and `run_id`, which the client sends beside them).
const KNOWN_FIELDS: [&str; 16] = [
    "assessment_id",
    "assessment_name",
    "trace_id",
    "span_id",
    "source",
    "create_time",
    "last_update_time",
    "feedback",
    "expectation",
    "issue",
    "rationale",
    "error",
    "metadata",
    "overrides",
    "valid",
    "run_id",
];
/// `AssessmentSource.SourceType`.
const SOURCE_TYPES: [&str; 5] = ["SOURCE_TYPE_UNSPECIFIED", "HUMAN", "LLM_JUDGE", "CODE", "AI_JUDGE"];
/// The kinds of value an assessment holds; exactly one of them.
const KINDS: [&str; 3] = ["feedback", "expectation", "issue"];

fn invalid(field: &str, expected: &str) -> ApiError {
    ApiError::invalid(format!(
        "Invalid value for parameter 'assessment.{field}': expected {expected}."
    ))
}

fn string_field(object: &Map<String, Value>, field: &str) -> Result<(), ApiError> {
    match object.get(field) {
        None | Some(Value::String(_)) => Ok(()),
        Some(_) => Err(invalid(field, "a string")),
    }
}

fn string_map(value: &Value, field: &str) -> Result<(), ApiError> {
    match value {
        Value::Object(entries) if entries.values().all(Value::is_string) => Ok(()),
        _ => Err(invalid(field, "an object of string values")),
    }
}

fn error_object(value: &Value, field: &str) -> Result<(), ApiError> {
    let Some(error) = value.as_object() else {
        return Err(invalid(
            field,
            "an object with error_code, error_message and stack_trace",
        ));
    };
    for part in ["error_code", "error_message", "stack_trace"] {
        string_field(error, part).map_err(|_| invalid(&format!("{field}.{part}"), "a string"))?;
    }
    Ok(())
}

/// A timestamp as proto JSON writes one (RFC 3339, e.g. `2026-12-04T10:00:00.000Z`).
fn timestamp(object: &Map<String, Value>, field: &str) -> Result<(), ApiError> {
    match object.get(field) {
        None => Ok(()),
        Some(Value::String(text)) if loopline_core::time::parse_utc_millis(text).is_some() => Ok(()),
        Some(_) => Err(invalid(field, "an RFC 3339 timestamp such as 2026-12-04T10:00:00Z")),
    }
}

/// An expectation as MLflow keeps it: a string, number or boolean stays in `value`; anything else (an object,
/// a list) is held as JSON text in `serialized_value` (`JSON_FORMAT`), whichever form the client sent. JSON
/// text sent by the client is kept as written (its numbers and key order intact) once checked.
pub(super) fn normalize_expectation(expectation: &mut Value) -> Result<(), ApiError> {
    let Some(object) = expectation.as_object_mut() else {
        return Err(invalid("expectation", "an object with a value or a serialized_value"));
    };
    let serialized = object.remove("serialized_value");
    let plain = object.remove("value");
    object.clear();
    let value = match serialized {
        Some(serialized) => {
            let format = serialized.get("serialization_format");
            if format.and_then(Value::as_str) != Some("JSON_FORMAT") {
                return Err(ApiError::invalid(format!(
                    "Unknown serialization format: {}. Only JSON_FORMAT is supported.",
                    format.map(Value::to_string).unwrap_or_else(|| "none".to_string())
                )));
            }
            let Some(text) = serialized.get("value").and_then(Value::as_str) else {
                return Err(invalid("expectation.serialized_value.value", "a string of JSON text"));
            };
            let parsed = serde_json::from_str::<Value>(text).map_err(|error| {
                ApiError::invalid(format!(
                    "Invalid value for parameter 'assessment.expectation.serialized_value.value': not JSON ({error})."
                ))
            })?;
            if parsed.is_object() || parsed.is_array() {
                object.insert(
                    "serialized_value".into(),
                    json!({"serialization_format": "JSON_FORMAT", "value": text}),
                );
                return Ok(());
            }
            parsed
        }
        None => plain.unwrap_or(Value::Null),
    };
    match value {
        Value::Null => Err(ApiError::invalid(
            "Invalid value for parameter 'assessment.expectation': the `value` field must be specified.",
        )),
        Value::Object(_) | Value::Array(_) => {
            object.insert(
                "serialized_value".into(),
                json!({"serialization_format": "JSON_FORMAT", "value": loopline_core::python_json::dumps(&value)}),
            );
            Ok(())
        }
        scalar => {
            object.insert("value".into(), scalar);
            Ok(())
        }
    }
}

/// Checks (and where MLflow normalises, normalises) one kind's content.
pub(super) fn check_kind(kind: &str, value: &mut Value) -> Result<(), ApiError> {
    match kind {
        "expectation" => normalize_expectation(value),
        "feedback" => {
            let Some(feedback) = value.as_object_mut() else {
                return Err(invalid("feedback", "an object with a value or an error"));
            };
            feedback.retain(|key, _| key == "value" || key == "error");
            if let Some(error) = feedback.get("error") {
                error_object(error, "feedback.error")?;
            }
            if !feedback.contains_key("value") && !feedback.contains_key("error") {
                return Err(invalid("feedback", "an object with a value or an error"));
            }
            Ok(())
        }
        _ => {
            let named = value
                .get("issue_name")
                .and_then(Value::as_str)
                .is_some_and(|name| !name.is_empty());
            if !named {
                return Err(invalid("issue.issue_name", "a non-empty string"));
            }
            value
                .as_object_mut()
                .expect("has issue_name")
                .retain(|key, _| key == "issue_name");
            Ok(())
        }
    }
}

/// Checks the fields an update may change, each as the create would.
pub(super) fn check_field(field: &str, value: &mut Value) -> Result<(), ApiError> {
    match field {
        "assessment_name" => match value {
            Value::String(name) if !name.is_empty() => Ok(()),
            _ => Err(invalid(field, "a non-empty string")),
        },
        "rationale" => match value {
            Value::String(_) | Value::Null => Ok(()),
            _ => Err(invalid(field, "a string")),
        },
        "metadata" => string_map(value, field),
        "valid" => match value {
            Value::Bool(_) => Ok(()),
            _ => Err(invalid(field, "true or false")),
        },
        kind if KINDS.contains(&kind) => {
            if value.is_null() {
                return Err(ApiError::invalid(format!(
                    "Missing value for required parameter 'assessment.{kind}': the update mask names it."
                )));
            }
            check_kind(kind, value)
        }
        _ => Ok(()),
    }
}

/// Checks a new assessment: its fields' types, its source, and exactly one of feedback, expectation or issue.
pub(super) fn check_new(assessment: &mut Map<String, Value>) -> Result<(), ApiError> {
    assessment.retain(|key, _| KNOWN_FIELDS.contains(&key.as_str()));
    match assessment.get("assessment_name") {
        Some(Value::String(name)) if !name.is_empty() => {}
        _ => {
            return Err(ApiError::invalid(
                "Missing value for required parameter 'assessment.assessment_name'.",
            ));
        }
    }
    for field in [
        "assessment_id",
        "trace_id",
        "span_id",
        "rationale",
        "overrides",
        "run_id",
    ] {
        string_field(assessment, field)?;
    }
    timestamp(assessment, "create_time")?;
    timestamp(assessment, "last_update_time")?;
    if let Some(valid) = assessment.get("valid")
        && !valid.is_boolean()
    {
        return Err(invalid("valid", "true or false"));
    }
    if let Some(metadata) = assessment.get("metadata") {
        string_map(metadata, "metadata")?;
    }
    if let Some(error) = assessment.get("error") {
        error_object(error, "error")?;
    }
    if let Some(source) = assessment.get("source") {
        let Some(source) = source.as_object() else {
            return Err(invalid("source", "an object with source_type and source_id"));
        };
        match source.get("source_type") {
            None => {}
            Some(Value::String(kind)) if SOURCE_TYPES.contains(&kind.as_str()) => {}
            Some(_) => {
                return Err(invalid(
                    "source.source_type",
                    &format!("one of {}", SOURCE_TYPES.join(", ")),
                ));
            }
        }
        string_field(source, "source_id").map_err(|_| invalid("source.source_id", "a string"))?;
    }
    let kinds: Vec<&str> = KINDS
        .into_iter()
        .filter(|kind| assessment.contains_key(*kind))
        .collect();
    let [kind] = kinds[..] else {
        return Err(ApiError::invalid(format!(
            "An assessment holds exactly one of 'feedback', 'expectation' or 'issue'; this one has {}.",
            if kinds.is_empty() {
                "none".to_string()
            } else {
                kinds.join(" and ")
            }
        )));
    };
    check_kind(kind, assessment.get_mut(kind).expect("present"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(value: Value) -> Result<Map<String, Value>, ApiError> {
        let mut object = value.as_object().unwrap().clone();
        check_new(&mut object).map(|()| object)
    }

    #[test]
    fn fields_of_the_wrong_type_are_refused_before_they_are_stored() {
        let base = json!({"assessment_name": "n", "feedback": {"value": true}});
        assert!(new(base.clone()).is_ok());
        for (field, value) in [
            ("rationale", json!(5)),
            ("metadata", json!({"a": 1})),
            ("source", json!({"source_type": "ROBOT"})),
            ("source", json!({"source_type": "HUMAN", "source_id": 5})),
            ("span_id", json!(5)),
            ("valid", json!("yes")),
            ("create_time", json!("yesterday")),
            ("expectation", json!({"value": 1})),
        ] {
            let mut hostile = base.clone();
            hostile[field] = value;
            assert!(new(hostile).is_err(), "{field}");
        }
        assert!(new(json!({"assessment_name": "n", "feedback": {"error": {"error_code": 5}}})).is_err());
        assert!(new(json!({"assessment_name": "n", "expectation": {}})).is_err());
        assert!(new(json!({"assessment_name": "n"})).is_err());
        let dropped = new(json!({"assessment_name": "n", "feedback": {"value": 1}, "extra": 1})).unwrap();
        assert!(!dropped.contains_key("extra"));
    }

    #[test]
    fn expectations_keep_one_form() {
        let both = new(json!({"assessment_name": "n", "expectation": {"value": {"a": 1},
            "serialized_value": {"serialization_format": "JSON_FORMAT", "value": "{\"b\": 123456789012345678901234567890}"}}}))
        .unwrap();
        assert_eq!(
            both["expectation"],
            json!({"serialized_value": {"serialization_format": "JSON_FORMAT",
                "value": "{\"b\": 123456789012345678901234567890}"}})
        );
        let scalar = new(json!({"assessment_name": "n", "expectation": {"serialized_value":
            {"serialization_format": "JSON_FORMAT", "value": "\"yes\""}}}))
        .unwrap();
        assert_eq!(scalar["expectation"], json!({"value": "yes"}));
        for bad in [
            json!({"serialization_format": 3, "value": "1"}),
            json!({"serialization_format": "JSON_FORMAT", "value": 5}),
        ] {
            assert!(new(json!({"assessment_name": "n", "expectation": {"serialized_value": bad}})).is_err());
        }
    }
}
