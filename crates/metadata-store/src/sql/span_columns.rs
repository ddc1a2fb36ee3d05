//! What the span table keeps beside each span's OTel JSON: the columns searches and trace metrics read,
//! taken from the span itself so they can never disagree with it.

use loopline_core::python_json;
use serde_json::{Map, Value};

/// The longest model name or provider kept as a metrics dimension (as MLflow bounds them).
const MAX_MODEL_DIMENSION_CHARS: usize = 250;

/// A span's searchable columns.
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct SpanColumns {
    pub parent_span_id: Option<String>,
    pub end_ns: Option<i64>,
    pub name: String,
    pub span_type: Option<String>,
    pub status: String,
    pub model_name: Option<String>,
    pub model_provider: Option<String>,
    pub input_cost: Option<f64>,
    pub output_cost: Option<f64>,
    pub total_cost: Option<f64>,
    /// The plain attributes, by key.
    pub plain: Map<String, Value>,
}

/// An OTel `AnyValue` in proto JSON, as the plain value it stands for.
pub(super) fn plain_value(value: &Value) -> Value {
    let Some(object) = value.as_object() else {
        return Value::Null;
    };
    if let Some(text) = object.get("string_value") {
        return text.clone();
    }
    if let Some(flag) = object.get("bool_value") {
        return flag.clone();
    }
    if let Some(number) = object.get("int_value") {
        return match number {
            Value::String(text) => text.parse::<i64>().map_or(Value::Null, Value::from),
            other => other.clone(),
        };
    }
    if let Some(number) = object.get("double_value") {
        return match number {
            Value::Number(_) => number.clone(),
            // NaN and the infinities have no JSON number.
            _ => Value::Null,
        };
    }
    if let Some(array) = object.get("array_value") {
        return Value::Array(
            array
                .get("values")
                .and_then(Value::as_array)
                .map(|values| values.iter().map(plain_value).collect())
                .unwrap_or_default(),
        );
    }
    if let Some(list) = object.get("kvlist_value") {
        return Value::Object(plain_entries(list.get("values")));
    }
    if let Some(bytes) = object.get("bytes_value") {
        return bytes.clone();
    }
    Value::Null
}

/// A list of OTel `KeyValue`s as a plain object (the first value of a repeated key wins).
pub(super) fn plain_entries(entries: Option<&Value>) -> Map<String, Value> {
    let mut map = Map::new();
    for entry in entries.and_then(Value::as_array).into_iter().flatten() {
        if let Some(key) = entry.get("key").and_then(Value::as_str)
            && !map.contains_key(key)
        {
            map.insert(key.to_string(), entry.get("value").map_or(Value::Null, plain_value));
        }
    }
    map
}

fn bounded(value: Option<&Value>) -> Option<String> {
    value
        .and_then(Value::as_str)
        .filter(|text| !text.is_empty())
        .map(|text| text.chars().take(MAX_MODEL_DIMENSION_CHARS).collect())
}

/// An attribute that may hold a value or a JSON text of it (clients send both).
fn decoded(value: Option<&Value>) -> Option<Value> {
    match value? {
        Value::String(text) => serde_json::from_str(text)
            .ok()
            .or_else(|| Some(Value::String(text.clone()))),
        other => Some(other.clone()),
    }
}

/// A text attribute, unwrapped when a client sent it JSON-encoded (`"\"LLM\""`).
fn decoded_text(value: Option<&Value>) -> Option<Value> {
    let text = value?.as_str()?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::String(inner)) => Some(Value::String(inner)),
        _ => Some(Value::String(text.to_string())),
    }
}

fn cost(costs: &Option<Value>, key: &str) -> Option<f64> {
    costs
        .as_ref()
        .and_then(|costs| costs.get(key))
        .and_then(Value::as_f64)
        .filter(|value| value.is_finite())
}

/// The columns of one span from its OTel proto JSON.
pub(super) fn span_columns(content: &Value) -> SpanColumns {
    let plain = plain_entries(content.get("attributes"));
    let status = match content.pointer("/status/code").and_then(Value::as_str) {
        Some("STATUS_CODE_OK") => "OK",
        Some("STATUS_CODE_ERROR") => "ERROR",
        _ => "UNSET",
    };
    let costs = decoded(plain.get("mlflow.llm.cost")).filter(Value::is_object);
    SpanColumns {
        parent_span_id: content
            .get("parent_span_id")
            .and_then(Value::as_str)
            .map(str::to_string),
        end_ns: content
            .get("end_time_unix_nano")
            .and_then(Value::as_i64)
            .filter(|end| *end > 0),
        name: content
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        span_type: decoded_text(plain.get("mlflow.spanType")).and_then(|value| value.as_str().map(str::to_string)),
        status: status.to_string(),
        model_name: bounded(decoded_text(plain.get("mlflow.llm.model")).as_ref()),
        model_provider: bounded(decoded_text(plain.get("mlflow.llm.provider")).as_ref()),
        input_cost: cost(&costs, "input_cost"),
        output_cost: cost(&costs, "output_cost"),
        total_cost: cost(&costs, "total_cost"),
        plain,
    }
}

/// The span as MLflow stores it (`Span.to_dict()`, attributes JSON-encoded), written as Python writes it: the
/// text MLflow's `trace.text` and `span.attributes.<k>` patterns are written against.
pub(super) fn mlflow_text(content: &Value) -> String {
    python_json::dumps(&mlflow_span_dict(content))
}

/// A stored span (OTel proto JSON) as MLflow's `Span.to_dict()` writes it in a `traces.json` artifact:
/// attributes as an object of JSON-encoded values, event attributes plain, ids as they are (base64).
pub fn mlflow_span_dict(content: &Value) -> Value {
    let attributes: Map<String, Value> = plain_entries(content.get("attributes"))
        .into_iter()
        .map(|(key, value)| (key, Value::String(python_json::dumps(&value))))
        .collect();
    let events: Vec<Value> = content
        .get("events")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|event| {
            serde_json::json!({
                "name": event.get("name").cloned().unwrap_or(Value::Null),
                "time_unix_nano": event.get("time_unix_nano").cloned().unwrap_or(Value::Null),
                "attributes": Value::Object(plain_entries(event.get("attributes"))),
            })
        })
        .collect();
    serde_json::json!({
        "trace_id": content.get("trace_id").cloned().unwrap_or(Value::Null),
        "span_id": content.get("span_id").cloned().unwrap_or(Value::Null),
        "parent_span_id": content.get("parent_span_id").cloned().unwrap_or(Value::Null),
        "name": content.get("name").cloned().unwrap_or(Value::Null),
        "start_time_unix_nano": content.get("start_time_unix_nano").cloned().unwrap_or(Value::Null),
        "end_time_unix_nano": content.get("end_time_unix_nano").cloned().unwrap_or(Value::Null),
        "events": events,
        "status": {
            "code": content.pointer("/status/code").cloned().unwrap_or(Value::String("STATUS_CODE_UNSET".into())),
            "message": content.pointer("/status/message").cloned().unwrap_or(Value::String(String::new())),
        },
        "attributes": attributes,
        "links": [],
    })
}

/// A span's token usage (`mlflow.chat.tokenUsage`), when it has one.
pub(super) fn token_usage(columns: &SpanColumns) -> Option<Map<String, Value>> {
    decoded(columns.plain.get("mlflow.chat.tokenUsage")).and_then(|usage| match usage {
        Value::Object(usage) if !usage.is_empty() => Some(usage),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn columns_come_from_the_span() {
        let content = json!({
            "name": "llm", "parent_span_id": "dT6zDK5NdSk=", "end_time_unix_nano": 5,
            "status": {"code": "STATUS_CODE_ERROR"},
            "attributes": [
                {"key": "mlflow.spanType", "value": {"string_value": "\"LLM\""}},
                {"key": "mlflow.llm.model", "value": {"string_value": "gpt-4o"}},
                {"key": "mlflow.llm.cost", "value": {"kvlist_value": {"values": [
                    {"key": "input_cost", "value": {"double_value": 0.5}},
                    {"key": "total_cost", "value": {"double_value": 1.5}}]}}},
                {"key": "mlflow.chat.tokenUsage", "value": {"string_value": "{\"input_tokens\": 3}"}},
                {"key": "n", "value": {"int_value": "7"}}
            ]
        });
        let columns = span_columns(&content);
        assert_eq!(columns.name, "llm");
        assert_eq!(columns.status, "ERROR");
        assert_eq!(columns.span_type.as_deref(), Some("LLM"));
        assert_eq!(columns.model_name.as_deref(), Some("gpt-4o"));
        assert_eq!(
            (columns.input_cost, columns.output_cost, columns.total_cost),
            (Some(0.5), None, Some(1.5))
        );
        assert_eq!(columns.end_ns, Some(5));
        assert!(
            mlflow_text(&content).contains("\"n\": \"7\""),
            "{}",
            mlflow_text(&content)
        );
        assert_eq!(token_usage(&columns).unwrap()["input_tokens"], 3);
        let empty = span_columns(&json!({}));
        assert_eq!(empty.status, "UNSET");
        assert!(mlflow_text(&json!({})).contains("\"attributes\": {}"));
    }

    #[test]
    fn the_searched_text_has_none_of_the_otlp_wrapping() {
        let content = json!({"name": "trace3", "attributes": [
            {"key": "test3", "value": {"string_value": "I like it"}}]});
        let text = mlflow_text(&content);
        assert!(text.contains("\"name\": \"trace3\""), "{text}");
        assert!(text.contains("\"test3\": \"\\\"I like it\\\"\""), "{text}");
        assert!(!text.contains("value"), "{text}");
    }
}
