//! The one place access is checked: a layer on every route that authenticates the caller, finds the
//! resource the route touches, compares the caller's level with what the route's declaration needs, and
//! only then runs the handler. It also gives creators MANAGE and writes the audit trail.

use super::audit::AuditSink;
use super::connection::{Caller, PeerAddress, user_header};
use super::fields::top_level_fields;
use super::layer::Next;
use super::locate::{json_body, list_field, locate, read_body};
use super::refusal::{Challenges, UNAUTHENTICATED, error_for, refuse};
use super::rules::{After, Created, Need, RouteTable, Source, Via};
use crate::access::credentials::{Presented, presented};
use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use loopline_access::{Access, Action, AuthError, Credentials, Level, Principal};
use loopline_core::ErrorCode;
use loopline_metadata_store::AuditEntry;
use std::sync::Arc;

/// Which kinds of credentials the server takes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Modes {
    /// Users and passwords (HTTP Basic).
    pub basic: bool,
    /// Loopline API tokens (Bearer).
    pub token: bool,
    /// OpenID Connect ID tokens (Bearer JWT).
    pub oidc: bool,
}

/// Verifies bearer tokens that are not Loopline's own (OIDC).
#[async_trait::async_trait]
pub trait BearerVerifier: Send + Sync {
    /// The caller a bearer token stands for, or `Rejected`.
    async fn verify(&self, token: &str) -> Result<Principal, AuthError>;
}

#[async_trait::async_trait]
impl BearerVerifier for loopline_access::oidc::OidcVerifier {
    async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        loopline_access::oidc::OidcVerifier::verify(self, token).await
    }
}

/// Answers whether this server serves a name as a deployment.
pub type DeploymentServed = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// What the guard needs.
pub struct Guard {
    /// Users, tokens, grants.
    pub access: Arc<Access>,
    /// What each route needs.
    pub table: Arc<RouteTable>,
    /// The audit trail.
    pub audit: AuditSink,
    /// Accepted credentials.
    pub modes: Modes,
    /// OIDC, when configured.
    pub oidc: Option<Arc<dyn BearerVerifier>>,
    /// Whether this server's serving routes answer a name as a deployment (the serving side's own in-memory
    /// view, so the check and the routing agree, and no store read sits on the prediction path).
    pub deployment_served: Option<DeploymentServed>,
    /// Browser sign-in with the OIDC provider and its session cookies, when configured.
    pub browser: Option<Arc<super::browser_login::BrowserLogin>>,
    /// Largest body read to find a resource id.
    pub max_body_bytes: usize,
    /// Owners already looked up.
    pub owners: Owners,
    /// The key filtered page tokens are sealed with.
    pub page_key: super::visibility::PageKey,
}

pub(super) enum Refused {
    Unauthenticated,
    Invalid(String),
    TooLarge(String),
    Denied(String),
    Failed(String),
}

/// Kinds whose owner never changes (a number to key the remembered owners by); `None` for the others.
fn lasting(owned: loopline_metadata_store::Owned) -> Option<u8> {
    use loopline_metadata_store::Owned;
    match owned {
        Owned::Run => Some(0),
        Owned::Trace => Some(1),
        Owned::LoggedModel => Some(2),
        Owned::PipelineRun => Some(3),
        Owned::ExperimentName | Owned::Issue | Owned::Deployment | Owned::MonitorDeployment | Owned::MonitorModel => {
            None
        }
    }
}

/// Most owner lookups remembered.
const OWNERS_REMEMBERED: usize = 100_000;

/// Owners that never change: a run, trace or logged model stays in its experiment, a pipeline run in its
/// pipeline, and their ids are never reused, so a lookup made once holds (an experiment's name can change:
/// never remembered).
#[derive(Default)]
pub struct Owners(std::sync::Mutex<std::collections::HashMap<(u8, String), String>>);

impl Guard {
    /// The owner of a resource, when it is remembered (`None`: it must be looked up).
    pub(super) fn owner_now(&self, owned: loopline_metadata_store::Owned, id: &str) -> Option<String> {
        let key = (lasting(owned)?, id.to_string());
        self.owners.0.lock().expect("owners").get(&key).cloned()
    }

    /// The owner of a resource, remembered when it cannot change.
    async fn owner(&self, owned: loopline_metadata_store::Owned, id: &str) -> Result<Option<String>, Refused> {
        if let Some(owner) = self.owner_now(owned, id) {
            return Ok(Some(owner));
        }
        let key = lasting(owned).map(|kind| (kind, id.to_string()));
        let owner = self
            .access
            .store()
            .owner_of(owned, id)
            .await
            .map_err(|error| Refused::Failed(format!("finding what a request touches failed: {error}")))?;
        if let (Some(key), Some(owner)) = (key, &owner) {
            let mut owners = self.owners.0.lock().expect("owners");
            if owners.len() >= OWNERS_REMEMBERED {
                owners.clear();
            }
            owners.insert(key, owner.clone());
        }
        Ok(owner)
    }

    fn challenges(&self) -> Challenges {
        Challenges {
            basic: self.modes.basic,
            bearer: self.modes.token || self.modes.oidc,
        }
    }

    async fn authenticate(&self, presented: Presented<'_>, session: Option<String>) -> Result<Principal, Refused> {
        let result = match presented {
            // A browser's session stands in for credentials when the request brings none.
            Presented::Nothing => match (&self.browser, session) {
                (Some(browser), Some(session)) => browser.session(&session).await,
                _ => return Err(Refused::Unauthenticated),
            },
            Presented::Malformed => return Err(Refused::Unauthenticated),
            Presented::Basic { username, password } if self.modes.basic => {
                self.access
                    .authenticate(Credentials::Password {
                        username: &username,
                        password: &password,
                    })
                    .await
            }
            Presented::Bearer(token) if self.modes.token && token.starts_with(loopline_access::token::TOKEN_PREFIX) => {
                self.access.authenticate(Credentials::Token(token)).await
            }
            Presented::Bearer(token) => match (&self.oidc, self.modes.oidc) {
                (Some(verifier), true) => verifier.verify(token).await,
                _ => return Err(Refused::Unauthenticated),
            },
            Presented::Basic { .. } => return Err(Refused::Unauthenticated),
        };
        result.map_err(|error| match error {
            AuthError::Rejected => Refused::Unauthenticated,
            AuthError::Store(error) => Refused::Failed(format!("checking credentials failed: {error}")),
        })
    }
}

/// What the handler is given of the caller: the principal, the page key, and the `x-loopline-user` header
/// handlers that record who acted read (with auth on, the authenticated user, whatever the client sent).
pub(super) fn admitted(guard: &Guard, mut request: Request, caller: Caller) -> Request {
    const USER: axum::http::HeaderName = axum::http::HeaderName::from_static("x-loopline-user");
    if let Some(name) = caller.user {
        request.headers_mut().insert(USER, name);
    } else {
        request.headers_mut().remove(USER);
    }
    request.extensions_mut().insert(caller.principal);
    request.extensions_mut().insert(guard.page_key.clone());
    request
}

/// Every step of the check, for requests the quick answer did not settle.
pub(super) async fn full_check(guard: Arc<Guard>, request: Request, next: Next) -> Response {
    let Some(pattern) = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_string())
    else {
        return next.run(request).await;
    };
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let Some(route) = guard.table.route(method.as_str(), &pattern) else {
        let declared = guard.table.methods(&pattern);
        if !declared.is_empty() {
            // A method the route does not take: no handler runs for it.
            let mut response = crate::error::ApiError::new(
                ErrorCode::BadRequest,
                format!("{method} is not allowed here; use {}.", declared.join(", ")),
            )
            .into_response();
            *response.status_mut() = axum::http::StatusCode::METHOD_NOT_ALLOWED;
            if let Ok(allow) = axum::http::HeaderValue::from_str(&declared.join(", ")) {
                response.headers_mut().insert(header::ALLOW, allow);
            }
            return response;
        }
        tracing::error!(%method, route = %pattern, "a route declares no permission; refused (this is a bug)");
        return refuse(
            &path,
            ErrorCode::PermissionDenied,
            "This route declares no permission.",
            guard.challenges(),
        );
    };
    let need = route.need;
    if need == Need::Public {
        // The web UI's own page is public, but what it shows needs a signed-in caller: a browser without
        // credentials or a live session is sent to sign in first.
        if let Some(browser) = &guard.browser
            && path == "/"
            && method == Method::GET
            && wants_page(request.headers())
            && request.headers().get(header::AUTHORIZATION).is_none()
        {
            let session = super::browser_login::cookie(request.headers(), super::browser_login::SESSION_COOKIE);
            let signed_in = match session {
                Some(session) => browser.session(&session).await.is_ok(),
                None => false,
            };
            if !signed_in {
                return sign_in_redirect("/");
            }
        }
        return next.run(request).await;
    }
    let mut entry = AuditEntry {
        time: loopline_core::time::now_millis(),
        ..AuditEntry::default()
    };
    // What is the same for every entry of this request is written out only for entries that are recorded
    // (changes and refusals), not for each request.
    let peer = request
        .extensions()
        .get::<PeerAddress>()
        .map(|peer| peer.address().clone());
    let sourced = |mut entry: AuditEntry| {
        entry.method = method.as_str().to_string();
        entry.path = bounded(&path, 512);
        entry.action = action_name(&method, &need).to_string();
        entry.source = peer.as_deref().map(str::to_string);
        entry
    };
    // A page opened without credentials goes to the sign-in when browsers sign in with the provider.
    let sign_in_first = (guard.browser.is_some() && method == Method::GET && wants_page(request.headers()))
        .then(|| request.uri().path_and_query().map(|whole| whole.as_str().to_string()))
        .flatten();
    // A caller this replica checked recently needs no waiting (and, on a kept-alive connection, no work).
    let mut attempted = None;
    let found = match super::quick::remembered_caller(&guard, request.headers(), request.extensions()) {
        Some(caller) => Ok(caller),
        None => {
            let credentials = presented(request.headers());
            if let Presented::Basic { username, .. } = &credentials {
                attempted = Some(bounded(username, 256));
            }
            let session = guard
                .browser
                .as_ref()
                .and_then(|_| super::browser_login::cookie(request.headers(), super::browser_login::SESSION_COOKIE));
            guard.authenticate(credentials, session).await.map(|principal| Caller {
                user: user_header(&principal),
                principal,
            })
        }
    };
    let Caller { principal, user } = match found {
        Ok(caller) => caller,
        Err(refused) => {
            // The name tried, never the password: repeated failures on one account show in the trail.
            entry.principal = attempted;
            let response = guard.refused(refused, &path, sourced(entry)).await;
            return match sign_in_first {
                Some(here) if response.status() == axum::http::StatusCode::UNAUTHORIZED => sign_in_redirect(&here),
                _ => response,
            };
        }
    };
    entry.principal = Some(principal.username.to_string());
    entry.token_id = principal.token_id.as_deref().map(str::to_string);
    if !principal.scopes_allow(need.action()) {
        let message = "The token's scopes do not allow this request.".to_string();
        return guard.refused(Refused::Denied(message), &path, sourced(entry)).await;
    }
    let after = route.after;
    let (request, after_names) = match after {
        Some(after) => match Box::pin(names_for(&guard, after, request)).await {
            Ok(found) => found,
            Err(refused) => return guard.refused(refused, &path, sourced(entry)).await,
        },
        None => (request, (None, None)),
    };
    let (mut request, created_in_request) = match authorise(&guard, &principal, need, request, &mut entry).await {
        Ok(allowed) => allowed,
        Err(refused) => return guard.refused(refused, &path, sourced(entry)).await,
    };
    for further in &route.also {
        let mut scratch = AuditEntry::default();
        request = match authorise(&guard, &principal, *further, request, &mut scratch).await {
            Ok((request, _)) => request,
            Err(refused) => {
                entry.resource_type = scratch.resource_type;
                entry.resource_id = scratch.resource_id;
                return guard.refused(refused, &path, sourced(entry)).await;
            }
        };
    }
    let caller = Caller {
        user,
        principal: principal.clone(),
    };
    let response = next.run(admitted(&guard, request, caller)).await;
    let response = match need {
        Need::Create { kind, created } if response.status().is_success() => {
            Box::pin(give_creator(
                &guard,
                &principal,
                kind,
                created,
                created_in_request,
                response,
                &mut entry,
            ))
            .await
        }
        Need::List { kind, items, id } if response.status().is_success() => {
            Box::pin(readable_items(&principal, kind, items, id, response)).await
        }
        Need::MetricsText if response.status().is_success() => Box::pin(readable_metrics(&principal, response)).await,
        _ => response,
    };
    if let Some(after) = after
        && response.status().is_success()
    {
        Box::pin(apply_after(&guard, after, after_names)).await;
    }
    entry.status = i64::from(response.status().as_u16());
    entry.outcome = if response.status().is_success() {
        "allowed"
    } else {
        "failed"
    }
    .to_string();
    // Changes are recorded; reads sent as POST (searches, GraphQL) are not, unless refused (above).
    let changes =
        matches!(need.action(), Action::Write | Action::Admin) && method != Method::GET && method != Method::HEAD;
    if changes {
        guard.audit.record(sourced(entry)).await;
    }
    response
}

impl Guard {
    async fn refused(&self, refused: Refused, path: &str, mut entry: AuditEntry) -> Response {
        let response = match &refused {
            Refused::Unauthenticated => refuse(path, ErrorCode::Unauthenticated, UNAUTHENTICATED, self.challenges()),
            Refused::Denied(message) => refuse(path, ErrorCode::PermissionDenied, message, self.challenges()),
            Refused::Invalid(message) => error_for(path, ErrorCode::InvalidParameterValue, message),
            Refused::TooLarge(message) => error_for(path, ErrorCode::RequestTooLarge, message),
            Refused::Failed(message) => {
                tracing::error!(reason = %message, "an access check failed");
                error_for(path, ErrorCode::TemporarilyUnavailable, message)
            }
        };
        entry.status = i64::from(response.status().as_u16());
        entry.outcome = match refused {
            Refused::Unauthenticated => "unauthenticated",
            Refused::Denied(_) => "denied",
            Refused::TooLarge(_) | Refused::Invalid(_) => "failed",
            Refused::Failed(_) => "failed",
        }
        .to_string();
        self.audit.record(entry).await;
        response
    }
}

/// Checks the need; returns the request (its body read back in if it had to be read) and, for creations, the
/// created id when it is a request field.
async fn authorise(
    guard: &Guard,
    principal: &Principal,
    need: Need,
    request: Request,
    entry: &mut AuditEntry,
) -> Result<(Request, Option<String>), Refused> {
    let denied = || Refused::Denied("Permission denied.".to_string());
    match need {
        Need::Public | Need::Signed(_) | Need::Handler(_) => Ok((request, None)),
        Need::Listing { kind } | Need::List { kind, .. } => {
            entry.resource_type = Some(kind.to_string());
            Ok((request, None))
        }
        Need::IfExists {
            kind,
            source,
            owned,
            level,
        } => {
            let (request, name) = locate(guard, request, source).await?;
            let existing = match (name, &guard.deployment_served) {
                (Some(name), Some(served)) if owned == loopline_metadata_store::Owned::Deployment => {
                    served(&name).then_some(name)
                }
                (Some(name), _) => guard.owner(owned, &name).await?,
                (None, _) => None,
            };
            match existing {
                Some(id) if !principal.may(kind, Some(&id), level) => {
                    entry.resource_type = Some(kind.to_string());
                    entry.resource_id = Some(id);
                    Err(denied())
                }
                _ => Ok((request, None)),
            }
        }
        Need::MetricsText => Ok((request, None)),
        Need::MonitorSpec => Box::pin(monitor_spec(guard, principal, request, entry)).await,
        Need::Named { kind, field, level } => {
            let (request, id) = locate(guard, request, Source::Field(field)).await?;
            match id {
                Some(id) if !principal.may(kind, Some(&id), level) => {
                    entry.resource_type = Some(kind.to_string());
                    entry.resource_id = Some(id);
                    Err(denied())
                }
                _ => Ok((request, None)),
            }
        }
        Need::Refers { field, level } => {
            let (request, uri) = locate(guard, request, Source::Field(field)).await?;
            let Some(uri) = uri else {
                return Ok((request, None));
            };
            if uri.contains('%') {
                return Err(Refused::Invalid(format!(
                    "'{}' may not hold percent-escapes: send the URI as the server stores it.",
                    field.join("' / '")
                )));
            }
            let Some((kind, via, id)) = referred(&uri) else {
                return Ok((request, None));
            };
            let resource = match via {
                Via::Itself => Some(id),
                Via::Owner(owned) => guard.owner(owned, &id).await?,
            };
            entry.resource_type = Some(kind.to_string());
            entry.resource_id.clone_from(&resource);
            if principal.may(kind, resource.as_deref(), level) {
                Ok((request, None))
            } else {
                Err(denied())
            }
        }
        Need::Each {
            kind,
            field,
            via,
            level,
        } => {
            entry.resource_type = Some(kind.to_string());
            let (request, ids) = list_field(guard, request, field).await?;
            for id in ids {
                let resource = match via {
                    Via::Itself => Some(id),
                    Via::Owner(owned) => guard.owner(owned, &id).await?,
                };
                if !principal.may(kind, resource.as_deref(), level) {
                    entry.resource_id = resource;
                    return Err(denied());
                }
            }
            Ok((request, None))
        }
        Need::Admin => {
            if principal.is_admin {
                Ok((request, None))
            } else {
                Err(denied())
            }
        }
        Need::Create { kind, created } => {
            entry.resource_type = Some(kind.to_string());
            if !principal.may(kind, None, Level::Edit) {
                return Err(denied());
            }
            match created {
                Created::Request(fields) => {
                    let (request, id) = locate(guard, request, Source::Field(fields)).await?;
                    if id.as_deref() == Some("*") {
                        return Err(Refused::Invalid(
                            "'*' stands for every resource of a kind in grants and cannot name one.".to_string(),
                        ));
                    }
                    entry.resource_id.clone_from(&id);
                    Ok((request, id))
                }
                Created::Path(name) => {
                    let (request, id) = locate(guard, request, Source::Path(name)).await?;
                    entry.resource_id.clone_from(&id);
                    Ok((request, id))
                }
                Created::Response(_) => Ok((request, None)),
            }
        }
        Need::On {
            kind,
            source,
            via,
            level,
            ..
        } => {
            let (request, id) = locate(guard, request, source).await?;
            let resource = match (via, id) {
                (Via::Itself, id) => id,
                (Via::Owner(owned), Some(id)) => guard.owner(owned, &id).await?,
                (Via::Owner(_), None) => None,
            };
            entry.resource_type = Some(kind.to_string());
            entry.resource_id.clone_from(&resource);
            // Artifact paths outside experiments (the prediction log, gate data) and the root listing are for
            // admins only.
            let names_an_experiment = resource.as_deref().is_some_and(|id| {
                loopline_access::level::canonical_id("experiment", id)
                    .bytes()
                    .all(|b| b.is_ascii_digit())
            });
            if source == Source::ArtifactPath && !names_an_experiment && !principal.is_admin {
                return Err(denied());
            }
            // An id that names nothing is checked against the kind as a whole; the handler then says it
            // does not exist only to callers who could have read it.
            if principal.may(kind, resource.as_deref(), level) {
                Ok((request, None))
            } else {
                Err(denied())
            }
        }
    }
}

/// What a monitor's definition acts on: EDIT on each alias it moves and deployment it rolls back; outbound
/// URLs only from admins.
async fn monitor_spec(
    guard: &Guard,
    principal: &Principal,
    request: Request,
    entry: &mut AuditEntry,
) -> Result<(Request, Option<String>), Refused> {
    if !json_body(request.headers()) {
        return Ok((request, None));
    }
    let (parts, body) = request.into_parts();
    let bytes = read_body(guard, body).await?;
    let spec: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let top = |field: &str| spec.get(field).and_then(serde_json::Value::as_str).map(str::to_string);
    let mut needs: Vec<(&'static str, Option<String>)> = Vec::new();
    let mut outbound = spec["notifications"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|channel| channel.get("url").is_some_and(|url| !url.is_null()));
    for alert in spec["alerts"].as_array().into_iter().flatten() {
        for action in alert["actions"].as_array().into_iter().flatten() {
            let named = |field: &str| {
                action
                    .get(field)
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_string)
            };
            match action["kind"].as_str() {
                Some("rollback") => needs.push(("deployment", named("deployment").or_else(|| top("deployment")))),
                Some("move_alias") => needs.push(("registered_model", named("model").or_else(|| top("model")))),
                Some("webhook") => outbound = true,
                _ => {}
            }
        }
    }
    if outbound && !principal.is_admin {
        return Err(Refused::Denied(
            "Permission denied: only admins give monitors webhook actions or notification URLs (they reach other              systems from the server's network)."
                .to_string(),
        ));
    }
    for (kind, id) in needs {
        if !principal.may(kind, id.as_deref(), Level::Edit) {
            entry.resource_type = Some(kind.to_string());
            entry.resource_id = id;
            return Err(Refused::Denied("Permission denied.".to_string()));
        }
    }
    Ok((Request::from_parts(parts, Body::from(bytes)), None))
}

/// Drops Prometheus lines about models or deployments the caller may not read.
async fn readable_metrics(principal: &Principal, response: Response) -> Response {
    let viewer = super::visibility::Viewer::of(Some(principal.clone()));
    if viewer.sees_all("registered_model") && viewer.sees_all("deployment") {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024 * 1024).await else {
        return refuse(
            "/metrics",
            ErrorCode::PermissionDenied,
            "Permission denied.",
            Challenges::default(),
        );
    };
    let text = String::from_utf8_lossy(&bytes);
    let label = |line: &str, name: &str| {
        let start = line.find(&format!("{name}=\""))? + name.len() + 2;
        let end = line[start..].find('"')? + start;
        Some(line[start..end].to_string())
    };
    let kept: String = text
        .lines()
        .filter(|line| {
            label(line, "model").is_none_or(|model| viewer.may_read("registered_model", &model))
                && label(line, "deployment").is_none_or(|deployment| viewer.may_read("deployment", &deployment))
        })
        .flat_map(|line| [line, "\n"])
        .collect();
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(kept))
}

/// What a model or artifact URI refers to: the kind whose grants apply, how its id leads there, and the id.
fn referred(uri: &str) -> Option<(&'static str, Via, String)> {
    use loopline_metadata_store::Owned;
    let first = |rest: &str| {
        rest.trim_start_matches('/')
            .split(['/', '@'])
            .find(|segment| !segment.is_empty() && *segment != ".")
            .map(str::to_string)
    };
    let lowered = uri.to_ascii_lowercase();
    let scheme_end = lowered.find(':')?;
    // The registry reads schemes in any case; ids are compared as sent, so an escaped one is refused upstream.
    let uri = format!("{}{}", &lowered[..scheme_end], &uri[scheme_end..]);
    let uri = uri.as_str();
    if let Some(rest) = uri.strip_prefix("models:") {
        let name = first(rest)?;
        return Some(if name.starts_with("m-") {
            ("experiment", Via::Owner(Owned::LoggedModel), name)
        } else {
            ("registered_model", Via::Itself, name)
        });
    }
    if let Some(rest) = uri.strip_prefix("runs:") {
        return Some(("experiment", Via::Owner(Owned::Run), first(rest)?));
    }
    if let Some(rest) = uri.strip_prefix("mlflow-artifacts:") {
        // `mlflow-artifacts://host:port/<experiment>/...` or `mlflow-artifacts:/<experiment>/...`.
        let path = rest
            .strip_prefix("//")
            .map_or(rest, |authority| authority.split_once('/').map_or("", |(_, path)| path));
        return Some(("experiment", Via::Itself, first(path)?));
    }
    None
}

/// True for a browser asking for a page (HTML first in what it accepts).
fn wants_page(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.trim_start().starts_with("text/html"))
}

/// Sends a browser to sign in, and back to `here` afterwards.
fn sign_in_redirect(here: &str) -> Response {
    let next: String = form_urlencoded::byte_serialize(here.as_bytes()).collect();
    let mut response = axum::http::StatusCode::FOUND.into_response();
    if let Ok(location) = axum::http::HeaderValue::from_str(&format!("/auth/login?next={next}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// Removes the items of a whole-list answer the caller may not read (nothing to do for those who read all).
async fn readable_items(principal: &Principal, kind: &str, items: &str, id: &str, response: Response) -> Response {
    let viewer = super::visibility::Viewer::of(Some(principal.clone()));
    // A monitor is also hidden when what it watches is: the fast path needs all three kinds readable.
    let watches_readable = kind != "monitor" || (viewer.sees_all("deployment") && viewer.sees_all("registered_model"));
    if viewer.sees_all(kind) && watches_readable {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024 * 1024).await else {
        return refuse(
            "",
            ErrorCode::PermissionDenied,
            "Permission denied.",
            Challenges::default(),
        );
    };
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    let listed = if items.starts_with('/') {
        value.pointer_mut(items)
    } else {
        value.get_mut(items)
    };
    if let Some(serde_json::Value::Array(list)) = listed {
        list.retain(|item| {
            // A monitor shows its target's traffic: the target must be readable too.
            let watched = |field: &str, watched_kind: &str| {
                item.pointer(&format!("/spec/{field}"))
                    .and_then(serde_json::Value::as_str)
                    .is_none_or(|name| kind != "monitor" || viewer.may_read(watched_kind, name))
            };
            item.get(id)
                .and_then(serde_json::Value::as_str)
                .is_some_and(|name| viewer.may_read(kind, name))
                && watched("deployment", "deployment")
                && watched("model", "registered_model")
        });
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(value.to_string()))
}

/// The names an after-effect needs, read before the handler consumes the request.
async fn names_for(
    guard: &Guard,
    after: After,
    request: Request,
) -> Result<(Request, (Option<String>, Option<String>)), Refused> {
    match after {
        After::Rename { from, to, .. } => {
            let (request, old) = locate(guard, request, Source::Field(from)).await?;
            let (request, new) = locate(guard, request, Source::Field(to)).await?;
            if new.as_deref() == Some("*") {
                return Err(Refused::Invalid(
                    "'*' stands for every resource of a kind in grants and cannot name one.".to_string(),
                ));
            }
            Ok((request, (old, new)))
        }
        After::Delete { source, .. } => {
            let (request, name) = locate(guard, request, source).await?;
            Ok((request, (name, None)))
        }
    }
}

async fn apply_after(guard: &Guard, after: After, names: (Option<String>, Option<String>)) {
    let store = guard.access.store();
    let result = match (after, names) {
        (After::Rename { kind, .. }, (Some(old), Some(new))) => store.move_grants(kind, &old, Some(&new)).await,
        (After::Delete { kind, .. }, (Some(name), _)) => store.move_grants(kind, &name, None).await,
        _ => Ok(()),
    };
    match result {
        Ok(()) => guard.access.forget(),
        Err(error) => tracing::error!(%error, "grants of a renamed or deleted resource were not updated"),
    }
}

async fn give_creator(
    guard: &Guard,
    principal: &Principal,
    kind: &'static str,
    created: Created,
    from_request: Option<String>,
    response: Response,
    entry: &mut AuditEntry,
) -> Response {
    let (response, id) = match created {
        Created::Request(_) => (response, from_request),
        Created::Path(_) => (response, entry.resource_id.clone()),
        Created::Response(field) => {
            let (parts, body) = response.into_parts();
            match axum::body::to_bytes(body, 1024 * 1024).await {
                Ok(bytes) => {
                    let id = if field.starts_with('/') {
                        serde_json::from_slice::<serde_json::Value>(&bytes)
                            .ok()
                            .and_then(|value| value.pointer(field).and_then(|id| id.as_str().map(str::to_string)))
                    } else {
                        top_level_fields(&bytes, &[field]).into_iter().flatten().next()
                    };
                    (Response::from_parts(parts, Body::from(bytes)), id)
                }
                Err(_) => (Response::from_parts(parts, Body::empty()), None),
            }
        }
    };
    if let Some(id) = id {
        entry.resource_id = Some(id.clone());
        if let Err(error) = guard.access.grant_creator(principal, kind, &id).await {
            tracing::error!(%error, kind, id, user = %principal.username, "the creator could not be given MANAGE");
        }
    }
    response
}

fn action_name(method: &Method, need: &Need) -> &'static str {
    match need {
        Need::Create { .. } => "create",
        _ if *method == Method::GET || *method == Method::HEAD => "read",
        _ if *method == Method::DELETE => "delete",
        _ => "update",
    }
}

fn bounded(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}
