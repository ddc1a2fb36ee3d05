//! Two gateway replicas sharing their cached answers through Redis (`--redis-url`): what one kept, the other
//! answers without asking the provider, by exact request and by meaning; a Redis that goes away makes
//! misses, never failed calls, and one that cannot be reached at start stops the server with a clear error.

use super::gateway::post;
use loopline_test_support::TestServer;
use loopline_test_support::fake_llm::FakeLlm;
use serde_json::json;

async fn replica(files: &std::path::Path, config: &str, redis_url: &str) -> TestServer {
    let path = files.join("gateway.yaml");
    std::fs::write(&path, config).unwrap();
    let mut server_config = TestServer::config_in(&files.join("data"));
    server_config.gateway.config = Some(path);
    server_config.gateway.redis_url = Some(redis_url.to_string());
    TestServer::start_with_config(server_config.with_defaults())
        .await
        .unwrap()
}

#[tokio::test]
async fn replicas_answer_what_another_kept_by_exact_request_and_by_meaning() {
    let Ok(redis_url) = std::env::var("LOOPLINE_TEST_REDIS_URL") else {
        eprintln!("LOOPLINE_TEST_REDIS_URL is not set: the shared-cache test did not run (scripts/test.sh sets it)");
        return;
    };
    let fake = FakeLlm::start(None).await.unwrap();
    let config = format!(
        "providers: [{{name: p, kind: openai-compatible, base_url: '{}'}}]\n\
         models:\n\
         \x20 - {{name: chat, deployments: [{{provider: p, model: m}}], cache_ttl_seconds: 600}}\n\
         \x20 - {{name: similar, deployments: [{{provider: p, model: s}}], cache_ttl_seconds: 600,\n\
         \x20    semantic_cache: {{embedding_model: embed, threshold: 0.95}}}}\n\
         \x20 - {{name: embed, deployments: [{{provider: p, model: words}}]}}\n",
        fake.base_url
    );
    let (first_files, second_files) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = replica(first_files.path(), &config, &redis_url).await;
    let second = replica(second_files.path(), &config, &redis_url).await;
    let chats = |model: &str| fake.calls().iter().filter(|call| call.model == model).count();
    // A question no test asked before (the Redis outlives test runs).
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let ask = |model: &str, text: &str| json!({"model": model, "messages": [{"role": "user", "content": text}]});
    let question = format!("What is the capital of France? ({nonce})");
    let asked = post(&first, "/v1/chat/completions", &ask("chat", &question)).await;
    assert_eq!(asked.header("x-loopline-cache"), Some("miss"), "{}", asked.text);
    let shared = post(&second, "/v1/chat/completions", &ask("chat", &question)).await;
    assert_eq!(shared.status, 200, "{}", shared.text);
    assert_eq!(
        shared.header("x-loopline-cache"),
        Some("hit"),
        "the other replica kept it"
    );
    assert_eq!(shared.json()["choices"], asked.json()["choices"]);
    assert_eq!(chats("m"), 1, "the provider was asked once");
    // By meaning: the same words cased otherwise, asked of the other replica.
    let meant = format!("Name the largest ocean ({nonce})");
    let first_ask = post(&first, "/v1/chat/completions", &ask("similar", &meant)).await;
    assert_eq!(first_ask.header("x-loopline-cache"), Some("miss"));
    let again = post(&second, "/v1/chat/completions", &ask("similar", &meant.to_uppercase())).await;
    assert_eq!(again.header("x-loopline-cache"), Some("hit"), "{}", again.text);
    assert_eq!(again.header("x-loopline-cache-similarity"), Some("1.0000"));
    assert_eq!(again.json()["choices"], first_ask.json()["choices"]);
    assert_eq!(chats("s"), 1);
    // Another question is asked of the provider by either replica.
    let other = post(
        &second,
        "/v1/chat/completions",
        &ask("chat", &format!("Another ({nonce})")),
    )
    .await;
    assert_eq!(other.header("x-loopline-cache"), Some("miss"));
    assert_eq!(chats("m"), 2);
}

/// `redis-server` on loopback at `port`, keeping nothing on disk.
fn redis_server(port: &str) -> std::io::Result<std::process::Child> {
    std::process::Command::new("redis-server")
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            port,
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
}

/// A Redis of the test's own (it is stopped halfway), when `redis-server` is installed.
async fn own_redis() -> Option<(std::process::Child, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = redis_server(&port.to_string()).ok()?;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Some((child, format!("redis://127.0.0.1:{port}/0")));
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    None
}

#[tokio::test]
async fn a_redis_that_goes_away_makes_misses_not_failures_and_a_wrong_one_stops_the_start() {
    let fake = FakeLlm::start(None).await.unwrap();
    let config = format!(
        "providers: [{{name: p, kind: openai-compatible, base_url: '{}'}}]\n\
         models: [{{name: chat, deployments: [{{provider: p, model: m}}], cache_ttl_seconds: 600}}]\n",
        fake.base_url
    );
    let files = tempfile::tempdir().unwrap();
    // Nothing listens on port 1: the server does not start, and says where it looked but not the password.
    let mut refused = TestServer::config_in(&files.path().join("data"));
    std::fs::write(files.path().join("gateway.yaml"), &config).unwrap();
    refused.gateway.config = Some(files.path().join("gateway.yaml"));
    refused.gateway.redis_url = Some("redis://:hunter2secret@127.0.0.1:1/0".into());
    let error = format!("{:#}", refused.gateway.gateway().await.err().expect("no Redis there"));
    assert!(
        error.contains("--redis-url") && error.contains("127.0.0.1:1"),
        "{error}"
    );
    assert!(!error.contains("hunter2secret"), "{error}");
    assert!(TestServer::start_with_config(refused.with_defaults()).await.is_err());
    let Some((mut redis, url)) = own_redis().await else {
        eprintln!("redis-server is not installed: the Redis-goes-away test did not run (scripts/test.sh installs it)");
        return;
    };
    let server = replica(files.path(), &config, &url).await;
    let ask = |text: &str| json!({"model": "chat", "messages": [{"role": "user", "content": text}]});
    assert_eq!(
        post(&server, "/v1/chat/completions", &ask("kept"))
            .await
            .header("x-loopline-cache"),
        Some("miss")
    );
    redis.kill().unwrap();
    redis.wait().unwrap();
    // What this replica kept itself is still answered from its memory; a new question goes to the provider.
    let kept = post(&server, "/v1/chat/completions", &ask("kept")).await;
    assert_eq!((kept.status, kept.header("x-loopline-cache")), (200, Some("hit")));
    let fresh = post(&server, "/v1/chat/completions", &ask("new question")).await;
    assert_eq!(fresh.status, 200, "{}", fresh.text);
    assert_eq!(fresh.header("x-loopline-cache"), Some("miss"));
    assert_eq!(fake.calls().len(), 2);
    // Redis back on the same address: after its pause the gateway connects anew and keeps answers there
    // again (each call is a new question; waited for by what Redis holds, not by time).
    let port = url.trim_end_matches("/0").rsplit(':').next().unwrap().to_string();
    let mut restarted = redis_server(&port).unwrap();
    let held = || {
        std::process::Command::new("redis-cli")
            .args(["-p", &port, "--scan", "--pattern", "loopline:gateway:exact:*"])
            .output()
            .map(|output| !output.stdout.is_empty())
            .unwrap_or(false)
    };
    let mut asked = 0;
    while !held() && asked < 200 {
        asked += 1;
        let answer = post(
            &server,
            "/v1/chat/completions",
            &ask(&format!("after the restart {asked}")),
        )
        .await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(held(), "answers are kept in Redis again after it came back");
    restarted.kill().unwrap();
    restarted.wait().unwrap();
}
