//! Quality gates enforced by the registry: a protected alias refuses a version without a passing gate
//! (through MLflow's own alias route), evaluations of real models on a dataset version store their
//! evidence, a failed gate names its failed checks, and an override needs a reason and is recorded.

use loopline_test_support::{RawResponse, TestServer, raw_request};
use serde_json::{Value, json};

use crate::serving::{expected, post_json, register};

async fn put_json(server: &TestServer, target: &str, body: &Value) -> RawResponse {
    let body = body.to_string();
    raw_request(
        server.address,
        "PUT",
        target,
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .await
    .unwrap()
}

/// The fixture inputs with a label column: the classifier's own predictions, the first `wrong` flipped,
/// and a region column (`a` for even rows, `b` for odd).
fn evaluation_csv(wrong: usize) -> String {
    let fixture = expected();
    let rows = fixture["inputs"]["data"].as_array().unwrap();
    let predicted = fixture["models"]["xgb_classifier"]["values"].as_array().unwrap();
    let mut csv = String::from("f0,f1,f2,f3,f4,region,label\n");
    for (index, (row, prediction)) in rows.iter().zip(predicted).enumerate() {
        let cells: Vec<String> = row
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().map(|f| f.to_string()).unwrap_or_default())
            .collect();
        let label = prediction[0].as_i64().unwrap();
        let label = if index < wrong { 1 - label } else { label };
        let region = if index % 2 == 0 { "a" } else { "b" };
        csv.push_str(&format!("{},{region},{label}\n", cells.join(",")));
    }
    csv
}

/// Stores a table as dataset `name` through the data API; returns its version.
async fn add_dataset(server: &TestServer, name: &str, file: &str, bytes: &[u8]) -> i64 {
    let id = blake3::hash(bytes).to_hex().to_string();
    let target = format!("/api/loopline/v1/data/objects/{id}");
    let stored = raw_request(server.address, "PUT", &target, &[], bytes).await.unwrap();
    assert!(stored.status < 300, "{}", stored.body_text());
    let body = json!({"hash": id, "size": bytes.len(), "files": 1, "source": file});
    let registered = post_json(server, &format!("/api/loopline/v1/datasets/{name}/versions"), &body).await;
    assert!(registered.status < 300, "{}", registered.body_text());
    registered.json()["version"]["version"].as_i64().unwrap()
}

/// Runs version `version`'s gate; whether it passed.
async fn gate_passes(server: &TestServer, version: u32) -> bool {
    let target = format!("/api/loopline/v1/registered-models/churn/versions/{version}/gate");
    let answer = post_json(server, &target, &json!({})).await;
    assert_eq!(answer.status, 200, "{}", answer.body_text());
    answer.json()["evaluation"]["passed"] == true
}

async fn set_alias(server: &TestServer, version: &str) -> RawResponse {
    let body = json!({"name": "churn", "alias": "champion", "version": version});
    post_json(server, "/api/2.0/mlflow/registered-models/alias", &body).await
}

async fn new_version(server: &TestServer) {
    let body = json!({"name": "churn", "source": "mlflow-artifacts:/serving/churn"});
    let created = post_json(server, "/api/2.0/mlflow/model-versions/create", &body).await;
    assert_eq!(created.status, 200, "{}", created.body_text());
}

#[tokio::test]
async fn protected_aliases_move_only_to_versions_that_passed_the_gate() {
    let server = TestServer::start().await.unwrap();
    register(&server, "churn", "xgb_classifier", None).await;
    let holdout = add_dataset(&server, "holdout", "holdout.csv", evaluation_csv(3).as_bytes()).await;
    let policy = |min_accuracy: f64| {
        json!({
            "dataset": format!("holdout@{holdout}"),
            "target": "label",
            "checks": [{"metric": "accuracy", "min": min_accuracy}, {"metric": "latency_p99_ms", "max": 60000}],
            "no_regression": [{"metric": "accuracy", "margin": 0.0}],
            "mcnemar_alpha": 0.05,
            "slices": [{"column": "region", "metric": "accuracy", "max_drop": 0.05, "min_rows": 5}],
            "resamples": 200,
        })
    };
    let gate_policy = "/api/loopline/v1/registered-models/churn/gate-policy";
    let set = put_json(&server, gate_policy, &policy(0.8)).await;
    assert_eq!(set.status, 200, "{}", set.body_text());
    assert_eq!(set.json()["revision"], 1);

    // Version 2 (the same model files) cannot take `champion` through MLflow's route before its gate runs.
    new_version(&server).await;
    let refused = set_alias(&server, "2").await;
    assert_eq!(refused.status, 400, "{}", refused.body_text());
    assert_eq!(refused.json()["error_code"], "INVALID_PARAMETER_VALUE");
    assert!(
        refused.body_text().contains("has not passed it"),
        "{}",
        refused.body_text()
    );

    let gate = post_json(
        &server,
        "/api/loopline/v1/registered-models/churn/versions/2/gate",
        &json!({}),
    )
    .await;
    assert_eq!(gate.status, 200, "{}", gate.body_text());
    let evaluation = gate.json()["evaluation"].clone();
    assert_eq!(evaluation["passed"], true, "{evaluation}");
    let evidence = &evaluation["evidence"];
    assert_eq!(
        (
            evidence["candidate_version"].clone(),
            evidence["champion_version"].clone()
        ),
        (json!(2), json!(1))
    );
    assert_eq!(evidence["rows"], 30);
    assert!(
        (evidence["candidate"]["accuracy"].as_f64().unwrap() - 0.9).abs() < 1e-9,
        "{evidence}"
    );
    assert_eq!(
        evidence["dataset_hash"],
        json!(blake3::hash(evaluation_csv(3).as_bytes()).to_hex().to_string())
    );
    let kinds: Vec<&str> = evidence["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["threshold", "threshold", "no_regression", "mcnemar", "slices"]);
    assert_eq!(set_alias(&server, "2").await.status, 200);

    // A stricter policy (revision 2) judges again: version 1 fails it, and the refusal lists why.
    assert_eq!(
        put_json(&server, gate_policy, &policy(0.95)).await.json()["revision"],
        2
    );
    let failed = post_json(
        &server,
        "/api/loopline/v1/registered-models/churn/versions/1/gate",
        &json!({}),
    )
    .await;
    assert_eq!(failed.json()["evaluation"]["passed"], false, "{}", failed.body_text());
    let refused = set_alias(&server, "1").await;
    assert_eq!(refused.status, 400);
    assert!(
        refused
            .body_text()
            .contains("accuracy is 0.9000, below the minimum 0.95"),
        "{}",
        refused.body_text()
    );

    // An override needs a reason and is recorded.
    let override_target = "/api/loopline/v1/registered-models/churn/aliases/champion/override";
    let no_reason = post_json(&server, override_target, &json!({"version": 1, "reason": ""})).await;
    assert_eq!(no_reason.status, 400);
    let overridden = post_json(
        &server,
        override_target,
        &json!({"version": 1, "reason": "rollback during incident 42"}),
    )
    .await;
    assert_eq!(overridden.status, 200, "{}", overridden.body_text());
    let alias = raw_request(
        server.address,
        "GET",
        "/api/2.0/mlflow/registered-models/alias?name=churn&alias=champion",
        &[],
        b"",
    )
    .await
    .unwrap();
    assert_eq!(alias.json()["model_version"]["version"], "1");
    let overrides = raw_request(
        server.address,
        "GET",
        "/api/loopline/v1/registered-models/churn/gate-overrides",
        &[],
        b"",
    )
    .await
    .unwrap();
    assert_eq!(
        overrides.json()["overrides"][0]["reason"],
        "rollback during incident 42"
    );
    // An alias the policy does not protect moves freely.
    let staging = post_json(
        &server,
        "/api/2.0/mlflow/registered-models/alias",
        &json!({"name": "churn", "alias": "staging", "version": "1"}),
    )
    .await;
    assert_eq!(staging.status, 200);
}

#[tokio::test]
async fn bad_gate_requests_are_refused_naming_the_field() {
    let server = TestServer::start().await.unwrap();
    register(&server, "m", "xgb_classifier", None).await;
    let target = "/api/loopline/v1/registered-models/m/gate-policy";
    for (policy, expected) in [
        (
            json!({"dataset": "holdout@1", "target": "y", "checks": [{"metric": "acuracy", "min": 1}]}),
            "unknown metric 'acuracy'",
        ),
        (json!({"dataset": "holdout", "target": "y"}), "dataset version"),
        (
            json!({"dataset": "holdout@1", "target": "y", "colour": 1}),
            "unknown field",
        ),
        (json!({"dataset": "holdout@1", "target": "y"}), "has no version 1"),
    ] {
        let answer = put_json(&server, target, &policy).await;
        assert!((400..500).contains(&answer.status), "{policy}: {}", answer.status);
        assert!(
            answer.body_text().contains(expected),
            "{policy}: {}",
            answer.body_text()
        );
    }
    let missing = put_json(
        &server,
        "/api/loopline/v1/registered-models/nope/gate-policy",
        &json!({}),
    )
    .await;
    assert_eq!(missing.status, 404);
    let no_policy = post_json(
        &server,
        "/api/loopline/v1/registered-models/m/versions/1/gate",
        &json!({}),
    )
    .await;
    assert_eq!(no_policy.status, 404, "{}", no_policy.body_text());
    let bad_version = post_json(
        &server,
        "/api/loopline/v1/registered-models/m/versions/x/gate",
        &json!({}),
    )
    .await;
    assert_eq!(bad_version.status, 400);
}

#[tokio::test]
async fn stale_evidence_never_opens_the_gate() {
    let server = TestServer::start().await.unwrap();
    register(&server, "churn", "xgb_classifier", None).await;
    let holdout = add_dataset(&server, "holdout", "holdout.csv", evaluation_csv(3).as_bytes()).await;
    let policy = |min: f64| {
        json!({"dataset": format!("holdout@{holdout}"), "target": "label",
        "checks": [{"metric": "accuracy", "min": min}], "no_regression": [{"metric": "accuracy", "margin": 0.0}], "resamples": 50})
    };
    let gate_policy = "/api/loopline/v1/registered-models/churn/gate-policy";
    // No champion yet: the first gate runs (comparisons pass with a note) and its version may take the alias.
    let delete_alias = raw_request(
        server.address,
        "DELETE",
        "/api/2.0/mlflow/registered-models/alias?name=churn&alias=champion",
        &[],
        b"",
    )
    .await
    .unwrap();
    assert_eq!(delete_alias.status, 200, "{}", delete_alias.body_text());
    assert_eq!(put_json(&server, gate_policy, &policy(0.5)).await.status, 200);
    let first = post_json(
        &server,
        "/api/loopline/v1/registered-models/churn/versions/1/gate",
        &json!({}),
    )
    .await;
    assert_eq!(first.status, 200, "{}", first.body_text());
    assert_eq!(first.json()["evaluation"]["passed"], true);
    assert_eq!(set_alias(&server, "1").await.status, 200);
    // Version 2 passes a lenient policy; the policy is deleted and a strict one set: its revision starts
    // again, but the old pass was under other text and does not count.
    new_version(&server).await;
    assert!(gate_passes(&server, 2).await);
    let deleted = raw_request(server.address, "DELETE", gate_policy, &[], b"")
        .await
        .unwrap();
    assert_eq!(deleted.status, 200);
    assert_eq!(
        put_json(&server, gate_policy, &policy(0.95)).await.json()["revision"],
        1
    );
    assert_eq!(set_alias(&server, "2").await.status, 400);
    // A pass judged against another champion does not count once the champion changed.
    assert_eq!(put_json(&server, gate_policy, &policy(0.5)).await.status, 200);
    new_version(&server).await;
    assert!(gate_passes(&server, 3).await);
    assert!(gate_passes(&server, 2).await);
    assert_eq!(set_alias(&server, "2").await.status, 200);
    let stale = set_alias(&server, "3").await;
    assert_eq!(stale.status, 400, "{}", stale.body_text());
    assert!(
        stale.body_text().contains("not the current champion"),
        "{}",
        stale.body_text()
    );
    // A gated model cannot be renamed away from its policy.
    let renamed = post_json(
        &server,
        "/api/2.0/mlflow/registered-models/rename",
        &json!({"name": "churn", "new_name": "elsewhere"}),
    )
    .await;
    assert_eq!(renamed.status, 400, "{}", renamed.body_text());
    assert!(renamed.body_text().contains("quality gate policy"));
}

#[tokio::test]
async fn an_evaluation_reports_slices_and_refuses_a_target_the_model_does_not_predict() {
    let server = TestServer::start().await.unwrap();
    register(&server, "churn", "xgb_classifier", None).await;
    let holdout = add_dataset(&server, "holdout", "holdout.csv", evaluation_csv(0).as_bytes()).await;
    let evaluate = |body: Value| {
        let server = &server;
        async move {
            post_json(
                server,
                "/api/loopline/v1/registered-models/churn/versions/1/evaluate",
                &body,
            )
            .await
        }
    };
    let dataset = format!("holdout@{holdout}");
    let answer = evaluate(json!({"dataset": dataset, "target": "label", "slices": ["region"]})).await;
    assert_eq!(answer.status, 200, "{}", answer.body_text());
    let result = answer.json();
    assert_eq!(result["metrics"]["accuracy"], 1.0);
    let slices: Vec<&str> = result["slices"]["region"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["value"].as_str().unwrap())
        .collect();
    assert_eq!(slices, ["a", "b"]);
    // The region column is not what the model predicts: an error naming both, not an accuracy of 0.
    let wrong = evaluate(json!({"dataset": dataset, "target": "region", "task": "classification"})).await;
    assert_eq!(wrong.status, 400, "{}", wrong.body_text());
    assert!(
        wrong
            .body_text()
            .contains("share no value with the target column 'region'"),
        "{}",
        wrong.body_text()
    );
    let positive = evaluate(json!({"dataset": dataset, "target": "label", "positive_label": "7"})).await;
    assert_eq!(positive.status, 400, "{}", positive.body_text());
    assert!(
        positive.body_text().contains("positive_label '7' is not a value"),
        "{}",
        positive.body_text()
    );
    let unknown = evaluate(json!({"dataset": dataset, "target": "label", "slices": ["nowhere"]})).await;
    assert_eq!(unknown.status, 400, "{}", unknown.body_text());
}
