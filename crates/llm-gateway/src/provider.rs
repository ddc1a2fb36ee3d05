//! Requests to a provider speaking OpenAI's API, and what its failures mean for routing: try again, try the
//! next deployment, or tell the caller their request is wrong. Redirects are never followed (the key would
//! go with them), answers are read up to a limit, and the provider's key never appears in a message.

use crate::config::{Provider, ProviderKind, Secret};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde_json::Value;
use std::pin::Pin;
use std::time::Duration;

/// The largest answer read from a provider (a non-streamed completion or embeddings).
pub const MAX_ANSWER_BYTES: usize = 64 << 20;
/// The Messages API version asked of Anthropic.
const ANTHROPIC_VERSION: &str = "2023-06-01";
/// The most of an error answer read.
const MAX_ERROR_BYTES: usize = 64 * 1024;

/// What a failure means for routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Worth another try on the same deployment (429, 408, 5xx, no connection, timeout).
    Retryable,
    /// This deployment cannot answer (its key refused, the model unknown to it): try the next.
    Unusable,
    /// The prompt is longer than the model's context window: a fallback with a larger one may answer.
    ContextWindow,
    /// The request itself is wrong (the provider said 400/413/422 for another reason): the caller must fix it.
    Caller,
    /// The provider has no such endpoint (Anthropic and embeddings): the next one, with no mark against it.
    Unsupported,
}

impl FailureKind {
    /// The result label of an upstream attempt in the metrics.
    pub fn label(self) -> &'static str {
        match self {
            FailureKind::Retryable => "retryable",
            FailureKind::Unusable => "unusable",
            FailureKind::ContextWindow => "context_window",
            FailureKind::Caller => "caller",
            FailureKind::Unsupported => "unsupported",
        }
    }
}

/// A provider's failure, described without its key.
#[derive(Debug, Clone)]
pub struct Failure {
    /// What it means for routing.
    pub kind: FailureKind,
    /// The provider's HTTP status, if it answered.
    pub status: Option<u16>,
    /// How long the provider asked to wait (`retry-after-ms` or `retry-after`).
    pub retry_after: Option<Duration>,
    /// The request field the failure is about, when known (OpenAI's `param`).
    pub param: Option<String>,
    /// What happened, for logs and (for [`FailureKind::Caller`]) the caller.
    pub message: String,
}

/// A provider's stream of bytes.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, Failure>> + Send>>;

/// The clients providers share (one connection pool each): one for the configuration file's providers, one
/// that connects only to public addresses for guarded ones.
#[derive(Clone)]
pub struct Upstream {
    http: reqwest::Client,
    guarded: reqwest::Client,
}

/// Resolves names to their public addresses only: a name that resolves to a private, loopback or
/// link-local address (at save time or later, as DNS rebinding would) is not connected to.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<std::net::SocketAddr> = found
                .iter()
                .copied()
                .filter(|address| loopline_core::net::is_public(address.ip()))
                .collect();
            if public.is_empty() {
                return Err(
                    format!("'{host}' resolves to no public address, and this provider may reach only those").into(),
                );
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

impl Upstream {
    /// Clients that follow no redirects.
    pub fn new() -> Result<Upstream, String> {
        // HTTPS to providers uses ring (the server installs the same at start; tests build gateways alone).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let builder = || {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(Duration::from_secs(10))
                .pool_idle_timeout(Duration::from_secs(90))
        };
        let failed = |error: reqwest::Error| format!("building the gateway's HTTP client: {error}");
        Ok(Upstream {
            http: builder().build().map_err(failed)?,
            guarded: builder()
                .dns_resolver(std::sync::Arc::new(PublicOnly))
                .build()
                .map_err(failed)?,
        })
    }

    /// Posts `body` to `{base_url}{path}`; the answer once its status says success.
    pub async fn post(
        &self,
        provider: &Provider,
        path: &str,
        deployment: &str,
        body: &impl serde::Serialize,
        timeout: Duration,
    ) -> Result<reqwest::Response, Failure> {
        let url = if provider.kind == ProviderKind::Azure {
            azure_url(provider, deployment, path)
        } else {
            format!("{}{path}", provider.base_url)
        };
        let client = if provider.guarded { &self.guarded } else { &self.http };
        let mut request = client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(body).map_err(|error| Failure {
                kind: FailureKind::Caller,
                status: None,
                retry_after: None,
                param: None,
                message: format!("the request could not be encoded: {error}"),
            })?);
        if provider.kind == ProviderKind::Anthropic {
            request = request.header("anthropic-version", ANTHROPIC_VERSION);
            if let Some(key) = &provider.api_key {
                request = request.header("x-api-key", key.expose());
            }
        } else if let Some(key) = &provider.api_key {
            request = if provider.kind == ProviderKind::Azure {
                request.header("api-key", key.expose())
            } else {
                request.bearer_auth(key.expose())
            };
        }
        let response = match tokio::time::timeout(timeout, request.send()).await {
            Err(_) => {
                return Err(retryable(format!(
                    "{} did not answer within {timeout:?}",
                    provider.name
                )));
            }
            Ok(Err(error)) => {
                return Err(retryable(format!(
                    "{} could not be reached: {}",
                    provider.name,
                    describe(error)
                )));
            }
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = retry_after(response.headers());
        let text = read_error(response, timeout).await;
        let mut failure = classify(provider, status.as_u16(), retry_after, &text);
        // After decoding: an escaped key (`\/`, `\u0073`) is whole again only in the decoded message.
        failure.message = scrub(&failure.message, provider.api_key.as_ref());
        Err(failure)
    }

    /// Reads a whole JSON answer (bounded, within `timeout`).
    pub async fn json(
        &self,
        provider: &Provider,
        response: reqwest::Response,
        timeout: Duration,
    ) -> Result<Value, Failure> {
        let bytes = tokio::time::timeout(timeout, read_bounded(response, MAX_ANSWER_BYTES))
            .await
            .map_err(|_| {
                retryable(format!(
                    "{} did not finish its answer within {timeout:?}",
                    provider.name
                ))
            })?
            .map_err(|problem| retryable(format!("{}: {problem}", provider.name)))?;
        let mut answer: Value = serde_json::from_slice(&bytes).map_err(|error| Failure {
            kind: FailureKind::Retryable,
            status: None,
            retry_after: None,
            param: None,
            message: format!("{} answered something that is not JSON: {error}", provider.name),
        })?;
        if let Some(key) = &provider.api_key {
            scrub_json(&mut answer, key);
        }
        Ok(answer)
    }

    /// The answer's bytes as they arrive.
    pub fn stream(&self, provider: &Provider, response: reqwest::Response) -> ByteStream {
        let name = provider.name.clone();
        Box::pin(
            response.bytes_stream().map(move |piece| {
                piece.map_err(|error| retryable(format!("{name}'s stream broke: {}", describe(error))))
            }),
        )
    }
}

fn retryable(message: String) -> Failure {
    Failure {
        kind: FailureKind::Retryable,
        status: None,
        retry_after: None,
        param: None,
        message,
    }
}

/// reqwest's description without the URL (which is configuration, not for callers).
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

async fn read_bounded(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    while let Some(piece) = response.chunk().await.map_err(describe)? {
        if bytes.len() + piece.len() > limit {
            return Err(format!("the answer is larger than {limit} bytes"));
        }
        bytes.extend_from_slice(&piece);
    }
    Ok(bytes)
}

async fn read_error(mut response: reqwest::Response, timeout: Duration) -> String {
    let read = async {
        let mut bytes = Vec::new();
        while let Ok(Some(piece)) = response.chunk().await {
            let room = MAX_ERROR_BYTES.saturating_sub(bytes.len());
            bytes.extend_from_slice(&piece[..piece.len().min(room)]);
            if bytes.len() >= MAX_ERROR_BYTES {
                break;
            }
        }
        bytes
    };
    let bytes = tokio::time::timeout(timeout.min(Duration::from_secs(10)), read)
        .await
        .unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The shortest key scrubbed from answers: a shorter one cannot be told from ordinary text (a key `k` would
/// take every `k` out of every answer, usage field names included, and with them the call's cost), and is no
/// secret anyway.
const MIN_SCRUBBED_KEY: usize = 8;

fn scrubbed_key(key: &Secret) -> Option<&str> {
    Some(key.expose()).filter(|key| key.len() >= MIN_SCRUBBED_KEY)
}

/// The provider's key never leaves in a message, even when a provider echoes it.
pub fn scrub(text: &str, key: Option<&Secret>) -> String {
    match key.and_then(scrubbed_key) {
        Some(key) => text.replace(key, "[redacted]"),
        None => text.to_string(),
    }
}

/// Replaces the key in every string of a decoded answer (where JSON escapes no longer hide it); true when
/// something was replaced.
pub fn scrub_json(value: &mut Value, key: &Secret) -> bool {
    scrubbed_key(key).is_some_and(|key| scrub_strings(value, key))
}

fn scrub_strings(value: &mut Value, key: &str) -> bool {
    // Every string is visited (no short circuit): all copies of the key go.
    let mut changed = false;
    match value {
        Value::String(text) if text.contains(key) => {
            *text = text.replace(key, "[redacted]");
            changed = true;
        }
        Value::Array(items) => {
            for item in items {
                changed |= scrub_strings(item, key);
            }
        }
        Value::Object(fields) => {
            // A key of the object may be the secret too: rename it.
            let named: Vec<String> = fields.keys().filter(|name| name.contains(key)).cloned().collect();
            for name in named {
                if let Some(item) = fields.remove(&name) {
                    fields.insert(name.replace(key, "[redacted]"), item);
                    changed = true;
                }
            }
            for item in fields.values_mut() {
                changed |= scrub_strings(item, key);
            }
        }
        _ => {}
    }
    changed
}

/// The wait a provider asked for: `retry-after-ms`, else `retry-after` in seconds.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let read = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok();
    let seconds = match read("retry-after-ms") {
        Some(ms) => ms / 1000.0,
        None => read("retry-after")?,
    };
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(86_400.0)))
}

/// The message inside an OpenAI-shaped error body, if it has one, with its code and param.
fn error_message(text: &str) -> Option<(String, Option<String>, Option<String>)> {
    let value: Value = serde_json::from_str(text).ok()?;
    let error = value.get("error").unwrap_or(&value);
    let message = error.get("message")?.as_str()?.to_string();
    let code = error.get("code").and_then(Value::as_str).map(str::to_string);
    let param = error
        .get("param")
        .and_then(Value::as_str)
        .filter(|param| param.len() <= 64 && param.bytes().all(|byte| byte.is_ascii_graphic()))
        .map(str::to_string);
    Some((message, code, param))
}

fn classify(provider: &Provider, status: u16, retry_after: Option<Duration>, text: &str) -> Failure {
    // Only a message decoded from the provider's JSON is passed on (scrubbed whole, then cut): raw text could
    // hide the key behind escapes the scrubber does not see.
    let (message, code, param) = match error_message(text) {
        Some((message, code, param)) => (scrub(&message, provider.api_key.as_ref()), code, param),
        None => (
            format!("an answer that is not a JSON error ({} bytes)", text.len()),
            None,
            None,
        ),
    };
    let context_window = code.as_deref() == Some("context_length_exceeded")
        || message.contains("context length")
        || message.contains("context window")
        || message.contains("maximum context")
        || message.contains("prompt is too long");
    let kind = match status {
        408 | 409 | 429 => FailureKind::Retryable,
        500.. => FailureKind::Retryable,
        400 | 413 if context_window => FailureKind::ContextWindow,
        400 | 413 | 422 => FailureKind::Caller,
        _ => FailureKind::Unusable,
    };
    let message: String = message.chars().take(500).collect();
    let message = match kind {
        // The caller reads this one: the provider's own words about their request.
        FailureKind::Caller | FailureKind::ContextWindow => message,
        _ => format!("{} answered {status}: {message}", provider.name),
    };
    Failure {
        kind,
        status: Some(status),
        retry_after,
        param: param.filter(|_| kind == FailureKind::Caller),
        message,
    }
}

/// An Azure OpenAI request's URL: the deployment as one path segment, the API version as the query.
fn azure_url(provider: &Provider, deployment: &str, path: &str) -> String {
    let Ok(mut url) = reqwest::Url::parse(&provider.base_url) else {
        return provider.base_url.clone();
    };
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty().extend(["openai", "deployments", deployment]);
        segments.extend(path.trim_start_matches('/').split('/'));
    }
    url.query_pairs_mut().append_pair(
        "api-version",
        provider
            .api_version
            .as_deref()
            .unwrap_or(crate::config::AZURE_API_VERSION),
    );
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn guarded_names_resolve_to_public_addresses_only() {
        use reqwest::dns::Resolve;
        let refused = PublicOnly.resolve("localhost".parse().unwrap()).await;
        let message = refused.err().expect("localhost is not public").to_string();
        assert!(message.contains("no public address"), "{message}");
    }
    use crate::config::Secret;

    fn provider() -> Provider {
        Provider {
            name: "p".into(),
            kind: ProviderKind::Openai,
            base_url: "http://127.0.0.1:1/v1".into(),
            api_key: Some(test_secret("sk-secret")),
            api_version: None,
            guarded: false,
        }
    }

    fn test_secret(text: &str) -> Secret {
        crate::config::GatewayConfig::parse(
            "providers: [{name: a, kind: openai, base_url: 'http://x/v1', api_key_env: K}]\n",
            &|_| Some(text.to_string()),
        )
        .unwrap()
        .providers[0]
            .api_key
            .clone()
            .unwrap()
    }

    #[test]
    fn failures_are_sorted_by_what_routing_does_with_them() {
        let p = provider();
        assert_eq!(classify(&p, 429, None, "").kind, FailureKind::Retryable);
        assert_eq!(classify(&p, 503, None, "").kind, FailureKind::Retryable);
        assert_eq!(classify(&p, 401, None, "").kind, FailureKind::Unusable);
        assert_eq!(classify(&p, 404, None, "").kind, FailureKind::Unusable);
        let long = r#"{"error": {"message": "This model's maximum context length is 8192 tokens", "code": "context_length_exceeded"}}"#;
        assert_eq!(classify(&p, 400, None, long).kind, FailureKind::ContextWindow);
        let caller = classify(
            &p,
            400,
            None,
            r#"{"error": {"message": "temperature must be at most 2"}}"#,
        );
        assert_eq!(caller.kind, FailureKind::Caller);
        assert_eq!(caller.message, "temperature must be at most 2");
    }

    #[test]
    fn an_echoed_key_is_scrubbed() {
        let p = provider();
        assert_eq!(
            scrub("Incorrect API key provided: sk-secret.", p.api_key.as_ref()),
            "Incorrect API key provided: [redacted]."
        );
    }

    #[test]
    fn a_key_too_short_to_tell_from_text_is_not_scrubbed_out_of_answers() {
        let short = test_secret("k");
        let answer = r#"{"usage": {"completion_tokens": 3}}"#;
        assert_eq!(scrub(answer, Some(&short)), answer);
        let mut value: Value = serde_json::from_str(answer).unwrap();
        assert!(!scrub_json(&mut value, &short));
        assert_eq!(value["usage"]["completion_tokens"], 3);
    }

    #[test]
    fn retry_after_is_read_in_milliseconds_first() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert("retry-after-ms", "250".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(250)));
        headers.insert("retry-after-ms", "-1".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
    }
}
