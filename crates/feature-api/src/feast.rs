//! Feast's feature server routes (`feast serve`): `/get-online-features`, `/push`, `/write-to-online-store`,
//! `/materialize`, `/materialize-incremental`. Bodies are read as JSON whatever the Content-Type says, as
//! Feast's own `curl` examples send them.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use loopline_features::online_read::{self, EntityColumns, LookupError, Ordered};
use loopline_features::{Definitions, Wanted};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::FeatureApi;
use crate::error::{ApiError, unprocessable};
use crate::materialize::{self, Window};

/// The project named by the path of the project-scoped twins of Feast's routes
/// (`/api/loopline/v1/features/projects/{project}/get-online-features`, ...), where Feast's remote online
/// store can point (`path:`) when the server holds several projects.
pub struct PathProject(pub Option<String>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PathProject {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Self::Rejection> {
        let found = axum::extract::Path::<std::collections::HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .ok()
            .and_then(|axum::extract::Path(map)| map.get("project").cloned());
        Ok(PathProject(found))
    }
}

/// `?project=` (when the server holds several) and Feast's `?async=` / `?force=`.
#[derive(Debug, Default)]
pub struct Options {
    project: Option<String>,
    background: bool,
    force: bool,
}

/// The query options and the JSON body of a Feast route, every refusal in Feast's shapes.
pub(crate) async fn read<T: DeserializeOwned>(
    scoped: Option<String>,
    raw: Option<String>,
    body: Body,
) -> Result<(Options, T), Box<Response>> {
    let mut options = parse_options(raw.as_deref()).map_err(|m| Box::new(ApiError::bad_request(m).feast()))?;
    if scoped.is_some() {
        options.project = scoped;
    }
    let too_large = || {
        Box::new(
            ApiError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                class: "FeastError",
                message: format!(
                    "the body is larger than {} bytes; send less at a time",
                    crate::MAX_BODY_BYTES
                ),
            }
            .feast(),
        )
    };
    // A declared length past the limit is refused before any of the body is read.
    if axum::body::HttpBody::size_hint(&body).lower() > crate::MAX_BODY_BYTES as u64 {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(body, crate::MAX_BODY_BYTES)
        .await
        .map_err(|_| too_large())?;
    let request = serde_json::from_slice(&bytes)
        .map_err(|e| Box::new(unprocessable(format!("the body is not the request: {e}"))))?;
    Ok((options, request))
}

fn parse_options(raw: Option<&str>) -> Result<Options, String> {
    let mut options = Options::default();
    let flag = |name: &str, value: &str| match value {
        "true" | "1" | "" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(format!("`{name}` is {other:?}; use true or false")),
    };
    for (key, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "project" if options.project.is_some() => return Err("`project` is given twice".to_string()),
            "project" => options.project = Some(value.into_owned()),
            "async" => options.background = flag("async", &value)?,
            "force" => options.force = flag("force", &value)?,
            _ => {}
        }
    }
    Ok(options)
}

async fn definitions(api: &FeatureApi, project: Option<&str>) -> Result<Arc<Definitions>, ApiError> {
    match api.registry.current_for(project).await? {
        (_, Some(definitions)) => Ok(definitions),
        (project, None) => Err(ApiError::not_found(
            "FeastObjectNotFoundException",
            format!("project `{project}` has no feature definitions; run `loopline features apply`"),
        )),
    }
}

#[derive(Deserialize)]
struct OnlineRequest {
    #[serde(default)]
    features: Vec<String>,
    feature_service: Option<String>,
    entities: Ordered,
    #[serde(default)]
    full_feature_names: bool,
    #[serde(default)]
    #[allow(dead_code)]
    include_feature_view_version_metadata: bool,
}

/// `POST /get-online-features`.
pub async fn get_online_features(
    State(api): State<FeatureApi>,
    PathProject(scoped): PathProject,
    RawQuery(raw): RawQuery,
    body: Body,
) -> Response {
    let (options, request): (Options, OnlineRequest) = match read(scoped, raw, body).await {
        Ok(read) => read,
        Err(response) => return *response,
    };
    match online(&api, options.project.as_deref(), request).await {
        Ok(answer) => axum::Json(answer).into_response(),
        Err(error) => error.feast(),
    }
}

async fn online(api: &FeatureApi, project: Option<&str>, request: OnlineRequest) -> Result<Value, ApiError> {
    let definitions = definitions(api, project).await?;
    let wanted = match request.feature_service {
        Some(service) => Wanted::Service(service),
        None => Wanted::References(request.features),
    };
    let selection = api
        .selections
        .select(&definitions, &wanted, request.full_feature_names)
        .map_err(ApiError::from_features)?;
    let fields: Vec<&str> = selection.request_fields.iter().map(|(f, _)| f.as_str()).collect();
    let entities = EntityColumns::with_request_fields(&request.entities.0, &fields).map_err(ApiError::bad_request)?;
    online_read::lookup(api.online.as_ref(), &definitions, &selection, &entities)
        .await
        .map_err(|error| match error {
            LookupError::Request(message) => ApiError::bad_request(message),
            LookupError::Store(error) => ApiError::internal(error.to_string()),
        })
}

/// The native twin of `get-online-features`, with the project in the path and Loopline's error shape.
pub async fn native_online(
    State(api): State<FeatureApi>,
    axum::extract::Path(project): axum::extract::Path<String>,
    bytes: Bytes,
) -> Response {
    let request: OnlineRequest = match serde_json::from_slice(&bytes) {
        Ok(request) => request,
        Err(e) => return ApiError::bad_request(format!("the body is not a lookup: {e}")).native(),
    };
    match online(&api, Some(&project), request).await {
        Ok(answer) => axum::Json(answer).into_response(),
        Err(error) => error.native(),
    }
}

#[derive(Deserialize)]
struct PushRequest {
    push_source_name: String,
    df: Ordered,
    #[serde(default = "online_only")]
    to: String,
    #[serde(default)]
    #[allow(dead_code)]
    allow_registry_cache: Option<bool>,
    #[serde(default)]
    #[allow(dead_code)]
    transform_on_write: Option<bool>,
}

fn online_only() -> String {
    "online".to_string()
}

/// `POST /push`: rows for every view reading the push source.
pub async fn push(
    State(api): State<FeatureApi>,
    PathProject(scoped): PathProject,
    RawQuery(raw): RawQuery,
    body: Body,
) -> Response {
    let (options, request): (Options, PushRequest) = match read(scoped, raw, body).await {
        Ok(read) => read,
        Err(response) => return *response,
    };
    let result = async {
        let (online, offline) = match request.to.as_str() {
            "online" => (true, false),
            "offline" => (false, true),
            "online_and_offline" => (true, true),
            other => {
                return Err(ApiError::bad_request(format!(
                    "`to` is {other:?}; use online, offline or online_and_offline"
                )));
            }
        };
        let definitions = definitions(&api, options.project.as_deref()).await?;
        if !definitions.push_sources.contains_key(&request.push_source_name) {
            return Err(ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                class: "PushSourceNotFoundException",
                message: format!(
                    "Unable to find push source '{}'; the push sources are {:?}",
                    request.push_source_name,
                    definitions.push_sources.keys().collect::<Vec<_>>()
                ),
            });
        }
        let views: Vec<_> = definitions
            .views
            .values()
            .filter(|v| v.push_source.as_deref() == Some(request.push_source_name.as_str()))
            .collect();
        // Every view's rows are checked before any is written: a bad row writes nothing.
        let mut writes = Vec::with_capacity(views.len());
        for view in views.into_iter().filter(|_| online) {
            let rows = crate::rows::rows_for_view(&definitions, view, &request.df.0).map_err(ApiError::bad_request)?;
            writes.push((view.storage_name(), rows));
        }
        if offline {
            // The batch source first: its write is checked whole and refused whole.
            let (owned, push, df) = (definitions.clone(), request.push_source_name.clone(), request.df.0.clone());
            let written = tokio::task::spawn_blocking(move || loopline_features::offline_write::append(&owned, &push, &df))
                .await
                .map_err(|e| ApiError::internal(e.to_string()))?
                .map_err(ApiError::bad_request)?;
            tracing::info!(push_source = %request.push_source_name, file = %written.display(), "pushed rows written to the offline store");
        }
        for (view, rows) in writes {
            api.online
                .write(&definitions.project, &view, rows)
                .await
                .map_err(|e| ApiError::internal(e.to_string()))?;
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => StatusCode::OK.into_response(),
        Err(error) => error.feast(),
    }
}

#[derive(Deserialize)]
struct WriteRequest {
    feature_view_name: String,
    df: Ordered,
    #[serde(default)]
    #[allow(dead_code)]
    allow_registry_cache: Option<bool>,
    #[serde(default)]
    #[allow(dead_code)]
    transform_on_write: Option<bool>,
}

/// `POST /write-to-online-store`: rows straight into one view.
pub async fn write_to_online_store(
    State(api): State<FeatureApi>,
    PathProject(scoped): PathProject,
    RawQuery(raw): RawQuery,
    body: Body,
) -> Response {
    let (options, request): (Options, WriteRequest) = match read(scoped, raw, body).await {
        Ok(read) => read,
        Err(response) => return *response,
    };
    let result = async {
        let definitions = definitions(&api, options.project.as_deref()).await?;
        let view = definitions
            .view(&request.feature_view_name)
            .map_err(ApiError::from_features)?;
        let rows = crate::rows::rows_for_view(&definitions, view, &request.df.0).map_err(ApiError::bad_request)?;
        api.online
            .write(&definitions.project, &view.storage_name(), rows)
            .await
            .map_err(|e| ApiError::internal(e.to_string()))
    }
    .await;
    match result {
        Ok(()) => axum::Json(Value::Null).into_response(),
        Err(error) => error.feast(),
    }
}

#[derive(Deserialize)]
struct MaterializeRequest {
    start_ts: Option<String>,
    end_ts: Option<String>,
    feature_views: Option<Vec<String>>,
    #[serde(default)]
    disable_event_timestamp: bool,
    #[serde(default)]
    #[allow(dead_code)]
    full_feature_names: Option<bool>,
}

/// `POST /materialize`: a time range into the online store.
pub async fn materialize(
    State(api): State<FeatureApi>,
    PathProject(scoped): PathProject,
    RawQuery(raw): RawQuery,
    body: Body,
) -> Response {
    let (options, request): (Options, MaterializeRequest) = match read(scoped, raw, body).await {
        Ok(read) => read,
        Err(response) => return *response,
    };
    let window = match (request.disable_event_timestamp, &request.start_ts, &request.end_ts) {
        (true, _, _) => Ok(Window::Everything),
        (false, Some(start_text), Some(end_text)) => materialize::parse_time(start_text, "start_ts")
            .and_then(|s| materialize::parse_time(end_text, "end_ts").map(|e| (s, e)))
            .and_then(|(start, end)| {
                if start < end {
                    Ok(Window::Range { start, end })
                } else {
                    Err(format!("start_ts {start_text:?} is not before end_ts {end_text:?}"))
                }
            }),
        _ => Err("give start_ts and end_ts (or disable_event_timestamp: true)".to_string()),
    };
    let window = match window {
        Ok(window) => window,
        Err(message) => return ApiError::bad_request(message).feast(),
    };
    run(api, options, request.feature_views, window).await
}

#[derive(Deserialize)]
struct IncrementalRequest {
    end_ts: Option<String>,
    feature_views: Option<Vec<String>>,
    #[serde(default)]
    #[allow(dead_code)]
    full_feature_names: Option<bool>,
}

/// `POST /materialize-incremental`: each view from where its last materialisation ended.
pub async fn materialize_incremental(
    State(api): State<FeatureApi>,
    PathProject(scoped): PathProject,
    RawQuery(raw): RawQuery,
    body: Body,
) -> Response {
    let (options, request): (Options, IncrementalRequest) = match read(scoped, raw, body).await {
        Ok(read) => read,
        Err(response) => return *response,
    };
    let end = match request.end_ts.as_deref().map(|t| materialize::parse_time(t, "end_ts")) {
        Some(Ok(end)) => end,
        Some(Err(message)) => return ApiError::bad_request(message).feast(),
        None => return ApiError::bad_request("give end_ts".to_string()).feast(),
    };
    run(api, options, request.feature_views, Window::Incremental { end }).await
}

async fn run(api: FeatureApi, options: Options, views: Option<Vec<String>>, window: Window) -> Response {
    let prepared = async {
        let definitions = definitions(&api, options.project.as_deref()).await?;
        let views = materialize::views_to_run(&definitions, views)?;
        Ok::<_, ApiError>((definitions, views))
    }
    .await;
    let (definitions, views) = match prepared {
        Ok(prepared) => prepared,
        Err(error) => return error.feast(),
    };
    let Some(claim) = api.running.claim(&definitions.project, &views, options.force) else {
        let busy = api.running.busy(&definitions.project, &views);
        return (
            StatusCode::CONFLICT,
            axum::Json(json!({
                "error": format!("feature views {busy:?} are materializing; wait, or add ?force=true"),
                "feature_views": busy,
            })),
        )
            .into_response();
    };
    if options.background {
        let names = views.clone();
        tokio::spawn(async move {
            let _claim = claim;
            if let Err(error) = materialize::run(&api, &definitions, &views, window).await {
                tracing::error!(message = %error.message, "background materialisation failed");
            }
        });
        return (
            StatusCode::ACCEPTED,
            axum::Json(json!({"status": "accepted", "feature_views": names})),
        )
            .into_response();
    }
    let result = materialize::run(&api, &definitions, &views, window).await;
    drop(claim);
    match result {
        Ok(()) => axum::Json(Value::Null).into_response(),
        Err(error) => error.feast(),
    }
}
