//! `loopline gateway` as an admin runs it against a real server with auth on: a key made, listed, changed and
//! revoked; a team's limits set; spend shown; and the key calling the gateway until its limit says no.

mod common;

use std::process::{Command, Output};

use common::start_server_with;

const ADMIN_PASSWORD: &str = "gateway admin password";

/// The server, stopped however the test ends.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cli(server: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loopline"))
        .arg("gateway")
        .args(args)
        .env("MLFLOW_TRACKING_URI", server)
        .env("MLFLOW_TRACKING_USERNAME", "admin")
        .env("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD)
        .env("NO_COLOR", "1")
        .output()
        .expect("the binary runs")
}

fn ok(server: &str, args: &[&str]) -> String {
    let output = cli(server, args);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "loopline gateway {args:?} failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn keys_are_made_listed_changed_and_revoked_from_the_command_line() {
    let temporary = tempfile::tempdir().unwrap();
    let gateway = temporary.path().join("gateway.yaml");
    // A provider nobody answers on: the limit refuses before any provider is asked.
    std::fs::write(
        &gateway,
        "providers: [{name: p, kind: openai-compatible, base_url: 'http://127.0.0.1:9/v1'}]\n\
         models: [{name: chat, deployments: [{provider: p, model: m}], retries: 0}]\n",
    )
    .unwrap();
    let (server, url) = start_server_with(
        &temporary.path().join("data"),
        &["--auth", "basic,token", "--gateway-config", gateway.to_str().unwrap()],
        &[("LOOPLINE_ADMIN_PASSWORD", ADMIN_PASSWORD)],
    );
    let server = Running(server);
    let key = ok(
        &url,
        &[
            "keys", "create", "--user", "admin", "--models", "chat", "--rpm", "1", "--team", "ml",
        ],
    );
    let key = key.trim().to_string();
    assert!(key.starts_with("llt_"), "{key}");
    let listed = ok(&url, &["keys", "list"]);
    let line = listed
        .lines()
        .find(|line| line.contains("admin"))
        .expect("the key is listed");
    assert!(line.contains(" ml ") && line.contains("chat"), "{listed}");
    let token_id = line.split_whitespace().next().unwrap().to_string();
    let changed = ok(
        &url,
        &["keys", "update", &token_id, "--rpm", "5", "--budget-usd", "2.5"],
    );
    assert!(changed.contains("2.50/month"), "{changed}");
    assert!(ok(&url, &["keys", "show", &token_id]).contains("\"rpm\": 5"));
    ok(&url, &["teams", "set", "ml", "--rpm", "1"]);
    assert!(ok(&url, &["teams", "list"]).contains("\"rpm\":1"));
    // The team allows one request a minute: the first call is tried (no provider answers), the second refused.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let call = || {
        runtime.block_on(async {
            reqwest::Client::new()
                .post(format!("{url}/v1/chat/completions"))
                .bearer_auth(&key)
                .json(&serde_json::json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    assert_eq!(call(), 503);
    assert_eq!(call(), 429);
    let spend = ok(&url, &["spend"]);
    assert!(
        spend.lines().all(|line| line.ends_with("$0.000000")),
        "nothing answered, nothing spent: {spend}"
    );
    ok(&url, &["keys", "revoke", &token_id]);
    assert_eq!(call(), 401);
    let refused = cli(&url, &["keys", "update", &token_id, "--clear", "everything"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--clear everything"));
    drop(server);
}
