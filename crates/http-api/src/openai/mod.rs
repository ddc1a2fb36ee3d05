//! OpenAI's API over the LLM gateway: `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings` and
//! `/v1/models`, so the `openai` SDK (and what is built on it) works unchanged with `base_url` pointed here.
//! Streams are written as server-sent events as they arrive; one that breaks after it started ends with an
//! error event in OpenAI's shape (the SDK raises it) instead of a silent cut.

pub mod budget_policies;
pub mod checks;
pub mod errors;
pub mod guard;
pub mod limits;
pub mod traces;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use errors::OpenAiError;
use futures::StreamExt;
use loopline_access::{Level, Principal};
use loopline_llm_gateway::gateway::CallOptions;
use loopline_llm_gateway::gateway::broken_stream_event;
use loopline_llm_gateway::{Answer, Endpoint, Gateway, Piece, Served};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Instant;

/// The largest request body, in bytes (images travel inline as base64; the same limit as the access guard's).
pub const MAX_BODY_BYTES: usize = 16 << 20;
/// The resource kind grants on gateway models name (MLflow's name for a gateway route).
pub const GATEWAY_ENDPOINT: &str = "gateway_endpoint";

/// Request bytes the gateway holds at once, in KiB: a parsed JSON body takes tens of times its size in memory
/// (an array of numbers about forty), so a few maximal bodies at once could take gigabytes.
const IN_FLIGHT_BODY_KIB: u32 = 32 * 1024;

/// A share of the in-flight budget for a body of `bytes`, or `None` when the budget is spent (the caller is
/// told to retry).
pub(crate) fn reserve_body(bytes: usize) -> Option<tokio::sync::OwnedSemaphorePermit> {
    static BUDGET: std::sync::OnceLock<Arc<tokio::sync::Semaphore>> = std::sync::OnceLock::new();
    let budget = BUDGET.get_or_init(|| Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT_BODY_KIB as usize)));
    let kib = u32::try_from(bytes.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
    budget.clone().try_acquire_many_owned(kib).ok()
}

/// The share of the budget a body takes, reserved before it is read: its declared length, or the largest body
/// when it declares none (chunked).
pub(crate) fn declared_size(headers: &axum::http::HeaderMap) -> usize {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<usize>().ok())
        .map_or(MAX_BODY_BYTES, |declared| declared.min(MAX_BODY_BYTES))
}

/// True when the body says it is JSON. The access guard finds the model a request names in a JSON body (in
/// the query string otherwise), so a body of any other type is refused rather than read as JSON here.
pub(crate) fn json_content(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.to_ascii_lowercase().contains("json"))
}

/// The refusal of a body that is not JSON.
pub(crate) const NOT_JSON: &str = "Send the body as JSON, with 'Content-Type: application/json'.";

/// The message when the budget is spent.
pub(crate) const BUSY: &str = "The gateway is holding as many large requests as it can; retry shortly.";

/// True for the paths this module answers (their refusals take OpenAI's error shape).
pub fn is_openai_path(path: &str) -> bool {
    [
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/models",
    ]
    .iter()
    .any(|prefix| path == *prefix || path.starts_with(&format!("{prefix}/")))
}

/// What the gateway's routes work with: the gateway, and the store holding gateway keys and their usage.
pub struct GatewayApi {
    /// The gateway as it stands (the configuration file's models and the MLflow catalog's endpoints).
    pub live: Arc<loopline_llm_gateway::live::LiveGateway>,
    /// The MLflow catalog, when the server keeps one.
    pub sync: Option<Arc<crate::ai_gateway::CatalogSync>>,
    /// Keys, teams and the usage ledger.
    pub store: Arc<dyn loopline_metadata_store::MetadataStore>,
    /// Where budget-policy alerts go (MLflow's webhooks).
    pub webhooks: Option<crate::webhooks::Webhooks>,
}

impl GatewayApi {
    /// The gateway serving now (catalog changes made by other replicas looked for first, at most once a
    /// second).
    pub async fn gateway(&self) -> Arc<Gateway> {
        if let Some(sync) = &self.sync {
            sync.refresh_if_due().await;
        }
        self.live.current()
    }

    /// The gateway serving now, after looking at the catalog at once when it does not know `model` (an
    /// endpoint another replica has just made).
    pub async fn gateway_for(&self, model: &str) -> Arc<Gateway> {
        let gateway = self.gateway().await;
        if gateway.config().model(model).is_some() {
            return gateway;
        }
        if let Some(sync) = &self.sync
            && let Err(error) = sync.refresh().await
        {
            tracing::warn!(error = %error.message, "the gateway catalog could not be read");
        }
        self.live.current()
    }
}

/// The routes, over `api`.
pub fn routes(api: Arc<GatewayApi>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(list_models))
        .route("/v1/models/{*id}", get(get_model))
        .with_state(api)
}

pub(crate) async fn chat(State(api): State<Arc<GatewayApi>>, request: Request) -> Response {
    call(api, Endpoint::ChatCompletions, request, checks::chat).await
}

async fn completions(State(api): State<Arc<GatewayApi>>, request: Request) -> Response {
    call(api, Endpoint::Completions, request, checks::completion).await
}

pub(crate) async fn embeddings(State(api): State<Arc<GatewayApi>>, request: Request) -> Response {
    call(api, Endpoint::Embeddings, request, checks::embeddings).await
}

async fn call(
    api: Arc<GatewayApi>,
    endpoint: Endpoint,
    request: Request,
    check: fn(&serde_json::Map<String, Value>) -> Result<(), OpenAiError>,
) -> Response {
    let started = Instant::now();
    let request_id = request_id();
    let mut options = call_options(&request);
    let principal = request.extensions().get::<Principal>().cloned();
    let own = guard::is_guardrail_call(&request);
    let mut limit_headers = Vec::new();
    let answer = async {
        if !json_content(request.headers()) {
            return Err(OpenAiError::invalid("body", NOT_JSON));
        }
        let _held = reserve_body(declared_size(request.headers())).ok_or_else(|| OpenAiError {
            status: axum::http::StatusCode::TOO_MANY_REQUESTS,
            message: BUSY.into(),
            kind: "rate_limit_error",
            param: None,
            code: Some("gateway_busy"),
            retry_after: Some(1),
        })?;
        let bytes = crate::extract::read_body_limited(request.into_body(), MAX_BODY_BYTES).await?;
        let body = checks::object(&bytes)?;
        drop(bytes);
        check(&body)?;
        let model = body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let gateway = api.gateway_for(&model).await;
        // The caller's key, limits and budgets first: a call they refuse costs no judge.
        let admitted = limits::admit(&api, &gateway, principal.as_ref(), endpoint, &body).await?;
        options.settle = admitted.settle;
        limit_headers = admitted.headers;
        let guards = guard::guards(&api, &model, own);
        // Answers are judged too, except embeddings (vectors, as MLflow does).
        let answers = endpoint != Endpoint::Embeddings;
        let (body, kept) = guard::prepare(&api, &guards, &model, body, answers, check).await?;
        let answer = gateway.call_with(endpoint, body, &options).await?;
        match (answer, kept) {
            ((Answer::Json(value), served), Some(request)) => Ok((
                Answer::Json(guard::after(&api, &guards, &request, value).await?),
                served,
            )),
            (answer, _) => Ok::<_, OpenAiError>(answer),
        }
    }
    .await;
    let mut response = match answer {
        Ok((Answer::Json(value), served)) => with_served(axum::Json(value).into_response(), &served, started),
        Ok((Answer::Stream(pieces), served)) => with_served(stream_response(pieces), &served, started),
        Err(error) => error.into_response(),
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    add_headers(&mut response, limit_headers);
    response
}

/// Adds `x-ratelimit-*` headers to an answer.
pub(crate) fn add_headers(response: &mut Response, headers: Vec<(&'static str, String)>) {
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
}

/// How a call may use the exact cache: answers are shared among the calls of one signed-in user (everyone's
/// without auth), and `Cache-Control: no-cache` / `no-store` are honoured.
pub(crate) fn call_options(request: &Request) -> CallOptions {
    let directives: Vec<String> = request
        .headers()
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|directive| directive.trim().to_ascii_lowercase())
        .collect();
    CallOptions {
        scope: request
            .extensions()
            .get::<Principal>()
            // Id and name: an id a deleted user's successor is given again does not inherit its answers.
            .map(|principal| format!("{}:{}", principal.user_id, principal.username))
            .unwrap_or_default(),
        no_cache: directives.iter().any(|directive| directive == "no-cache"),
        no_store: directives.iter().any(|directive| directive == "no-store"),
        settle: None,
        user: request
            .extensions()
            .get::<Principal>()
            .map(|principal| principal.username.to_string()),
    }
}

fn request_id() -> String {
    format!("req_{}", random_hex::<12>())
}

/// `N` random bytes as hex (request ids, lease ids).
pub(crate) fn random_hex<const N: usize>() -> String {
    let bytes: [u8; N] = rand::random();
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Headers saying how the call was served: the gateway's own time (`x-loopline-overhead-ms`: the whole call
/// less the time spent waiting on providers), the deployment that answered and the attempts it took.
pub(crate) fn with_served(mut response: Response, served: &Served, started: Instant) -> Response {
    let overhead = started.elapsed().saturating_sub(served.upstream);
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&format!("{:.3}", overhead.as_secs_f64() * 1000.0)) {
        headers.insert("x-loopline-overhead-ms", value);
    }
    if let Ok(value) = HeaderValue::from_str(&served.deployment) {
        headers.insert("x-loopline-deployment", value);
    }
    headers.insert("x-loopline-attempts", HeaderValue::from(served.attempts));
    if served.fell_back {
        headers.insert("x-loopline-fallback", HeaderValue::from_static("true"));
    }
    if let Some(cache) = served.cache {
        headers.insert("x-loopline-cache", HeaderValue::from_static(cache));
    }
    if let Some(similarity) = served.similarity
        && let Ok(value) = HeaderValue::from_str(&format!("{similarity:.4}"))
    {
        headers.insert("x-loopline-cache-similarity", value);
    }
    if let Some(cost) = served.cost
        && let Ok(value) = HeaderValue::from_str(&format!("{cost:.8}"))
    {
        headers.insert("x-loopline-cost-usd", value);
    }
    response
}

fn stream_response(pieces: loopline_llm_gateway::gateway::PieceStream) -> Response {
    let events = pieces.map(|piece| {
        let text = match piece {
            Piece::Data(data) => format!("data: {data}\n\n"),
            Piece::Broken(message) => {
                tracing::warn!(%message, "a gateway stream broke after it started");
                format!("data: {}\n\n", broken_stream_event(&message))
            }
            Piece::Blocked(message) => {
                let event = json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": "guardrail_blocked"}});
                format!("data: {event}\n\n")
            }
        };
        Ok::<_, std::convert::Infallible>(Bytes::from(text))
    });
    let mut response = Response::new(Body::from_stream(events));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// The models a caller may use (all of them without auth; a gateway key's own list narrows them).
async fn visible(api: &GatewayApi, principal: Option<&Principal>) -> Vec<String> {
    let allowed = match principal.and_then(|caller| caller.token_id.as_deref()) {
        Some(token_id) => api
            .store
            .get_gateway_key(token_id)
            .await
            .ok()
            .flatten()
            .map(|key| key.models)
            .filter(|models| !models.is_empty()),
        None => None,
    };
    api.gateway()
        .await
        .config()
        .models
        .iter()
        .filter(|model| !model.hidden)
        .filter(|model| principal.is_none_or(|caller| caller.may(GATEWAY_ENDPOINT, Some(&model.name), Level::Use)))
        .filter(|model| allowed.as_ref().is_none_or(|allowed| allowed.contains(&model.name)))
        .map(|model| model.name.clone())
        .collect()
}

fn model_object(name: &str) -> Value {
    json!({"id": name, "object": "model", "created": 0, "owned_by": "loopline"})
}

async fn list_models(State(api): State<Arc<GatewayApi>>, request: Request) -> Response {
    let principal = request.extensions().get::<Principal>();
    let models: Vec<Value> = visible(&api, principal)
        .await
        .iter()
        .map(|name| model_object(name))
        .collect();
    axum::Json(json!({"object": "list", "data": models})).into_response()
}

async fn get_model(State(api): State<Arc<GatewayApi>>, Path(id): Path<String>, request: Request) -> Response {
    let principal = request.extensions().get::<Principal>();
    let id = id.trim_start_matches('/');
    if !visible(&api, principal).await.iter().any(|name| name == id) {
        return OpenAiError::model_not_found(id).into_response();
    }
    axum::Json(model_object(id)).into_response()
}
