//! What an outside attack on the first version found, kept fixed: ids the guard and the handler could read
//! differently, names that mean "everything", sources and models named by URI, paths outside experiments,
//! experiment ids spelled another way, scope widening, and races.

use super::route_permissions::{ADMIN_PASSWORD, auth_server, basic, grant, json_request};
use loopline_test_support::{TestServer, raw_request};
use serde_json::json;

const API: &str = "/api/2.0/mlflow";

async fn user(server: &TestServer, admin: &str, name: &str, role: Option<&str>) -> String {
    let (status, body) = json_request(
        server,
        "POST",
        &format!("{API}/users/create"),
        Some(admin),
        &json!({"username": name, "password": "a password 1234"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    if let Some(role) = role {
        let (_, roles) = json_request(
            server,
            "GET",
            "/api/3.0/mlflow/roles/list?workspace=default",
            Some(admin),
            &json!({}),
        )
        .await;
        let id = roles["roles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|found| found["name"] == role)
            .unwrap()["id"]
            .clone();
        json_request(
            server,
            "POST",
            "/api/3.0/mlflow/roles/assign",
            Some(admin),
            &json!({"username": name, "role_id": id}),
        )
        .await;
    }
    basic(name, "a password 1234")
}

async fn deny(server: &TestServer, admin: &str, username: &str, kind: &str, id: &str) {
    let (status, body) = grant(server, admin, username, kind, id, "DENY").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn one_request_cannot_name_two_resources_or_spell_one_differently() {
    let (server, _data) = auth_server("READ").await;
    let admin = basic("admin", ADMIN_PASSWORD);
    let alice = user(&server, &admin, "alice", Some("editor")).await;
    let (_, own) = json_request(
        &server,
        "POST",
        &format!("{API}/experiments/create"),
        Some(&alice),
        &json!({"name": "a"}),
    )
    .await;
    let own = own["experiment_id"].as_str().unwrap().to_string();
    let (_, theirs) = json_request(
        &server,
        "POST",
        &format!("{API}/experiments/create"),
        Some(&admin),
        &json!({"name": "b"}),
    )
    .await;
    let theirs = theirs["experiment_id"].as_str().unwrap().to_string();
    deny(&server, &admin, "alice", "experiment", &theirs).await;
    let run_in = |experiment: String| {
        let server = &server;
        let admin = admin.clone();
        async move {
            let (_, run) = json_request(
                server,
                "POST",
                &format!("{API}/runs/create"),
                Some(&admin),
                &json!({"experiment_id": experiment, "start_time": 1}),
            )
            .await;
            run["run"]["info"]["run_id"].as_str().unwrap().to_string()
        }
    };
    let (mine, victim) = (run_in(own.clone()).await, run_in(theirs.clone()).await);
    // Two run ids in one request: refused before any handler chooses one.
    let upload = format!("{API}/upload-artifact?run_id={mine}&run_uuid={victim}&path=x.txt");
    let response = raw_request(
        server.address,
        "POST",
        &upload,
        &[
            ("authorization", alice.as_str()),
            ("content-type", "application/octet-stream"),
        ],
        b"overwritten",
    )
    .await
    .unwrap();
    assert_eq!(response.status, 400, "{}", response.body_text());
    let (status, _) = json_request(
        &server,
        "POST",
        &format!("{API}/runs/set-tag?run_uuid={victim}"),
        Some(&alice),
        &json!({"run_id": mine, "key": "k", "value": "v"}),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = json_request(
        &server,
        "GET",
        &format!("{API}/runs/get?run_id=&run_uuid={victim}"),
        Some(&alice),
        &json!({}),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = json_request(
        &server,
        "GET",
        &format!("{API}/get-trace-artifact?trace_id=tr-a&request_id=tr-b"),
        Some(&alice),
        &json!({}),
    )
    .await;
    assert_eq!(status, 400);
    // The same experiment spelled another way is the same experiment.
    for spelled in [format!("0{theirs}"), format!("+{theirs}"), format!("%20{theirs}")] {
        let (status, _) = json_request(
            &server,
            "GET",
            &format!("{API}/experiments/get?experiment_id={spelled}"),
            Some(&alice),
            &json!({}),
        )
        .await;
        assert_eq!(status, 403, "{spelled}");
    }
    // Artifact paths: `.` segments change nothing, and paths outside experiments are for admins only.
    for path in [
        format!("./{theirs}/{victim}/artifacts/f"),
        format!("%2e/{theirs}/{victim}/artifacts/f"),
        "predictions/x".to_string(),
    ] {
        let (status, _) = json_request(
            &server,
            "GET",
            &format!("/api/2.0/mlflow-artifacts/artifacts/{path}"),
            Some(&alice),
            &json!({}),
        )
        .await;
        assert_eq!(status, 403, "{path}");
    }
    // A duplicated key whose values differ is refused (a handler might keep the other one).
    let response = raw_request(
        server.address,
        "POST",
        "/api/loopline/v1/deployments",
        &[("authorization", alice.as_str()), ("content-type", "application/json")],
        br#"{"name": "prod", "name": "mine", "model": "models:/m@champion"}"#,
    )
    .await
    .unwrap();
    assert_eq!(response.status, 400, "{}", response.body_text());
}

#[tokio::test]
async fn everything_means_no_one_thing_and_references_need_their_own_rights() {
    let (server, _data) = auth_server("READ").await;
    let admin = basic("admin", ADMIN_PASSWORD);
    let bob = user(&server, &admin, "bob", Some("editor")).await;
    for (who, name) in [(&admin, "secret"), (&bob, "bobs")] {
        let (status, _) = json_request(
            &server,
            "POST",
            &format!("{API}/registered-models/create"),
            Some(who),
            &json!({"name": name}),
        )
        .await;
        assert_eq!(status, 200);
    }
    deny(&server, &admin, "bob", "registered_model", "secret").await;
    // `*` cannot name a model, nor be a rename's target.
    let (status, _) = json_request(
        &server,
        "POST",
        &format!("{API}/registered-models/create"),
        Some(&bob),
        &json!({"name": "*"}),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = json_request(
        &server,
        "POST",
        &format!("{API}/registered-models/rename"),
        Some(&bob),
        &json!({"name": "bobs", "new_name": "*"}),
    )
    .await;
    assert_eq!(status, 400);
    // Registering a version of a model one may not read, or deploying it, is refused.
    let (status, _) = json_request(
        &server,
        "POST",
        &format!("{API}/model-versions/create"),
        Some(&bob),
        &json!({"name": "bobs", "source": "models:/secret/1"}),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = json_request(
        &server,
        "POST",
        "/api/loopline/v1/deployments",
        Some(&bob),
        &json!({"name": "bobs-deployment", "model": "models:/secret@champion"}),
    )
    .await;
    assert_eq!(status, 403);
    // An unknown method is a 405 naming the allowed ones, not a refusal logged as a bug.
    let response = raw_request(
        server.address,
        "PUT",
        &format!("{API}/experiments/get"),
        &[("authorization", bob.as_str())],
        b"",
    )
    .await
    .unwrap();
    assert_eq!(response.status, 405);
    assert_eq!(response.header("allow"), Some("GET"));
}

#[tokio::test]
async fn scopes_never_widen_and_races_leave_an_admin_and_a_lock() {
    let (server, _data) = auth_server("READ").await;
    let admin = basic("admin", ADMIN_PASSWORD);
    // An admin-scoped token asking for no scopes gets its own, not all.
    let (_, issued) = json_request(
        &server,
        "POST",
        "/api/loopline/v1/access/tokens",
        Some(&admin),
        &json!({"name": "admin-only", "scopes": ["admin"]}),
    )
    .await;
    let scoped = format!("Bearer {}", issued["token"].as_str().unwrap());
    let (status, second) = json_request(
        &server,
        "POST",
        "/api/loopline/v1/access/tokens",
        Some(&scoped),
        &json!({"name": "more"}),
    )
    .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["scopes"], json!(["admin"]));
    // Two admins demoting each other at once: one admin remains.
    user(&server, &admin, "second", Some("viewer")).await;
    let (status, _) = json_request(
        &server,
        "PATCH",
        &format!("{API}/users/update-admin"),
        Some(&admin),
        &json!({"username": "second", "is_admin": true}),
    )
    .await;
    assert_eq!(status, 200);
    let second_admin = basic("second", "a password 1234");
    let update = format!("{API}/users/update-admin");
    let (demote_second, demote_admin) = (
        json!({"username": "second", "is_admin": false}),
        json!({"username": "admin", "is_admin": false}),
    );
    let (first, other) = tokio::join!(
        json_request(&server, "PATCH", &update, Some(&admin), &demote_second),
        json_request(&server, "PATCH", &update, Some(&second_admin), &demote_admin),
    );
    assert!(
        first.0 != 200 || other.0 != 200,
        "both demotions succeeded: {first:?} {other:?}"
    );
    let (_, users) = json_request(&server, "GET", &format!("{API}/users/list"), Some(&admin), &json!({})).await;
    let (_, users_second) = json_request(
        &server,
        "GET",
        &format!("{API}/users/list"),
        Some(&second_admin),
        &json!({}),
    )
    .await;
    let admins = [users, users_second]
        .iter()
        .filter_map(|listed| listed["users"].as_array())
        .flatten()
        .filter(|listed| listed["is_admin"] == true)
        .count();
    assert!(admins >= 1);
    // Guesses in parallel are counted one after another: the account ends up locked. (Made by whichever
    // admin the race left.)
    let remaining = if first.0 == 200 { &admin } else { &second_admin };
    user(&server, remaining, "target", None).await;
    let current = format!("{API}/users/current");
    let wrong: Vec<String> = (0..12)
        .map(|guess| basic("target", &format!("wrong {guess:08}")))
        .collect();
    let empty = json!({});
    let guesses = wrong
        .iter()
        .map(|credentials| json_request(&server, "GET", &current, Some(credentials), &empty));
    futures::future::join_all(guesses).await;
    let (status, _) = json_request(
        &server,
        "GET",
        &format!("{API}/users/current"),
        Some(&basic("target", "a password 1234")),
        &json!({}),
    )
    .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn defaults_references_and_monitor_actions_are_checked_too() {
    let (server, _data) = auth_server("READ").await;
    let admin = basic("admin", ADMIN_PASSWORD);
    let carol = user(&server, &admin, "carol", Some("editor")).await;
    // Runs created without an experiment go to experiment 0: a DENY there holds for them too.
    deny(&server, &admin, "carol", "experiment", "0").await;
    for body in [json!({}), json!({"experiment_id": ""})] {
        let (status, _) = json_request(&server, "POST", &format!("{API}/runs/create"), Some(&carol), &body).await;
        assert_eq!(status, 403, "{body}");
    }
    // Sources are read whatever the scheme's case, and escapes are refused.
    json_request(
        &server,
        "POST",
        &format!("{API}/registered-models/create"),
        Some(&admin),
        &json!({"name": "secret"}),
    )
    .await;
    json_request(
        &server,
        "POST",
        &format!("{API}/registered-models/create"),
        Some(&carol),
        &json!({"name": "mine"}),
    )
    .await;
    deny(&server, &admin, "carol", "registered_model", "secret").await;
    for (source, expected) in [
        ("Models:/secret/1", 403),
        ("MODELS:/secret/1", 403),
        ("models:/%73ecret/1", 400),
    ] {
        let (status, _) = json_request(
            &server,
            "POST",
            &format!("{API}/model-versions/create"),
            Some(&carol),
            &json!({"name": "mine", "source": source}),
        )
        .await;
        assert_eq!(status, expected, "{source}");
    }
    // A monitor's actions: moving an alias needs EDIT on the model, and outbound URLs are for admins.
    let dave = user(&server, &admin, "dave", None).await;
    let (status, _) = grant(&server, &admin, "dave", "monitor", "*", "EDIT").await;
    assert_eq!(status, 200);
    for action in [
        json!({"kind": "move_alias", "model": "secret", "alias": "champion", "version": "1"}),
        json!({"kind": "webhook", "url": "http://127.0.0.1:9/ssrf"}),
        json!({"kind": "rollback", "deployment": "prod"}),
    ] {
        let (status, body) = json_request(
            &server,
            "POST",
            "/api/loopline/v1/monitors",
            Some(&dave),
            &json!({"name": "m", "model": "mine", "alerts": [{"name": "a", "figure": "rows", "operator": ">=",
                    "threshold": 0, "actions": [action]}]}),
        )
        .await;
        assert_eq!(status, 403, "{action}: {body}");
    }
}

#[tokio::test]
async fn a_monitor_is_read_only_by_those_who_may_read_what_it_watches() {
    use loopline_server::auth_options::{AuthMode, AuthOptions};
    // The model and its monitor are made before auth is turned on (the fixtures' helpers send no credentials),
    // then the same storage is served with auth.
    let data = tempfile::tempdir().unwrap();
    let open = TestServer::start_with_config(TestServer::config_in(data.path()).with_defaults())
        .await
        .unwrap();
    crate::serving::register(&open, "watched", "xgb_classifier", None).await;
    let created = crate::serving::post_json(
        &open,
        "/api/loopline/v1/monitors",
        &json!({"name": "watcher", "model": "watched", "alias": "champion", "window": {"predictions": 10}}),
    )
    .await;
    assert_eq!(created.status, 200, "{}", created.body_text());
    open.stop().await.unwrap();
    let config = loopline_server::config::ServerConfig {
        auth: AuthOptions {
            modes: vec![AuthMode::Basic, AuthMode::Token],
            admin_password: Some(ADMIN_PASSWORD.to_string()),
            ..AuthOptions::default()
        },
        ..TestServer::config_in(data.path())
    }
    .with_defaults();
    let server = TestServer::start_with_config(config).await.unwrap();
    let admin = basic("admin", ADMIN_PASSWORD);
    let carol = user(&server, &admin, "carol", Some("editor")).await;
    let listed = |who: String| {
        let server = &server;
        async move {
            let (_, body) = json_request(server, "GET", "/api/loopline/v1/monitors", Some(&who), &json!({})).await;
            body["monitors"].as_array().map_or(0, Vec::len)
        }
    };
    assert_eq!(listed(carol.clone()).await, 1);
    let status = json_request(
        &server,
        "GET",
        "/api/loopline/v1/monitors/watcher",
        Some(&carol),
        &json!({}),
    )
    .await
    .0;
    assert_eq!(status, 200);
    deny(&server, &admin, "carol", "registered_model", "watched").await;
    assert_eq!(listed(carol.clone()).await, 0);
    for path in [
        "/api/loopline/v1/monitors/watcher",
        "/api/loopline/v1/monitors/watcher/windows",
    ] {
        assert_eq!(
            json_request(&server, "GET", path, Some(&carol), &json!({})).await.0,
            403,
            "{path}"
        );
    }
    assert_eq!(listed(admin.clone()).await, 1);
}

/// Serving answers a deployment's name through the deployment: calling it needs USE on the deployment, not
/// only on a model of that name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_served_as_a_deployment_needs_the_right_to_call_that_deployment() {
    use super::deployments::{DEPLOYMENTS, add_version_as, call_as};
    let (server, _data) = auth_server("READ").await;
    let admin = basic("admin", ADMIN_PASSWORD);
    add_version_as(&server, Some(&admin), "fraud-model", "f1", "xgb_booster", false).await;
    let created = call_as(
        &server,
        Some(&admin),
        "POST",
        DEPLOYMENTS,
        &json!({"name": "fraud", "model": "models:/fraud-model/1"}),
    )
    .await;
    assert_eq!(created.status, 200, "{}", created.body_text());
    let carol = user(&server, &admin, "carol", None).await;
    let (status, body) = grant(&server, &admin, "carol", "registered_model", "*", "USE").await;
    assert_eq!(status, 200, "{body}");
    let body =
        json!({"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 5], "data": [0.1, 0.2, 0.3, 0.4, 0.5]}]});
    let infer = |path: &'static str| {
        let (server, carol, body) = (&server, carol.clone(), body.clone());
        async move { call_as(server, Some(&carol), "POST", path, &body).await }
    };
    // The model itself: USE on every model suffices.
    let direct = infer("/v2/models/fraud-model/versions/1/infer").await;
    assert_eq!(direct.status, 200, "{}", direct.body_text());
    // Once this server serves the deployment (its controller picks it up), its name needs USE on it.
    let mut answer = infer("/v2/models/fraud/infer").await;
    for _ in 0..200 {
        if answer.status == 403 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        answer = infer("/v2/models/fraud/infer").await;
    }
    assert_eq!(answer.status, 403, "{}", answer.body_text());
    let (status, body) = grant(&server, &admin, "carol", "deployment", "fraud", "USE").await;
    assert_eq!(status, 200, "{body}");
    let mut answer = infer("/v2/models/fraud/infer").await;
    for _ in 0..200 {
        if answer.status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        answer = infer("/v2/models/fraud/infer").await;
    }
    assert_eq!(answer.status, 200, "{}", answer.body_text());
    // A caller the guard remembers (answered at once, without the full check) loses a right the moment it is
    // taken on this replica: a token works until revoked, and a DENY holds for password and token alike.
    let issued = call_as(
        &server,
        Some(&carol),
        "POST",
        "/api/loopline/v1/access/tokens",
        &json!({"name": "app", "scopes": ["predict"]}),
    )
    .await;
    assert_eq!(issued.status, 200, "{}", issued.body_text());
    let issued: serde_json::Value = serde_json::from_slice(&issued.body).unwrap();
    let token = format!("Bearer {}", issued["token"].as_str().unwrap());
    let direct = "/v2/models/fraud-model/versions/1/infer";
    let body =
        json!({"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 5], "data": [0.1, 0.2, 0.3, 0.4, 0.5]}]});
    for _ in 0..3 {
        let answer = call_as(&server, Some(&token), "POST", direct, &body).await;
        assert_eq!(answer.status, 200, "{}", answer.body_text());
    }
    let revoked = call_as(
        &server,
        Some(&carol),
        "DELETE",
        &format!(
            "/api/loopline/v1/access/tokens/{}",
            issued["token_id"].as_str().unwrap()
        ),
        &json!({}),
    )
    .await;
    assert_eq!(revoked.status, 200, "{}", revoked.body_text());
    let answer = call_as(&server, Some(&token), "POST", direct, &body).await;
    assert_eq!(answer.status, 401, "{}", answer.body_text());
    let answer = infer(direct).await;
    assert_eq!(answer.status, 200, "{}", answer.body_text());
    deny(&server, &admin, "carol", "registered_model", "fraud-model").await;
    let answer = infer(direct).await;
    assert_eq!(answer.status, 403, "{}", answer.body_text());
}
