//! What a web browser may make this server do. Browsers send requests on behalf of any page the operator
//! opens: a page can point its own host name at 127.0.0.1 (DNS rebinding) and then read answers, and any
//! page can send "simple" cross-origin POSTs (form or text bodies) that skip the CORS preflight. So every
//! request must name this server in its `Host` header, and state-changing requests from another origin are
//! refused unless the operator allowed that origin. Health checks are exempt from the Host check, as in
//! MLflow 3, so probes that reach the server by any address still work.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Paths any Host may call.
const HEALTH_PATHS: &[&str] = &["/health", "/ping", "/version"];

/// The decided rules.
#[derive(Debug, Clone)]
pub struct OriginPolicy {
    /// Host header patterns (lowercase; `*` matches any run of characters).
    allowed_hosts: Vec<String>,
    /// Whether loopback and private-network IP addresses are accepted as Host (the default list).
    private_addresses: bool,
    /// Exact origins allowed cross-origin (lowercase, no trailing slash); `*` allows any.
    allowed_origins: Vec<String>,
}

impl OriginPolicy {
    /// The policy for a server bound to `bound_host`, with the operator's lists (empty: defaults).
    pub fn new(bound_host: &str, allowed_hosts: &[String], allowed_origins: &[String]) -> OriginPolicy {
        let normalise = |values: &[String]| -> Vec<String> {
            values
                .iter()
                .map(|value| value.trim().trim_end_matches('/').to_ascii_lowercase())
                .filter(|value| !value.is_empty())
                .collect()
        };
        let mut hosts = normalise(allowed_hosts);
        let private_addresses = hosts.is_empty();
        if hosts.is_empty() {
            hosts = default_allowed_hosts(bound_host);
        }
        OriginPolicy {
            allowed_hosts: hosts,
            private_addresses,
            allowed_origins: normalise(allowed_origins),
        }
    }

    /// Whether a request with this Host header is for this server. A pattern without a port matches the
    /// name on any port.
    pub fn host_allowed(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        let without_port = strip_port(&host);
        if self.private_addresses && is_private_address(without_port) {
            return true;
        }
        self.allowed_hosts.iter().any(|pattern| {
            wildcard_match(pattern.as_bytes(), host.as_bytes())
                || wildcard_match(pattern.as_bytes(), without_port.as_bytes())
        })
    }

    /// Whether `origin` may send state-changing requests to a server reached as `host`.
    pub fn origin_allowed(&self, origin: &str, host: Option<&str>) -> bool {
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        let Some(authority) = authority else {
            // `null` (sandboxed frames, file: pages) and other schemes.
            return self.allowed_origins.iter().any(|allowed| allowed == "*");
        };
        let same_origin = host.is_some_and(|host| host.eq_ignore_ascii_case(authority));
        same_origin
            || is_loopback_authority(authority)
            || self
                .allowed_origins
                .iter()
                .any(|allowed| allowed == "*" || *allowed == origin)
    }

    /// Whether CORS headers should be sent to this origin (explicitly allowed ones only).
    fn grants_cors(&self, origin: &str) -> bool {
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        self.allowed_origins
            .iter()
            .any(|allowed| allowed == "*" || *allowed == origin)
    }
}

/// An IP address literal (not a name: `10.evil.example` is a name) on loopback or a private network.
fn is_private_address(host: &str) -> bool {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    match literal.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(address)) => address.is_loopback() || address.is_private(),
        Ok(std::net::IpAddr::V6(address)) => address.is_loopback() || (address.segments()[0] & 0xfe00) == 0xfc00,
        Err(_) => false,
    }
}

/// `localhost` on any port, and the bound host when it names one address (private and loopback addresses
/// are accepted apart from this list).
fn default_allowed_hosts(bound_host: &str) -> Vec<String> {
    let mut hosts: Vec<String> = vec!["localhost".to_string()];
    let bound = bound_host.trim().to_ascii_lowercase();
    let wildcard_bind = matches!(bound.as_str(), "" | "0.0.0.0" | "::" | "[::]");
    if !wildcard_bind {
        let bound = if bound.contains(':') && !bound.starts_with('[') {
            format!("[{bound}]")
        } else {
            bound
        };
        hosts.push(format!("{bound}:*"));
        hosts.push(bound);
    }
    hosts
}

/// Whether a `--host` value binds only the loopback interface.
pub fn is_loopback_bind(host: &str) -> bool {
    let host = host.trim().trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

/// `name:port` without `:port` (`[v6]:port` keeps its brackets).
fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && !name.ends_with(':') => {
            if name.starts_with('[') && !name.ends_with(']') {
                host
            } else {
                name
            }
        }
        _ => host,
    }
}

fn is_loopback_authority(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    matches!(host, "localhost" | "127.0.0.1" | "::1")
}

/// Glob match where `*` stands for any run of bytes (iterative, so no pattern can blow the stack).
fn wildcard_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut pattern_index, mut text_index) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while text_index < text.len() {
        match pattern.get(pattern_index) {
            Some(b'*') => {
                backtrack = Some((pattern_index, text_index));
                pattern_index += 1;
            }
            Some(&expected) if expected == text[text_index] => {
                pattern_index += 1;
                text_index += 1;
            }
            _ => match backtrack {
                Some((star, matched)) => {
                    pattern_index = star + 1;
                    text_index = matched + 1;
                    backtrack = Some((star, matched + 1));
                }
                None => return false,
            },
        }
    }
    pattern[pattern_index..].iter().all(|byte| *byte == b'*')
}

fn refusal(status: StatusCode, code: &str, message: String) -> Response {
    tracing::warn!(%message, "request refused");
    let body = serde_json::json!({"error_code": code, "message": message});
    (status, axum::Json(body)).into_response()
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// The middleware: Host check, cross-origin refusal, and CORS answers for allowed origins.
pub async fn guard(State(policy): State<Arc<OriginPolicy>>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if request.headers().get_all(header::HOST).iter().count() > 1 {
        return refusal(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "the request has more than one Host header".to_string(),
        );
    }
    // A request line in absolute form (`GET http://name/...`) names the host that counts.
    let host = request
        .uri()
        .authority()
        .map(|authority| authority.as_str())
        .or_else(|| header_text(request.headers(), header::HOST));
    if !HEALTH_PATHS.contains(&path) {
        match host {
            Some(host) if policy.host_allowed(host) => {}
            Some(host) => {
                let shown: String = host.chars().take(100).collect();
                return refusal(
                    StatusCode::FORBIDDEN,
                    "PERMISSION_DENIED",
                    format!(
                        "Host '{shown}' is not one this server answers to (possible DNS rebinding); if clients \
                         reach the server by this name, add it with --allowed-hosts"
                    ),
                );
            }
            None => {
                return refusal(
                    StatusCode::BAD_REQUEST,
                    "BAD_REQUEST",
                    "the request has no Host header".to_string(),
                );
            }
        }
    }
    let origins: Vec<String> = request
        .headers()
        .get_all(header::ORIGIN)
        .iter()
        .map(|value| value.to_str().unwrap_or("null").to_string())
        .collect();
    let Some(origin) = origins.first().cloned() else {
        return next.run(request).await;
    };
    let state_changing = matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::DELETE | Method::PATCH
    );
    let preflight =
        request.method() == Method::OPTIONS && request.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let allowed = origins.iter().all(|origin| policy.origin_allowed(origin, host));
    if (state_changing || preflight) && !allowed {
        let shown: String = origin.chars().take(100).collect();
        return refusal(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            format!(
                "cross-origin request from '{shown}' refused: only this server's own pages, localhost and the \
                 origins given with --cors-allowed-origins may change state"
            ),
        );
    }
    let cors = policy.grants_cors(&origin);
    let mut response = if preflight {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(request).await
    };
    if cors && let Ok(value) = HeaderValue::from_str(&origin) {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
        if preflight {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE, OPTIONS"),
            );
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("Content-Type, Authorization, X-Request-Id"),
            );
            headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        }
    }
    response
}

/// Wraps `router` in the policy.
pub fn protect(router: axum::Router, policy: OriginPolicy) -> axum::Router {
    router.layer(axum::middleware::from_fn_with_state(Arc::new(policy), guard))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_match_the_defaults_and_wildcards() {
        let policy = OriginPolicy::new("127.0.0.1", &[], &[]);
        for good in [
            "127.0.0.1:5000",
            "localhost",
            "LOCALHOST:80",
            "[::1]:5000",
            "10.1.2.3:5000",
            "172.20.0.1",
        ] {
            assert!(policy.host_allowed(good), "{good}");
        }
        for bad in [
            "evil.example",
            "127.0.0.1.evil.example",
            "172.32.0.1",
            "localhost.evil:5000",
            "10.evil.example:5000",
            "[fe80::1]:5000",
            "",
        ] {
            assert!(!policy.host_allowed(bad), "{bad}");
        }
        let named = OriginPolicy::new("mlflow.internal", &[], &[]);
        assert!(named.host_allowed("mlflow.internal:5000"));
        let listed = OriginPolicy::new("0.0.0.0", &["*.corp.example".to_string()], &[]);
        assert!(listed.host_allowed("ml.corp.example:443") && !listed.host_allowed("localhost"));
        assert!(OriginPolicy::new("0.0.0.0", &["*".to_string()], &[]).host_allowed("anything"));
        assert!(is_loopback_bind("127.0.0.1") && is_loopback_bind("[::1]") && is_loopback_bind("localhost"));
        assert!(!is_loopback_bind("0.0.0.0") && !is_loopback_bind("10.0.0.5") && !is_loopback_bind("ml.internal"));
        assert!(!wildcard_match(b"a*b*c*d*e*f*g", &[b'a'; 5_000]));
    }

    #[test]
    fn origins_are_allowed_when_local_same_or_listed() {
        let policy = OriginPolicy::new("127.0.0.1", &[], &["https://ui.example.com/".to_string()]);
        assert!(policy.origin_allowed("http://localhost:3000", Some("127.0.0.1:5000")));
        assert!(policy.origin_allowed("http://10.0.0.5:5000", Some("10.0.0.5:5000")));
        assert!(policy.origin_allowed("https://UI.example.com", Some("127.0.0.1:5000")));
        assert!(!policy.origin_allowed("https://evil.example", Some("127.0.0.1:5000")));
        assert!(!policy.origin_allowed("null", Some("127.0.0.1:5000")));
        assert!(!policy.origin_allowed("http://localhost.evil.example", Some("127.0.0.1:5000")));
    }
}
