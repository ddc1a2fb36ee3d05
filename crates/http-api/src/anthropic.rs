//! Anthropic's Messages API (`POST /v1/messages`) over the LLM gateway, so the `anthropic` SDK works with
//! `base_url` pointed here: the request is translated into a chat request, routed like any other (to OpenAI,
//! OpenAI-compatible or Anthropic providers), and the answer translated back, streamed as Anthropic's named
//! events. Errors take Anthropic's shape.

use crate::openai::checks;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::StreamExt;
use loopline_core::HasErrorCode;
use loopline_llm_gateway::anthropic::{ToAnthropicStream, request_to_openai, response_from_openai};
use loopline_llm_gateway::{Answer, Endpoint, GatewayError, Piece};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Instant;

/// True for the paths this module answers (their refusals take Anthropic's error shape).
pub fn is_anthropic_path(path: &str) -> bool {
    path == "/v1/messages"
}

/// The route, over the gateway.
pub fn routes(api: Arc<crate::openai::GatewayApi>) -> Router {
    Router::new().route("/v1/messages", post(messages)).with_state(api)
}

/// An error in Anthropic's shape.
pub fn error(status: StatusCode, message: &str) -> Response {
    let kind = match status.as_u16() {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        _ => "api_error",
    };
    let body = json!({"type": "error", "error": {"type": kind, "message": message}});
    (status, axum::Json(body)).into_response()
}

fn gateway_error(failure: GatewayError) -> Response {
    let status = crate::error::status_for(failure.error_code());
    let mut response = error(status, &failure.to_string());
    if let GatewayError::RateLimited { retry_after, .. } = &failure {
        let seconds = retry_after.map_or(1, |wait| wait.as_secs_f64().ceil() as u64).max(1);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

pub(crate) async fn messages(State(api): State<Arc<crate::openai::GatewayApi>>, request: Request) -> Response {
    let started = Instant::now();
    let mut options = crate::openai::call_options(&request);
    let principal = request.extensions().get::<loopline_access::Principal>().cloned();
    let own = crate::openai::guard::is_guardrail_call(&request);
    if !crate::openai::json_content(request.headers()) {
        return error(StatusCode::BAD_REQUEST, crate::openai::NOT_JSON);
    }
    let Some(_held) = crate::openai::reserve_body(crate::openai::declared_size(request.headers())) else {
        let mut busy = error(StatusCode::TOO_MANY_REQUESTS, crate::openai::BUSY);
        busy.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(1u32));
        return busy;
    };
    let bytes = match crate::extract::read_body_limited(request.into_body(), crate::openai::MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(failure) => return error(crate::error::status_for(failure.code), &failure.message),
    };
    let body: serde_json::Map<String, Value> = match serde_json::from_slice(&bytes) {
        Ok(Value::Object(body)) => body,
        Ok(_) => return error(StatusCode::BAD_REQUEST, "The body must be a JSON object."),
        Err(failure) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("The body is not valid JSON: {failure}"),
            );
        }
    };
    if let Some(field) = checks::routing_field(&body) {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("{field}: {}", checks::routing_message(field)),
        );
    }
    let chat = match request_to_openai(&body) {
        Ok(chat) => chat,
        Err(invalid) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("{}: {}", invalid.field, invalid.message),
            );
        }
    };
    // The translated request passes the same checks as a chat request (tool-call arguments included).
    if let Err(invalid) = checks::chat(&chat) {
        let message = match &invalid.param {
            Some(param) => format!("{param}: {}", invalid.message),
            None => invalid.message,
        };
        return error(invalid.status, &message);
    }
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let gateway = api.gateway_for(&model).await;
    let admitted = match crate::openai::limits::admit(
        &api,
        &gateway,
        principal.as_ref(),
        Endpoint::ChatCompletions,
        &chat,
    )
    .await
    {
        Ok(admitted) => admitted,
        Err(refused) => return refusal(refused),
    };
    options.settle = admitted.settle;
    // Then the endpoint's scorer guardrails judge the request in OpenAI's form (as it goes to the provider).
    let guards = crate::openai::guard::guards(&api, &model, own);
    let (chat, kept) = match crate::openai::guard::prepare(&api, &guards, &model, chat, true, checks::chat).await {
        Ok(prepared) => prepared,
        Err(refused) => return refusal(refused),
    };
    let mut answer = gateway.call_with(Endpoint::ChatCompletions, chat, &options).await;
    if let (Ok((Answer::Json(completion), _)), Some(request)) = (&mut answer, &kept) {
        match crate::openai::guard::after(&api, &guards, request, std::mem::take(completion)).await {
            Ok(judged) => *completion = judged,
            Err(refused) => return refusal(refused),
        }
    }
    let mut response = match answer {
        Ok((Answer::Json(completion), served)) => crate::openai::with_served(
            axum::Json(response_from_openai(&completion, &model)).into_response(),
            &served,
            started,
        ),
        Ok((Answer::Stream(pieces), served)) => crate::openai::with_served(stream(pieces, &model), &served, started),
        Err(failure) => gateway_error(failure),
    };
    crate::openai::add_headers(&mut response, admitted.headers);
    response
}

/// A limit's refusal in Anthropic's shape.
fn refusal(refused: crate::openai::errors::OpenAiError) -> Response {
    let mut response = error(refused.status, &refused.message);
    if let Some(seconds) = refused.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

fn event(name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

fn stream(pieces: loopline_llm_gateway::gateway::PieceStream, model: &str) -> Response {
    let mut translate = ToAnthropicStream::new(model);
    let events = pieces.map(move |piece| {
        let mut out = Vec::new();
        match piece {
            Piece::Data(data) if data.trim() == "[DONE]" => {
                out.extend(translate.finish().iter().map(|(name, data)| event(name, data)));
            }
            Piece::Data(data) => {
                if let Ok(chunk) = serde_json::from_str::<Value>(&data) {
                    out.extend(translate.chunk(&chunk).iter().map(|(name, data)| event(name, data)));
                }
            }
            Piece::Broken(message) => {
                tracing::warn!(%message, "a gateway stream broke after it started");
                out.push(event(
                    "error",
                    &json!({"type": "error", "error": {"type": "api_error", "message": message}}),
                ));
            }
            Piece::Blocked(message) => out.push(event(
                "error",
                &json!({"type": "error", "error": {"type": "invalid_request_error", "message": message}}),
            )),
        }
        futures::stream::iter(out.into_iter().map(Ok::<_, std::convert::Infallible>))
    });
    let mut response = Response::new(Body::from_stream(events.flatten()));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
