//! OTel spans as Loopline keeps and serves them: proto JSON of `opentelemetry.proto.trace.v1.Span` (ids in
//! base64, 64-bit integers as numbers as MLflow writes them, enums by name), the shape the mlflow client parses from `traces/get`.

use super::messages::{Any, AnyValue, ExportTraceServiceRequest, KeyValue, SPAN_KINDS, Span};
use base64::Engine;
use loopline_metadata_store::NewSpan;
use serde_json::{Map, Value, json};

/// The longest request and response preview kept in a trace's metadata.
const MAX_PREVIEW_CHARS: usize = 1_000;

/// A span ready to store, and what its trace learns from it.
pub struct Converted {
    pub span: NewSpan,
    pub start_ns: i64,
    pub end_ns: i64,
    pub root: bool,
    pub error: bool,
    pub name: String,
    pub inputs: Option<String>,
    pub outputs: Option<String>,
    /// The trace previews MLflow makes from a root span: its inputs and outputs as stored JSON text.
    pub request_preview: Option<String>,
    pub response_preview: Option<String>,
    /// The session (`session.id` or `gen_ai.conversation.id`) and user (`user.id`) it names.
    pub session: Option<String>,
    pub user: Option<String>,
}

/// The longest session id MLflow accepts.
const MAX_SESSION_CHARS: usize = 250;

/// A text attribute, unwrapped when it arrives JSON-encoded (`"\"abc\""`).
fn unwrapped(text: String) -> String {
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::String(inner)) => inner,
        _ => text,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Every span of a request, checked: ids of OTel's sizes (16 and 8 bytes), a parent id of 8 bytes or none,
/// times that fit a signed 64-bit count of nanoseconds.
pub fn convert(request: &ExportTraceServiceRequest, max_spans: usize) -> Result<Vec<Converted>, String> {
    let mut converted = Vec::new();
    for resource_spans in &request.resource_spans {
        let service = known_agent_service(resource_spans.resource.as_ref());
        for scope in &resource_spans.scope_spans {
            for span in &scope.spans {
                if converted.len() == max_spans {
                    return Err(format!("a request may carry at most {max_spans} spans"));
                }
                match &service {
                    // As MLflow: the coding agent that sent the trace is named on its root span.
                    Some(service)
                        if span.parent_span_id.is_empty()
                            && !span.attributes.iter().any(|entry| entry.key == "service.name") =>
                    {
                        let mut root = span.clone();
                        root.attributes.push(KeyValue {
                            key: "service.name".into(),
                            value: Some(AnyValue {
                                value: Some(Any::String(service.clone())),
                            }),
                        });
                        converted.push(convert_span(&root)?);
                    }
                    _ => converted.push(convert_span(span)?),
                }
            }
        }
    }
    Ok(converted)
}

/// The coding agents whose resource `service.name` MLflow copies onto root spans.
const AGENT_SERVICES: [&str; 5] = ["claude-code", "codex_cli_rs", "codex_vscode", "gemini-cli", "qwen-code"];

fn known_agent_service(resource: Option<&super::messages::Resource>) -> Option<String> {
    resource?
        .attributes
        .iter()
        .find(|entry| entry.key == "service.name")
        .and_then(|entry| match entry.value.as_ref()?.value.as_ref()? {
            Any::String(name) if AGENT_SERVICES.contains(&name.as_str()) => Some(name.clone()),
            _ => None,
        })
}

fn convert_span(span: &Span) -> Result<Converted, String> {
    let mut translated = span.clone();
    super::genai::translate(&mut translated.attributes);
    let span = &translated;
    if span.trace_id.len() != 16 {
        return Err(format!("trace_id must be 16 bytes, got {}", span.trace_id.len()));
    }
    if span.span_id.len() != 8 {
        return Err(format!("span_id must be 8 bytes, got {}", span.span_id.len()));
    }
    if !span.parent_span_id.is_empty() && span.parent_span_id.len() != 8 {
        return Err(format!(
            "parent_span_id must be 8 bytes, got {}",
            span.parent_span_id.len()
        ));
    }
    let start_ns = i64::try_from(span.start_time_unix_nano).map_err(|_| "start_time_unix_nano is out of range")?;
    let end_ns = i64::try_from(span.end_time_unix_nano).map_err(|_| "end_time_unix_nano is out of range")?;
    let trace_id = format!("tr-{}", hex(&span.trace_id));
    let status_code = span.status.as_ref().map_or(0, |status| status.code);
    let mut content = Map::new();
    content.insert("trace_id".into(), Value::String(base64(&span.trace_id)));
    content.insert("span_id".into(), Value::String(base64(&span.span_id)));
    if !span.trace_state.is_empty() {
        content.insert("trace_state".into(), Value::String(span.trace_state.clone()));
    }
    if !span.parent_span_id.is_empty() {
        content.insert("parent_span_id".into(), Value::String(base64(&span.parent_span_id)));
    }
    content.insert("name".into(), Value::String(span.name.clone()));
    content.insert("kind".into(), enum_name(&SPAN_KINDS, span.kind));
    content.insert("start_time_unix_nano".into(), Value::from(span.start_time_unix_nano));
    content.insert("end_time_unix_nano".into(), Value::from(span.end_time_unix_nano));
    content.insert("attributes".into(), key_values_json(&span.attributes));
    let events: Vec<Value> = span
        .events
        .iter()
        .map(|event| {
            json!({
                "time_unix_nano": event.time_unix_nano,
                "name": event.name,
                "attributes": key_values_json(&event.attributes),
            })
        })
        .collect();
    content.insert("events".into(), Value::Array(events));
    let mut status = Map::new();
    status.insert(
        "code".into(),
        enum_name(
            &["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"],
            status_code,
        ),
    );
    if let Some(message) = span.status.as_ref().map(|s| &s.message).filter(|m| !m.is_empty()) {
        status.insert("message".into(), Value::String(message.clone()));
    }
    content.insert("status".into(), Value::Object(status));
    let attribute = |key: &str| {
        span.attributes
            .iter()
            .find(|entry| entry.key == key)
            .and_then(|entry| entry.value.as_ref())
            .map(preview)
    };
    let session = attribute("session.id")
        .or_else(|| attribute("gen_ai.conversation.id"))
        .map(unwrapped)
        .filter(|session| !session.is_empty());
    if let Some(session) = &session
        && session.chars().count() > MAX_SESSION_CHARS
    {
        return Err(format!("session.id is longer than {MAX_SESSION_CHARS} characters"));
    }
    let json_preview = |key: &str| {
        span.attributes
            .iter()
            .find(|entry| entry.key == key)
            .and_then(|entry| entry.value.as_ref())
            .map(|value| {
                let text = loopline_core::python_json::dumps(&plain(value));
                if text.chars().count() > MAX_PREVIEW_CHARS {
                    let cut: String = text.chars().take(MAX_PREVIEW_CHARS - 3).collect();
                    format!("{cut}...")
                } else {
                    text
                }
            })
    };
    Ok(Converted {
        request_preview: json_preview("mlflow.spanInputs"),
        response_preview: json_preview("mlflow.spanOutputs"),
        session,
        user: attribute("user.id").map(unwrapped).filter(|user| !user.is_empty()),
        span: NewSpan {
            trace_id,
            span_id: hex(&span.span_id),
            start_ns,
            content: Value::Object(content),
        },
        start_ns,
        end_ns,
        root: span.parent_span_id.is_empty(),
        error: status_code == 2,
        name: span.name.clone(),
        inputs: attribute("mlflow.spanInputs"),
        outputs: attribute("mlflow.spanOutputs"),
    })
}

/// An enum by name where it has one, else by number (as proto JSON writes unknown values).
fn enum_name(names: &[&str], number: i32) -> Value {
    usize::try_from(number)
        .ok()
        .and_then(|index| names.get(index))
        .map_or_else(|| Value::from(number), |name| Value::String((*name).to_string()))
}

fn key_values_json(entries: &[KeyValue]) -> Value {
    Value::Array(
        entries
            .iter()
            .map(|entry| {
                let mut object = Map::new();
                object.insert("key".into(), Value::String(entry.key.clone()));
                if let Some(value) = &entry.value {
                    object.insert("value".into(), any_json(value));
                }
                Value::Object(object)
            })
            .collect(),
    )
}

/// An `AnyValue` as proto JSON.
fn any_json(value: &AnyValue) -> Value {
    match &value.value {
        None => json!({}),
        Some(Any::String(text)) => json!({"string_value": text}),
        Some(Any::Bool(flag)) => json!({"bool_value": flag}),
        Some(Any::Int(number)) => json!({"int_value": number}),
        Some(Any::Double(number)) if number.is_finite() => json!({"double_value": number}),
        Some(Any::Double(number)) => json!({"double_value": if number.is_nan() {
            "NaN"
        } else if *number > 0.0 {
            "Infinity"
        } else {
            "-Infinity"
        }}),
        Some(Any::Array(array)) => {
            json!({"array_value": {"values": array.values.iter().map(any_json).collect::<Vec<_>>()}})
        }
        Some(Any::KeyValues(list)) => json!({"kvlist_value": {"values": key_values_json(&list.values)}}),
        Some(Any::Bytes(bytes)) => json!({"bytes_value": base64(bytes)}),
    }
}

/// A value as a preview: text as it is, anything else as compact JSON; cut to [`MAX_PREVIEW_CHARS`].
fn preview(value: &AnyValue) -> String {
    let text = match &value.value {
        Some(Any::String(text)) => text.clone(),
        _ => plain(value).to_string(),
    };
    text.chars().take(MAX_PREVIEW_CHARS).collect()
}

/// An `AnyValue` as plain JSON.
fn plain(value: &AnyValue) -> Value {
    match &value.value {
        None => Value::Null,
        Some(Any::String(text)) => Value::String(text.clone()),
        Some(Any::Bool(flag)) => Value::Bool(*flag),
        Some(Any::Int(number)) => Value::from(*number),
        Some(Any::Double(number)) => serde_json::Number::from_f64(*number).map_or(Value::Null, Value::Number),
        Some(Any::Array(array)) => Value::Array(array.values.iter().map(plain).collect()),
        Some(Any::KeyValues(list)) => Value::Object(
            list.values
                .iter()
                .map(|entry| (entry.key.clone(), entry.value.as_ref().map_or(Value::Null, plain)))
                .collect(),
        ),
        Some(Any::Bytes(bytes)) => Value::String(base64(bytes)),
    }
}
