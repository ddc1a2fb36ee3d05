//! The gateway's one service call: a request for a model name goes to the model's deployments in weighted
//! order, then to its fallbacks' deployments, retrying what is worth retrying. A stream is handed to the
//! caller only once its first event has arrived, so a failure before then falls back without the caller
//! seeing it; a failure after it ends the stream with a typed error event instead of a silent cut.

use crate::config::{GatewayConfig, ModelGroup, ProviderKind};
use crate::metrics::GatewayMetrics;
use crate::provider::{ByteStream, Failure, FailureKind, Upstream};
use crate::sse::SseParser;
use futures::{Stream, StreamExt};
use loopline_core::{ErrorCode, HasErrorCode};
use rand::Rng;
use serde_json::{Map, Value, json};
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
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
    fn path(self) -> &'static str {
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
    /// The provider said the request is wrong.
    #[error("{0}")]
    Rejected(String),
    /// The prompt does not fit any deployment's context window.
    #[error("{0}")]
    ContextWindow(String),
    /// Every deployment was rate limited.
    #[error("Every deployment of '{model}' is rate limited; try again later.")]
    RateLimited {
        /// The model asked for.
        model: String,
        /// The shortest wait a provider asked for.
        retry_after: Option<Duration>,
    },
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
            GatewayError::Rejected(_) => "rejected",
            GatewayError::ContextWindow(_) => "context_window",
            GatewayError::RateLimited { .. } => "rate_limited",
            GatewayError::Unavailable { .. } => "unavailable",
        }
    }
}

impl HasErrorCode for GatewayError {
    fn error_code(&self) -> ErrorCode {
        match self {
            GatewayError::ModelNotFound(_) => ErrorCode::ResourceDoesNotExist,
            GatewayError::Rejected(_) | GatewayError::ContextWindow(_) => ErrorCode::InvalidParameterValue,
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
}

#[derive(Debug, Default, Clone, Copy)]
struct Health {
    failures: u32,
    resting_until: Option<Instant>,
}

/// The gateway.
pub struct Gateway {
    config: Arc<GatewayConfig>,
    upstream: Upstream,
    /// Per model group, per deployment.
    health: Mutex<Vec<Vec<Health>>>,
    metrics: Arc<GatewayMetrics>,
}

impl Gateway {
    /// A gateway over `config`.
    pub fn new(config: GatewayConfig) -> Result<Gateway, String> {
        let health = config
            .models
            .iter()
            .map(|model| vec![Health::default(); model.deployments.len()])
            .collect();
        Ok(Gateway {
            config: Arc::new(config),
            upstream: Upstream::new()?,
            health: Mutex::new(health),
            metrics: Arc::default(),
        })
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
        let name = body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let started = Instant::now();
        let routed = self.route(endpoint, body).await;
        let metrics = &self.metrics;
        match routed {
            Ok((Answer::Json(value), served)) => {
                if served.fell_back {
                    metrics.fallback(&name);
                }
                if let Some((prompt, completion)) = usage(&value) {
                    metrics.tokens(&name, prompt, completion);
                }
                metrics.call(&name, "ok", Some(started.elapsed()));
                Ok((Answer::Json(value), served))
            }
            Ok((Answer::Stream(pieces), served)) => {
                if served.fell_back {
                    metrics.fallback(&name);
                }
                metrics.first_token(&name, started.elapsed());
                Ok((
                    Answer::Stream(observed(pieces, self.metrics.clone(), name, started)),
                    served,
                ))
            }
            Err(GatewayError::ModelNotFound(model)) => Err(GatewayError::ModelNotFound(model)),
            Err(error) => {
                metrics.call(&name, error.label(), Some(started.elapsed()));
                Err(error)
            }
        }
    }

    async fn route(&self, endpoint: Endpoint, mut body: Map<String, Value>) -> Result<(Answer, Served), GatewayError> {
        let name = body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
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
        for (group_index, deployment_index) in self.plan(group) {
            let model = &self.config.models[group_index];
            let deployment = &model.deployments[deployment_index];
            let provider = &self.config.providers[deployment.provider];
            body.insert("model".into(), Value::String(deployment.model.clone()));
            let request = Value::Object(body.clone());
            for retry in 0..=model.retries {
                attempts += 1;
                let outcome = self.attempt(endpoint, provider, &request, model, streaming).await;
                self.metrics.attempt(
                    &provider.name,
                    match &outcome {
                        Ok(_) => "ok",
                        Err(failure) => failure.kind.label(),
                    },
                );
                match outcome {
                    Ok(answer) => {
                        self.mark(group_index, deployment_index, true);
                        return Ok((
                            answer,
                            Served {
                                deployment: format!("{}/{}", provider.name, deployment.model),
                                attempts,
                                upstream: started.elapsed(),
                                fell_back: group_index != group,
                            },
                        ));
                    }
                    Err(failure) => {
                        tracing::warn!(model = %name, provider = %provider.name, upstream_model = %deployment.model,
                            status = ?failure.status, message = %failure.message, "a gateway deployment failed");
                        if failure.kind == FailureKind::Caller {
                            return Err(GatewayError::Rejected(failure.message));
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
                                self.mark(group_index, deployment_index, false);
                            }
                            break;
                        }
                        self.mark(group_index, deployment_index, false);
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
            _ if rate_limited_only => GatewayError::RateLimited {
                model: name,
                retry_after: shortest_wait,
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

    /// Every (group, deployment) to try, in order: the model's deployments by weighted draw, then each
    /// fallback's; deployments resting after repeated failures go last within their group.
    fn plan(&self, group: usize) -> Vec<(usize, usize)> {
        let now = Instant::now();
        let health = self.health.lock().expect("gateway health");
        let mut plan = Vec::new();
        let mut rng = rand::rng();
        for group_index in std::iter::once(group).chain(self.config.models[group].fallbacks.iter().copied()) {
            let model: &ModelGroup = &self.config.models[group_index];
            let mut left: Vec<usize> = (0..model.deployments.len()).collect();
            let mut ordered = Vec::with_capacity(left.len());
            while !left.is_empty() {
                let total: u64 = left
                    .iter()
                    .map(|&index| u64::from(model.deployments[index].weight))
                    .sum();
                let mut draw = rng.random_range(0..total);
                let position = left
                    .iter()
                    .position(|&index| {
                        let weight = u64::from(model.deployments[index].weight);
                        if draw < weight {
                            return true;
                        }
                        draw -= weight;
                        false
                    })
                    .unwrap_or(0);
                ordered.push(left.remove(position));
            }
            let resting = |index: &usize| {
                health[group_index][*index]
                    .resting_until
                    .is_some_and(|until| until > now)
            };
            let (tired, fresh): (Vec<usize>, Vec<usize>) = ordered.into_iter().partition(resting);
            plan.extend(fresh.into_iter().chain(tired).map(|index| (group_index, index)));
        }
        plan
    }

    fn mark(&self, group: usize, deployment: usize, succeeded: bool) {
        let mut health = self.health.lock().expect("gateway health");
        let state = &mut health[group][deployment];
        if succeeded {
            *state = Health::default();
            return;
        }
        state.failures += 1;
        if state.failures >= self.config.cooldown.failures {
            state.resting_until = Some(Instant::now() + self.config.cooldown.duration);
            state.failures = 0;
        }
    }

    async fn attempt(
        &self,
        endpoint: Endpoint,
        provider: &crate::config::Provider,
        request: &Value,
        model: &ModelGroup,
        streaming: bool,
    ) -> Result<Answer, Failure> {
        let anthropic = provider.kind == ProviderKind::Anthropic;
        let response = if anthropic {
            if endpoint != Endpoint::ChatCompletions {
                return Err(Failure {
                    kind: FailureKind::Unusable,
                    status: None,
                    retry_after: None,
                    message: format!(
                        "{} speaks Anthropic's Messages API, which has no {}",
                        provider.name,
                        endpoint.path()
                    ),
                });
            }
            let translated = crate::anthropic::request_from_openai(request);
            self.upstream
                .post(provider, "/messages", &translated, model.timeout)
                .await?
        } else {
            self.upstream
                .post(provider, endpoint.path(), request, model.timeout)
                .await?
        };
        if !streaming {
            let answer = self.upstream.json(provider, response, model.timeout).await?;
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
                message: format!("{} did not stream its answer", provider.name),
            });
        }
        let include_usage = request
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            == Some(true);
        let mut events = Events {
            bytes: self.upstream.stream(provider, response),
            parser: SseParser::new(),
            pending: VecDeque::new(),
            timeout: model.timeout,
            provider: provider.name.clone(),
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
                message: format!("{} ended its stream before any event", provider.name),
            });
        };
        if let Some(message) = error_event(&first) {
            return Err(Failure {
                kind: FailureKind::Retryable,
                status: None,
                retry_after: None,
                message: format!("{} streamed an error first: {message}", provider.name),
            });
        }
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

/// The prompt and completion tokens an answer or chunk reports.
fn usage(value: &Value) -> Option<(u64, u64)> {
    let usage = value.get("usage").filter(|usage| usage.is_object())?;
    let count = |name: &str| usage.get(name).and_then(Value::as_u64).unwrap_or(0);
    Some((count("prompt_tokens"), count("completion_tokens")))
}

/// Records how a stream handed to a caller ends: finished (`[DONE]` passed), broken after it started (both
/// counted as the piece passes, before the caller has it), or dropped by the caller before either.
struct StreamEnd {
    metrics: Arc<GatewayMetrics>,
    model: String,
    started: Instant,
    recorded: bool,
}

impl StreamEnd {
    fn record(&mut self, outcome: &'static str) {
        if !self.recorded {
            self.recorded = true;
            self.metrics.call(&self.model, outcome, Some(self.started.elapsed()));
        }
    }
}

impl Drop for StreamEnd {
    fn drop(&mut self) {
        self.record("cancelled");
    }
}

fn observed(pieces: PieceStream, metrics: Arc<GatewayMetrics>, model: String, started: Instant) -> PieceStream {
    let mut end = StreamEnd {
        metrics,
        model,
        started,
        recorded: false,
    };
    Box::pin(pieces.inspect(move |piece| match piece {
        Piece::Data(data) if data.trim() == "[DONE]" => end.record("ok"),
        Piece::Data(data) if data.contains("\"usage\":{") => {
            if let Some((prompt, completion)) = serde_json::from_str::<Value>(data).ok().as_ref().and_then(usage) {
                end.metrics.tokens(&end.model, prompt, completion);
            }
        }
        Piece::Data(_) => {}
        Piece::Broken(_) => {
            end.metrics.broken(&end.model);
            end.record("broken");
        }
    }))
}

/// The message of a streamed `{"error": ...}` event.
fn error_event(data: &str) -> Option<String> {
    if !data.starts_with('{') || !data.contains("\"error\"") {
        return None;
    }
    let value: Value = serde_json::from_str(data).ok()?;
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
    /// `[DONE]` was seen: the stream ended as it should.
    finished: bool,
    /// Anthropic's events turned into chat chunks (for an `anthropic` provider).
    translate: Option<crate::anthropic::ToOpenaiStream>,
}

impl Events {
    /// The next event's data; `None` at the end of the stream (`finished` says whether it ended properly).
    async fn next_data(&mut self) -> Result<Option<String>, Failure> {
        loop {
            if let Some(data) = self.pending.pop_front() {
                if data.trim() == "[DONE]" {
                    self.finished = true;
                }
                return Ok(Some(data));
            }
            if self.finished {
                return Ok(None);
            }
            let piece = match tokio::time::timeout(self.timeout, self.bytes.next()).await {
                Err(_) => {
                    return Err(Failure {
                        kind: FailureKind::Retryable,
                        status: None,
                        retry_after: None,
                        message: format!("{} sent nothing for {:?}", self.provider, self.timeout),
                    });
                }
                Ok(None) => return Ok(None),
                Ok(Some(piece)) => piece?,
            };
            let events = self.parser.feed(&piece).map_err(|message| Failure {
                kind: FailureKind::Retryable,
                status: None,
                retry_after: None,
                message: format!("{}: {message}", self.provider),
            })?;
            match &mut self.translate {
                None => self.pending.extend(events.into_iter().map(|event| event.data)),
                Some(translate) => {
                    for event in events {
                        let Ok(data) = serde_json::from_str::<Value>(&event.data) else {
                            continue;
                        };
                        let chunks = translate.event(&data).map_err(|message| Failure {
                            kind: FailureKind::Retryable,
                            status: None,
                            retry_after: None,
                            message: format!("{} streamed an error: {message}", self.provider),
                        })?;
                        self.pending.extend(chunks);
                    }
                }
            }
        }
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
        assert_eq!(
            error_event(r#"{"error": {"message": "boom"}}"#).as_deref(),
            Some("boom")
        );
        assert_eq!(error_event(r#"{"error": null, "choices": []}"#), None);
        assert_eq!(
            error_event(r#"{"choices": [{"delta": {"content": "\"error\""}}]}"#),
            None
        );
        assert_eq!(error_event("[DONE]"), None);
    }

    #[test]
    fn deployments_are_drawn_by_weight_and_resting_ones_go_last() {
        let text = "providers: [{name: a, kind: openai, base_url: 'http://127.0.0.1:9/v1'}]\n\
            models:\n  - {name: m, deployments: [{provider: a, model: heavy, weight: 1000000}, {provider: a, model: light, weight: 1}], fallbacks: [f]}\n  - {name: f, deployments: [{provider: a, model: spare}]}\n\
            settings: {cooldown_failures: 1}\n";
        let gateway = Gateway::new(GatewayConfig::parse(text, &|_| None).unwrap()).unwrap();
        let firsts = (0..50).filter(|_| gateway.plan(0)[0] == (0, 0)).count();
        assert!(firsts >= 49, "{firsts}");
        assert_eq!(gateway.plan(0).len(), 3);
        assert_eq!(gateway.plan(0)[2], (1, 0));
        gateway.mark(0, 0, false);
        assert_eq!(gateway.plan(0)[..2], [(0, 1), (0, 0)]);
        gateway.mark(0, 0, true);
        assert_eq!(gateway.plan(0)[0], (0, 0));
    }
}
