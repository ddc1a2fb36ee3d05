//! Acknowledged writes survive `kill -9`: the real binary is killed during sustained log-batch load,
//! restarted on the same data, and every batch that was answered with 200 must be there.

mod common;

use common::start_server;
use futures::future::join_all;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const WRITERS: usize = 4;
const POINTS_PER_BATCH: i64 = 10;
const ACKNOWLEDGED_BEFORE_KILL: usize = 200;

async fn post(client: &reqwest::Client, url: &str, body: &Value) -> Result<Value, String> {
    let response = client
        .post(url)
        .json(body)
        .send()
        .await
        .map_err(|error| error.to_string())?;
    if !response.status().is_success() {
        return Err(format!("status {}", response.status()));
    }
    response.json().await.map_err(|error| error.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_batches_survive_sigkill() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let data = tempfile::tempdir().unwrap();
    let (mut child, base_url) = start_server(data.path());
    let client = reqwest::Client::new();
    let created = post(
        &client,
        &format!("{base_url}/api/2.0/mlflow/runs/create"),
        &json!({"experiment_id": "0"}),
    )
    .await
    .unwrap();
    let run_id = created["run"]["info"]["run_id"].as_str().unwrap().to_string();

    let acknowledged_total = Arc::new(AtomicUsize::new(0));
    let writers = (0..WRITERS).map(|writer| {
        let client = client.clone();
        let url = format!("{base_url}/api/2.0/mlflow/runs/log-batch");
        let run_id = run_id.clone();
        let acknowledged_total = Arc::clone(&acknowledged_total);
        async move {
            let mut acknowledged = BTreeSet::new();
            for batch in 0i64.. {
                let metrics: Vec<Value> = (0..POINTS_PER_BATCH)
                    .map(|offset| json!({"key": format!("writer_{writer}"), "value": 1.0, "timestamp": 1, "step": batch * POINTS_PER_BATCH + offset}))
                    .collect();
                match post(&client, &url, &json!({"run_id": run_id, "metrics": metrics})).await {
                    Ok(_) => {
                        acknowledged.insert(batch);
                        acknowledged_total.fetch_add(1, Ordering::SeqCst);
                    }
                    // The server is gone: everything acknowledged so far is what must survive.
                    Err(_) => return acknowledged,
                }
            }
            unreachable!("the loop ends when the server dies")
        }
    });
    let killer = async {
        // Wait for progress, not for time: kill once enough batches were acknowledged.
        while acknowledged_total.load(Ordering::SeqCst) < ACKNOWLEDGED_BEFORE_KILL {
            tokio::task::yield_now().await;
        }
        child.kill().expect("SIGKILL the server");
        child.wait().expect("reap the server");
    };
    let (acknowledged_per_writer, ()) = tokio::join!(join_all(writers), killer);

    let (mut restarted, base_url) = start_server(data.path());
    for (writer, acknowledged) in acknowledged_per_writer.iter().enumerate() {
        assert!(!acknowledged.is_empty(), "writer {writer} never got an acknowledgement");
        let url = format!("{base_url}/api/2.0/mlflow/metrics/get-history?run_id={run_id}&metric_key=writer_{writer}");
        let history: Value = client.get(url).send().await.unwrap().json().await.unwrap();
        let stored: BTreeSet<i64> = history["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|point| point["step"].as_i64().unwrap())
            .collect();
        for batch in acknowledged {
            for offset in 0..POINTS_PER_BATCH {
                let step = batch * POINTS_PER_BATCH + offset;
                assert!(
                    stored.contains(&step),
                    "writer {writer}: acknowledged batch {batch} lost step {step}"
                );
            }
        }
    }
    restarted.kill().unwrap();
    restarted.wait().unwrap();
}
