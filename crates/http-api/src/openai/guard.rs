//! Running MLflow's scorer guardrails on the calls of a catalog endpoint. Each guardrail asks its judge (a
//! chat call of the judge's gateway endpoint, made through this same gateway) whether the request (BEFORE)
//! or the request and its answer (AFTER) pass its instructions; a verdict of "yes" (or true) passes. A
//! failing VALIDATION guardrail refuses the call (400, `Guardrail '<name>' blocked: <rationale>`); a failing
//! SANITIZATION guardrail has its action endpoint rewrite the payload and the call goes on with the rewritten
//! one. Guardrails run in their configured order, each on what the one before it passed on.
//!
//! The judge's and the sanitizer's calls are the gateway's own: made without the caller's identity (the
//! operator chose them, so a key limited to one model can still be guarded by another), counted against
//! budget policies like any call, and never guarded themselves (a judge endpoint guarded by its own judge
//! would call itself for ever). A guardrail that cannot run (its judge endpoint deleted, the judge failing or
//! answering something that is not a verdict) refuses the call: a check that silently does not happen is not
//! a check.

use super::GatewayApi;
use super::errors::OpenAiError;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use loopline_llm_gateway::catalog::guardrails::template_variables;
use loopline_llm_gateway::catalog::{GuardAction, Judge, ReadyGuard, Stage};
use loopline_llm_gateway::guardrails::Event;
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// Marks a call a guardrail makes (a judge's or a sanitizer's): guardrails do not run on it.
#[derive(Debug, Clone, Copy)]
pub struct GuardrailCall;

/// The largest answer read from a judge or a sanitizer.
const MAX_ANSWER: usize = 4 << 20;
/// The longest rationale quoted in a refusal.
const MAX_RATIONALE: usize = 500;

const JUDGE_SYSTEM: &str = "You judge whether an AI application's request or answer meets the criteria below. \
Read the criteria, then the data you are given, and decide.\n\nCriteria: ";

const SANITIZER: &str = "You rewrite a JSON payload so that it no longer has the problem described below. \
Replace what cannot be made acceptable (personal data, credentials, secrets) with [REDACTED]; rephrase what can \
(hostile tone, bias, needless specifics). Keep the payload's structure, fields and intent; add no fields. Answer \
with the rewritten JSON object only.\n\nProblem: ";

/// The guardrails of the catalog endpoint `model`, unless the call is a guardrail's own (`own`).
pub fn guards(api: &GatewayApi, model: &str, own: bool) -> Vec<ReadyGuard> {
    match &api.sync {
        Some(sync) if !own => sync.guards_for(model),
        _ => Vec::new(),
    }
}

/// Whether a request is a guardrail's own call.
pub fn is_guardrail_call(request: &Request) -> bool {
    request.extensions().get::<GuardrailCall>().is_some()
}

/// Whether a guardrail judges answers (AFTER).
fn judges_answers(guard: &ReadyGuard) -> bool {
    guard.stage == Stage::After
}

/// The refusal of a streamed call to an endpoint with AFTER guardrails, which judge whole answers.
fn refuse_stream(model: &str, guards: &[ReadyGuard]) -> Result<(), OpenAiError> {
    if guards.iter().any(judges_answers) {
        return Err(OpenAiError::invalid(
            "stream",
            format!(
                "Endpoint '{model}' has guardrails that judge whole answers (AFTER), which a stream would pass \
                 unchecked; call it without \"stream\": true"
            ),
        ));
    }
    Ok(())
}

/// What a request's own checks are (the same ones a caller's request passed).
pub type Checks = fn(&Map<String, Value>) -> Result<(), OpenAiError>;

/// The fields of a request that hold what it asks (the only ones a sanitizer's rewrite may change).
const REQUEST_CONTENT: [&str; 3] = ["messages", "prompt", "input"];

/// Runs a call's BEFORE guardrails (refusing a stream its AFTER guardrails would miss): the body to send on
/// and, when its answer is to be judged (`answers`), the request it answers.
pub async fn prepare(
    api: &Arc<GatewayApi>,
    guards: &[ReadyGuard],
    model: &str,
    body: Map<String, Value>,
    answers: bool,
    checks: Checks,
) -> Result<(Map<String, Value>, Option<Map<String, Value>>), OpenAiError> {
    if guards.is_empty() {
        return Ok((body, None));
    }
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        refuse_stream(model, guards)?;
    }
    let body = before(api, guards, model, body, checks).await?;
    let kept = (answers && guards.iter().any(judges_answers)).then(|| body.clone());
    Ok((body, kept))
}

/// Runs the BEFORE guardrails on a request body; answers the body to send on. A sanitizer's rewrite replaces
/// only what the request asks (its messages, prompt or input), never its model, stream, limits or anything
/// else, and must pass the request's own checks.
async fn before(
    api: &Arc<GatewayApi>,
    guards: &[ReadyGuard],
    model: &str,
    mut body: Map<String, Value>,
    checks: Checks,
) -> Result<Map<String, Value>, OpenAiError> {
    for guard in guards.iter().filter(|guard| guard.stage == Stage::Before) {
        let mut inputs = body.clone();
        inputs.remove("model");
        let Some(rewritten) = check(api, model, guard, &Value::Object(inputs), None).await? else {
            continue;
        };
        let field = REQUEST_CONTENT
            .into_iter()
            .find(|field| body.contains_key(*field))
            .unwrap_or("messages");
        let Some(content) = rewritten.get(field) else {
            return Err(blocked(
                guard,
                &format!("the sanitizer's rewritten request has no \"{field}\""),
            ));
        };
        body.insert(field.to_string(), content.clone());
        checks(&body).map_err(|invalid| {
            blocked(
                guard,
                &format!("the sanitizer's rewritten request is not valid: {}", invalid.message),
            )
        })?;
    }
    Ok(body)
}

/// Runs the AFTER guardrails on an answer to `request`; answers the answer to give. A sanitizer's rewrite
/// replaces only the answer's choices (what it says), which must still be a list.
pub async fn after(
    api: &Arc<GatewayApi>,
    guards: &[ReadyGuard],
    request: &Map<String, Value>,
    mut answer: Value,
) -> Result<Value, OpenAiError> {
    let mut inputs = request.clone();
    let model = inputs.remove("model");
    let name = model.as_ref().and_then(Value::as_str).unwrap_or_default();
    let inputs = Value::Object(inputs);
    for guard in guards.iter().filter(|guard| guard.stage == Stage::After) {
        let Some(rewritten) = check(api, name, guard, &inputs, Some(&answer)).await? else {
            continue;
        };
        match rewritten.get("choices") {
            Some(choices @ Value::Array(_)) if answer.is_object() => answer["choices"] = choices.clone(),
            _ => {
                return Err(blocked(
                    guard,
                    "the sanitizer's rewritten answer has no \"choices\" list",
                ));
            }
        }
    }
    Ok(answer)
}

fn blocked(guard: &ReadyGuard, why: &str) -> OpenAiError {
    OpenAiError {
        code: Some("guardrail_blocked"),
        ..OpenAiError::invalid("messages", format!("Guardrail '{}' blocked: {why}", guard.name))
    }
}

fn cannot_run(guard: &ReadyGuard, why: &str, status: StatusCode) -> OpenAiError {
    OpenAiError {
        status,
        message: format!(
            "Guardrail '{}' could not run, so the call was refused: {why}",
            guard.name
        ),
        kind: if status == StatusCode::TOO_MANY_REQUESTS {
            "rate_limit_error"
        } else {
            "api_error"
        },
        param: None,
        code: Some("guardrail_unavailable"),
        retry_after: (status == StatusCode::TOO_MANY_REQUESTS).then_some(1),
    }
}

/// One guardrail on one payload (the request's `inputs`, and for AFTER its answer): `None` when it passes,
/// the sanitizer's rewrite when a SANITIZATION guardrail fails, or a refusal.
async fn check(
    api: &Arc<GatewayApi>,
    model: &str,
    guard: &ReadyGuard,
    inputs: &Value,
    outputs: Option<&Value>,
) -> Result<Option<Value>, OpenAiError> {
    let (judge, endpoint) = guard
        .judge
        .as_ref()
        .map_err(|why| cannot_run(guard, why, StatusCode::BAD_GATEWAY))?;
    let request = judge_request(judge, endpoint, inputs, outputs);
    let answer = internal_chat(api, request)
        .await
        .map_err(|(status, why)| cannot_run(guard, &format!("its judge '{endpoint}' failed: {why}"), status))?;
    let verdict = verdict(&answer).map_err(|why| cannot_run(guard, &why, StatusCode::BAD_GATEWAY))?;
    let Err(rationale) = verdict else {
        return Ok(None);
    };
    let event = Event {
        guardrail: guard.name.clone(),
        stage: if guard.stage == Stage::Before {
            "input"
        } else {
            "output"
        },
        action: if guard.action == GuardAction::Validation {
            "blocked"
        } else {
            "redacted"
        },
        found: Default::default(),
    };
    api.live
        .current()
        .metrics()
        .guardrails(model, std::slice::from_ref(&event));
    match guard.action {
        GuardAction::Validation => Err(blocked(guard, &rationale)),
        GuardAction::Sanitization => sanitize(api, guard, &rationale, outputs.unwrap_or(inputs))
            .await
            .map(Some),
    }
}

/// The judge's chat request: the criteria, then each template variable the instructions use that has a
/// value, as JSON; the verdict asked as `{"result", "rationale"}`.
fn judge_request(judge: &Judge, endpoint: &str, inputs: &Value, outputs: Option<&Value>) -> Map<String, Value> {
    let mut data = Vec::new();
    for name in template_variables(&judge.instructions) {
        let value = match name.as_str() {
            "inputs" => Some(inputs),
            "outputs" => outputs,
            _ => None,
        };
        if let Some(value) = value {
            data.push(format!("{name}: {value}"));
        }
    }
    if data.is_empty() {
        // Instructions without placeholders still judge the call: give them what there is.
        data.push(format!("inputs: {inputs}"));
        if let Some(outputs) = outputs {
            data.push(format!("outputs: {outputs}"));
        }
    }
    let system = format!(
        "{JUDGE_SYSTEM}{}\n\nAnswer with a JSON object (no markdown) with two fields: \"result\" ({}), your \
         verdict, and \"rationale\" (str), why.",
        judge.instructions, judge.value_type
    );
    let result_type = match judge.value_type {
        "bool" => "boolean",
        "int" => "integer",
        "float" => "number",
        _ => "string",
    };
    let mut request = judge.inference_params.clone();
    request.insert("model".into(), json!(endpoint));
    request.insert(
        "messages".into(),
        json!([{"role": "system", "content": system}, {"role": "user", "content": data.join("\n")}]),
    );
    request.insert(
        "response_format".into(),
        json!({"type": "json_schema", "json_schema": {"name": "verdict", "strict": true, "schema": {
            "type": "object", "additionalProperties": false, "required": ["result", "rationale"],
            "properties": {"result": {"type": result_type}, "rationale": {"type": "string"}}}}}),
    );
    request
}

/// The text of a chat answer's first choice.
fn content(answer: &Value) -> Option<&str> {
    answer.pointer("/choices/0/message/content").and_then(Value::as_str)
}

/// A judge's verdict (`result` "yes" or `true`, also as text, passes): `Ok(())` passes, `Err(rationale)` fails; the outer error says why it is no verdict.
fn verdict(answer: &Value) -> Result<Result<(), String>, String> {
    let text = content(answer).ok_or("the judge's answer has no text")?;
    let parsed: Value = serde_json::from_str(strip_fences(text)).map_err(|_| {
        let shown: String = text.chars().take(200).collect();
        format!("the judge's answer is not a JSON verdict: {shown}")
    })?;
    let result = parsed.get("result").ok_or("the judge's verdict has no \"result\"")?;
    let passed = match result {
        Value::Bool(passed) => *passed,
        Value::String(text) => ["yes", "true"]
            .iter()
            .any(|word| text.trim().eq_ignore_ascii_case(word)),
        other => return Err(format!("the judge's result {other} is neither yes/no nor true/false")),
    };
    if passed {
        return Ok(Ok(()));
    }
    let rationale = parsed
        .get("rationale")
        .and_then(Value::as_str)
        .filter(|text| !text.trim().is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| match result {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        });
    Ok(Err(rationale.chars().take(MAX_RATIONALE).collect()))
}

/// Text inside a Markdown code fence, or the text itself.
fn strip_fences(text: &str) -> &str {
    let trimmed = text.trim();
    let Some(inner) = trimmed.strip_prefix("```") else {
        return trimmed;
    };
    let inner = inner.split_once('\n').map_or("", |(_, rest)| rest);
    inner.trim_end().strip_suffix("```").unwrap_or(inner).trim()
}

/// Has the action endpoint rewrite `payload`; the rewritten JSON object.
async fn sanitize(
    api: &Arc<GatewayApi>,
    guard: &ReadyGuard,
    rationale: &str,
    payload: &Value,
) -> Result<Value, OpenAiError> {
    let Some(endpoint) = &guard.action_endpoint else {
        return Err(blocked(
            guard,
            &format!("{rationale} (sanitization needs an action endpoint, and this guardrail has none)"),
        ));
    };
    // Compact JSON: indenting a deeply nested payload would multiply its size.
    let shown = payload.to_string();
    let mut request = Map::new();
    request.insert("model".into(), json!(endpoint));
    request.insert(
        "messages".into(),
        json!([{"role": "user", "content": format!("{SANITIZER}{rationale}\n\nPayload:\n{shown}")}]),
    );
    request.insert("response_format".into(), json!({"type": "json_object"}));
    let answer = internal_chat(api, request)
        .await
        .map_err(|(_, why)| blocked(guard, &format!("Sanitization request failed: {why}")))?;
    let text = content(&answer).ok_or_else(|| {
        blocked(
            guard,
            "Sanitization LLM response is missing 'choices[0].message.content'.",
        )
    })?;
    match serde_json::from_str::<Value>(strip_fences(text)) {
        Ok(rewritten @ Value::Object(_)) => Ok(rewritten),
        _ => Err(blocked(guard, "Sanitization LLM returned invalid JSON.")),
    }
}

/// A chat call through this gateway as the gateway's own (no caller identity, no guardrails); its JSON answer,
/// or the status and message of its failure.
async fn internal_chat(api: &Arc<GatewayApi>, body: Map<String, Value>) -> Result<Value, (StatusCode, String)> {
    let text = Value::Object(body).to_string();
    let mut request = Request::new(Body::from(text.clone()));
    *request.method_mut() = axum::http::Method::POST;
    let headers = request.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CONTENT_LENGTH, header::HeaderValue::from(text.len()));
    request.extensions_mut().insert(GuardrailCall);
    let response = Box::pin(super::chat(State(api.clone()), request)).await;
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), MAX_ANSWER)
        .await
        .map_err(|_| (StatusCode::BAD_GATEWAY, "its answer was too large".to_string()))?;
    let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if !status.is_success() {
        let message = value
            .pointer("/error/message")
            .and_then(Value::as_str)
            .map_or_else(|| format!("HTTP {status}"), str::to_string);
        let status = if status == StatusCode::TOO_MANY_REQUESTS {
            status
        } else {
            StatusCode::BAD_GATEWAY
        };
        return Err((status, message));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(text: &str) -> Value {
        json!({"choices": [{"message": {"role": "assistant", "content": text}}]})
    }

    #[test]
    fn verdicts_pass_on_yes_or_true_only() {
        assert_eq!(
            verdict(&answer(r#"{"result": " Yes ", "rationale": "fine"}"#)).unwrap(),
            Ok(())
        );
        assert_eq!(verdict(&answer("```json\n{\"result\": true}\n```")).unwrap(), Ok(()));
        assert_eq!(
            verdict(&answer(r#"{"result": "no", "rationale": "contains a card number"}"#)).unwrap(),
            Err("contains a card number".into())
        );
        assert_eq!(verdict(&answer(r#"{"result": false}"#)).unwrap(), Err("false".into()));
        assert_eq!(verdict(&answer(r#"{"result": "True"}"#)).unwrap(), Ok(()));
        let long = format!(r#"{{"result": "no", "rationale": "{}"}}"#, "x".repeat(2_000));
        assert_eq!(verdict(&answer(&long)).unwrap().unwrap_err().len(), MAX_RATIONALE);
        for bad in ["yes", r#"{"rationale": "x"}"#, r#"{"result": 3}"#] {
            assert!(verdict(&answer(bad)).is_err(), "{bad}");
        }
        assert!(verdict(&json!({"choices": []})).is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_judge_answer_is_read_without_harm(text in "\\PC{0,200}", fenced in proptest::prelude::any::<bool>()) {
            let text = if fenced { format!("```json\n{text}\n```") } else { text };
            let _ = verdict(&answer(&text));
            let _ = strip_fences(&text);
        }
    }

    #[test]
    fn the_judge_is_given_the_variables_its_instructions_use() {
        let judge = Judge {
            instructions: "Is {{ outputs }} a safe answer to {{ inputs }}?".into(),
            endpoint: "e-1".into(),
            value_type: "str",
            inference_params: json!({"temperature": 0}).as_object().unwrap().clone(),
        };
        let request = judge_request(&judge, "judge", &json!({"messages": []}), Some(&json!({"id": "x"})));
        assert_eq!(request["model"], "judge");
        let schema = "/response_format/json_schema/schema/properties/result/type";
        assert_eq!(Value::Object(request.clone()).pointer(schema), Some(&json!("string")));
        let boolean = Judge {
            value_type: "bool",
            ..judge.clone()
        };
        let asked = Value::Object(judge_request(&boolean, "judge", &json!({}), None));
        assert_eq!(asked.pointer(schema), Some(&json!("boolean")));
        assert_eq!(request["temperature"], 0);
        let user = request["messages"][1]["content"].as_str().unwrap();
        assert_eq!(user, "outputs: {\"id\":\"x\"}\ninputs: {\"messages\":[]}");
        assert!(
            request["messages"][0]["content"]
                .as_str()
                .unwrap()
                .contains("Is {{ outputs }} a safe answer")
        );
    }
}
