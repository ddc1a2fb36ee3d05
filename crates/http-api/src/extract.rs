//! Request extraction in MLflow's conventions: GET messages travel in the query string (repeated keys for
//! lists, `True`/`False` for booleans); every other method sends JSON, DELETE included. Any failure becomes
//! a 400 that names the offending field; oversized bodies a 413.

use crate::AppState;
use crate::error::ApiError;
use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::Method;
use loopline_core::ErrorCode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// A request message of type `T`, from the query string (GET) or the JSON body (other methods).
pub struct MlflowMessage<T>(pub T);

fn query_to_json(query: &str) -> Value {
    let mut object = Map::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let value = Value::String(value.into_owned());
        match object.get_mut(key.as_ref()) {
            Some(Value::Array(values)) => values.push(value),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, value]);
            }
            None => {
                object.insert(key.into_owned(), value);
            }
        }
    }
    Value::Object(object)
}

/// Reads a whole body up to `limit` bytes, answering 413 beyond it: at once when the declared
/// `Content-Length` is over the limit (nothing is read or waited for), else when the bytes read pass it.
pub async fn read_body_limited(body: Body, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    let declared = axum::body::HttpBody::size_hint(&body).lower();
    if declared > limit as u64 {
        return Err(ApiError::new(
            ErrorCode::RequestTooLarge,
            format!("request body of {declared} bytes is larger than the limit of {limit} bytes"),
        ));
    }
    axum::body::to_bytes(body, limit).await.map_err(|error| {
        let too_large = std::error::Error::source(&error)
            .is_some_and(|source| source.to_string().contains("length limit"))
            || error.to_string().contains("length limit");
        if too_large {
            ApiError::new(
                ErrorCode::RequestTooLarge,
                format!("request body is larger than the limit of {limit} bytes"),
            )
        } else {
            ApiError::new(
                ErrorCode::BadRequest,
                format!("could not read the request body: {error}"),
            )
        }
    })
}

impl<T: DeserializeOwned + Send> FromRequest<AppState> for MlflowMessage<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let describe = |error: serde_path_to_error::Error<serde_json::Error>, bytes: &[u8]| {
            let field = error.path().to_string();
            let about_a_value = !["missing field", "unknown field", "duplicate field"]
                .iter()
                .any(|start| error.inner().to_string().starts_with(start));
            if error.inner().is_data() && about_a_value && field != "." {
                // Off the fast path: the body is read again to show the value refused, as MLflow does.
                let offending = serde_json::from_slice::<Value>(bytes)
                    .ok()
                    .and_then(|body| value_at(&body, error.path()).cloned());
                if let Some(offending) = offending {
                    return invalid_value(&field, &offending);
                }
            }
            let inner = error.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                ApiError::new(
                    ErrorCode::BadRequest,
                    format!("the request body is not valid JSON: {inner}"),
                )
            } else if field == "." {
                ApiError::new(
                    ErrorCode::BadRequest,
                    format!("the request body must be a JSON object: {inner}"),
                )
            } else {
                ApiError::invalid(format!("Invalid value for parameter '{field}': {inner}"))
            }
        };
        let query = request.uri().query().unwrap_or_default().to_string();
        let from_query = |query: &str| {
            let value = query_to_json(query);
            serde_path_to_error::deserialize(value.clone()).map_err(|error| {
                let field = error.path().to_string();
                match value_at(&value, error.path()) {
                    Some(offending) if field != "." => invalid_value(&field, offending),
                    _ => describe_value_error(error),
                }
            })
        };
        if request.method() == Method::GET {
            return from_query(&query).map(MlflowMessage);
        }
        let declares_json = is_json_content_type(request.headers());
        let bytes = read_body_limited(request.into_body(), state.limits.max_json_body_bytes).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return from_query(&query).map(MlflowMessage);
        }
        // A browser sends form and text bodies cross-origin without asking first; JSON needs its consent.
        if !declares_json {
            return Err(ApiError::invalid(
                "Bad Request. Content-Type must be one of ['application/json'].",
            ));
        }
        if bytes.iter().find(|byte| !byte.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                "the request body must be a JSON object",
            ));
        }
        // Deserialise straight from the bytes: no intermediate JSON tree for 1000-metric batches. The
        // field path of a refusal is tracked only on a second reading, off the fast path.
        if let Ok(message) = serde_json::from_slice(&bytes) {
            return Ok(MlflowMessage(message));
        }
        let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
        let message = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| describe(error, &bytes))?;
        deserializer.end().map_err(|error| {
            ApiError::new(
                ErrorCode::BadRequest,
                format!("the request body is not valid JSON: {error}"),
            )
        })?;
        Ok(MlflowMessage(message))
    }
}

/// Whether the request says its body is JSON.
fn is_json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok());
    loopline_core::media_type::is_json_media_type(content_type)
}

/// The value at a deserialisation error's path.
fn value_at<'a>(body: &'a Value, path: &serde_path_to_error::Path) -> Option<&'a Value> {
    let mut at = body;
    for segment in path.iter() {
        at = match segment {
            serde_path_to_error::Segment::Map { key } => at.get(key.as_str())?,
            serde_path_to_error::Segment::Seq { index } => at.get(*index)?,
            _ => return None,
        };
    }
    Some(at)
}

/// MLflow's wording for a value of the wrong type, which clients and tests match on: the value as compact
/// JSON, the field, and the type it had (as Python names types).
fn invalid_value(field: &str, value: &Value) -> ApiError {
    let kind = match value {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(number) if number.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    };
    let mut shown = value.to_string();
    if shown.len() > 200 {
        let cut = (0..=200).rev().find(|at| shown.is_char_boundary(*at)).unwrap_or(0);
        shown.truncate(cut);
        shown.push_str("...");
    }
    ApiError::invalid(format!(
        "Invalid value {shown} for parameter '{field}' supplied: Hint: Value was of type '{kind}'. See the API docs \
         for more information about request parameters."
    ))
}

fn describe_value_error(error: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let field = error.path().to_string();
    ApiError::invalid(format!("Invalid value for parameter '{field}': {}", error.into_inner()))
}

/// Deserialises a list that may arrive as one string (a single query parameter) or as an array.
pub fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
        Nothing(()),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(single) => vec![single],
        OneOrMany::Many(many) => many,
        OneOrMany::Nothing(()) => Vec::new(),
    })
}

/// Deserialises a boolean from JSON or from a query string (`True`, `true`, `1`...).
pub fn lenient_bool<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<bool>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flexible {
        Bool(bool),
        Text(String),
        Nothing(()),
    }
    match Flexible::deserialize(deserializer)? {
        Flexible::Bool(value) => Ok(Some(value)),
        Flexible::Nothing(()) => Ok(None),
        Flexible::Text(text) => match text.to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(Some(true)),
            "false" | "0" | "" => Ok(Some(false)),
            other => Err(serde::de::Error::custom(format!("'{other}' is not a boolean"))),
        },
    }
}

/// A key/value pair in a request (tags, params).
#[derive(Debug, Deserialize)]
pub struct KeyValueInput {
    /// Key.
    pub key: Option<String>,
    /// Value; absent means "".
    pub value: Option<String>,
}

/// Converts request pairs into tags, requiring keys.
pub fn to_tags(inputs: Vec<KeyValueInput>, field: &str) -> Result<Vec<loopline_metadata_store::Tag>, ApiError> {
    inputs
        .into_iter()
        .map(|input| match input.key {
            Some(key) if !key.is_empty() => Ok(loopline_metadata_store::Tag::new(key, input.value.unwrap_or_default())),
            _ => Err(ApiError::invalid(format!(
                "Missing value for required parameter '{field}.key'."
            ))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_query_keys_become_lists() {
        let value = query_to_json("order_by=a&order_by=b&name=x%20y&flag=True");
        assert_eq!(value["order_by"], serde_json::json!(["a", "b"]));
        assert_eq!(value["name"], "x y");
        assert_eq!(value["flag"], "True");
    }
}
