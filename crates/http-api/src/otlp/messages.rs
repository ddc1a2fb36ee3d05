//! The OTLP trace messages Loopline reads (`opentelemetry/proto/collector/trace/v1` and the messages it
//! uses), declared by hand for prost's derive: only the fields MLflow keeps; others are skipped on decode.
//! OTLP/JSON bodies are read into the same types ([`from_json`]).

use base64::Engine;
use serde_json::Value;

/// `ExportTraceServiceRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportTraceServiceRequest {
    #[prost(message, repeated, tag = "1")]
    pub resource_spans: Vec<ResourceSpans>,
}

/// `ResourceSpans`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResourceSpans {
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    pub scope_spans: Vec<ScopeSpans>,
}

/// `Resource`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Resource {
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
}

/// `ScopeSpans`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ScopeSpans {
    #[prost(message, repeated, tag = "2")]
    pub spans: Vec<Span>,
}

/// `Span`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Span {
    #[prost(bytes = "vec", tag = "1")]
    pub trace_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub span_id: Vec<u8>,
    #[prost(string, tag = "3")]
    pub trace_state: String,
    #[prost(bytes = "vec", tag = "4")]
    pub parent_span_id: Vec<u8>,
    #[prost(string, tag = "5")]
    pub name: String,
    #[prost(int32, tag = "6")]
    pub kind: i32,
    #[prost(fixed64, tag = "7")]
    pub start_time_unix_nano: u64,
    #[prost(fixed64, tag = "8")]
    pub end_time_unix_nano: u64,
    #[prost(message, repeated, tag = "9")]
    pub attributes: Vec<KeyValue>,
    #[prost(message, repeated, tag = "11")]
    pub events: Vec<Event>,
    #[prost(message, optional, tag = "15")]
    pub status: Option<Status>,
}

/// `Span.Event`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    #[prost(fixed64, tag = "1")]
    pub time_unix_nano: u64,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(message, repeated, tag = "3")]
    pub attributes: Vec<KeyValue>,
}

/// `Status`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Status {
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(int32, tag = "3")]
    pub code: i32,
}

/// `KeyValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<AnyValue>,
}

/// `AnyValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AnyValue {
    #[prost(oneof = "Any", tags = "1, 2, 3, 4, 5, 6, 7")]
    pub value: Option<Any>,
}

/// `AnyValue.value`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Any {
    #[prost(string, tag = "1")]
    String(String),
    #[prost(bool, tag = "2")]
    Bool(bool),
    #[prost(int64, tag = "3")]
    Int(i64),
    #[prost(double, tag = "4")]
    Double(f64),
    #[prost(message, tag = "5")]
    Array(ArrayValue),
    #[prost(message, tag = "6")]
    KeyValues(KeyValueList),
    #[prost(bytes = "vec", tag = "7")]
    Bytes(Vec<u8>),
}

/// `ArrayValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ArrayValue {
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<AnyValue>,
}

/// `KeyValueList`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValueList {
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<KeyValue>,
}

/// `google.rpc.Status`, OTLP's error answer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// A field of an OTLP/JSON object, by its JSON (lowerCamelCase) or proto (snake_case) name.
fn field<'a>(object: &'a Value, camel: &str, snake: &str) -> Option<&'a Value> {
    object.get(camel).or_else(|| object.get(snake))
}

fn items<'a>(object: &'a Value, camel: &str, snake: &str) -> Result<&'a [Value], String> {
    match field(object, camel, snake) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(format!("'{camel}' must be an array")),
    }
}

fn text(object: &Value, camel: &str, snake: &str) -> Result<String, String> {
    match field(object, camel, snake) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(text)) => Ok(text.clone()),
        Some(_) => Err(format!("'{camel}' must be a string")),
    }
}

/// A 64-bit integer, which OTLP/JSON may write as a number or a decimal string.
fn integer(object: &Value, camel: &str, snake: &str) -> Result<i64, String> {
    match field(object, camel, snake) {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(number)) => number
            .as_i64()
            .or_else(|| number.as_u64().and_then(|n| i64::try_from(n).ok()))
            .ok_or_else(|| format!("'{camel}' must be an integer")),
        Some(Value::String(text)) => text
            .parse::<i64>()
            .or_else(|_| text.parse::<u64>().map(|n| n as i64))
            .map_err(|_| format!("'{camel}' must be an integer")),
        Some(_) => Err(format!("'{camel}' must be an integer")),
    }
}

/// Trace and span ids, hex in OTLP/JSON.
fn id(object: &Value, camel: &str, snake: &str) -> Result<Vec<u8>, String> {
    let hex = text(object, camel, snake)?;
    if hex.len() % 2 != 0 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("'{camel}' must be hex"));
    }
    Ok((0..hex.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&hex[at..at + 2], 16).unwrap_or(0))
        .collect())
}

/// Reads an OTLP/JSON export request.
pub fn from_json(body: &Value) -> Result<ExportTraceServiceRequest, String> {
    let mut request = ExportTraceServiceRequest::default();
    for resource_spans in items(body, "resourceSpans", "resource_spans")? {
        let resource = field(resource_spans, "resource", "resource")
            .map(|resource| {
                Ok::<_, String>(Resource {
                    attributes: key_values(resource, "attributes", "attributes")?,
                })
            })
            .transpose()?;
        let mut scope_spans = Vec::new();
        for scope in items(resource_spans, "scopeSpans", "scope_spans")? {
            let spans = items(scope, "spans", "spans")?
                .iter()
                .map(span_from_json)
                .collect::<Result<_, _>>()?;
            scope_spans.push(ScopeSpans { spans });
        }
        request.resource_spans.push(ResourceSpans { resource, scope_spans });
    }
    Ok(request)
}

fn span_from_json(span: &Value) -> Result<Span, String> {
    let status = field(span, "status", "status")
        .map(|status| {
            Ok::<_, String>(Status {
                message: text(status, "message", "message")?,
                code: status_code(field(status, "code", "code"))?,
            })
        })
        .transpose()?;
    let events = items(span, "events", "events")?
        .iter()
        .map(|event| {
            Ok(Event {
                time_unix_nano: integer(event, "timeUnixNano", "time_unix_nano")? as u64,
                name: text(event, "name", "name")?,
                attributes: key_values(event, "attributes", "attributes")?,
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(Span {
        trace_id: id(span, "traceId", "trace_id")?,
        span_id: id(span, "spanId", "span_id")?,
        trace_state: text(span, "traceState", "trace_state")?,
        parent_span_id: id(span, "parentSpanId", "parent_span_id")?,
        name: text(span, "name", "name")?,
        kind: match field(span, "kind", "kind") {
            Some(Value::String(name)) => span_kind_number(name),
            _ => integer(span, "kind", "kind")? as i32,
        },
        start_time_unix_nano: integer(span, "startTimeUnixNano", "start_time_unix_nano")? as u64,
        end_time_unix_nano: integer(span, "endTimeUnixNano", "end_time_unix_nano")? as u64,
        attributes: key_values(span, "attributes", "attributes")?,
        events,
        status,
    })
}

fn status_code(code: Option<&Value>) -> Result<i32, String> {
    match code {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(number)) => number
            .as_i64()
            .map(|n| n as i32)
            .ok_or_else(|| "'code' must be an integer".to_string()),
        Some(Value::String(name)) => Ok(match name.as_str() {
            "STATUS_CODE_OK" => 1,
            "STATUS_CODE_ERROR" => 2,
            _ => 0,
        }),
        Some(_) => Err("'code' must be an integer".into()),
    }
}

fn span_kind_number(name: &str) -> i32 {
    SPAN_KINDS.iter().position(|kind| *kind == name).unwrap_or(0) as i32
}

/// Span kinds by number.
pub const SPAN_KINDS: [&str; 6] = [
    "SPAN_KIND_UNSPECIFIED",
    "SPAN_KIND_INTERNAL",
    "SPAN_KIND_SERVER",
    "SPAN_KIND_CLIENT",
    "SPAN_KIND_PRODUCER",
    "SPAN_KIND_CONSUMER",
];

fn key_values(object: &Value, camel: &str, snake: &str) -> Result<Vec<KeyValue>, String> {
    items(object, camel, snake)?
        .iter()
        .map(|entry| {
            Ok(KeyValue {
                key: text(entry, "key", "key")?,
                value: field(entry, "value", "value").map(any_from_json).transpose()?,
            })
        })
        .collect()
}

fn any_from_json(value: &Value) -> Result<AnyValue, String> {
    let one = if let Some(text) = field(value, "stringValue", "string_value") {
        Some(Any::String(
            text.as_str().ok_or("'stringValue' must be a string")?.to_string(),
        ))
    } else if let Some(flag) = field(value, "boolValue", "bool_value") {
        Some(Any::Bool(flag.as_bool().ok_or("'boolValue' must be a boolean")?))
    } else if field(value, "intValue", "int_value").is_some() {
        Some(Any::Int(integer(value, "intValue", "int_value")?))
    } else if let Some(number) = field(value, "doubleValue", "double_value") {
        Some(Any::Double(match number {
            Value::Number(number) => number.as_f64().unwrap_or(0.0),
            Value::String(text) => text.parse().map_err(|_| "'doubleValue' must be a number")?,
            _ => return Err("'doubleValue' must be a number".into()),
        }))
    } else if let Some(array) = field(value, "arrayValue", "array_value") {
        Some(Any::Array(ArrayValue {
            values: items(array, "values", "values")?
                .iter()
                .map(any_from_json)
                .collect::<Result<_, _>>()?,
        }))
    } else if let Some(list) = field(value, "kvlistValue", "kvlist_value") {
        Some(Any::KeyValues(KeyValueList {
            values: key_values(list, "values", "values")?,
        }))
    } else if let Some(bytes) = field(value, "bytesValue", "bytes_value") {
        let text = bytes.as_str().ok_or("'bytesValue' must be a base64 string")?;
        Some(Any::Bytes(
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|_| "'bytesValue' must be base64")?,
        ))
    } else {
        None
    };
    Ok(AnyValue { value: one })
}
