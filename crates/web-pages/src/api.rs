//! The pages read and act through the server's own public API, called in-process: a page shows exactly
//! what a client of the API would see, the same checks guard a button as guard `curl`, and (once
//! authentication lands) the caller's credentials go with each call.

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt;

/// The largest API answer a page reads (window lists and logs are paged far below this).
const MAX_ANSWER_BYTES: usize = 32 << 20;

/// Headers passed from the browser's request to the API call: who is asking.
const FORWARDED: &[&str] = &["authorization", "cookie", "x-loopline-user"];

/// A handle on the API router.
#[derive(Clone)]
pub struct Api {
    router: Router,
}

/// An API call that did not succeed, in the API's own words.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// The status the API answered.
    pub status: StatusCode,
    /// Its error code (`RESOURCE_DOES_NOT_EXIST`, ...).
    pub code: String,
    /// Its message.
    pub message: String,
}

impl ApiError {
    /// Whether the thing asked for does not exist.
    pub fn is_missing(&self) -> bool {
        self.status == StatusCode::NOT_FOUND
    }
}

/// Who asked, for the calls made on their behalf.
#[derive(Clone, Default)]
pub struct Caller {
    headers: Vec<(&'static str, HeaderValue)>,
}

impl Caller {
    /// The credentials and user name a browser request carries. Actions taken from a page without a
    /// named user are recorded as the web UI's.
    pub fn of(headers: &HeaderMap) -> Caller {
        let mut forwarded: Vec<(&'static str, HeaderValue)> = FORWARDED
            .iter()
            .filter_map(|name| headers.get(*name).map(|value| (*name, value.clone())))
            .collect();
        if !forwarded.iter().any(|(name, _)| *name == "x-loopline-user") {
            forwarded.push(("x-loopline-user", HeaderValue::from_static("web-ui")));
        }
        Caller { headers: forwarded }
    }
}

impl Api {
    /// Calls go to `router`.
    pub fn new(router: Router) -> Api {
        Api { router }
    }

    /// GET `path` (with its query), as JSON.
    pub async fn get(&self, caller: &Caller, path: &str) -> Result<Value, ApiError> {
        let body = self.call(caller, Method::GET, path, None).await?;
        serde_json::from_slice(&body).map_err(|error| ApiError {
            status: StatusCode::BAD_GATEWAY,
            code: "INTERNAL_ERROR".into(),
            message: format!("{path} answered something that is not JSON: {error}"),
        })
    }

    /// GET `path` as text (a report page, a log).
    pub async fn get_text(&self, caller: &Caller, path: &str) -> Result<String, ApiError> {
        let body = self.call(caller, Method::GET, path, None).await?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// POST a JSON body to `path`.
    pub async fn post(&self, caller: &Caller, path: &str, body: &Value) -> Result<Value, ApiError> {
        let answer = self.call(caller, Method::POST, path, Some(body.to_string())).await?;
        Ok(serde_json::from_slice(&answer).unwrap_or(Value::Null))
    }

    async fn call(
        &self,
        caller: &Caller,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<axum::body::Bytes, ApiError> {
        let mut request = Request::builder().method(method).uri(path);
        for (name, value) in &caller.headers {
            request = request.header(*name, value.clone());
        }
        let request = match body {
            Some(body) => request
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body)),
            None => request.body(Body::empty()),
        }
        .map_err(|error| ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "INVALID_PARAMETER_VALUE".into(),
            message: format!("'{path}' is not a request this page can make: {error}"),
        })?;
        let response = match self.router.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), MAX_ANSWER_BYTES)
            .await
            .map_err(|error| ApiError {
                status: StatusCode::BAD_GATEWAY,
                code: "INTERNAL_ERROR".into(),
                message: format!("reading the answer of {path}: {error}"),
            })?;
        if status.is_success() {
            return Ok(body);
        }
        let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let text = |key: &str| parsed.get(key).and_then(Value::as_str).map(str::to_string);
        Err(ApiError {
            status,
            code: text("error_code").unwrap_or_else(|| status.as_str().to_string()),
            message: text("message").unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(500).collect()),
        })
    }
}

/// Everything but letters, digits, `-`, `_` and `~` is encoded (dots too, so a name `..` stays a name).
const NOT_UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'~');

/// `segment` percent-encoded for a URL path or query value.
pub fn encode(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, NOT_UNRESERVED).to_string()
}
