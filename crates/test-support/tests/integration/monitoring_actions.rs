//! A monitor's alert acts on the deployment it watches: a rule that fires rolls the deployment back (routing
//! and alias together), recorded in both histories; and a monitor survives a server restart in the middle of
//! a window, finishing it with nothing counted twice.

use loopline_server::config::{ServerConfig, ServingOptions};
use loopline_test_support::{TestServer, raw_request};
use serde_json::{Value, json};

use crate::deployments::{DEPLOYMENTS, add_version, alias_version, call, events, server, set_alias, until};
use crate::monitoring::{put_reference, rows, run, send, windows};
use crate::serving::{post_json, register};

async fn monitor_events(server: &TestServer, monitor: &str, kind: &str) -> Vec<Value> {
    let listed = raw_request(
        server.address,
        "GET",
        &format!("/api/loopline/v1/monitors/{monitor}/events?kind={kind}"),
        &[],
        b"",
    )
    .await
    .unwrap();
    listed.json()["events"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firing_alert_rolls_its_deployment_back() {
    let server = server().await;
    let v1 = add_version(&server, "churn", "v1", "xgb_booster", false).await;
    set_alias(&server, "churn", "champion", &v1).await;
    let created = call(
        &server,
        "POST",
        DEPLOYMENTS,
        &json!({"name": "churn-prod", "model": "models:/churn@champion",
                "policy": {"type": "canary", "steps": [100], "min_dwell_seconds": 0, "min_requests": 1}}),
    )
    .await;
    assert_eq!(created.status, 200, "{}", created.body_text());
    let v2 = add_version(&server, "churn", "v2", "xgb_booster", false).await;
    set_alias(&server, "churn", "champion", &v2).await;
    until(&server, "churn-prod", true, |d| {
        d["stable_version"] == "2" && d["rollout"].is_null()
    })
    .await;

    // Any traffic at all breaches this rule: the first window fires it.
    let monitor = json!({
        "name": "churn-guard", "deployment": "churn-prod", "window": {"predictions": 5}, "start_ms": 0,
        "alerts": [{"name": "any-traffic", "figure": "rows", "operator": ">=", "threshold": 1,
                    "actions": [{"kind": "rollback"}]}],
    });
    let created = post_json(&server, "/api/loopline/v1/monitors", &monitor).await;
    assert_eq!(created.status, 200, "{}", created.body_text());
    let ran = post_json(&server, "/api/loopline/v1/monitors/churn-guard/run", &json!({})).await;
    assert_eq!(ran.status, 200, "{}", ran.body_text());

    let rolled = until(&server, "churn-prod", false, |d| d["stable_version"] == "1").await;
    assert_eq!(rolled["rollbacks"], 1, "{rolled}");
    assert_eq!(alias_version(&server, "churn", "champion").await, "1");
    let trail = events(&server, "churn-prod").await;
    let rollback = trail
        .iter()
        .find(|e| e["kind"] == "rolled_back")
        .expect("a rollback in the deployment's trail");
    assert_eq!(rollback["actor"], "monitor:churn-guard");
    assert!(
        rollback["message"].as_str().unwrap().contains("monitor 'churn-guard'"),
        "{rollback}"
    );
    let actions = monitor_events(&server, "churn-guard", "action").await;
    assert_eq!(actions.len(), 1, "{actions:?}");
    assert!(actions[0]["message"].as_str().unwrap().contains("rolled back"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_open_across_a_restart_is_finished_with_nothing_counted_twice() {
    let storage = tempfile::tempdir().unwrap();
    let start = || async {
        let config = ServerConfig {
            host: "127.0.0.1".to_string(),
            port: 0,
            backend_store_uri: String::new(),
            artifacts_destination: String::new(),
            data_dir: storage.path().to_path_buf(),
            serving: ServingOptions::default(),
            network: Default::default(),
            pipelines: Default::default(),
            registry: Default::default(),
            ui: Default::default(),
            auth: Default::default(),
            gateway: Default::default(),
        }
        .with_defaults();
        TestServer::start_with_config(config).await.unwrap()
    };
    let first = start().await;
    register(&first, "churn", "xgb_classifier", None).await;
    put_reference(&first).await;
    let monitor = json!({"name": "churn-live", "model": "churn", "window": {"predictions": 300}, "start_ms": 0});
    let created = post_json(&first, "/api/loopline/v1/monitors", &monitor).await;
    assert_eq!(created.status, 200, "{}", created.body_text());
    send(&first, "before", &rows(40, 500, 0.0)).await;
    let ran = run(&first, "churn-live").await;
    assert_eq!(ran["evaluated"].as_array().unwrap().len(), 1, "{ran}");
    first.stop().await.unwrap();

    let second = start().await;
    send(&second, "after", &rows(41, 100, 0.0)).await;
    let ran = run(&second, "churn-live").await;
    assert_eq!(ran["evaluated"].as_array().unwrap().len(), 1, "{ran}");
    let found = windows(&second, "churn-live").await;
    let counted: Vec<i64> = found.iter().map(|w| w["rows"].as_i64().unwrap()).collect();
    assert_eq!(counted, [300, 300], "600 predictions, each in one window once");
    assert_eq!(found[1]["window"], 1);
}
