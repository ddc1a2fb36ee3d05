//! Deployments through the real server: a canary that follows a registry alias steps through its schedule
//! and completes, a manual rollback restores routing and the alias together, a candidate that cannot load is
//! rolled back on its own, and bad requests are refused with 400/409 leaving nothing half-applied.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use loopline_server::config::ServingOptions;
use loopline_test_support::{RawResponse, TestServer, raw_request};
use serde_json::{Value, json};

pub(crate) const API: &str = "/api/2.0/mlflow";
pub(crate) const DEPLOYMENTS: &str = "/api/loopline/v1/deployments";

pub(crate) fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../model-runtimes/tests/fixtures/mlflow")
}

pub(crate) async fn call(server: &TestServer, method: &str, path: &str, body: &Value) -> RawResponse {
    call_as(server, None, method, path, body).await
}

/// `call` with credentials (an `Authorization` value) when the server has auth on.
pub(crate) async fn call_as(
    server: &TestServer,
    authorization: Option<&str>,
    method: &str,
    path: &str,
    body: &Value,
) -> RawResponse {
    let mut headers = vec![("Content-Type", "application/json"), ("X-Loopline-User", "tester")];
    if let Some(authorization) = authorization {
        headers.push(("Authorization", authorization));
    }
    raw_request(server.address, method, path, &headers, body.to_string().as_bytes())
        .await
        .unwrap()
}

pub(crate) fn json_of(response: &RawResponse) -> Value {
    serde_json::from_slice(&response.body).unwrap_or(Value::Null)
}

/// Uploads a fixture under `folder` and registers it as the next version of `name`; `broken` corrupts the
/// model file so the version cannot load.
pub(crate) async fn add_version(server: &TestServer, name: &str, folder: &str, fixture: &str, broken: bool) -> String {
    add_version_as(server, None, name, folder, fixture, broken).await
}

/// `add_version` with credentials.
pub(crate) async fn add_version_as(
    server: &TestServer,
    authorization: Option<&str>,
    name: &str,
    folder: &str,
    fixture: &str,
    broken: bool,
) -> String {
    let headers: Vec<(&str, &str)> = authorization
        .map(|value| ("Authorization", value))
        .into_iter()
        .collect();
    for entry in std::fs::read_dir(fixtures().join(fixture)).unwrap() {
        let entry = entry.unwrap();
        let file = entry.file_name().into_string().unwrap();
        let mut bytes = std::fs::read(entry.path()).unwrap();
        if broken && file != "MLmodel" && !file.ends_with(".yaml") && !file.ends_with(".txt") {
            bytes = b"not a model".to_vec();
        }
        let path = format!("/api/2.0/mlflow-artifacts/artifacts/deploy/{folder}/{file}");
        let response = raw_request(server.address, "PUT", &path, &headers, &bytes)
            .await
            .unwrap();
        assert_eq!(response.status, 200, "{}", response.body_text());
    }
    let _ = call_as(
        server,
        authorization,
        "POST",
        &format!("{API}/registered-models/create"),
        &json!({"name": name}),
    )
    .await;
    let version = call_as(
        server,
        authorization,
        "POST",
        &format!("{API}/model-versions/create"),
        &json!({"name": name, "source": format!("mlflow-artifacts:/deploy/{folder}")}),
    )
    .await;
    assert_eq!(version.status, 200, "{}", version.body_text());
    json_of(&version)["model_version"]["version"]
        .as_str()
        .unwrap()
        .to_string()
}

pub(crate) async fn set_alias(server: &TestServer, name: &str, alias: &str, version: &str) {
    let response = call(
        server,
        "POST",
        &format!("{API}/registered-models/alias"),
        &json!({"name": name, "alias": alias, "version": version}),
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.body_text());
}

pub(crate) async fn alias_version(server: &TestServer, name: &str, alias: &str) -> String {
    let response = raw_request(
        server.address,
        "GET",
        &format!("{API}/registered-models/alias?name={name}&alias={alias}"),
        &[],
        b"",
    )
    .await
    .unwrap();
    json_of(&response)["model_version"]["version"]
        .as_str()
        .unwrap()
        .to_string()
}

pub(crate) async fn deployment(server: &TestServer, name: &str) -> Value {
    let response = raw_request(server.address, "GET", &format!("{DEPLOYMENTS}/{name}"), &[], b"")
        .await
        .unwrap();
    assert_eq!(response.status, 200, "{}", response.body_text());
    json_of(&response)["deployment"].clone()
}

/// Waits (sending `traffic` requests meanwhile) until the deployment satisfies `done`; a generous bound keeps a
/// slow machine from failing the test, not a timing assumption.
pub(crate) async fn until(server: &TestServer, name: &str, traffic: bool, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let current = deployment(server, name).await;
        if done(&current) {
            return current;
        }
        assert!(
            Instant::now() < deadline,
            "deployment never reached the state: {current:#}"
        );
        if traffic {
            for _ in 0..10 {
                let answer = score(server, name).await;
                assert_eq!(answer.status, 200, "{}", answer.body_text());
            }
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub(crate) async fn score(server: &TestServer, name: &str) -> RawResponse {
    let body =
        json!({"dataframe_split": {"columns": ["f0", "f1", "f2", "f3", "f4"], "data": [[0.1, 0.2, 0.3, 0.4, 0.5]]}});
    call(server, "POST", &format!("/deployments/{name}/invocations"), &body).await
}

pub(crate) fn served_version(response: &RawResponse) -> String {
    response
        .headers
        .iter()
        .find(|(name, _)| name == "x-loopline-model-version")
        .map(|(_, value)| value.clone())
        .unwrap_or_default()
}

pub(crate) async fn events(server: &TestServer, name: &str) -> Vec<Value> {
    let response = raw_request(server.address, "GET", &format!("{DEPLOYMENTS}/{name}/events"), &[], b"")
        .await
        .unwrap();
    json_of(&response)["events"].as_array().unwrap().clone()
}

pub(crate) fn kinds(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["kind"].as_str().unwrap().to_string()).collect()
}

pub(crate) async fn server() -> TestServer {
    TestServer::start_serving(ServingOptions {
        rollout_tick_ms: 10,
        allow_python_models: true,
        ..ServingOptions::default()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_follows_the_alias_steps_through_and_completes_then_rolls_back_by_hand() {
    let server = server().await;
    let v1 = add_version(&server, "churn", "v1", "xgb_booster", false).await;
    set_alias(&server, "churn", "champion", &v1).await;
    let created = call(
        &server,
        "POST",
        DEPLOYMENTS,
        &json!({"name": "churn-prod", "model": "models:/churn@champion",
                "policy": {"type": "canary", "steps": [50, 100], "min_dwell_seconds": 0, "min_requests": 10}}),
    )
    .await;
    assert_eq!(created.status, 200, "{}", created.body_text());
    assert_eq!(json_of(&created)["deployment"]["stable_version"], "1");
    let first = score(&server, "churn-prod").await;
    assert_eq!((first.status, served_version(&first).as_str()), (200, "1"));

    let v2 = add_version(&server, "churn", "v2", "xgb_booster", false).await;
    set_alias(&server, "churn", "champion", &v2).await;
    // The controller notices the alias, warms version 2, and steps 50% -> 100% as requests arrive.
    let done = until(&server, "churn-prod", true, |d| {
        d["stable_version"] == "2" && d["rollout"].is_null()
    })
    .await;
    assert_eq!(done["shares"], json!({"2": 1.0}));
    let trail = kinds(&events(&server, "churn-prod").await);
    for expected in ["created", "rollout_started", "step", "promoted"] {
        assert!(trail.contains(&expected.to_string()), "{trail:?}");
    }
    let answered = score(&server, "churn-prod").await;
    assert_eq!(served_version(&answered), "2");

    // A manual rollback restores version 1 and points the alias back at it, in one command.
    let rolled = call(
        &server,
        "POST",
        &format!("{DEPLOYMENTS}/churn-prod/rollback"),
        &json!({"reason": "dashboards look wrong"}),
    )
    .await;
    assert_eq!(rolled.status, 200, "{}", rolled.body_text());
    assert_eq!(json_of(&rolled)["deployment"]["stable_version"], "1");
    assert_eq!(alias_version(&server, "churn", "champion").await, "1");
    assert_eq!(served_version(&score(&server, "churn-prod").await), "1");
    let trail = events(&server, "churn-prod").await;
    let rollback = trail.iter().find(|e| e["kind"] == "rolled_back").unwrap();
    assert_eq!(rollback["actor"], "user:tester");
    assert!(rollback["message"].as_str().unwrap().contains("dashboards look wrong"));
    // The alias history shows which version served when.
    let history = raw_request(
        server.address,
        "GET",
        "/api/loopline/v1/registered-models/alias-history?name=churn&alias=champion",
        &[],
        b"",
    )
    .await
    .unwrap();
    let versions: Vec<String> = json_of(&history)["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["version"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(versions, ["1", "2", "1"]);
    // Nothing left to roll back to: refused, nothing changes.
    let again = call(
        &server,
        "POST",
        &format!("{DEPLOYMENTS}/churn-prod/rollback"),
        &json!({}),
    )
    .await;
    assert_eq!(again.status, 409, "{}", again.body_text());
    let metrics = raw_request(server.address, "GET", "/metrics", &[], b"").await.unwrap();
    let text = metrics.body_text();
    assert!(
        text.contains("loopline_deployment_rollbacks_total{deployment=\"churn-prod\"} 1"),
        "{text}"
    );
    assert!(text.contains("loopline_deployment_traffic_share{deployment=\"churn-prod\",version=\"1\"} 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_that_cannot_load_is_rolled_back_and_bad_requests_change_nothing() {
    let server = server().await;
    let v1 = add_version(&server, "fraud", "f1", "xgb_booster", false).await;
    set_alias(&server, "fraud", "champion", &v1).await;
    let spec =
        json!({"name": "fraud", "model": "models:/fraud@champion", "policy": {"type": "canary", "steps": [10, 100]}});
    assert_eq!(call(&server, "POST", DEPLOYMENTS, &spec).await.status, 200);
    assert_eq!(call(&server, "POST", DEPLOYMENTS, &spec).await.status, 409);
    for (bad, needle) in [
        (
            json!({"name": "x", "model": "models:/fraud@champion", "policy": {"type": "canary", "steps": [10, 5, 100]}}),
            "must increase",
        ),
        (
            json!({"name": "x", "model": "models:/fraud@missing"}),
            "no alias 'missing'",
        ),
        (json!({"name": "x", "model": "models:/fraud/9"}), "no version 9"),
        (
            json!({"name": "x", "model": "models:/nothing@champion"}),
            "does not exist",
        ),
        (
            json!({"name": "x", "model": "models:/fraud/1", "policy": {"type": "ab", "weights": {"1": 50, "7": 50}}}),
            "no version 7",
        ),
        (json!({"name": "x/../y", "model": "models:/fraud/1"}), "not valid"),
        (
            json!({"name": "x", "model": "models:/fraud/1", "guardrails": {"max_error_rate": 3}}),
            "max_error_rate",
        ),
    ] {
        let refused = call(&server, "POST", DEPLOYMENTS, &bad).await;
        assert_eq!(refused.status, 400, "{bad}: {}", refused.body_text());
        assert!(refused.body_text().contains(needle), "{bad}: {}", refused.body_text());
    }
    let listed = raw_request(server.address, "GET", DEPLOYMENTS, &[], b"").await.unwrap();
    assert_eq!(
        json_of(&listed)["deployments"].as_array().unwrap().len(),
        1,
        "refused creations left nothing"
    );
    let promote = call(&server, "POST", &format!("{DEPLOYMENTS}/fraud/promote"), &json!({})).await;
    assert_eq!(promote.status, 409, "{}", promote.body_text());

    let broken = add_version(&server, "fraud", "f2", "xgb_booster", true).await;
    set_alias(&server, "fraud", "champion", &broken).await;
    let after = until(&server, "fraud", false, |d| d["rollbacks"] == 1).await;
    assert_eq!(after["stable_version"], "1");
    assert!(after["rollout"].is_null());
    assert_eq!(
        alias_version(&server, "fraud", "champion").await,
        "1",
        "the alias is restored"
    );
    let trail = events(&server, "fraud").await;
    let rollback = trail.iter().find(|e| e["kind"] == "rolled_back").unwrap();
    assert!(
        rollback["message"].as_str().unwrap().contains("failed to load"),
        "{rollback}"
    );
    assert_eq!(rollback["actor"], "controller");
    // Requests kept being answered by version 1 throughout.
    let answer = score(&server, "fraud").await;
    assert_eq!((answer.status, served_version(&answer).as_str()), (200, "1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_rollout_on_one_deployment_is_refused_and_changes_nothing() {
    let server = server().await;
    for folder in ["c1", "c2", "c3"] {
        add_version(&server, "conflict", folder, "xgb_booster", false).await;
    }
    let canary = json!({"type": "canary", "steps": [20, 100], "min_dwell_seconds": 3600});
    let created = call(
        &server,
        "POST",
        DEPLOYMENTS,
        &json!({"name": "conflict", "model": "models:/conflict/1", "policy": canary}),
    )
    .await;
    assert_eq!(created.status, 200, "{}", created.body_text());
    // Pointing the deployment at version 2 starts a rollout.
    let path = format!("{DEPLOYMENTS}/conflict");
    let moved = call(
        &server,
        "PUT",
        &path,
        &json!({"model": "models:/conflict/2", "policy": canary}),
    )
    .await;
    assert_eq!(moved.status, 200, "{}", moved.body_text());
    let rolling = until(&server, "conflict", false, |d| d["rollout"]["phase"] == "running").await;
    assert_eq!(rolling["shares"], json!({"1": 0.8, "2": 0.2}));
    let revision = rolling["revision"].clone();
    for (body, status, needle) in [
        (
            json!({"model": "models:/conflict/3", "policy": canary}),
            409,
            "promote or roll it back",
        ),
        (
            json!({"model": "models:/conflict/2", "policy": {"type": "shadow"}}),
            409,
            "promote or roll it back",
        ),
        (
            json!({"model": "models:/other/1", "policy": canary}),
            400,
            "keeps its registered model",
        ),
        (
            json!({"model": "models:/conflict/2", "policy": canary, "revision": 1}),
            409,
            "revision",
        ),
        (
            json!({"model": "models:/conflict/2", "policy": {"type": "canary", "steps": [-5, 100]}}),
            400,
            "steps[0]",
        ),
    ] {
        let refused = call(&server, "PUT", &path, &body).await;
        assert_eq!(refused.status, status, "{body}: {}", refused.body_text());
        assert!(refused.body_text().contains(needle), "{body}: {}", refused.body_text());
    }
    let after = deployment(&server, "conflict").await;
    assert_eq!(after["revision"], revision, "refused updates wrote nothing");
    assert_eq!(after["rollout"]["candidates"], json!(["2"]));
    let promote_unknown = call(&server, "POST", &format!("{path}/promote"), &json!({"version": "3"})).await;
    assert_eq!(promote_unknown.status, 400, "{}", promote_unknown.body_text());
    let missing = call(&server, "POST", &format!("{DEPLOYMENTS}/nothing/rollback"), &json!({})).await;
    assert_eq!(missing.status, 404, "{}", missing.body_text());
    for (target, needle) in [
        (format!("{path}/events?after=soon"), "'after'"),
        ("/api/loopline/v1/registered-models/alias-history".to_string(), "'name'"),
    ] {
        let refused = raw_request(server.address, "GET", &target, &[], b"").await.unwrap();
        assert_eq!(refused.status, 400, "{target}");
        assert!(
            json_of(&refused)["message"].as_str().unwrap().contains(needle),
            "{}",
            refused.body_text()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_inference_requests_to_a_deployment_name_go_through_its_policy() {
    let server = server().await;
    for folder in ["o1", "o2"] {
        add_version(&server, "oip", folder, "xgb_booster", false).await;
    }
    let created = call(
        &server,
        "POST",
        DEPLOYMENTS,
        &json!({"name": "oip-live", "model": "models:/oip/1", "routing_seed": 3,
                "policy": {"type": "ab", "weights": {"1": 1, "2": 1}}}),
    )
    .await;
    assert_eq!(created.status, 200, "{}", created.body_text());
    until(&server, "oip-live", false, |d| d["rollout"]["phase"] == "running").await;
    let body =
        json!({"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 5], "data": [0.1, 0.2, 0.3, 0.4, 0.5]}]});
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let answer = call(&server, "POST", "/v2/models/oip-live/infer", &body).await;
        assert_eq!(answer.status, 200, "{}", answer.body_text());
        assert_eq!(json_of(&answer)["model_name"], "oip-live");
        let version = served_version(&answer);
        assert_eq!(json_of(&answer)["model_version"], version.as_str());
        seen.insert(version);
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["1", "2"], "both arms answered");
    // Readiness and metadata answer for the deployment name too (tritonclient asks before inferring).
    let ready = raw_request(server.address, "GET", "/v2/models/oip-live/ready", &[], b"")
        .await
        .unwrap();
    assert_eq!(ready.status, 200, "{}", ready.body_text());
    let metadata = raw_request(server.address, "GET", "/v2/models/oip-live", &[], b"")
        .await
        .unwrap();
    assert_eq!(json_of(&metadata)["name"], "oip-live");
    assert_eq!(json_of(&metadata)["versions"], json!(["1"]));
    // The registered model's own endpoints are untouched by the deployment.
    let direct = call(&server, "POST", "/v2/models/oip/versions/1/infer", &body).await;
    assert_eq!(served_version(&direct), "1");
}
