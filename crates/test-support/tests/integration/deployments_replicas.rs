//! Two replicas on one PostgreSQL database and one artifact directory, as the distributed setup runs: a
//! deployment created on one is served by the other, a moved alias is rolled out once (both controllers race
//! for each step; the stored revision lets one win), and a rollback on one replica reroutes the other.

use std::time::{Duration, Instant};

use loopline_server::config::{ServerConfig, ServingOptions};
use loopline_test_support::TestServer;
use serde_json::json;

use crate::deployments::{DEPLOYMENTS, add_version, call, deployment, events, kinds, score, served_version, set_alias};

pub(crate) async fn fresh_database() -> Option<String> {
    let Ok(admin_url) = std::env::var("LOOPLINE_TEST_POSTGRES_URL") else {
        eprintln!("LOOPLINE_TEST_POSTGRES_URL is not set: the replica test did not run (scripts/test.sh sets it)");
        return None;
    };
    sqlx::any::install_default_drivers();
    let database = format!("replicas_{}", uuid_like());
    let admin = sqlx::AnyPool::connect(&admin_url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let (base, _) = admin_url.rsplit_once('/').unwrap();
    Some(format!("{base}/{database}"))
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{nanos:x}{}", std::process::id())
}

async fn replica(backend: &str, artifacts: &std::path::Path, data: &std::path::Path) -> TestServer {
    let config = ServerConfig {
        host: "127.0.0.1".to_string(),
        port: 0,
        backend_store_uri: backend.to_string(),
        artifacts_destination: artifacts.display().to_string(),
        data_dir: data.to_path_buf(),
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
    TestServer::start_with_config(config).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_deployments_and_roll_out_once() {
    let Some(backend) = fresh_database().await else {
        return;
    };
    let storage = tempfile::tempdir().unwrap();
    let artifacts = storage.path().join("artifacts");
    let first = replica(&backend, &artifacts, &storage.path().join("a")).await;
    let second = replica(&backend, &artifacts, &storage.path().join("b")).await;
    for folder in ["p1", "p2"] {
        add_version(&first, "shared", folder, "xgb_booster", false).await;
    }
    set_alias(&first, "shared", "champion", "1").await;
    let created = call(
        &first,
        "POST",
        DEPLOYMENTS,
        &json!({"name": "shared", "model": "models:/shared@champion",
                "policy": {"type": "canary", "steps": [50, 100], "min_dwell_seconds": 0, "min_requests": 10}}),
    )
    .await;
    assert_eq!(created.status, 200, "{}", created.body_text());
    // The other replica knows it (read from the shared store) and serves it.
    assert_eq!(deployment(&second, "shared").await["stable_version"], "1");
    let answered = score(&second, "shared").await;
    assert_eq!((answered.status, served_version(&answered).as_str()), (200, "1"));

    set_alias(&second, "shared", "champion", "2").await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        for replica in [&first, &second] {
            let answer = score(replica, "shared").await;
            assert_eq!(answer.status, 200, "{}", answer.body_text());
        }
        let current = deployment(&first, "shared").await;
        if current["stable_version"] == "2" && current["rollout"].is_null() {
            break;
        }
        assert!(Instant::now() < deadline, "the rollout never completed: {current:#}");
    }
    let trail = kinds(&events(&second, "shared").await);
    assert_eq!(trail.iter().filter(|k| *k == "rollout_started").count(), 1, "{trail:?}");
    assert_eq!(trail.iter().filter(|k| *k == "promoted").count(), 1, "{trail:?}");

    // A rollback through one replica reroutes the other once it reads the new state.
    let rolled = call(&first, "POST", &format!("{DEPLOYMENTS}/shared/rollback"), &json!({})).await;
    assert_eq!(rolled.status, 200, "{}", rolled.body_text());
    let deadline = Instant::now() + Duration::from_secs(120);
    while served_version(&score(&second, "shared").await) != "1" {
        assert!(Instant::now() < deadline, "the second replica kept serving version 2");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(deployment(&second, "shared").await["stable_version"], "1");
    first.stop().await.unwrap();
    second.stop().await.unwrap();
}
