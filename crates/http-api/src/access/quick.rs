//! The guard's quick answer. Most requests come from a caller this replica remembers and name what they touch
//! in the path or the query string (a prediction, a run read by id): checking them needs no store read and no
//! body, so it is done without waiting and without the full check's bookkeeping. The quick answer only ever
//! lets a request through. Whatever it cannot settle at once (a refusal, a body to read, an owner not yet
//! remembered, a change to record in the audit trail, a grant to give or move afterwards, a list to filter)
//! goes to the full check, which decides with the same helpers and records what it must.

use super::connection::{Caller, PeerAddress, user_header};
use super::credentials::{Presented, presented};
use super::guard::Guard;
use super::locate::locate_now;
use super::rules::{Need, Source, Via};
use axum::extract::{MatchedPath, Request};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap, Method, header};
use loopline_access::{Action, Credentials};
use loopline_metadata_store::Owned;

/// The request back, with its caller when it may go on now (`None`: the full check must decide).
pub(super) fn allowed(guard: &Guard, request: Request) -> (Request, Option<Caller>) {
    let (mut parts, body) = request.into_parts();
    let caller = settle(guard, &mut parts);
    (Request::from_parts(parts, body), caller)
}

fn settle(guard: &Guard, parts: &mut Parts) -> Option<Caller> {
    let route = {
        let pattern = parts.extensions.get::<MatchedPath>()?;
        guard.table.route(parts.method.as_str(), pattern.as_str())?
    };
    let need = route.need;
    // Changes are recorded and some change grants afterwards: the full check does both.
    let changes = matches!(need.action(), Action::Write | Action::Admin)
        && parts.method != Method::GET
        && parts.method != Method::HEAD;
    if changes || route.after.is_some() || need == Need::Public {
        return None;
    }
    let caller = remembered_caller(guard, &parts.headers, &parts.extensions)?;
    if !caller.principal.scopes_allow(need.action()) {
        return None;
    }
    for need in std::iter::once(&need).chain(route.also.iter()) {
        if !allows(guard, &caller.principal, *need, parts)? {
            return None;
        }
    }
    Some(caller)
}

/// The caller, when its credentials are a token or password this replica has checked recently: the
/// connection's last caller when it presents the same `Authorization` header again (see `connection.rs`).
pub(super) fn remembered_caller(guard: &Guard, headers: &HeaderMap, extensions: &Extensions) -> Option<Caller> {
    let connection = extensions.get::<PeerAddress>();
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let authorization = match (values.next(), values.next()) {
        (Some(value), None) => Some(value.as_bytes()),
        _ => None,
    };
    if let (Some(connection), Some(authorization)) = (connection, authorization)
        && let Some(caller) = connection.again(&guard.access, authorization)
    {
        return Some(caller);
    }
    let checked = match presented(headers) {
        Presented::Bearer(token) if guard.modes.token && token.starts_with(loopline_access::token::TOKEN_PREFIX) => {
            guard.access.check_now(Credentials::Token(token))
        }
        Presented::Basic { username, password } if guard.modes.basic => guard.access.check_now(Credentials::Password {
            username: &username,
            password: &password,
        }),
        _ => None,
    }?;
    Some(match (connection, authorization) {
        // Only credentials from the Authorization header are kept: it is what the next request is compared by.
        (Some(connection), Some(authorization)) => connection.keep(authorization, checked),
        _ => Caller {
            user: user_header(&checked.principal),
            principal: checked.principal,
        },
    })
}

/// Whether `need` lets the caller through, when that can be told at once (`None`: it cannot).
fn allows(guard: &Guard, principal: &loopline_access::Principal, need: Need, parts: &mut Parts) -> Option<bool> {
    match need {
        Need::Signed(_) | Need::Handler(_) | Need::Listing { .. } => Some(true),
        Need::Admin => Some(principal.is_admin),
        // Artifact paths outside experiments have a rule of their own: the full check applies it.
        Need::On {
            source: Source::ArtifactPath,
            ..
        } => None,
        Need::On {
            kind,
            source,
            via,
            level,
            ..
        } => {
            let id = locate_now(parts, source)?.ok()?;
            let resource = match (via, id) {
                (Via::Itself, id) => id,
                (Via::Owner(owned), Some(id)) => Some(guard.owner_now(owned, &id)?),
                (Via::Owner(_), None) => None,
            };
            Some(principal.may(kind, resource.as_deref(), level))
        }
        // A serving route answers a name as a deployment when this server serves one by it.
        Need::IfExists {
            kind,
            source,
            owned: Owned::Deployment,
            level,
        } => {
            let served = guard.deployment_served.as_ref()?;
            let name = locate_now(parts, source)?.ok()?;
            Some(match name {
                Some(name) if served(&name) => principal.may(kind, Some(&name), level),
                _ => true,
            })
        }
        _ => None,
    }
}
