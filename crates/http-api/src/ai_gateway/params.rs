//! The management API's requests as MLflow's server reads them: the query string for GET, else the JSON
//! body; MLflow's snake_case names or the proto's camelCase ones; refusals in MLflow's words.

use crate::error::ApiError;
use axum::extract::Request;
use axum::http::Method;
use base64::Engine;
use loopline_core::ErrorCode;
use loopline_llm_gateway::catalog::Named;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The largest request body read.
const MAX_BODY: usize = 1 << 20;

pub(super) fn missing(field: &str) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidParameterValue,
        format!(
            "Missing value for required parameter '{field}'. See the API docs for more information about request \
             parameters."
        ),
    )
}

pub(super) fn invalid_value(value: &Value, field: &str) -> ApiError {
    let shown: String = value.to_string().chars().take(200).collect();
    ApiError::new(
        ErrorCode::InvalidParameterValue,
        format!("Invalid value {shown} for parameter '{field}' supplied."),
    )
}

/// The most entries one list page holds, as MLflow's store allows.
const MAX_RESULTS: usize = 50_000;

fn invalid(message: String) -> ApiError {
    ApiError::new(ErrorCode::InvalidParameterValue, message)
}

/// An enum field, by name or number; `None` when absent.
pub(super) fn named<T: Named>(params: &Params, field: &str, shown: &str) -> Result<Option<T>, ApiError> {
    match params.0.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => T::parse(value)
            .map(Some)
            .ok_or_else(|| invalid(format!("Invalid {shown}: {value}"))),
    }
}

/// A number given as a JSON number or (in a query string) as text.
pub(super) fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(number) => number.as_f64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

/// Where a list page starts, from MLflow's token (base64 of `{"offset": N}`).
pub(super) fn offset(token: Option<String>) -> Result<usize, ApiError> {
    let Some(token) = token.filter(|token| !token.is_empty()) else {
        return Ok(0);
    };
    base64::engine::general_purpose::STANDARD
        .decode(token.as_bytes())
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .and_then(|value| value.get("offset").and_then(Value::as_u64))
        .and_then(|offset| usize::try_from(offset).ok())
        .ok_or_else(|| invalid("Invalid page token: it is not one this server gave".into()))
}

pub(super) fn max_results(params: &Params) -> Result<usize, ApiError> {
    let Some(value) = params.0.get("max_results").filter(|value| !value.is_null()) else {
        return Ok(1000);
    };
    let wanted = number(value).ok_or_else(|| invalid_value(value, "max_results"))?;
    if wanted < 1.0 || wanted.fract() != 0.0 {
        return Err(invalid(format!(
            "Invalid value {value} for parameter 'max_results' supplied. It must be a positive integer"
        )));
    }
    if wanted > MAX_RESULTS as f64 {
        return Err(invalid(format!(
            "Invalid value {value} for parameter 'max_results' supplied. It must be at most {MAX_RESULTS}"
        )));
    }
    Ok(wanted as usize)
}

/// MLflow's token for the page after one that started at `start` and held at most `wanted` of `total`.
pub(super) fn page_token(start: usize, wanted: usize, total: usize) -> Option<String> {
    let next = start.saturating_add(wanted);
    (next < total)
        .then(|| base64::engine::general_purpose::STANDARD.encode(serde_json::json!({"offset": next}).to_string()))
}

/// A request's parameters, by MLflow's snake_case names.
pub(super) struct Params(pub(super) Map<String, Value>);

impl Params {
    pub(super) fn text(&self, field: &str) -> Result<Option<String>, ApiError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(other) => Err(invalid_value(other, field)),
        }
    }

    pub(super) fn required(&self, field: &str) -> Result<String, ApiError> {
        self.text(field)?
            .filter(|text| !text.is_empty())
            .ok_or_else(|| missing(field))
    }

    pub(super) fn map(&self, field: &str) -> Result<Option<BTreeMap<String, String>>, ApiError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(fields)) => fields
                .iter()
                .map(|(key, value)| match value {
                    Value::String(text) => Ok((key.clone(), text.clone())),
                    other => Err(invalid_value(other, &format!("{field}.{key}"))),
                })
                .collect::<Result<_, _>>()
                .map(Some),
            Some(other) => Err(invalid_value(other, field)),
        }
    }

    pub(super) fn flag(&self, field: &str) -> Result<Option<bool>, ApiError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(flag)) => Ok(Some(*flag)),
            Some(Value::String(text)) if text.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(Value::String(text)) if text.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(other) => Err(ApiError::new(
                ErrorCode::InvalidParameterValue,
                format!("Invalid boolean value: {other}, must be 'true' or 'false'."),
            )),
        }
    }
}

/// The parameters: the query string for GET, else the JSON body (an unreadable one is `{}`, as MLflow reads
/// it); camelCase names are read as snake_case, and naming one field both ways is refused.
pub(super) async fn params(request: Request) -> Result<Map<String, Value>, ApiError> {
    let raw: Map<String, Value> = if request.method() == Method::GET {
        form_urlencoded::parse(request.uri().query().unwrap_or_default().as_bytes())
            .take(256)
            .map(|(key, value)| (key.into_owned(), Value::String(value.into_owned())))
            .collect()
    } else {
        let bytes = crate::extract::read_body_limited(request.into_body(), MAX_BODY).await?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(fields)) => fields,
            // A body sent as a JSON string holding the JSON, as some clients do.
            Ok(Value::String(text)) => match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(fields)) => fields,
                _ => Map::new(),
            },
            _ => Map::new(),
        }
    };
    let mut params = Map::new();
    for (key, value) in raw {
        let snake = snake_case(&key);
        if snake != key && (params.contains_key(&snake) || params.contains_key(&key)) {
            return Err(both(&snake, &key));
        }
        if snake == key && params.contains_key(&key) {
            return Err(both(&key, &camel_case(&key)));
        }
        params.insert(snake, value);
    }
    Ok(params)
}

fn both(snake: &str, camel: &str) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidParameterValue,
        format!("Request specifies both '{snake}' and '{camel}'; provide only one of them."),
    )
}

pub(super) fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for character in name.chars() {
        if character.is_ascii_uppercase() {
            out.push('_');
            out.push(character.to_ascii_lowercase());
        } else {
            out.push(character);
        }
    }
    out
}

pub(super) fn camel_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for character in name.chars() {
        if character == '_' {
            upper = true;
        } else if upper {
            out.push(character.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(character);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn request(method: &str, uri: &str, body: Vec<u8>) -> Request {
        axum::http::Request::builder()
            .method(method)
            .uri(uri)
            .body(axum::body::Body::from(body))
            .unwrap()
    }

    #[tokio::test]
    async fn hostile_bodies_and_queries_are_read_as_little_as_they_say() {
        // 10,000-deep nesting: not an object MLflow would read, so no parameters (and no stack spent).
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(
            params(request("POST", "/x", deep.into_bytes()))
                .await
                .unwrap()
                .is_empty()
        );
        // A body larger than the limit is refused, not read.
        let large = vec![b' '; MAX_BODY + 1];
        assert!(params(request("POST", "/x", large)).await.is_err());
        // Thousands of query pairs: the first 256 are read.
        let query: String = (0..5_000).map(|index| format!("k{index}=v&")).collect();
        assert_eq!(
            params(request("GET", &format!("/x?{query}"), Vec::new()))
                .await
                .unwrap()
                .len(),
            256
        );
        // One field named both ways is refused.
        let both = br#"{"secret_id": "a", "secretId": "b"}"#.to_vec();
        assert!(params(request("POST", "/x", both)).await.is_err());
    }

    proptest! {
        #[test]
        fn any_body_is_read_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), key in "[a-zA-Z_]{0,30}") {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let _ = runtime.block_on(params(request("POST", "/x", bytes)));
            prop_assert!(!snake_case(&key).chars().any(|c| c.is_ascii_uppercase()));
            let _ = camel_case(&key);
        }
    }
}
