//! The gateway in front of a hostile provider (raw HTTP answers written by the test): a key echoed behind JSON
//! escapes or inside streamed errors never reaches the caller, keep-alives do not hold a stream open past its
//! timeout, nothing after `[DONE]` is passed on, absurd token counts and waits are survived, and a missing
//! endpoint does not rest a deployment.

use loopline_test_support::TestServer;
use loopline_test_support::fake_llm::FakeLlm;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KEY: &str = "sk-live/SECRET+abc";

/// A provider answering every request with the next of `answers` (the last one repeats): raw HTTP/1.1
/// responses; a response ending in "HOLD" keeps the connection open after writing the rest.
async fn hostile(answers: Vec<String>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let answers = Arc::new(Mutex::new(answers));
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let answers = answers.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 8192];
                // Headers, then the body its Content-Length names.
                loop {
                    let Ok(read) = socket.read(&mut buffer).await else {
                        return;
                    };
                    if read == 0 {
                        return;
                    }
                    request.extend_from_slice(&buffer[..read]);
                    let text = String::from_utf8_lossy(&request).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|line| {
                                line.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                let answer = {
                    let mut answers = answers.lock().unwrap();
                    if answers.len() > 1 {
                        answers.remove(0)
                    } else {
                        answers[0].clone()
                    }
                };
                let hold = answer.ends_with("HOLD");
                let _ = socket.write_all(answer.trim_end_matches("HOLD").as_bytes()).await;
                if hold {
                    // Keep-alive comments every 200 ms, never an event.
                    loop {
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                        if socket.write_all(b": keepalive\n\n").await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    format!("http://{address}/v1")
}

fn json_answer(status: u16, body: &str) -> String {
    format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn stream_answer(events: &[&str]) -> String {
    let mut body = String::new();
    for event in events {
        body.push_str(event);
        body.push_str("\n\n");
    }
    format!("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n{body}")
}

async fn server_with(providers_and_models: &str, files: &tempfile::TempDir) -> TestServer {
    let key_file = files.path().join("key");
    std::fs::write(&key_file, KEY).unwrap();
    let config = providers_and_models.replace("KEYFILE", &key_file.display().to_string());
    TestServer::start_gateway(files.path(), &config).await.unwrap()
}

async fn post(server: &TestServer, path: &str, body: &Value) -> (u16, reqwest::header::HeaderMap, String) {
    let response = reqwest::Client::new()
        .post(server.url(path))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

fn chat(stream: bool) -> Value {
    json!({"model": "m", "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn a_key_behind_json_escapes_or_in_streamed_errors_never_reaches_the_caller() {
    let escaped = r#"{"error": {"message": "Incorrect API key provided: sk-live\/SECRET+abc"}}"#;
    let unicode = r#"{"error": {"message": "bad key \u0073k-live/SECRET+abc"}}"#;
    let answers = vec![
        json_answer(400, escaped),
        json_answer(401, unicode),
        stream_answer(&[r#"data: {"error": {"message": "streamed sk-live\/SECRET+abc"}}"#]),
        stream_answer(&[
            r#"data: {"choices": [{"index": 0, "delta": {"content": "a"}}]}"#,
            r#"data: {"error": {"message": "mid-stream sk-live/SECRET+abc"}}"#,
        ]),
        json_answer(
            200,
            r#"{"choices": [{"index": 0, "message": {"role": "assistant", "content": "yours: sk-live\/SECRET+abc"}}], "meta": {"sk-live/SECRET+abc": 1}}"#,
        ),
        // Cut at 500 characters only after scrubbing: no prefix of the key survives.
        json_answer(
            500,
            &format!(r#"{{"error": {{"message": "{}sk-live/SECRET+abc"}}}}"#, "x".repeat(480)),
        ),
        // Not JSON: nothing of it is passed on (escapes could hide the key).
        json_answer(
            400,
            r#"{"error": {"message": "bad key \u0073k-live/SECRET+abc"}} trailing"#,
        ),
        // A success status around an error body is a failure.
        json_answer(200, r#"{"error": {"message": "quota exceeded"}}"#),
    ];
    let files = tempfile::tempdir().unwrap();
    let base = hostile(answers).await;
    let server = server_with(
        &format!("providers: [{{name: h, kind: openai, base_url: '{base}', api_key_file: 'KEYFILE'}}]\nmodels: [{{name: m, deployments: [{{provider: h, model: x}}], retries: 0}}]\nsettings: {{cooldown_failures: 100}}\n"),
        &files,
    )
    .await;
    let mut texts = Vec::new();
    for stream in [false, false, true, true, false, false, false, false] {
        let (status, headers, text) = post(&server, "/v1/chat/completions", &chat(stream)).await;
        assert!(
            !text.contains("SEC") && !format!("{headers:?}").contains("SEC"),
            "{status}: {text}"
        );
        texts.push((status, text));
    }
    assert_eq!(texts[0].0, 400);
    assert!(texts[0].1.contains("[redacted]"), "{}", texts[0].1);
    assert_eq!(texts[1].0, 503);
    assert_eq!(
        texts[2].0, 503,
        "an error as the first event is a failure: {}",
        texts[2].1
    );
    // After the first event: the typed error event, scrubbed, and no [DONE].
    assert!(
        texts[3].1.contains("stream_interrupted") && texts[3].1.contains("[redacted]"),
        "{}",
        texts[3].1
    );
    assert!(!texts[3].1.contains("[DONE]"));
    assert!(
        texts[4].1.contains("yours: [redacted]") && texts[4].1.contains("\"[redacted]\":1"),
        "{}",
        texts[4].1
    );
    assert_eq!(texts[5].0, 503);
    assert_eq!(texts[6].0, 400);
    assert!(texts[6].1.contains("not a JSON error"), "{}", texts[6].1);
    assert_eq!(texts[7].0, 503, "{}", texts[7].1);
    assert!(texts[7].1.contains("quota exceeded"), "{}", texts[7].1);
}

#[tokio::test]
async fn keep_alives_do_not_hold_a_stream_and_nothing_after_done_passes() {
    let answers = vec![
        format!("{}HOLD", stream_answer(&[": hello"])),
        stream_answer(&[
            // One event over two data lines, then an end spelled with spaces.
            "data: {\"choices\": [{\"index\": 0,\ndata: \"delta\": {\"content\": \"ok\"}}]}",
            "data:  [DONE] ",
            r#"data: {"choices": [{"index": 0, "delta": {"content": "AFTER-DONE"}}]}"#,
        ]),
    ];
    let files = tempfile::tempdir().unwrap();
    let base = hostile(answers).await;
    let server = server_with(
        &format!("providers: [{{name: h, kind: openai-compatible, base_url: '{base}'}}]\nmodels: [{{name: m, deployments: [{{provider: h, model: x}}], retries: 1, timeout_seconds: 1}}]\nsettings: {{retry_backoff_ms: 0}}\n"),
        &files,
    )
    .await;
    // The first try only ever sends keep-alives: it is given up after the timeout and the retry answers.
    let (status, headers, text) = post(&server, "/v1/chat/completions", &chat(true)).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(headers["x-loopline-attempts"], "2");
    assert!(text.contains("\"ok\"") && text.ends_with("data: [DONE]\n\n"), "{text}");
    assert!(!text.contains("AFTER-DONE"), "{text}");
}

#[tokio::test]
async fn absurd_usage_and_waits_are_survived_and_a_missing_endpoint_rests_nothing() {
    let huge = r#"{"id": "msg_1", "type": "message", "model": "c", "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn", "usage": {"input_tokens": 18446744073709551615, "output_tokens": 1}}"#;
    let files = tempfile::tempdir().unwrap();
    let anthropic = hostile(vec![json_answer(200, huge)]).await;
    let limited = hostile(vec![format!(
        "HTTP/1.1 429 X\r\ncontent-type: application/json\r\nretry-after: 1e308\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}"
    )])
    .await;
    let fake = FakeLlm::start(None).await.unwrap();
    let server = server_with(
        &format!(
            "providers:\n  - {{name: a, kind: anthropic, base_url: '{anthropic}'}}\n  - {{name: l, kind: openai, base_url: '{limited}'}}\n  - {{name: f, kind: openai, base_url: '{}'}}\n\
             models:\n  - {{name: m, deployments: [{{provider: a, model: c}}]}}\n  - {{name: rl, deployments: [{{provider: l, model: x}}], retries: 0}}\n\
             \x20 - {{name: mixed, deployments: [{{provider: a, model: c, weight: 1000000}}, {{provider: f, model: g, weight: 1}}]}}\n\
             settings: {{cooldown_failures: 1, cooldown_seconds: 600}}\n",
            fake.base_url
        ),
        &files,
    )
    .await;
    let (status, _, text) = post(&server, "/v1/chat/completions", &chat(false)).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["usage"]["total_tokens"],
        u64::MAX
    );
    let (status, headers, text) = post(
        &server,
        "/v1/chat/completions",
        &json!({"model": "rl", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(status, 429, "{text}");
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(wait <= 60, "{wait}");
    // Completions cannot go to Anthropic: answered by the other deployment, with no mark against Anthropic.
    for _ in 0..3 {
        let (status, _, text) = post(&server, "/v1/completions", &json!({"model": "mixed", "prompt": "x"})).await;
        assert_eq!(status, 200, "{text}");
    }
    let (status, headers, text) = post(
        &server,
        "/v1/chat/completions",
        &json!({"model": "mixed", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(headers["x-loopline-deployment"], "a/c");
}
