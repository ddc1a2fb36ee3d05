//! Loopline's own pages through the real server: a canary in progress shown with its step, shares and
//! guardrails; a rollback and a promote done through the confirmation forms (refused unconfirmed and from
//! another origin); every section answering HTML under its content policy; hostile names escaped; and
//! generated paths and queries never a server error.

use loopline_test_support::{RawResponse, TestServer, raw_request};
use serde_json::{Value, json};

use crate::deployments::{DEPLOYMENTS, add_version, call, deployment, events, json_of, server, set_alias, until};

async fn page(server: &TestServer, path: &str) -> RawResponse {
    raw_request(server.address, "GET", path, &[("Accept", "text/html")], b"")
        .await
        .unwrap()
}

async fn submit(server: &TestServer, path: &str, form: &str, origin: Option<&str>) -> RawResponse {
    let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
    if let Some(origin) = origin {
        headers.push(("Origin", origin));
    }
    raw_request(server.address, "POST", path, &headers, form.as_bytes())
        .await
        .unwrap()
}

fn header<'a>(response: &'a RawResponse, name: &str) -> &'a str {
    response
        .headers
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
        .unwrap_or_default()
}

/// A canary from version 1 to `candidate` that stays on its first step (the dwell is an hour).
async fn canary_in_progress(server: &TestServer) -> Value {
    let v1 = add_version(server, "churn", "v1", "xgb_booster", false).await;
    set_alias(server, "churn", "champion", &v1).await;
    let created = call(
        server,
        "POST",
        DEPLOYMENTS,
        &json!({"name": "churn-prod", "model": "models:/churn@champion",
                "policy": {"type": "canary", "steps": [20, 100], "min_dwell_seconds": 3600, "min_requests": 10},
                "guardrails": {"max_error_rate": 0.02, "max_p99_ms": 250.0}}),
    )
    .await;
    assert_eq!(created.status, 200, "{}", created.body_text());
    let v2 = add_version(server, "churn", "v2", "xgb_booster", false).await;
    set_alias(server, "churn", "champion", &v2).await;
    until(server, "churn-prod", false, |d| d["rollout"]["phase"] == "running").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_in_progress_is_shown_then_rolled_back_and_promoted_through_the_forms() {
    let server = server().await;
    canary_in_progress(&server).await;
    for _ in 0..5 {
        assert_eq!(crate::deployments::score(&server, "churn-prod").await.status, 200);
    }

    let shown = page(&server, "/loopline/deployments/churn-prod").await;
    assert_eq!(shown.status, 200, "{}", shown.body_text());
    assert!(header(&shown, "content-type").starts_with("text/html"));
    assert!(header(&shown, "content-security-policy").contains("default-src 'none'"));
    let html = shown.body_text();
    for expected in [
        "Deployment churn-prod",
        "models:/churn@champion",
        "1 of 2 (20% → 100%)",
        "version 2: 20%",
        "version 1: 80%",
        "error rate at most 0.0200",
        "p99 at most 250 ms",
        "rollout started",
        "href=\"/loopline/deployments/churn-prod/promote\"",
        "href=\"/loopline/deployments/churn-prod/rollback\"",
        "data-live-seconds",
    ] {
        assert!(html.contains(expected), "missing {expected:?} in {html}");
    }
    let listed = page(&server, "/loopline/deployments").await.body_text();
    assert!(
        listed.contains("churn-prod") && listed.contains("to version 2, step 1 of 2"),
        "{listed}"
    );

    // The confirmation page says what will happen; nothing changes until it is submitted.
    let confirm = page(&server, "/loopline/deployments/churn-prod/rollback").await;
    assert_eq!(confirm.status, 200);
    let text = confirm.body_text();
    assert!(
        text.contains("Traffic returns to version 1 at once, ending the rollout of version 2"),
        "{text}"
    );
    assert!(text.contains("method=\"post\"") && text.contains("name=\"confirm\" value=\"yes\""));
    assert!(!deployment(&server, "churn-prod").await["rollout"].is_null());

    // Confirmed against a state that has changed since (another revision): asked again, nothing changes.
    let stale = submit(
        &server,
        "/loopline/deployments/churn-prod/rollback",
        "confirm=yes&revision=0",
        None,
    )
    .await;
    assert_eq!(stale.status, 409, "{}", stale.body_text());
    assert!(stale.body_text().contains("changed since this page was shown"));
    assert!(!deployment(&server, "churn-prod").await["rollout"].is_null());

    // Unconfirmed, and from another site: refused, nothing changes.
    let unconfirmed = submit(&server, "/loopline/deployments/churn-prod/rollback", "reason=x", None).await;
    assert_eq!(unconfirmed.status, 400, "{}", unconfirmed.body_text());
    assert!(unconfirmed.body_text().contains("not confirmed"));
    let forged = submit(
        &server,
        "/loopline/deployments/churn-prod/rollback",
        "confirm=yes",
        Some("http://evil.example"),
    )
    .await;
    assert_eq!(forged.status, 403, "{}", forged.body_text());
    assert!(!deployment(&server, "churn-prod").await["rollout"].is_null());

    // Confirmed: rolled back, the reason (escaped on the page) and the web UI as actor in the trail.
    let done = submit(
        &server,
        "/loopline/deployments/churn-prod/rollback",
        "confirm=yes&reason=%3Cscript%3Ealert(1)%3C%2Fscript%3E+p99+too+high",
        Some(&server.base_url),
    )
    .await;
    assert_eq!(done.status, 303, "{}", done.body_text());
    assert_eq!(
        header(&done, "location"),
        "/loopline/deployments/churn-prod?done=rollback"
    );
    let after = deployment(&server, "churn-prod").await;
    assert!(after["rollout"].is_null(), "{after:#}");
    assert_eq!(after["stable_version"], "1");
    let trail = events(&server, "churn-prod").await;
    let rolled = trail.iter().find(|e| e["kind"] == "rolled_back").unwrap();
    assert_eq!(rolled["actor"], "user:web-ui");
    let html = page(&server, "/loopline/deployments/churn-prod?done=rollback")
        .await
        .body_text();
    assert!(html.contains("Rolled back."));
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt; p99 too high"),
        "{html}"
    );
    assert!(!html.contains("<script>alert"));

    // A new version starts another rollout; promoting it through the form makes it stable.
    let v3 = add_version(&server, "churn", "v3", "xgb_booster", false).await;
    set_alias(&server, "churn", "champion", &v3).await;
    until(&server, "churn-prod", false, |d| d["rollout"]["phase"] == "running").await;
    let confirm = page(&server, "/loopline/deployments/churn-prod/promote")
        .await
        .body_text();
    assert!(confirm.contains("<option value=\"3\">version 3</option>"), "{confirm}");
    let promoted = submit(
        &server,
        "/loopline/deployments/churn-prod/promote",
        "confirm=yes&version=3",
        None,
    )
    .await;
    assert_eq!(promoted.status, 303, "{}", promoted.body_text());
    let after = deployment(&server, "churn-prod").await;
    assert_eq!(
        (after["stable_version"].as_str(), after["rollout"].is_null()),
        (Some("3"), true)
    );

    // Promoting with nothing to promote: the server's refusal shown on the form, with its status.
    let nothing = submit(&server, "/loopline/deployments/churn-prod/promote", "confirm=yes", None).await;
    assert_eq!(nothing.status, 409, "{}", nothing.body_text());
    assert!(nothing.body_text().contains("has no rollout to promote"));

    // The model version page gathers the deployment serving it.
    let version = page(&server, "/loopline/models/churn/versions/3").await;
    assert_eq!(version.status, 200, "{}", version.body_text());
    let html = version.body_text();
    assert!(
        html.contains("Lineage of this version") && html.contains("deployment churn-prod"),
        "{html}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_section_answers_html_and_missing_things_are_404_pages() {
    let server = TestServer::start().await.unwrap();
    for (path, expected) in [
        ("/loopline/", "Loopline"),
        ("/loopline/models", "No registered models yet"),
        ("/loopline/deployments", "No deployments yet"),
        ("/loopline/monitors", "No monitors yet"),
        ("/loopline/data", "No versioned datasets"),
        ("/loopline/pipelines", "runs no pipelines"),
        ("/loopline/predictions", "No registered models yet"),
    ] {
        let answer = page(&server, path).await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.body_text());
        assert!(answer.body_text().contains(expected), "{path}: {}", answer.body_text());
        assert!(answer.body_text().contains("aria-current=\"page\""), "{path}");
    }
    let moved = page(&server, "/loopline").await;
    assert_eq!((moved.status, header(&moved, "location")), (308, "/loopline/"));
    for asset in ["/loopline/assets/loopline.css", "/loopline/assets/live.js"] {
        assert_eq!(page(&server, asset).await.status, 200, "{asset}");
    }
    for missing in [
        "/loopline/deployments/nope",
        "/loopline/monitors/nope",
        "/loopline/pipelines/nope",
        "/loopline/pipeline-runs/nope",
        "/loopline/models/nope",
        "/loopline/models/nope/versions/1",
        "/loopline/data/nope",
        "/loopline/deployments/nope/explode",
    ] {
        let answer = page(&server, missing).await;
        assert_eq!(answer.status, 404, "{missing}: {}", answer.body_text());
        assert!(header(&answer, "content-type").starts_with("text/html"), "{missing}");
    }
    // Loopline's own records cannot be forged or erased through the MLflow artifact API; every answer says
    // its type is not to be sniffed.
    for reserved in [
        "predictions/model=churn/hour=2026-12-04T10/part-9999999999999-x.parquet",
        "feedback/hour=2026-12-04T10/part-1.parquet",
        "monitoring/reports/x/report.html",
        "datasets/objects/ab/cd",
        "failures/model=churn/x.parquet",
    ] {
        let path = format!("/api/2.0/mlflow-artifacts/artifacts/{reserved}");
        let put = raw_request(server.address, "PUT", &path, &[], b"PAR1 forged")
            .await
            .unwrap();
        assert_eq!(put.status, 400, "{reserved}: {}", put.body_text());
        assert!(
            put.body_text().contains("written only by the server"),
            "{}",
            put.body_text()
        );
        let delete = raw_request(server.address, "DELETE", &path, &[], b"").await.unwrap();
        assert_eq!(delete.status, 400, "{reserved}");
    }
    let put = raw_request(
        server.address,
        "PUT",
        "/api/2.0/mlflow-artifacts/artifacts/0/run/notes.txt",
        &[],
        b"ok",
    )
    .await
    .unwrap();
    assert_eq!(put.status, 200, "{}", put.body_text());
    let read = page(&server, "/api/2.0/mlflow-artifacts/artifacts/0/run/notes.txt").await;
    assert_eq!(header(&read, "x-content-type-options"), "nosniff");

    // The prediction log's API refuses what it cannot answer, in the API's shape.
    let bad = page(&server, "/api/loopline/v1/predictions?model=m&limit=100000").await;
    assert_eq!(bad.status, 400);
    assert_eq!(json_of(&bad)["error_code"], "INVALID_PARAMETER_VALUE");
    let empty = page(&server, "/api/loopline/v1/predictions?model=never-served").await;
    assert_eq!(empty.status, 200, "{}", empty.body_text());
    assert_eq!(json_of(&empty)["predictions"], json!([]));
}

#[test]
fn generated_paths_and_queries_on_the_pages_never_get_a_server_error() {
    use proptest::prelude::*;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(TestServer::start()).unwrap();
    let routes = [
        "/loopline/deployments/",
        "/loopline/monitors/",
        "/loopline/pipelines/",
        "/loopline/pipeline-runs/",
        "/loopline/models/",
        "/loopline/data/",
        "/loopline/predictions?model=",
        "/api/loopline/v1/predictions?limit=5&model=",
    ];
    let segment = prop_oneof![
        "[\\PC]{0,24}",
        Just("..%2F..%2Fetc%2Fpasswd".to_string()),
        Just("%00".to_string()),
        Just("x/versions/99999999999999999999".to_string()),
        Just("x/versions/-1".to_string()),
        Just("a/rollback".to_string()),
        Just("<svg onload=alert(1)>".to_string()),
    ];
    let config = ProptestConfig {
        cases: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(route in 0..routes.len(), tail in segment)| {
        let encoded: String = tail
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || "/%-._".contains(c) { c.to_string() } else {
                let mut buffer = [0u8; 4];
                c.encode_utf8(&mut buffer).bytes().map(|b| format!("%{b:02X}")).collect()
            })
            .collect();
        let target = format!("{}{encoded}", routes[route]);
        let answer = runtime.block_on(page(&server, &target));
        prop_assert!(answer.status < 500, "{target}: {} {}", answer.status, answer.body_text());
        if header(&answer, "content-type").starts_with("text/html") {
            prop_assert!(!answer.body_text().contains("<svg onload"), "{target}");
        }
    });
}
