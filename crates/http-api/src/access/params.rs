//! Request parameters as MLflow's auth app reads them: the query string for GET (and for DELETE without a
//! JSON body), the JSON body otherwise. Values are kept as JSON so numbers and booleans stay typed.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, header};
use serde_json::{Map, Value};

/// Most query pairs read.
const MAX_PAIRS: usize = 100;

/// A request's parameters.
pub struct Params(Map<String, Value>);

/// True when the request says its body is JSON.
pub fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .split(';')
                .next()
                .is_some_and(|kind| kind.trim().eq_ignore_ascii_case("application/json"))
        })
}

impl Params {
    /// Reads them.
    pub fn read(method: &Method, headers: &HeaderMap, query: Option<&str>, body: &Bytes) -> Result<Params, ApiError> {
        let from_query = *method == Method::GET || (*method == Method::DELETE && !is_json(headers));
        if from_query {
            let map = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                .take(MAX_PAIRS)
                .map(|(key, value)| (key.into_owned(), Value::String(value.into_owned())))
                .collect();
            return Ok(Params(map));
        }
        if body.is_empty() {
            return Ok(Params(Map::new()));
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => Ok(Params(map)),
            Ok(_) => Err(ApiError::new(
                loopline_core::ErrorCode::BadRequest,
                "The request body must be a JSON object.",
            )),
            Err(error) => Err(ApiError::new(
                loopline_core::ErrorCode::BadRequest,
                format!("The request body is not valid JSON: {error}"),
            )),
        }
    }

    /// A required non-empty string.
    pub fn text(&self, name: &str) -> Result<String, ApiError> {
        match self.0.get(name) {
            Some(Value::String(text)) if !text.is_empty() => Ok(text.clone()),
            Some(Value::Number(number)) => Ok(number.to_string()),
            _ => Err(ApiError::invalid(format!(
                "Missing value for required parameter '{name}'."
            ))),
        }
    }

    /// An optional string.
    pub fn optional_text(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(_) => Err(ApiError::invalid(format!("Parameter '{name}' must be a string."))),
        }
    }

    /// A required integer (a number, or a string of digits).
    pub fn integer(&self, name: &str) -> Result<i64, ApiError> {
        let value = match self.0.get(name) {
            Some(Value::Number(number)) => number.as_i64(),
            Some(Value::String(text)) => text.trim().parse().ok(),
            None | Some(Value::Null) => {
                return Err(ApiError::invalid(format!(
                    "Missing value for required parameter '{name}'."
                )));
            }
            Some(_) => None,
        };
        value.ok_or_else(|| ApiError::invalid(format!("Parameter '{name}' must be an integer.")))
    }

    /// A required boolean (`true`/`false`, or their text).
    pub fn boolean(&self, name: &str) -> Result<bool, ApiError> {
        match self.0.get(name) {
            Some(Value::Bool(value)) => Ok(*value),
            Some(Value::String(text)) if text.eq_ignore_ascii_case("true") => Ok(true),
            Some(Value::String(text)) if text.eq_ignore_ascii_case("false") => Ok(false),
            None | Some(Value::Null) => Err(ApiError::invalid(format!(
                "Missing value for required parameter '{name}'."
            ))),
            Some(_) => Err(ApiError::invalid(format!("Parameter '{name}' must be true or false."))),
        }
    }

    /// The raw value.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    /// Refuses a parameter not in `known` (a misspelt limit would otherwise be silently dropped).
    pub fn only(&self, known: &[&str]) -> Result<(), ApiError> {
        match self.0.keys().find(|name| !known.contains(&name.as_str())) {
            Some(name) => Err(ApiError::invalid(format!(
                "Unknown field '{name}'; the fields are {}.",
                known.join(", ")
            ))),
            None => Ok(()),
        }
    }
}
