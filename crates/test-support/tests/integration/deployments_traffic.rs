//! Deployments under traffic: observed shares match the weights (chi-squared on 10,000 requests), callers
//! stick to their version, shadow answers never reach callers, failing and slow challengers are rolled back
//! by the guardrails while callers keep getting answers, promotions and rollbacks under load fail no
//! request, a bandit learns from rewards, and a restarted server resumes a rollout from its stored state.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use loopline_server::config::{ServerConfig, ServingOptions};
use loopline_test_support::{TestServer, raw_request};
use serde_json::{Value, json};

use crate::deployments::{
    DEPLOYMENTS, add_version, alias_version, call, deployment, events, json_of, score, served_version, server,
    set_alias, until,
};
use crate::serving::{parquet_rows, strings};

const ROW: &str =
    r#"{"dataframe_split": {"columns": ["f0", "f1", "f2", "f3", "f4"], "data": [[0.1, 0.2, 0.3, 0.4, 0.5]]}}"#;

async fn create(server: &TestServer, body: Value) -> Value {
    let created = call(server, "POST", DEPLOYMENTS, &body).await;
    assert_eq!(created.status, 200, "{}", created.body_text());
    json_of(&created)["deployment"].clone()
}

/// Sends `count` requests (16 at a time) with the header `x-user: user-<i>`; returns the versions that answered.
async fn versions_for_users(server: &TestServer, name: &str, users: impl Iterator<Item = usize>) -> Vec<String> {
    let users: Vec<usize> = users.collect();
    let mut answered = Vec::with_capacity(users.len());
    for chunk in users.chunks(16) {
        let requests = chunk.iter().map(|user| {
            let header = format!("user-{user}");
            let path = format!("/deployments/{name}/invocations");
            async move {
                let response = raw_request(
                    server.address,
                    "POST",
                    &path,
                    &[("Content-Type", "application/json"), ("x-user", header.as_str())],
                    ROW.as_bytes(),
                )
                .await
                .unwrap();
                assert_eq!(response.status, 200, "{}", response.body_text());
                served_version(&response)
            }
        });
        answered.extend(futures::future::join_all(requests).await);
    }
    answered
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_shares_match_their_weights_and_callers_stick_to_their_version() {
    let server = server().await;
    for folder in ["a1", "a2"] {
        add_version(&server, "ab", folder, "xgb_booster", false).await;
    }
    create(
        &server,
        json!({"name": "ab", "model": "models:/ab/1", "sticky": {"header": "x-user"},
               "policy": {"type": "ab", "weights": {"1": 70, "2": 30}}}),
    )
    .await;
    until(&server, "ab", false, |d| d["rollout"]["phase"] == "running").await;
    let answered = versions_for_users(&server, "ab", 0..10_000).await;
    let observed = [
        answered.iter().filter(|v| *v == "1").count() as f64,
        answered.iter().filter(|v| *v == "2").count() as f64,
    ];
    assert_eq!(observed[0] + observed[1], 10_000.0);
    let test = loopline_drift_statistics::hypothesis_tests::chi_squared_goodness_of_fit(&observed, &[7_000.0, 3_000.0])
        .unwrap();
    assert!(test.p_value > 0.001, "observed {observed:?}, p = {}", test.p_value);
    // The same callers again land where they landed before.
    let again = versions_for_users(&server, "ab", 0..500).await;
    assert_eq!(again, answered[..500]);
    // Promoting the B arm ends the experiment: everyone gets version 2.
    let promoted = call(
        &server,
        "POST",
        &format!("{DEPLOYMENTS}/ab/promote"),
        &json!({"version": "2"}),
    )
    .await;
    assert_eq!(promoted.status, 200, "{}", promoted.body_text());
    assert!(versions_for_users(&server, "ab", 0..50).await.iter().all(|v| v == "2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_answers_are_compared_but_never_returned() {
    let server = server().await;
    let v1 = add_version(&server, "risk", "r1", "xgb_booster", false).await;
    set_alias(&server, "risk", "champion", &v1).await;
    create(
        &server,
        json!({"name": "risk", "model": "models:/risk@champion", "policy": {"type": "shadow", "mirror_percent": 100}}),
    )
    .await;
    let reference = score(&server, "risk").await.body_text();
    // Version 2 is a different model, so its answers differ from version 1's.
    let v2 = add_version(&server, "risk", "r2", "xgb_regressor", false).await;
    set_alias(&server, "risk", "champion", &v2).await;
    until(&server, "risk", false, |d| d["rollout"]["phase"] == "running").await;
    for _ in 0..40 {
        let answer = score(&server, "risk").await;
        assert_eq!(answer.status, 200);
        assert_eq!(served_version(&answer), "1");
        assert_eq!(
            answer.body_text(),
            reference,
            "the caller gets the stable version's answer"
        );
    }
    let watched = until(&server, "risk", false, |d| {
        d["current_step"]["shadow"]["mirrored"].as_u64() >= Some(40)
    })
    .await;
    let shadow = &watched["current_step"]["shadow"];
    assert_eq!(shadow["failures"], 0);
    assert!(shadow["agreement"].as_f64().unwrap() < 1.0, "{shadow}");
    assert_eq!(watched["shares"], json!({"1": 1.0}));
    let metrics = raw_request(server.address, "GET", "/metrics", &[], b"")
        .await
        .unwrap()
        .body_text();
    assert!(metrics.contains("loopline_deployment_shadow_requests_total{deployment=\"risk\",version=\"2\"}"));
    // The shadow's answers are logged next to the stable version's, under the same request ids.
    let flushed = call(&server, "POST", "/api/loopline/v1/predictions/flush", &json!({})).await;
    assert_eq!(flushed.status, 200, "{}", flushed.body_text());
    let logged = parquet_rows(&server.data_dir.join("artifacts/predictions/model=risk"));
    let roles = strings(&logged, "role");
    let versions = strings(&logged, "model_version");
    let ids = strings(&logged, "request_id");
    let shadow_ids: std::collections::HashSet<&String> = ids
        .iter()
        .zip(&roles)
        .filter(|(_, r)| *r == "shadow")
        .map(|(id, _)| id)
        .collect();
    assert_eq!(shadow_ids.len(), 40);
    assert!(roles.iter().zip(&versions).all(|(r, v)| (r == "shadow") == (v == "2")));
    assert!(
        shadow_ids
            .iter()
            .all(|id| ids.iter().zip(&roles).any(|(i, r)| i == *id && r == "served"))
    );
}

/// Writes a pyfunc model whose predictions fail (`fail`) or take 300 ms (`slow`), served by the Python
/// worker, and registers it as the next version of `name`.
async fn add_python_version(server: &TestServer, name: &str, folder: &str, mode: &str) -> String {
    let files = [
        (
            "MLmodel",
            "flavors:\n  python_function:\n    loader_module: loopline_behaviour\n    code: code\n    data: mode.txt\n    python_version: 3.11.7\nmlflow_version: 3.17.2\n".to_string(),
        ),
        ("mode.txt", mode.to_string()),
        (
            "code/loopline_behaviour.py",
            "import time\n\nclass _Model:\n    def __init__(self, mode):\n        self.mode = mode\n\n    def predict(self, model_input, params=None):\n        if self.mode == 'fail':\n            raise RuntimeError('this version always fails')\n        time.sleep(0.3)\n        return model_input.iloc[:, 0] * 2\n\n\ndef _load_pyfunc(path):\n    with open(path) as f:\n        return _Model(f.read().strip())\n".to_string(),
        ),
    ];
    for (file, text) in files {
        let path = format!("/api/2.0/mlflow-artifacts/artifacts/deploy/{folder}/{file}");
        let response = raw_request(server.address, "PUT", &path, &[], text.as_bytes())
            .await
            .unwrap();
        assert_eq!(response.status, 200, "{}", response.body_text());
    }
    let version = call(
        server,
        "POST",
        "/api/2.0/mlflow/model-versions/create",
        &json!({"name": name, "source": format!("mlflow-artifacts:/deploy/{folder}")}),
    )
    .await;
    assert_eq!(version.status, 200, "{}", version.body_text());
    json_of(&version)["model_version"]["version"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_and_slow_challengers_are_rolled_back_while_callers_keep_their_answers() {
    let server = server().await;
    let v1 = add_version(&server, "guarded", "g1", "xgb_booster", false).await;
    set_alias(&server, "guarded", "champion", &v1).await;
    create(
        &server,
        json!({"name": "guarded", "model": "models:/guarded@champion",
               "policy": {"type": "canary", "steps": [50, 100], "min_dwell_seconds": 0, "min_requests": 100000},
               "guardrails": {"min_requests": 10, "max_error_rate": 0.05, "max_p99_ms": 150}}),
    )
    .await;
    for (mode, guardrail, rollbacks) in [("fail", "max_error_rate", 1), ("slow", "max_p99_ms", 2)] {
        let bad = add_python_version(&server, "guarded", &format!("g-{mode}"), mode).await;
        set_alias(&server, "guarded", "champion", &bad).await;
        until(&server, "guarded", false, |d| {
            d["rollout"]["phase"] == "running" || d["rollbacks"] == rollbacks
        })
        .await;
        // Every caller is answered (a failed candidate request is retried on the stable version) until the
        // guardrail trips within this first step.
        let after = until(&server, "guarded", true, |d| d["rollbacks"] == rollbacks).await;
        assert_eq!(after["stable_version"], "1");
        assert!(after["rollout"].is_null());
        assert_eq!(alias_version(&server, "guarded", "champion").await, "1");
        let trail = events(&server, "guarded").await;
        let breach = trail
            .iter()
            .rev()
            .find(|e| e["kind"] == "guardrail_breach")
            .unwrap_or_else(|| panic!("no breach recorded: {trail:#?}"));
        assert_eq!(breach["details"]["guardrail"], guardrail, "{breach}");
        assert_eq!(breach["details"]["version"], bad.as_str());
        let rollback = trail.iter().rev().find(|e| e["kind"] == "rolled_back").unwrap();
        assert_eq!(rollback["actor"], "controller");
        assert_eq!(served_version(&score(&server, "guarded").await), "1");
    }
    let metrics = raw_request(server.address, "GET", "/metrics", &[], b"")
        .await
        .unwrap()
        .body_text();
    assert!(
        metrics.contains("loopline_deployment_rollbacks_total{deployment=\"guarded\"} 2"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotions_and_rollbacks_under_load_fail_no_request() {
    let server = Arc::new(server().await);
    for folder in ["l1", "l2"] {
        add_version(&server, "steady", folder, "xgb_booster", false).await;
    }
    set_alias(&server, "steady", "champion", "1").await;
    create(
        &server,
        json!({"name": "steady", "model": "models:/steady@champion",
               "policy": {"type": "blue_green", "min_dwell_seconds": 3600, "min_requests": 1000000, "keep_old_seconds": 600}}),
    )
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (server, stop, answered) = (server.clone(), stop.clone(), answered.clone());
        clients.push(tokio::spawn(async move {
            let mut seen: HashMap<String, u64> = HashMap::new();
            while !stop.load(Ordering::Relaxed) {
                let response = score(&server, "steady").await;
                assert_eq!(response.status, 200, "a request failed: {}", response.body_text());
                *seen.entry(served_version(&response)).or_default() += 1;
                answered.fetch_add(1, Ordering::Relaxed);
            }
            seen
        }));
    }
    for round in 0..3 {
        set_alias(&server, "steady", "champion", "2").await;
        let switched = until(&server, "steady", false, |d| d["rollout"]["phase"] == "running").await;
        // Blue-green: once warm, the new version takes everything at once; the old one stays loaded.
        assert_eq!(switched["shares"], json!({"1": 0.0, "2": 1.0}), "round {round}");
        let promoted = call(&server, "POST", &format!("{DEPLOYMENTS}/steady/promote"), &json!({})).await;
        assert_eq!(promoted.status, 200, "round {round}: {}", promoted.body_text());
        // Requests keep flowing through the switch before it is undone.
        let before = answered.load(Ordering::Relaxed);
        while answered.load(Ordering::Relaxed) < before + 40 {
            tokio::task::yield_now().await;
        }
        let rolled = call(&server, "POST", &format!("{DEPLOYMENTS}/steady/rollback"), &json!({})).await;
        assert_eq!(rolled.status, 200, "round {round}: {}", rolled.body_text());
        assert_eq!(alias_version(&server, "steady", "champion").await, "1");
    }
    stop.store(true, Ordering::Relaxed);
    let mut served: HashMap<String, u64> = HashMap::new();
    for client in clients {
        for (version, count) in client.await.expect("a client saw a failed request") {
            *served.entry(version).or_default() += count;
        }
    }
    assert!(served.keys().all(|v| v == "1" || v == "2"), "{served:?}");
    assert!(
        served.get("2").copied().unwrap_or(0) > 0,
        "version 2 answered between promotion and rollback"
    );
    assert!(served.get("1").copied().unwrap_or(0) > 0);
    assert_eq!(deployment(&server, "steady").await["rollbacks"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bandit_sends_more_traffic_to_the_version_that_earns_rewards() {
    let server = server().await;
    for folder in ["b1", "b2"] {
        add_version(&server, "bandit", folder, "xgb_booster", false).await;
    }
    create(
        &server,
        json!({"name": "bandit", "model": "models:/bandit/1", "routing_seed": 11,
               "policy": {"type": "bandit", "versions": ["1", "2"]}}),
    )
    .await;
    until(&server, "bandit", false, |d| d["rollout"]["phase"] == "running").await;
    let mut late = Vec::new();
    for round in 0..300 {
        let answer = score(&server, "bandit").await;
        assert_eq!(answer.status, 200);
        let version = served_version(&answer);
        let request_id = answer
            .headers
            .iter()
            .find(|(name, _)| name == "x-request-id")
            .map(|(_, v)| v.clone())
            .unwrap();
        let reward = if version == "2" { 1.0 } else { 0.0 };
        let fed = call(
            &server,
            "POST",
            "/api/loopline/v1/feedback",
            &json!({"request_id": request_id, "reward": reward}),
        )
        .await;
        assert_eq!(fed.status, 200, "{}", fed.body_text());
        assert_eq!(json_of(&fed)["rewards_matched"], 1);
        if round >= 200 {
            late.push(version);
        }
    }
    let twos = late.iter().filter(|v| *v == "2").count();
    assert!(
        twos >= 90,
        "version 2 earned every reward but got {twos} of the last 100 requests"
    );
    let current = deployment(&server, "bandit").await;
    let posteriors = current["rollout"]["posteriors"].as_array().unwrap();
    assert!(
        posteriors[1][0].as_f64().unwrap() > posteriors[0][0].as_f64().unwrap(),
        "{posteriors:?}"
    );
    let refused = call(
        &server,
        "POST",
        "/api/loopline/v1/feedback",
        &json!({"request_id": "x", "reward": 2}),
    )
    .await;
    assert_eq!(refused.status, 400, "{}", refused.body_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_resumes_the_rollout_from_its_stored_state() {
    let storage = tempfile::tempdir().unwrap();
    let backend = format!("sqlite:///{}", storage.path().join("meta.db").display());
    let artifacts = storage.path().join("artifacts").display().to_string();
    let start = || async {
        let mut config = ServerConfig {
            host: "127.0.0.1".to_string(),
            port: 0,
            backend_store_uri: backend.clone(),
            artifacts_destination: artifacts.clone(),
            data_dir: storage.path().to_path_buf(),
            serving: ServingOptions {
                rollout_tick_ms: 10,
                ..ServingOptions::default()
            },
            network: Default::default(),
            pipelines: Default::default(),
            registry: Default::default(),
            ui: Default::default(),
            auth: Default::default(),
            gateway: Default::default(),
        };
        config = config.with_defaults();
        TestServer::start_with_config(config).await.unwrap()
    };
    let first = start().await;
    for folder in ["s1", "s2"] {
        add_version(&first, "resume", folder, "xgb_booster", false).await;
    }
    set_alias(&first, "resume", "champion", "1").await;
    create(
        &first,
        json!({"name": "resume", "model": "models:/resume@champion",
               "policy": {"type": "canary", "steps": [10, 50, 100], "min_dwell_seconds": 0, "min_requests": 5}}),
    )
    .await;
    set_alias(&first, "resume", "champion", "2").await;
    // One request at a time until the canary reaches its second step, then none, so it stays there (a step
    // needs five candidate requests, and at most one arrives on the second step before it is seen).
    until(&first, "resume", false, |d| d["rollout"]["phase"] == "running").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let at_step = loop {
        assert_eq!(score(&first, "resume").await.status, 200);
        let current = deployment(&first, "resume").await;
        if current["rollout"]["step"] == 1 {
            break current;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the canary never stepped: {current:#}"
        );
    };
    let rollout_id = at_step["rollout"]["id"].clone();
    first.stop().await.unwrap();

    let second = start().await;
    let resumed = deployment(&second, "resume").await;
    assert_eq!(resumed["rollout"]["id"], rollout_id, "the same rollout continues");
    assert_eq!(resumed["rollout"]["step"], 1);
    assert_eq!(resumed["shares"], json!({"1": 0.5, "2": 0.5}));
    let done = until(&second, "resume", true, |d| d["rollout"].is_null()).await;
    assert_eq!(done["stable_version"], "2");
    let trail: Vec<String> = events(&second, "resume")
        .await
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(trail.iter().filter(|k| *k == "promoted").count(), 1, "{trail:?}");
    second.stop().await.unwrap();
}
