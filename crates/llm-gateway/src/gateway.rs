//! The gateway's one service call: a request for a model name goes to the model's deployments in weighted
//! order, then to its fallbacks' deployments, retrying what is worth retrying. A stream is handed to the
//! caller only once its first event has arrived, so a failure before then falls back without the caller
//! seeing it; a failure after it ends the stream with a typed error event instead of a silent cut.

use crate::cache::ExactCache;
use crate::config::{GatewayConfig, ModelGroup, ProviderKind};
use crate::metrics::GatewayMetrics;
use crate::observe::CallObserver;
use crate::provider::{ByteStream, Failure, FailureKind, Upstream};
use crate::sse::SseParser;
use futures::{Stream, StreamExt};
use loopline_core::{ErrorCode, HasErrorCode};
use rand::Rng;
use serde_json::{Map, Value, json};
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest backoff between retries when the provider names no wait.
const MAX_BACKOFF: Duration = Duration::from_secs(8);

/// Which OpenAI endpoint a call is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/chat/completions`.
    ChatCompletions,
    /// `/completions` (legacy).
    Completions,
    /// `/embeddings`.
    Embeddings,
}

impl Endpoint {
    pub(crate) fn path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/chat/completions",
            Endpoint::Completions => "/completions",
            Endpoint::Embeddings => "/embeddings",
        }
    }
}

/// Why a call failed, for the caller.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No model by that name is configured.
    #[error("The model '{0}' does not exist or you do not have access to it.")]
    ModelNotFound(String),
    /// The provider said the request is wrong (about the request field `param`, when it said which).
    #[error("{message}")]
    Rejected {
        /// What it said.
        message: String,
        /// The field.
        param: Option<String>,
    },
    /// The prompt does not fit any deployment's context window.
    #[error("{0}")]
    ContextWindow(String),
    /// Every deployment was rate limited.
    #[error("Every deployment of '{model}' is rate limited; try again later (the last said: {last}).")]
    RateLimited {
        /// The model asked for.
        model: String,
        /// What the last deployment said.
        last: String,
        /// The shortest wait a provider asked for.
        retry_after: Option<Duration>,
    },
    /// A guardrail refused the request or its answer.
    #[error("{0}")]
    Blocked(crate::guardrails::Blocked),
    /// Every deployment failed.
    #[error("No deployment of '{model}' could answer ({attempts} attempts); the last said: {last}")]
    Unavailable {
        /// The model asked for.
        model: String,
        /// Upstream attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
}

impl GatewayError {
    /// The outcome label of a failed call in the metrics.
    pub fn label(&self) -> &'static str {
        match self {
            GatewayError::ModelNotFound(_) => "model_not_found",
            GatewayError::Rejected { .. } => "rejected",
            GatewayError::ContextWindow(_) => "context_window",
            GatewayError::RateLimited { .. } => "rate_limited",
            GatewayError::Unavailable { .. } => "unavailable",
            GatewayError::Blocked(_) => "blocked",
        }
    }
}

impl HasErrorCode for GatewayError {
    fn error_code(&self) -> ErrorCode {
        match self {
            GatewayError::ModelNotFound(_) => ErrorCode::ResourceDoesNotExist,
            GatewayError::Rejected { .. } | GatewayError::ContextWindow(_) | GatewayError::Blocked(_) => {
                ErrorCode::InvalidParameterValue
            }
            GatewayError::RateLimited { .. } => ErrorCode::RequestLimitExceeded,
            GatewayError::Unavailable { .. } => ErrorCode::TemporarilyUnavailable,
        }
    }
}

/// One piece of a stream handed to the caller.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    /// An event's data as the provider sent it (`[DONE]` included).
    Data(String),
    /// The stream broke after it had started: the caller gets this as a typed error event, and nothing after.
    Broken(String),
    /// An output guardrail stopped the stream: a typed error event naming it, and nothing after.
    Blocked(String),
}

/// A stream of pieces.
pub type PieceStream = Pin<Box<dyn Stream<Item = Piece> + Send>>;

/// What a call returns.
pub enum Answer {
    /// A whole JSON answer.
    Json(Value),
    /// A stream whose first event has arrived.
    Stream(PieceStream),
}

/// How a call was served.
#[derive(Debug, Clone)]
pub struct Served {
    /// `provider/model` of the deployment that answered.
    pub deployment: String,
    /// Upstream attempts made (1 when the first answered).
    pub attempts: u32,
    /// Time spent waiting on providers (for a stream: until its first event).
    pub upstream: Duration,
    /// Whether a fallback group answered.
    pub fell_back: bool,
    /// The exact cache: `hit`, `miss`, or `None` when the model is not cached (or the caller said no-store).
    pub cache: Option<&'static str>,
    /// What the answering deployment's tokens cost, when configured.
    pub price: Option<crate::config::Price>,
    /// What a whole answer cost, in US dollars (from its usage and the price; none for a cache hit).
    pub cost: Option<f64>,
    /// The model group that answered (the one called, or a fallback).
    pub group: usize,
    /// What fallback models' input guardrails did before their deployments were tried.
    pub guardrails: Vec<crate::guardrails::Event>,
    /// A semantic cache hit's similarity.
    pub similarity: Option<f32>,
}

/// How one call may use the exact cache, whose answers it may share, and who is told when it ends.
#[derive(Clone, Default)]
pub struct CallOptions {
    /// Callers sharing cached answers (the signed-in user; empty without auth: everyone).
    pub scope: String,
    /// `Cache-Control: no-cache`: do not answer from the cache (the answer is still kept).
    pub no_cache: bool,
    /// `Cache-Control: no-store`: neither read nor keep.
    pub no_store: bool,
    /// Told of this call's record once it ends (a stream: when it ends or the caller leaves), once; the
    /// caller's limits settle what it used.
    pub settle: Option<Arc<dyn CallObserver>>,
    /// The signed-in caller's name, for the trace (`mlflow.trace.user`).
    pub user: Option<String>,
}

/// The gateway.
pub struct Gateway {
    pub(crate) config: Arc<GatewayConfig>,
    upstream: Upstream,
    /// What is known of each deployment: failures, calls in flight, latency.
    board: crate::routing::Board,
    pub(crate) metrics: Arc<GatewayMetrics>,
    pub(crate) observer: std::sync::OnceLock<Arc<dyn CallObserver>>,
    pub(crate) cache: Arc<ExactCache>,
    pub(crate) semantic: Arc<crate::semantic::SemanticCache>,
    /// Answers shared with the other replicas (Redis), looked in after the replica's own caches.
    pub(crate) shared: Option<Arc<dyn crate::answers::AnswerStore>>,
    /// What answers the local provider's calls (the server's embedding model), when it runs one.
    local: Option<Arc<dyn crate::local::LocalModels>>,
}

impl Gateway {
    /// A gateway over `config`.
    pub fn new(config: GatewayConfig) -> Result<Gateway, String> {
        let board = crate::routing::Board::new(&config);
        let cache = Arc::new(ExactCache::new(config.cache_max_entries, config.cache_max_bytes));
        let semantic = Arc::new(crate::semantic::SemanticCache::new(
            config.cache_max_entries,
            config.cache_max_bytes,
        ));
        Ok(Gateway {
            config: Arc::new(config),
            upstream: Upstream::new()?,
            board,
            metrics: Arc::default(),
            observer: std::sync::OnceLock::new(),
            cache,
            semantic,
            shared: None,
            local: None,
        })
    }

    /// This gateway, keeping its answers in `shared` too and looking there after its own caches, so replicas
    /// answer what any of them kept.
    pub fn with_shared_answers(mut self, shared: Arc<dyn crate::answers::AnswerStore>) -> Gateway {
        self.shared = Some(shared);
        self
    }

    /// This gateway, answering the local provider's calls with `local`.
    pub fn with_local_models(mut self, local: Arc<dyn crate::local::LocalModels>) -> Gateway {
        self.local = Some(local);
        self
    }

    /// A gateway over `config` sharing this one's connections, metrics, caches and observer: what a catalog
    /// change installs (calls in flight finish on the one they began on).
    pub fn reconfigured(&self, config: GatewayConfig) -> Gateway {
        let observer = std::sync::OnceLock::new();
        if let Some(current) = self.observer.get() {
            let _ = observer.set(current.clone());
        }
        Gateway {
            board: crate::routing::Board::new(&config),
            config: Arc::new(config),
            upstream: self.upstream.clone(),
            metrics: self.metrics.clone(),
            observer,
            cache: self.cache.clone(),
            semantic: self.semantic.clone(),
            shared: self.shared.clone(),
            local: self.local.clone(),
        }
    }

    /// Where whole answers are kept: this replica's caches and the shared store.
    pub(crate) fn keeper(&self) -> crate::answers::Keeper {
        crate::answers::Keeper {
            local: crate::answers::LocalAnswers {
                exact: self.cache.clone(),
                semantic: self.semantic.clone(),
            },
            shared: self.shared.clone(),
        }
    }

    /// The gateway's Prometheus families.
    pub fn metrics(&self) -> &GatewayMetrics {
        &self.metrics
    }

    /// The configuration served.
    pub fn config(&self) -> &GatewayConfig {
        &self.config
    }

    /// Sends a request body (already checked by the wire layer: an object with a string `model`) to the
    /// model it names. A body with `"stream": true` gets [`Answer::Stream`]. Counted in the gateway's metrics.
    pub async fn call(&self, endpoint: Endpoint, body: Map<String, Value>) -> Result<(Answer, Served), GatewayError> {
        self.call_with(endpoint, body, &CallOptions::default()).await
    }

    /// Sets who is told of every finished call (once; the server's trace writer).
    pub fn set_observer(&self, observer: Arc<dyn CallObserver>) {
        let _ = self.observer.set(observer);
    }

    /// Tries the plan with `body` (its `model` rewritten for each deployment in place: no copy of a large
    /// request per attempt).
    pub(crate) async fn route(
        &self,
        endpoint: Endpoint,
        body: &mut Map<String, Value>,
    ) -> Result<(Answer, Served), GatewayError> {
        let name = model_name(body);
        let group = self
            .config
            .model(&name)
            .ok_or_else(|| GatewayError::ModelNotFound(name.clone()))?;
        let streaming = endpoint != Endpoint::Embeddings && body.get("stream").and_then(Value::as_bool) == Some(true);
        let started = Instant::now();
        let mut attempts = 0;
        let mut last: Option<Failure> = None;
        let mut rate_limited_only = true;
        let mut shortest_wait: Option<Duration> = None;
        let mut guarded_group = group;
        let mut guard_events = Vec::new();
        for (group_index, deployment_index) in self.board.plan(&self.config, group) {
            let model = &self.config.models[group_index];
            if group_index != guarded_group {
                // A fallback model's own input guardrails hold before its providers see the request.
                guarded_group = group_index;
                if !model.guards.is_empty() {
                    let taken = std::mem::take(body);
                    let (checked, events, blocked) =
                        crate::guardrails::checked_input(model.guards.clone(), endpoint, taken).await;
                    *body = checked;
                    guard_events.extend(events);
                    if let Some(blocked) = blocked {
                        return Err(GatewayError::Blocked(blocked));
                    }
                }
            }
            let deployment = &model.deployments[deployment_index];
            let provider = &self.config.providers[deployment.provider];
            body.insert("model".into(), Value::String(deployment.model.clone()));
            for retry in 0..=model.retries {
                attempts += 1;
                let in_flight = self.board.begin(group_index, deployment_index);
                let began = Instant::now();
                let outcome = self.attempt(endpoint, provider, body, model, streaming).await;
                self.metrics.attempt(
                    &provider.name,
                    match &outcome {
                        Ok(_) => "ok",
                        Err(failure) => failure.kind.label(),
                    },
                );
                match outcome {
                    Ok(answer) => {
                        self.board.mark(&self.config, group_index, deployment_index, true);
                        self.board.measured(group_index, deployment_index, began.elapsed());
                        let answer = match answer {
                            // A stream is in flight on its deployment until it ends.
                            Answer::Stream(pieces) => Answer::Stream(Box::pin(pieces.map(move |piece| {
                                let _held = &in_flight;
                                piece
                            }))),
                            json => json,
                        };
                        return Ok((
                            answer,
                            Served {
                                deployment: format!("{}/{}", provider.name, deployment.model),
                                attempts,
                                upstream: started.elapsed(),
                                fell_back: group_index != group,
                                cache: None,
                                price: deployment.price,
                                cost: None,
                                group: group_index,
                                guardrails: std::mem::take(&mut guard_events),
                                similarity: None,
                            },
                        ));
                    }
                    Err(failure) => {
                        tracing::warn!(model = %name, provider = %provider.name, upstream_model = %deployment.model,
                            status = ?failure.status, message = %failure.message, "a gateway deployment failed");
                        if failure.kind == FailureKind::Caller {
                            return Err(GatewayError::Rejected {
                                message: failure.message,
                                param: failure.param,
                            });
                        }
                        if failure.status != Some(429) {
                            rate_limited_only = false;
                        } else if let Some(wait) = failure.retry_after {
                            shortest_wait = Some(shortest_wait.map_or(wait, |shortest| shortest.min(wait)));
                        }
                        let kind = failure.kind;
                        let wait = self.wait_before_retry(&failure, retry);
                        last = Some(failure);
                        if kind != FailureKind::Retryable {
                            if kind == FailureKind::Unusable {
                                self.board.mark(&self.config, group_index, deployment_index, false);
                            }
                            break;
                        }
                        self.board.mark(&self.config, group_index, deployment_index, false);
                        match wait {
                            Some(wait) if retry < model.retries => tokio::time::sleep(wait).await,
                            _ => break,
                        }
                    }
                }
            }
        }
        let last = last.map(|failure| (failure.kind, failure.message));
        Err(match last {
            Some((FailureKind::ContextWindow, message)) => GatewayError::ContextWindow(message),
            last if rate_limited_only => GatewayError::RateLimited {
                model: name,
                last: last.map_or_else(|| "nothing".to_string(), |(_, message)| message),
                retry_after: shortest_wait.map(|wait| wait.min(self.config.max_retry_after)),
            },
            last => GatewayError::Unavailable {
                model: name,
                attempts,
                last: last
                    .map(|(_, message)| message)
                    .unwrap_or_else(|| "nothing was tried".into()),
            },
        })
    }

    /// How long to wait before trying the same deployment again (`None`: do not; move on).
    fn wait_before_retry(&self, failure: &Failure, retry: u32) -> Option<Duration> {
        backoff(
            failure.retry_after,
            retry,
            self.config.retry_backoff,
            self.config.max_retry_after,
        )
    }

    /// A call of a model the server runs itself: only embeddings, never streamed.
    async fn attempt_local(
        &self,
        endpoint: Endpoint,
        provider: &crate::config::Provider,
        request: &Map<String, Value>,
    ) -> Result<Answer, Failure> {
        let unsupported = |message: String| Failure {
            kind: FailureKind::Unsupported,
            status: None,
            retry_after: None,
            param: None,
            message,
        };
        let Some(local) = &self.local else {
            return Err(unsupported(format!(
                "{} runs no local models on this server",
                provider.name
            )));
        };
        if endpoint != Endpoint::Embeddings {
            // The caller's mistake (a 400, not worth a retry), as OpenAI answers an embedding model asked to chat.
            return Err(Failure {
                kind: FailureKind::Caller,
                status: Some(400),
                retry_after: None,
                param: None,
                message: format!(
                    "{} is a sentence-embedding model: it answers /v1/embeddings, not /v1{}",
                    request
                        .get("model")
                        .and_then(Value::as_str)
                        .unwrap_or("the local model"),
                    endpoint.path()
                ),
            });
        }
        local.embeddings(request).await.map(Answer::Json)
    }

    async fn attempt(
        &self,
        endpoint: Endpoint,
        provider: &crate::config::Provider,
        request: &Map<String, Value>,
        model: &ModelGroup,
        streaming: bool,
    ) -> Result<Answer, Failure> {
        if provider.kind == ProviderKind::Local {
            return self.attempt_local(endpoint, provider, request).await;
        }
        let anthropic = provider.kind == ProviderKind::Anthropic;
        let response = if anthropic {
            if endpoint != Endpoint::ChatCompletions {
                return Err(Failure {
                    kind: FailureKind::Unsupported,
                    status: None,
                    retry_after: None,
                    param: None,
                    message: format!(
                        "{} speaks Anthropic's Messages API, which has no {}",
                        provider.name,
                        endpoint.path()
                    ),
                });
            }
            let translated = crate::anthropic::request_from_openai(request);
            self.upstream
                .post(provider, "/messages", "", &translated, model.timeout)
                .await?
        } else {
            let deployment = request.get("model").and_then(Value::as_str).unwrap_or_default();
            self.upstream
                .post(provider, endpoint.path(), deployment, request, model.timeout)
                .await?
        };
        if !streaming {
            let answer = self.upstream.json(provider, response, model.timeout).await?;
            if let Some(message) = error_event(&answer) {
                // A success status around an error body is a failure, never an answer (nor cached).
                return Err(Failure {
                    kind: FailureKind::Retryable,
                    status: None,
                    retry_after: None,
                    param: None,
                    message: format!(
                        "{} answered an error: {}",
                        provider.name,
                        message.chars().take(500).collect::<String>()
                    ),
                });
            }
            return Ok(Answer::Json(if anthropic {
                crate::anthropic::response_to_openai(&answer)
            } else {
                answer
            }));
        }
        let is_events = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("text/event-stream"));
        if !is_events {
            return Err(Failure {
                kind: FailureKind::Unusable,
                status: Some(response.status().as_u16()),
                retry_after: None,
                param: None,
                message: format!("{} did not stream its answer", provider.name),
            });
        }
        let include_usage = request
            .get("stream_options")
            .and_then(|options| options.get("include_usage"))
            .and_then(Value::as_bool)
            == Some(true);
        let mut events = Events {
            bytes: self.upstream.stream(provider, response),
            parser: SseParser::new(),
            pending: VecDeque::new(),
            timeout: model.timeout,
            provider: provider.name.clone(),
            key: provider.api_key.clone(),
            finished: false,
            translate: anthropic.then(|| crate::anthropic::ToOpenaiStream::new(include_usage)),
        };
        // The first event decides: a failure before it is this deployment's, and the next one is tried.
        let first = events.next_data().await?;
        let Some(first) = first else {
            return Err(Failure {
                kind: FailureKind::Retryable,
                status: None,
                retry_after: None,
                param: None,
                message: format!("{} ended its stream before any event", provider.name),
            });
        };
        let rest = futures::stream::unfold(Some(events), |state| async move {
            let mut events = state?;
            match events.next_data().await {
                Ok(Some(data)) => Some((Piece::Data(data), Some(events))),
                Ok(None) if events.finished => None,
                Ok(None) => Some((
                    Piece::Broken(format!("{} ended its stream before it finished", events.provider)),
                    None,
                )),
                Err(failure) => Some((Piece::Broken(failure.message), None)),
            }
        });
        Ok(Answer::Stream(Box::pin(
            futures::stream::once(async move { Piece::Data(first) }).chain(rest),
        )))
    }
}

/// The model a request names (checked by the wire layer: a string).
pub(crate) fn model_name(body: &Map<String, Value>) -> String {
    body.get("model")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The message of a streamed `{"error": ...}` event.
fn error_event(value: &Value) -> Option<String> {
    let error = value.get("error")?;
    if error.is_null() || error == &Value::Bool(false) {
        return None;
    }
    Some(
        error
            .get("message")
            .and_then(Value::as_str)
            .map_or_else(|| error.to_string(), str::to_string),
    )
}

/// The wait before retry number `retry + 1`: the provider's `Retry-After` when it gave one (none when it asks
/// for longer than `max_retry_after`), else `base` doubled per retry, capped at 8 s, less up to a quarter.
pub fn backoff(
    retry_after: Option<Duration>,
    retry: u32,
    base: Duration,
    max_retry_after: Duration,
) -> Option<Duration> {
    if let Some(wait) = retry_after {
        return (wait <= max_retry_after).then_some(wait);
    }
    let doubled = base.saturating_mul(1u32 << retry.min(16)).min(MAX_BACKOFF);
    let jitter = rand::rng().random_range(0.75..=1.0);
    Some(doubled.mul_f64(jitter))
}

/// Events of a provider's stream, read as they arrive.
struct Events {
    bytes: ByteStream,
    parser: SseParser,
    pending: VecDeque<String>,
    timeout: Duration,
    provider: String,
    /// The provider's key, scrubbed from whatever it streams.
    key: Option<crate::config::Secret>,
    /// `[DONE]` was seen: the stream ended as it should.
    finished: bool,
    /// Anthropic's events turned into chat chunks (for an `anthropic` provider).
    translate: Option<crate::anthropic::ToOpenaiStream>,
}

impl Events {
    /// The next event's data, checked (JSON, not an error event) and scrubbed of the provider's key; `None` at
    /// the end of the stream (`finished` says whether it ended properly). The wait for one event is bounded as
    /// a whole: comments and keep-alives do not extend it.
    async fn next_data(&mut self) -> Result<Option<String>, Failure> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            if self.finished {
                return Ok(None);
            }
            if let Some(data) = self.pending.pop_front() {
                if data.trim() == "[DONE]" {
                    // Nothing after the end reaches the caller, and the end is spelled as clients expect it.
                    self.finished = true;
                    self.pending.clear();
                    return Ok(Some("[DONE]".to_string()));
                }
                return self.checked(data).map(Some);
            }
            let piece = match tokio::time::timeout_at(deadline, self.bytes.next()).await {
                Err(_) => return Err(self.failure(format!("sent no event for {:?}", self.timeout))),
                Ok(None) => return Ok(None),
                Ok(Some(piece)) => piece.map_err(|failure| self.failure(failure.message))?,
            };
            let events = self.parser.feed(&piece).map_err(|message| self.failure(message))?;
            match &mut self.translate {
                None => {
                    for event in events {
                        if event.event.as_deref() == Some("error") {
                            let said = serde_json::from_str::<Value>(&event.data)
                                .ok()
                                .as_ref()
                                .and_then(error_event);
                            let said: String = said.unwrap_or_else(|| "no message".into()).chars().take(500).collect();
                            let message = format!("streamed an error event: {said}");
                            return Err(self.failure(message));
                        }
                        self.pending.push_back(event.data);
                    }
                }
                Some(translate) => {
                    for event in events {
                        let Ok(data) = serde_json::from_str::<Value>(&event.data) else {
                            continue;
                        };
                        match translate.event(&data) {
                            Ok(chunks) => self.pending.extend(chunks),
                            Err(message) => return Err(self.failure(format!("streamed an error: {message}"))),
                        }
                    }
                }
            }
        }
    }

    /// A failure of this stream, worth trying elsewhere (before the first event), its text without the key.
    fn failure(&self, message: String) -> Failure {
        let message = crate::provider::scrub(&message, self.key.as_ref());
        Failure {
            kind: FailureKind::Retryable,
            status: None,
            retry_after: None,
            param: None,
            message: format!("{}: {message}", self.provider),
        }
    }

    /// An event's data as the caller may see it: JSON (anything else breaks the stream), not an error event
    /// (which ends it, as a failure), with the key replaced wherever the provider echoed it.
    fn checked(&self, data: String) -> Result<String, Failure> {
        let Ok(mut value) = serde_json::from_str::<Value>(&data) else {
            return Err(self.failure("streamed an event that is not JSON".into()));
        };
        if let Some(message) = error_event(&value) {
            return Err(self.failure(format!("streamed an error: {message}")));
        }
        let scrubbed = self
            .key
            .as_ref()
            .is_some_and(|key| crate::provider::scrub_json(&mut value, key));
        // An event spread over several `data:` lines is sent on one.
        if scrubbed || data.contains('\n') || data.contains('\r') {
            return Ok(value.to_string());
        }
        Ok(data)
    }
}

/// Seconds since the Unix epoch (the `created` of translated answers).
pub fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// The error event a caller gets when a stream breaks after it started (OpenAI's error shape).
pub fn broken_stream_event(message: &str) -> Value {
    json!({"error": {"message": message, "type": "api_error", "param": null, "code": "stream_interrupted"}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_honoured_up_to_the_limit() {
        let base = Duration::from_millis(500);
        let max = Duration::from_secs(60);
        assert_eq!(
            backoff(Some(Duration::from_secs(3)), 0, base, max),
            Some(Duration::from_secs(3))
        );
        assert_eq!(backoff(Some(Duration::from_secs(61)), 0, base, max), None);
        let first = backoff(None, 0, base, max).unwrap();
        assert!(first <= base && first >= base.mul_f64(0.75));
        let late = backoff(None, 10, base, max).unwrap();
        assert!(late <= MAX_BACKOFF && late >= MAX_BACKOFF.mul_f64(0.75));
    }

    #[test]
    fn only_a_truthy_error_key_is_an_error_event() {
        let event = |text: &str| error_event(&serde_json::from_str(text).unwrap());
        assert_eq!(event(r#"{"error": {"message": "boom"}}"#).as_deref(), Some("boom"));
        assert_eq!(event(r#"{"error": null, "choices": []}"#), None);
        assert_eq!(event(r#"{"choices": [{"delta": {"content": "\"error\""}}]}"#), None);
    }
}
