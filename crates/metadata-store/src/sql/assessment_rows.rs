//! An assessment (as the trace info keeps it, in MLflow's JSON) as a row of the searchable assessments table.

use loopline_core::python_json;
use serde_json::Value;

/// One row of `trace_assessments`.
pub(super) struct AssessmentRow {
    pub assessment_id: String,
    pub kind: &'static str,
    pub name: String,
    pub value: Option<String>,
    pub aggregate_value: Option<f64>,
    pub is_numeric: bool,
    pub valid: bool,
    pub create_time_ms: i64,
}

/// What an average reads from a value, and whether it is a number (MLflow's `assessment_aggregate`):
/// numbers as they are, booleans and "yes"/"no" as 1 and 0 (not numbers).
pub(super) fn aggregate(value: &Value) -> (Option<f64>, bool) {
    match value {
        Value::Bool(flag) => (Some(if *flag { 1.0 } else { 0.0 }), false),
        Value::Number(number) => match number.as_f64().filter(|float| float.is_finite()) {
            Some(float) => (Some(float), true),
            None => (None, false),
        },
        Value::String(text) => match text.trim().to_lowercase().as_str() {
            "yes" => (Some(1.0), false),
            "no" => (Some(0.0), false),
            _ => (None, false),
        },
        _ => (None, false),
    }
}

/// An expectation's value: plain, or serialized as JSON text.
fn expectation_value(expectation: &Value) -> Value {
    if let Some(value) = expectation.get("value") {
        return value.clone();
    }
    expectation
        .pointer("/serialized_value/value")
        .and_then(Value::as_str)
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or(Value::Null)
}

/// The row for one assessment, or None when it has no id, name or kind.
pub(super) fn assessment_row(assessment: &Value) -> Option<AssessmentRow> {
    let assessment_id = assessment.get("assessment_id")?.as_str()?.to_string();
    let name = assessment.get("assessment_name")?.as_str()?.to_string();
    let (kind, value) = if let Some(feedback) = assessment.get("feedback") {
        ("feedback", feedback.get("value").cloned().unwrap_or(Value::Null))
    } else if let Some(expectation) = assessment.get("expectation") {
        ("expectation", expectation_value(expectation))
    } else if let Some(issue) = assessment.get("issue") {
        ("issue", issue.clone())
    } else {
        return None;
    };
    let (aggregate_value, is_numeric) = aggregate(&value);
    Some(AssessmentRow {
        assessment_id,
        kind,
        name,
        value: Some(python_json::dumps(&value)),
        aggregate_value,
        is_numeric,
        valid: assessment.get("valid").and_then(Value::as_bool).unwrap_or(true),
        create_time_ms: assessment
            .get("create_time")
            .and_then(Value::as_str)
            .and_then(loopline_core::time::parse_utc_millis)
            .unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_follow_mlflow_aggregates() {
        let row = assessment_row(&json!({"assessment_id": "a-1", "assessment_name": "score",
            "feedback": {"value": 0.75}, "create_time": "2026-01-01T00:00:00.000Z"}))
        .unwrap();
        assert_eq!(
            (
                row.kind,
                row.value.as_deref(),
                row.aggregate_value,
                row.is_numeric,
                row.valid
            ),
            ("feedback", Some("0.75"), Some(0.75), true, true)
        );
        assert!(row.create_time_ms > 0);
        let row = assessment_row(&json!({"assessment_id": "a-2", "assessment_name": "ok", "valid": false,
            "expectation": {"serialized_value": {"serialization_format": "JSON_FORMAT", "value": "\"yes\""}}}))
        .unwrap();
        assert_eq!(
            (
                row.kind,
                row.value.as_deref(),
                row.aggregate_value,
                row.is_numeric,
                row.valid
            ),
            ("expectation", Some("\"yes\""), Some(1.0), false, false)
        );
        assert!(assessment_row(&json!({"assessment_id": "a-3", "assessment_name": "x"})).is_none());
    }
}
