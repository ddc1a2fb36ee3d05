//! One call through the gateway, with everything around the routing: input guardrails (which may redact the
//! request or refuse it), the exact cache, output guardrails on the answer or the stream, and the record of
//! the call (metrics and the observer's trace).

use crate::answers::ToKeep;
use crate::cache::Kept;
use crate::gateway::{Answer, CallOptions, Endpoint, Gateway, GatewayError, Piece, PieceStream, Served};
use crate::guardrails::stream::{EventSink, guarded};
use crate::observe::{CallRecord, Followers, Keeping, answer_chars, count, kept_answer, kept_request, observed, usage};
use serde_json::{Map, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

impl Gateway {
    /// [`Gateway::call`], with the caller's cache scope and `Cache-Control`.
    pub async fn call_with(
        &self,
        endpoint: Endpoint,
        mut body: Map<String, Value>,
        options: &CallOptions,
    ) -> Result<(Answer, Served), GatewayError> {
        let name = crate::gateway::model_name(&body);
        let started = Instant::now();
        let Some(group_index) = self.config.model(&name) else {
            return Err(GatewayError::ModelNotFound(name));
        };
        let group = &self.config.models[group_index];
        let mut record = CallRecord {
            model: name.clone(),
            endpoint,
            deployment: None,
            attempts: 0,
            fell_back: false,
            started_at: std::time::SystemTime::now(),
            duration: Duration::ZERO,
            first_token: None,
            request: String::new(),
            response: None,
            outcome: "ok",
            error: None,
            tokens: None,
            cache_hit: false,
            guardrails: Vec::new(),
            cached_tokens: 0,
            price: None,
            answer_chars: 0,
            similarity: None,
            user: options.user.clone(),
            experiment_id: group.trace_experiment_id.clone(),
            embedding: None,
        };
        // Input guardrails first: the cache and the record see the request as the provider would.
        if !group.guards.is_empty() {
            let (checked, events, blocked) =
                crate::guardrails::checked_input(group.guards.clone(), endpoint, body).await;
            body = checked;
            record.guardrails = events;
            if let Some(blocked) = blocked {
                // The refused request is not kept: what it held is why it was refused.
                record.request = serde_json::json!({"model": name, "blocked_by": blocked.guardrail}).to_string();
                return Err(self.failed(record, started, GatewayError::Blocked(blocked), options));
            }
        }
        // The exact cache, when the model keeps answers and the caller allows it.
        let ttl = Some(group.cache_ttl).filter(|ttl| !ttl.is_zero() && !options.no_store);
        let cache_key = ttl.map(|_| crate::cache::key(endpoint.path(), &options.scope, &body));
        // A kept answer is given only in the form asked for (one from a shared store could be either).
        let streams = body.get("stream").and_then(Value::as_bool) == Some(true);
        if self.tracer(&record).is_some() {
            // The caller's request, kept as bounded text: a stream's record lives as long as it.
            record.request = kept_request(&body);
        }
        if let Some(key) = cache_key.filter(|_| !options.no_cache)
            && let Some((kept, deployment)) = self.exact_answer(&key, streams).await
        {
            return Ok(self.hit(record, started, (kept, deployment, None), group_index, options));
        }
        // The semantic cache: an answer to a request that means the same, as the embedding model judges it.
        let semantic = match (&group.semantic, ttl, endpoint) {
            (Some(settings), Some(_), Endpoint::ChatCompletions | Endpoint::Completions) => {
                crate::semantic::query(endpoint.path(), &options.scope, &body).map(|query| (settings, query))
            }
            _ => None,
        };
        let mut meaning = None;
        if let Some((settings, query)) = &semantic
            && let Some((vector, used)) = self.embed(&settings.embedding_model, &query.text).await
        {
            record.embedding = Some(used);
            if !options.no_cache
                && let Some(found) = self
                    .similar_answer(&query.partition, &vector, settings.threshold, streams)
                    .await
            {
                let (kept, deployment, similarity) = found;
                return Ok(self.hit(
                    record,
                    started,
                    (kept, deployment, Some(similarity)),
                    group_index,
                    options,
                ));
            }
            meaning = Some((query.partition, vector));
        }
        let routed = self.route(endpoint, &mut body).await;
        drop(body);
        let (answer, mut served) = match routed {
            Ok(routed) => routed,
            Err(error) => return Err(self.failed(record, started, error, options)),
        };
        record.deployment = Some(served.deployment.clone());
        record.attempts = served.attempts;
        record.fell_back = served.fell_back;
        record.price = served.price;
        record.guardrails.extend(std::mem::take(&mut served.guardrails));
        // The answering model's output guardrails hold too when a fallback answered.
        let guards = if served.group == group_index {
            group.guards.clone()
        } else {
            group.guards.with(&self.config.models[served.group].guards)
        };
        if served.fell_back {
            self.metrics.fallback(&name);
        }
        served.cache = cache_key.map(|_| "miss");
        match answer {
            Answer::Json(value) => {
                let (value, events, blocked) = if guards.output_free() {
                    (value, Vec::new(), None)
                } else {
                    crate::guardrails::checked_output(guards, value).await
                };
                record.guardrails.extend(events);
                if let Some((prompt, completion)) = usage(&value) {
                    self.metrics.tokens(&name, prompt, completion);
                }
                record.take_usage(&value);
                if let Some(blocked) = blocked {
                    return Err(self.failed(record, started, GatewayError::Blocked(blocked), options));
                }
                if let (Some(key), Some(ttl)) = (cache_key, ttl) {
                    let to = ToKeep {
                        key,
                        meaning,
                        deployment: served.deployment.clone(),
                        ttl,
                    };
                    if let Some(shared) = self.keeper().keep(to, Kept::Json(value.to_string().into())) {
                        shared.await;
                    }
                }
                served.cost = whole_cost(record.cost().map(|cost| cost.total()), &record);
                Ok((Answer::Json(self.answered(record, started, value, options)), served))
            }
            Answer::Stream(pieces) => {
                self.metrics.first_token(&name, started.elapsed());
                let sink = (!guards.output_free()).then(|| Arc::new(Mutex::new(Vec::new())));
                let pieces = match &sink {
                    Some(sink) => guarded(pieces, guards, sink.clone()),
                    None => pieces,
                };
                let keep = cache_key.zip(ttl).map(|(key, ttl)| Keeping {
                    keeper: self.keeper(),
                    to: ToKeep {
                        key,
                        meaning,
                        deployment: served.deployment.clone(),
                        ttl,
                    },
                    events: Vec::new(),
                    bytes: 0,
                });
                Ok((
                    Answer::Stream(self.streamed(record, started, pieces, keep, sink, options)),
                    served,
                ))
            }
        }
    }

    /// The answer kept under an exact key, in the form asked for: this replica's, else one the replicas share.
    async fn exact_answer(&self, key: &[u8; 32], streams: bool) -> Option<(Kept, String)> {
        let formed = |(kept, _): &(Kept, String)| matches!(kept, Kept::Stream(_)) == streams;
        if let Some(found) = self.cache.get(key).filter(formed) {
            return Some(found);
        }
        self.shared.as_ref()?.exact(key).await.filter(formed)
    }

    /// The closest answer by meaning, in the form asked for: this replica's, else one the replicas share.
    async fn similar_answer(
        &self,
        partition: &[u8; 32],
        vector: &[f32],
        threshold: f32,
        streams: bool,
    ) -> Option<(Kept, String, f32)> {
        let formed = |(kept, ..): &(Kept, String, f32)| matches!(kept, Kept::Stream(_)) == streams;
        if let Some(found) = self.semantic.get(partition, vector, threshold).filter(formed) {
            return Some(found);
        }
        self.shared
            .as_ref()?
            .similar(partition, vector, threshold)
            .await
            .filter(formed)
    }

    /// An answer from a cache: the exact one, or the semantic one (with the similarity it was found at).
    fn hit(
        &self,
        mut record: CallRecord,
        started: Instant,
        (kept, deployment, similarity): (Kept, String, Option<f32>),
        group: usize,
        options: &CallOptions,
    ) -> (Answer, Served) {
        record.deployment = Some(deployment.clone());
        record.cache_hit = true;
        record.similarity = similarity;
        let served = Served {
            deployment,
            attempts: 0,
            upstream: Duration::ZERO,
            fell_back: false,
            cache: Some("hit"),
            price: None,
            cost: whole_cost(None, &record),
            group,
            guardrails: Vec::new(),
            similarity,
        };
        match kept {
            Kept::Json(text) => {
                let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                (Answer::Json(self.answered(record, started, value, options)), served)
            }
            Kept::Stream(events) => {
                let replay: Vec<Piece> = events.iter().cloned().map(Piece::Data).collect();
                let replay: PieceStream = Box::pin(futures::stream::iter(replay));
                let pieces = self.streamed(record, started, replay, None, None, options);
                (Answer::Stream(pieces), served)
            }
        }
    }

    /// The unit embedding of `text` by the gateway model `model` and what it took (tokens, US dollars), or
    /// `None` when it cannot be had: the call goes on without the semantic cache.
    async fn embed(&self, model: &str, text: &str) -> Option<(std::sync::Arc<[f32]>, (u64, f64))> {
        let request = serde_json::json!({"model": model, "input": text});
        let request = request.as_object()?.clone();
        let embedded = Box::pin(self.call_with(Endpoint::Embeddings, request, &CallOptions::default())).await;
        match embedded {
            Ok((Answer::Json(answer), served)) => {
                let vector = crate::semantic::first_embedding(&answer).and_then(|v| crate::semantic::unit(&v))?;
                let tokens = ["prompt_tokens", "total_tokens"]
                    .iter()
                    .find_map(|field| answer.pointer(&format!("/usage/{field}")).and_then(Value::as_u64))
                    .unwrap_or(0);
                Some((vector, (tokens, served.cost.unwrap_or(0.0))))
            }
            Ok(_) => None,
            Err(error) => {
                tracing::warn!(%error, model, "embedding a request for the semantic cache failed; the call goes on without it");
                None
            }
        }
    }

    /// Who traces this call, if anyone does.
    fn tracer(&self, record: &CallRecord) -> Option<&Arc<dyn crate::observe::CallObserver>> {
        self.observer
            .get()
            .filter(|observer| observer.records(record.experiment_id.is_some()))
    }

    /// Records a whole answer's call and hands the answer back.
    fn answered(&self, mut record: CallRecord, started: Instant, value: Value, options: &CallOptions) -> Value {
        record.take_usage(&value);
        record.answer_chars = answer_chars(&value);
        record.duration = started.elapsed();
        count(&self.metrics, &record);
        if let Some(settle) = &options.settle {
            settle.observe(record.clone());
        }
        if let Some(observer) = self.tracer(&record) {
            record.response = Some(kept_answer(&value));
            observer.observe(record);
        }
        value
    }

    /// A stream, followed to its end for the record (and the cache when `keep`).
    fn streamed(
        &self,
        mut record: CallRecord,
        started: Instant,
        pieces: PieceStream,
        keep: Option<Keeping>,
        sink: Option<EventSink>,
        options: &CallOptions,
    ) -> PieceStream {
        record.first_token = Some(started.elapsed());
        let observer = self.tracer(&record).cloned();
        observed(
            pieces,
            self.metrics.clone(),
            record,
            started,
            Followers {
                observer,
                settle: options.settle.clone(),
                keep,
                sink,
            },
        )
    }

    /// Records a failed call and hands its error back.
    fn failed(
        &self,
        mut record: CallRecord,
        started: Instant,
        error: GatewayError,
        options: &CallOptions,
    ) -> GatewayError {
        record.duration = started.elapsed();
        record.outcome = error.label();
        count(&self.metrics, &record);
        if let Some(settle) = &options.settle {
            settle.observe(record.clone());
        }
        if let Some(observer) = self.tracer(&record) {
            record.error = Some(error.to_string());
            observer.observe(record);
        }
        error
    }
}

/// What a whole call cost the caller: the answer's cost and the semantic cache's embedding of the request.
fn whole_cost(answer: Option<f64>, record: &CallRecord) -> Option<f64> {
    let embedding = record.embedding.map(|(_, cost)| cost).filter(|cost| *cost > 0.0);
    match (answer, embedding) {
        (None, None) => None,
        (answer, embedding) => Some(answer.unwrap_or(0.0) + embedding.unwrap_or(0.0)),
    }
}
