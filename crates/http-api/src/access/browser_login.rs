//! Browser sign-in with the OIDC provider: the authorization-code flow with PKCE, state and nonce, ending in
//! a session cookie the guard accepts like credentials.
//!
//! - `GET /auth/login?next=/path` sends the browser to the provider. What this one sign-in needs later (state,
//!   nonce, PKCE verifier, where to return) travels in a short-lived sealed cookie, so any replica can finish
//!   it.
//! - `GET /auth/callback` checks the state against that cookie, trades the code for an ID token at the
//!   provider's token endpoint, verifies the token (signature, issuer, audience, times and the nonce) and sets
//!   the session cookie: the user, the roles the token's groups map to, and an expiry, sealed with the key
//!   every replica shares (ChaCha20-Poly1305). The cookie is `HttpOnly`, `SameSite=Lax` and, when the
//!   callback URL is https, `Secure`; cross-site form posts therefore carry no session, and the origin check
//!   in front refuses cross-origin changes anyway.
//! - `POST /auth/logout` clears it.
//!
//! A session is checked on every request: sealed by this deployment, not expired, and its user still there
//! (deleting the user ends it). Page views without credentials are sent to the sign-in.

use super::audit::AuditSink;
use super::visibility::PageKey;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use loopline_access::oidc::{OidcVerifier, SignInRequest};
use loopline_access::remembered::{Lookup, RememberedCallers};
use loopline_access::{Access, AuthError, Principal};
use loopline_metadata_store::AuditEntry;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The cookie holding one sign-in in progress.
const SIGN_IN_COOKIE: &str = "loopline_sign_in";
/// The session cookie.
pub const SESSION_COOKIE: &str = "loopline_session";
/// How long a browser has to come back from the provider.
const SIGN_IN_SECONDS: i64 = 600;
/// Longest cookie value read.
const MAX_COOKIE_CHARS: usize = 4096;
/// How long a checked session's caller is remembered (grants changed elsewhere apply after this).
const REMEMBER: Duration = Duration::from_secs(5);
const SIGN_IN_PURPOSE: &[u8] = b"loopline oidc sign-in";
const SESSION_PURPOSE: &[u8] = b"loopline session";

/// How browsers sign in.
#[derive(Debug, Clone)]
pub struct BrowserLoginSettings {
    /// This server's callback URL as registered at the provider (ends in `/auth/callback`).
    pub redirect_url: String,
    /// The client secret, for a confidential client (PKCE alone otherwise).
    pub client_secret: Option<String>,
    /// Scopes asked for.
    pub scopes: String,
    /// How long a session lasts.
    pub session_lifetime: Duration,
}

/// Browser sign-in and the sessions it opens.
pub struct BrowserLogin {
    verifier: Arc<OidcVerifier>,
    access: Arc<Access>,
    key: PageKey,
    settings: BrowserLoginSettings,
    audit: AuditSink,
    remembered: RememberedCallers,
}

#[derive(Serialize, Deserialize)]
struct SignIn {
    state: String,
    nonce: String,
    verifier: String,
    next: String,
    expires: i64,
}

#[derive(Serialize, Deserialize)]
struct Session {
    user_id: i64,
    username: String,
    roles: Vec<String>,
    expires: i64,
}

fn now_seconds() -> i64 {
    loopline_core::time::now_millis() / 1000
}

fn random_text() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A cookie's value from the request's `Cookie` headers (`None` when absent or oversized).
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .take(16)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .take(200)
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim().trim_matches('"').to_string())
        .filter(|value| value.len() <= MAX_COOKIE_CHARS)
}

/// Where to return after signing in: a path on this server, nothing else (no open redirect).
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.contains('\\')
                && !path.chars().any(char::is_control)
                && path.len() <= 2048 =>
        {
            path.to_string()
        }
        _ => "/".to_string(),
    }
}

fn query_pairs(query: Option<&str>) -> HashMap<String, String> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .take(32)
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect()
}

fn page(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{message}\n"),
    )
        .into_response()
}

impl BrowserLogin {
    /// Browser sign-in through `verifier`'s provider; sessions sealed with `key` (shared by every replica).
    pub fn new(
        verifier: Arc<OidcVerifier>,
        access: Arc<Access>,
        key: PageKey,
        settings: BrowserLoginSettings,
        audit: AuditSink,
    ) -> Arc<BrowserLogin> {
        Arc::new(BrowserLogin {
            verifier,
            access,
            key,
            settings,
            audit,
            remembered: RememberedCallers::new(REMEMBER),
        })
    }

    fn secure(&self) -> bool {
        self.settings.redirect_url.starts_with("https://")
    }

    fn set_cookie(&self, name: &str, value: &str, path: &str, max_age: i64) -> HeaderValue {
        let secure = if self.secure() { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"
        ))
        .expect("cookie values are base64url")
    }

    fn sign_in_request<'a>(&'a self, sign_in: &'a SignIn) -> SignInRequest<'a> {
        SignInRequest {
            redirect_uri: &self.settings.redirect_url,
            scopes: &self.settings.scopes,
            state: &sign_in.state,
            nonce: &sign_in.nonce,
            verifier: &sign_in.verifier,
        }
    }

    async fn start(&self, query: Option<&str>) -> Response {
        let pairs = query_pairs(query);
        let sign_in = SignIn {
            state: random_text(),
            nonce: random_text(),
            verifier: random_text(),
            next: local_path(pairs.get("next").map(String::as_str)),
            expires: now_seconds() + SIGN_IN_SECONDS,
        };
        let location = match self.verifier.authorization_url(&self.sign_in_request(&sign_in)).await {
            Ok(location) => location,
            Err(_) => {
                return page(
                    StatusCode::BAD_GATEWAY,
                    "The identity provider could not be reached to sign in. Try again; if it keeps failing, \
                     the server log says why.",
                );
            }
        };
        let sealed = self.key.seal(
            SIGN_IN_PURPOSE,
            serde_json::to_vec(&sign_in).expect("a sign-in serialises"),
        );
        let mut response = StatusCode::FOUND.into_response();
        if let Ok(location) = HeaderValue::from_str(&location) {
            response.headers_mut().insert(header::LOCATION, location);
        }
        response.headers_mut().append(
            header::SET_COOKIE,
            self.set_cookie(SIGN_IN_COOKIE, &sealed, "/auth", SIGN_IN_SECONDS),
        );
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }

    async fn finish(&self, headers: &HeaderMap, query: Option<&str>) -> Response {
        let pairs = query_pairs(query);
        let mut entry = AuditEntry {
            time: loopline_core::time::now_millis(),
            method: "GET".to_string(),
            path: "/auth/callback".to_string(),
            action: "login".to_string(),
            ..AuditEntry::default()
        };
        let response = self.finish_sign_in(headers, &pairs, &mut entry).await;
        entry.status = i64::from(response.status().as_u16());
        entry.outcome = if response.status().is_redirection() {
            "allowed"
        } else {
            "denied"
        }
        .to_string();
        self.audit.record(entry).await;
        response
    }

    async fn finish_sign_in(
        &self,
        headers: &HeaderMap,
        pairs: &HashMap<String, String>,
        entry: &mut AuditEntry,
    ) -> Response {
        if let Some(error) = pairs.get("error") {
            let error: String = error.chars().take(100).filter(|c| !c.is_control()).collect();
            return page(
                StatusCode::UNAUTHORIZED,
                &format!("The identity provider did not sign you in ({error}). Start again at /auth/login."),
            );
        }
        let expired = || {
            page(
                StatusCode::BAD_REQUEST,
                "This sign-in has expired or was not started in this browser. Start again at /auth/login.",
            )
        };
        let Some(sign_in) = cookie(headers, SIGN_IN_COOKIE)
            .and_then(|value| self.key.open(SIGN_IN_PURPOSE, &value, MAX_COOKIE_CHARS))
            .and_then(|plain| serde_json::from_slice::<SignIn>(&plain).ok())
        else {
            return expired();
        };
        let state_matches = pairs
            .get("state")
            .is_some_and(|state| loopline_access::token::same_bytes(state.as_bytes(), sign_in.state.as_bytes()));
        if sign_in.expires <= now_seconds() || !state_matches {
            return expired();
        }
        let Some(code) = pairs.get("code").filter(|code| !code.is_empty() && code.len() <= 4096) else {
            return page(
                StatusCode::BAD_REQUEST,
                "The identity provider sent no code. Start again at /auth/login.",
            );
        };
        let request = self.sign_in_request(&sign_in);
        let verified = match self
            .verifier
            .exchange_code(code, &request, self.settings.client_secret.as_deref())
            .await
        {
            Ok(id_token) => self.verifier.verify_sign_in(&id_token, &sign_in.nonce).await,
            Err(error) => Err(error),
        };
        let (principal, roles) = match verified {
            Ok(verified) => verified,
            Err(AuthError::Rejected) => {
                return page(
                    StatusCode::UNAUTHORIZED,
                    "The sign-in could not be completed. Start again at /auth/login; if it keeps failing, the \
                     server log says why.",
                );
            }
            Err(AuthError::Store(error)) => {
                tracing::error!(%error, "a sign-in failed on the store");
                return page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The sign-in failed on the server; try again.",
                );
            }
        };
        entry.principal = Some(principal.username.to_string());
        let lifetime = i64::try_from(self.settings.session_lifetime.as_secs()).unwrap_or(i64::MAX / 2);
        let session = Session {
            user_id: principal.user_id,
            username: principal.username.to_string(),
            roles,
            expires: now_seconds().saturating_add(lifetime),
        };
        let sealed = self.key.seal(
            SESSION_PURPOSE,
            serde_json::to_vec(&session).expect("a session serialises"),
        );
        let mut response = StatusCode::SEE_OTHER.into_response();
        if let Ok(location) = HeaderValue::from_str(&sign_in.next) {
            response.headers_mut().insert(header::LOCATION, location);
        }
        let headers = response.headers_mut();
        headers.append(
            header::SET_COOKIE,
            self.set_cookie(SESSION_COOKIE, &sealed, "/", lifetime),
        );
        headers.append(header::SET_COOKIE, self.set_cookie(SIGN_IN_COOKIE, "", "/auth", 0));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }

    fn sign_out(&self) -> Response {
        let mut response = StatusCode::SEE_OTHER.into_response();
        response
            .headers_mut()
            .insert(header::LOCATION, HeaderValue::from_static("/"));
        response
            .headers_mut()
            .append(header::SET_COOKIE, self.set_cookie(SESSION_COOKIE, "", "/", 0));
        response
    }

    /// The caller a session cookie stands for (`Rejected` when forged, expired or its user is gone).
    pub async fn session(&self, value: &str) -> Result<Principal, AuthError> {
        let fingerprint = RememberedCallers::fingerprint(value);
        let generation = match self.remembered.lookup(&self.access, &fingerprint).await? {
            Lookup::Known(principal) => return Ok(principal),
            Lookup::Unknown(generation) => generation,
        };
        let session: Session = self
            .key
            .open(SESSION_PURPOSE, value, MAX_COOKIE_CHARS)
            .and_then(|plain| serde_json::from_slice(&plain).ok())
            .ok_or(AuthError::Rejected)?;
        let left = session.expires - now_seconds();
        if left <= 0 {
            return Err(AuthError::Rejected);
        }
        let Some(user) = self.access.store().find_user_by_id(session.user_id).await? else {
            return Err(AuthError::Rejected);
        };
        if user.username != session.username {
            return Err(AuthError::Rejected);
        }
        let principal = self.access.principal_with_roles(user, &session.roles).await?;
        let valid_for = Duration::from_secs(u64::try_from(left).unwrap_or(0));
        self.remembered.remember(fingerprint, &principal, generation, valid_for);
        Ok(principal)
    }
}

type Login = Option<Arc<BrowserLogin>>;

fn not_configured() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "Browser sign-in is not configured: start the server with --auth oidc and --oidc-redirect-url.",
    )
}

async fn login_route(State(login): State<Login>, RawQuery(query): RawQuery) -> Response {
    match login {
        Some(login) => login.start(query.as_deref()).await,
        None => not_configured(),
    }
}

async fn callback_route(State(login): State<Login>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    match login {
        Some(login) => login.finish(&headers, query.as_deref()).await,
        None => not_configured(),
    }
}

async fn logout_route(State(login): State<Login>) -> Response {
    match login {
        Some(login) => login.sign_out(),
        None => not_configured(),
    }
}

/// `/auth/login`, `/auth/callback` and `/auth/logout` (answering 404 when browser sign-in is not set up).
pub fn routes(state: Login) -> axum::Router {
    axum::Router::new()
        .route("/auth/login", get(login_route))
        .route("/auth/callback", get(callback_route))
        .route("/auth/logout", post(logout_route))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn only_local_paths_are_returned_to() {
        assert_eq!(local_path(Some("/#/experiments/1")), "/#/experiments/1");
        assert_eq!(
            local_path(Some("/loopline/deployments?x=1")),
            "/loopline/deployments?x=1"
        );
        for hostile in [
            "//evil.example",
            "https://evil.example",
            "/\\evil.example",
            "evil",
            "/a\nb",
            "",
        ] {
            assert_eq!(local_path(Some(hostile)), "/", "{hostile:?}");
        }
        assert_eq!(local_path(None), "/");
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; loopline_session_x=2"));
        headers.append(header::COOKIE, HeaderValue::from_static("loopline_session=abc"));
        assert_eq!(cookie(&headers, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&headers, "missing"), None);
    }

    #[test]
    fn what_is_sealed_for_one_purpose_opens_for_no_other() {
        let key = PageKey::new(&[7u8; 32]);
        let sealed = key.seal(SESSION_PURPOSE, b"{}".to_vec());
        assert_eq!(key.open(SESSION_PURPOSE, &sealed, 4096).as_deref(), Some(&b"{}"[..]));
        assert!(key.open(SIGN_IN_PURPOSE, &sealed, 4096).is_none());
        assert!(PageKey::new(&[8u8; 32]).open(SESSION_PURPOSE, &sealed, 4096).is_none());
        assert!(key.open(SESSION_PURPOSE, &sealed, 8).is_none());
    }

    proptest! {
        #[test]
        fn hostile_cookie_headers_and_sealed_values_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut headers = HeaderMap::new();
            if let Ok(value) = HeaderValue::from_bytes(&raw) {
                headers.append(header::COOKIE, value);
            }
            let _ = cookie(&headers, SESSION_COOKIE);
            let key = PageKey::new(&[1u8; 32]);
            let text = String::from_utf8_lossy(&raw);
            prop_assert!(key.open(SESSION_PURPOSE, &text, 4096).is_none());
            let _ = local_path(Some(&text));
        }
    }
}
