//! Where a request names the resource it touches: a path parameter, a header, the query string or the
//! top level of a JSON body. What can be found without reading the body is found without waiting
//! (`locate_now`), so the guard's quick answer and its full check read ids the same way.

use super::fields::{agreed, query_values, top_level_values};
use super::guard::{Guard, Refused};
use super::rules::Source;
use axum::body::Body;
use axum::extract::{FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use futures::FutureExt;

/// The id `source` gives, when finding it needs no body: `None` when the body must be read.
pub(super) fn locate_now(parts: &mut Parts, source: Source) -> Option<Result<Option<String>, Refused>> {
    match source {
        Source::Path(name) => {
            let params = match path_params(parts) {
                Ok(params) => params,
                Err(refused) => return Some(Err(refused)),
            };
            let id = params.and_then(|params| {
                params
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| value.to_string())
            });
            Some(Ok(id))
        }
        Source::ArtifactPath => {
            let params = match path_params(parts) {
                Ok(params) => params,
                Err(refused) => return Some(Err(refused)),
            };
            let from_path = params.and_then(|params| params.iter().next().map(|(_, value)| value.to_string()));
            let path = match from_path {
                Some(path) => Ok(Some(path)),
                None => one_value(query_values(parts.uri.query(), &["path"]), &["path"]),
            };
            Some(path.map(|path| path.as_deref().and_then(artifact_owner)))
        }
        Source::Nothing => Some(Ok(None)),
        Source::Header(name) => {
            let values: Vec<String> = parts
                .headers
                .get_all(name)
                .iter()
                .filter_map(|value| value.to_str().ok())
                .map(|value| value.trim().to_string())
                .filter(|value| !value.is_empty())
                .collect();
            Some(one_value(values, &[name]))
        }
        Source::Pointer(_) => (!json_body(&parts.headers)).then_some(Ok(None)),
        Source::FieldOr(names, default) => locate_now(parts, Source::Field(names))
            .map(|found| found.map(|id| Some(id.unwrap_or_else(|| default.to_string())))),
        Source::Field(names) => {
            let reads_body = parts.method != Method::GET && parts.method != Method::HEAD && json_body(&parts.headers);
            (!reads_body).then(|| one_value(query_values(parts.uri.query(), names), names))
        }
    }
}

/// The path's parameters, as the router matched them (percent-decoded; `None` when the route has none or
/// they are not UTF-8).
fn path_params(parts: &mut Parts) -> Result<Option<RawPathParams>, Refused> {
    // The extractor only reads the request's extensions, so it is ready at once; were it ever not, the
    // request is refused rather than checked without its id.
    match RawPathParams::from_request_parts(parts, &()).now_or_never() {
        Some(params) => Ok(params.ok()),
        None => Err(Refused::Failed("the path's parameters could not be read".to_string())),
    }
}

/// Finds a resource id in the request, reading (and putting back) a JSON body when the id may be in it.
pub(super) async fn locate(
    guard: &Guard,
    request: Request,
    source: Source,
) -> Result<(Request, Option<String>), Refused> {
    let (mut parts, body) = request.into_parts();
    if let Some(found) = locate_now(&mut parts, source) {
        return found.map(|id| (Request::from_parts(parts, body), id));
    }
    let bytes = read_body(guard, body).await?;
    let id = match source {
        Source::Pointer(pointer) => serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|value| match value.pointer(pointer) {
                Some(serde_json::Value::String(text)) => Some(text.clone()),
                Some(serde_json::Value::Number(number)) => Some(number.to_string()),
                _ => None,
            }),
        Source::Field(names) | Source::FieldOr(names, _) => {
            let mut values = query_values(parts.uri.query(), names);
            values.extend(top_level_values(&bytes, names).into_iter().flatten());
            let id = one_value(values, names)?;
            match source {
                Source::FieldOr(_, default) => Some(id.unwrap_or_else(|| default.to_string())),
                _ => id,
            }
        }
        // Found without the body (above).
        Source::Path(_) | Source::ArtifactPath | Source::Nothing | Source::Header(_) => None,
    };
    Ok((Request::from_parts(parts, Body::from(bytes)), id))
}

/// True when the request says its body is JSON.
pub(super) fn json_body(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).is_some_and(|value| {
        value
            .as_bytes()
            .windows(4)
            .any(|window| window.eq_ignore_ascii_case(b"json"))
    })
}

/// The one value a request gives an id, wherever it gives it: the query string and (for a JSON body) the
/// body's top level, under every name the route accepts. Two different values are refused, so the guard
/// never checks one id while a handler acts on another.
fn one_value(values: Vec<String>, names: &[&str]) -> Result<Option<String>, Refused> {
    agreed(values).map_err(|values| {
        Refused::Invalid(format!(
            "The request names more than one resource in {}: {}. Send one.",
            names.join(" / "),
            values.join(", ")
        ))
    })
}

/// The first segment of an artifact path that names something (`.` and empty segments are skipped, as the
/// artifact store skips them).
fn artifact_owner(path: &str) -> Option<String> {
    path.split('/')
        .find(|segment| !segment.is_empty() && *segment != ".")
        .map(str::to_string)
}

/// Most ids one bulk request may name.
const MAX_LISTED_IDS: usize = 1_000;

/// Every value of a list field: repeated in the query string, or a JSON array (or one string) in the body.
pub(super) async fn list_field(
    guard: &Guard,
    request: Request,
    field: &str,
) -> Result<(Request, Vec<String>), Refused> {
    let too_many = || Refused::TooLarge(format!("A request names at most {MAX_LISTED_IDS} ids in '{field}'."));
    let from_query: Vec<String> = form_urlencoded::parse(request.uri().query().unwrap_or_default().as_bytes())
        .filter(|(key, _)| key == field)
        .take(MAX_LISTED_IDS + 1)
        .map(|(_, value)| value.into_owned())
        .collect();
    if request.method() == Method::GET || request.method() == Method::HEAD {
        if from_query.len() > MAX_LISTED_IDS {
            return Err(too_many());
        }
        return Ok((request, from_query));
    }
    let (parts, body) = request.into_parts();
    let bytes = read_body(guard, body).await?;
    let mut ids = from_query;
    if let Ok(serde_json::Value::Object(object)) = serde_json::from_slice::<serde_json::Value>(&bytes) {
        match object.get(field) {
            Some(serde_json::Value::Array(items)) => {
                ids.extend(items.iter().filter_map(|item| item.as_str().map(str::to_string)));
            }
            Some(serde_json::Value::String(one)) => ids.push(one.clone()),
            _ => {}
        }
    }
    if ids.len() > MAX_LISTED_IDS {
        return Err(too_many());
    }
    Ok((Request::from_parts(parts, Body::from(bytes)), ids))
}

/// The whole body, bounded.
pub(super) async fn read_body(guard: &Guard, body: Body) -> Result<axum::body::Bytes, Refused> {
    axum::body::to_bytes(body, guard.max_body_bytes).await.map_err(|_| {
        Refused::TooLarge(format!(
            "The request body is larger than {} bytes or could not be read.",
            guard.max_body_bytes
        ))
    })
}
