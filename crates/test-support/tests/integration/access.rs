//! Access control as an attacker meets it: the classes of hole MLflow's auth had (open signup, empty
//! passwords, unchecked search and GraphQL), token replay after revocation, raising one's own level,
//! lockout, and answers that never say whether a user exists.

use super::route_permissions::{ADMIN_PASSWORD, auth_server, auth_server_in, basic, grant, json_request};
use loopline_test_support::{TestServer, raw_request};
use serde_json::{Value, json};

const API: &str = "/api/2.0/mlflow";

async fn create_user(server: &TestServer, admin: &str, username: &str, password: &str) -> (u16, Value) {
    json_request(
        server,
        "POST",
        &format!("{API}/users/create"),
        Some(admin),
        &json!({"username": username, "password": password}),
    )
    .await
}

/// Gives a user the built-in editor role.
async fn make_editor(server: &TestServer, admin: &str, username: &str) {
    let (_, roles) = json_request(
        server,
        "GET",
        "/api/3.0/mlflow/roles/list?workspace=default",
        Some(admin),
        &json!({}),
    )
    .await;
    let editor = roles["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|role| role["name"] == "editor")
        .unwrap()["id"]
        .clone();
    let (status, body) = json_request(
        server,
        "POST",
        "/api/3.0/mlflow/roles/assign",
        Some(admin),
        &json!({"username": username, "role_id": editor}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

async fn new_experiment(server: &TestServer, who: &str, name: &str) -> String {
    let (status, body) = json_request(
        server,
        "POST",
        &format!("{API}/experiments/create"),
        Some(who),
        &json!({"name": name}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["experiment_id"].as_str().unwrap().to_string()
}

async fn new_run(server: &TestServer, who: &str, experiment_id: &str) -> String {
    let (status, body) = json_request(
        server,
        "POST",
        &format!("{API}/runs/create"),
        Some(who),
        &json!({"experiment_id": experiment_id, "start_time": 1}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["run"]["info"]["run_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn nobody_signs_up_and_no_account_has_an_empty_or_short_password() {
    let (server, _data) = auth_server("READ").await;
    let admin = basic("admin", ADMIN_PASSWORD);
    // Without credentials, and as a plain user: no account creation.
    let (status, _) = json_request(
        &server,
        "POST",
        &format!("{API}/users/create"),
        None,
        &json!({"username": "mallory", "password": "long enough password"}),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(create_user(&server, &admin, "alice", "alice's password").await.0, 200);
    let alice = basic("alice", "alice's password");
    assert_eq!(
        create_user(&server, &alice, "mallory", "long enough password").await.0,
        403
    );
    // Empty and short passwords are refused, for creation and for login.
    let (status, _) = create_user(&server, &admin, "bob", "").await;
    assert_eq!(status, 400);
    let (status, body) = create_user(&server, &admin, "bob", "short").await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (400, Some("INVALID_PARAMETER_VALUE"))
    );
    let (status, _) = json_request(
        &server,
        "GET",
        &format!("{API}/users/current"),
        Some(&basic("alice", "")),
        &json!({}),
    )
    .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn a_revoked_token_never_works_again_and_a_predict_token_only_predicts() {
    let (server, _data) = auth_server("READ").await;
    let admin = basic("admin", ADMIN_PASSWORD);
    create_user(&server, &admin, "carol", "carol's password").await;
    make_editor(&server, &admin, "carol").await;
    let carol = basic("carol", "carol's password");
    let (status, issued) = json_request(
        &server,
        "POST",
        "/api/loopline/v1/access/tokens",
        Some(&carol),
        &json!({"name": "laptop", "expires_in_days": 30}),
    )
    .await;
    assert_eq!(status, 200, "{issued}");
    let token = issued["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("llt_"));
    let bearer = format!("Bearer {token}");
    let (status, me) = json_request(
        &server,
        "GET",
        &format!("{API}/users/current"),
        Some(&bearer),
        &json!({}),
    )
    .await;
    assert_eq!((status, me["user"]["username"].as_str()), (200, Some("carol")));
    // The listing never shows a secret.
    let (_, listed) = json_request(
        &server,
        "GET",
        "/api/loopline/v1/access/tokens",
        Some(&carol),
        &json!({}),
    )
    .await;
    assert!(!listed.to_string().contains(&token[16..]), "{listed}");
    assert!(listed["tokens"][0]["last_used_time"].is_i64() || listed["tokens"][0]["last_used_time"].is_null());
    let token_id = issued["token_id"].as_str().unwrap();
    let (status, _) = json_request(
        &server,
        "DELETE",
        &format!("/api/loopline/v1/access/tokens/{token_id}"),
        Some(&carol),
        &json!({}),
    )
    .await;
    assert_eq!(status, 200);
    for _ in 0..2 {
        let (status, body) = json_request(
            &server,
            "GET",
            &format!("{API}/users/current"),
            Some(&bearer),
            &json!({}),
        )
        .await;
        assert_eq!((status, body["error_code"].as_str()), (401, Some("UNAUTHENTICATED")));
    }
    // A predict-scoped token reaches serving (here: no such model) and nothing else.
    let (_, issued) = json_request(
        &server,
        "POST",
        "/api/loopline/v1/access/tokens",
        Some(&carol),
        &json!({"name": "app", "scopes": ["predict"]}),
    )
    .await;
    let app = format!("Bearer {}", issued["token"].as_str().unwrap());
    let (status, _) = json_request(
        &server,
        "POST",
        "/v2/models/churn/infer",
        Some(&app),
        &json!({"inputs": []}),
    )
    .await;
    assert!(status != 401 && status != 403, "{status}");
    let (status, _) = json_request(
        &server,
        "POST",
        &format!("{API}/experiments/search"),
        Some(&app),
        &json!({}),
    )
    .await;
    assert_eq!(status, 403);
    // A token cannot mint a broader one.
    let (status, _) = json_request(
        &server,
        "POST",
        "/api/loopline/v1/access/tokens",
        Some(&app),
        &json!({"name": "wider", "scopes": ["all"]}),
    )
    .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn nobody_raises_their_own_level() {
    let (server, _data) = auth_server("READ").await;
    let admin = basic("admin", ADMIN_PASSWORD);
    create_user(&server, &admin, "dave", "dave's password").await;
    make_editor(&server, &admin, "dave").await;
    let dave = basic("dave", "dave's password");
    let experiment = new_experiment(&server, &admin, "owned-by-admin").await;
    let attempts = [
        (
            "POST",
            "/api/3.0/mlflow/users/permissions/grant",
            json!({"username": "dave", "resource_type": "experiment", "resource_id": experiment, "permission": "MANAGE"}),
        ),
        (
            "PATCH",
            "/api/2.0/mlflow/users/update-admin",
            json!({"username": "dave", "is_admin": true}),
        ),
        (
            "POST",
            "/api/3.0/mlflow/roles/permissions/add",
            json!({"role_id": 1, "resource_type": "experiment", "resource_pattern": "*", "permission": "MANAGE"}),
        ),
        (
            "POST",
            "/api/3.0/mlflow/roles/assign",
            json!({"username": "dave", "role_id": 1}),
        ),
        (
            "POST",
            "/api/3.0/mlflow/roles/create",
            json!({"workspace": "default", "name": "mine"}),
        ),
    ];
    for (method, path, body) in attempts {
        let (status, answer) = json_request(&server, method, path, Some(&dave), &body).await;
        assert_eq!(status, 403, "{method} {path}: {answer}");
    }
    let (status, _) = json_request(
        &server,
        "POST",
        &format!("{API}/experiments/delete"),
        Some(&dave),
        &json!({"experiment_id": experiment}),
    )
    .await;
    assert_eq!(status, 403);
    // The creator of a resource manages it, and may share it.
    let own = new_experiment(&server, &dave, "owned-by-dave").await;
    let (status, _) = grant(&server, &dave, "admin", "experiment", &own, "READ").await;
    assert_eq!(status, 200);
    let (status, _) = json_request(
        &server,
        "POST",
        &format!("{API}/experiments/delete"),
        Some(&dave),
        &json!({"experiment_id": own}),
    )
    .await;
    assert_eq!(status, 200);
    // A grant on something that does not exist is refused with a clear error.
    let (status, body) = grant(&server, &admin, "dave", "experiment", "987654", "READ").await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (404, Some("RESOURCE_DOES_NOT_EXIST"))
    );
}

#[tokio::test]
async fn searches_and_graphql_show_only_what_the_caller_may_read() {
    let (server, _data) = auth_server("NO_PERMISSIONS").await;
    let admin = basic("admin", ADMIN_PASSWORD);
    create_user(&server, &admin, "erin", "erin's password").await;
    let erin = basic("erin", "erin's password");
    // Erin may create (EDIT on experiments as a whole) and so manages what she creates; the rest is hidden.
    let (status, _) = grant(&server, &admin, "erin", "experiment", "*", "NO_PERMISSIONS").await;
    assert_eq!(status, 200);
    let mut hidden = Vec::new();
    let mut visible = Vec::new();
    for index in 0..7 {
        let experiment = new_experiment(&server, &admin, &format!("e{index}")).await;
        if index % 3 == 1 {
            let (status, _) = grant(&server, &admin, "erin", "experiment", &experiment, "READ").await;
            assert_eq!(status, 200);
            visible.push(experiment);
        } else {
            hidden.push(experiment);
        }
    }
    // Experiments, a page of one at a time: every readable one, nothing else, no token after the last.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut request = json!({"max_results": 1});
        if let Some(token) = &token {
            request["page_token"] = json!(token);
        }
        let (status, page) = json_request(
            &server,
            "POST",
            &format!("{API}/experiments/search"),
            Some(&erin),
            &request,
        )
        .await;
        assert_eq!(status, 200, "{page}");
        for experiment in page["experiments"].as_array().into_iter().flatten() {
            seen.push(experiment["experiment_id"].as_str().unwrap().to_string());
        }
        match page["next_page_token"].as_str() {
            Some(next) => token = Some(next.to_string()),
            None => break,
        }
    }
    seen.sort();
    let mut expected = visible.clone();
    expected.sort();
    assert_eq!(seen, expected);
    // Runs in a hidden experiment are not found by a search naming it, nor read one by one.
    let hidden_run = new_run(&server, &admin, &hidden[0]).await;
    let visible_run = new_run(&server, &admin, &visible[0]).await;
    let (status, runs) = json_request(
        &server,
        "POST",
        &format!("{API}/runs/search"),
        Some(&erin),
        &json!({"experiment_ids": [hidden[0], visible[0]]}),
    )
    .await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|run| run["info"]["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![visible_run.as_str()]);
    let (status, _) = json_request(
        &server,
        "GET",
        &format!("{API}/runs/get?run_id={hidden_run}"),
        Some(&erin),
        &json!({}),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = json_request(
        &server,
        "GET",
        &format!("{API}/metrics/get-history-bulk-interval?run_ids={visible_run}&run_ids={hidden_run}&metric_key=m"),
        Some(&erin),
        &json!({}),
    )
    .await;
    assert_eq!(status, 403);
    // GraphQL answers the same way.
    let query = json!({"query": format!(
        "query {{ mlflowGetExperiment(input: {{experimentId: \"{}\"}}) {{ experiment {{ name }} apiError {{ code }} }} }}",
        hidden[1]
    )});
    let (status, answer) = json_request(&server, "POST", "/graphql", Some(&erin), &query).await;
    assert_eq!(status, 200);
    assert_eq!(
        answer["data"]["mlflowGetExperiment"]["apiError"]["code"], "PERMISSION_DENIED",
        "{answer}"
    );
    assert!(
        answer["data"]["mlflowGetExperiment"]["experiment"].is_null(),
        "{answer}"
    );
    // Registered models: only the caller's own.
    for name in ["admins-model", "other-model"] {
        json_request(
            &server,
            "POST",
            &format!("{API}/registered-models/create"),
            Some(&admin),
            &json!({"name": name}),
        )
        .await;
    }
    let (status, _) = grant(&server, &admin, "erin", "registered_model", "*", "EDIT").await;
    assert_eq!(status, 200);
    let (status, _) = grant(&server, &admin, "erin", "registered_model", "other-model", "DENY").await;
    assert_eq!(status, 200);
    let (_, models) = json_request(
        &server,
        "GET",
        &format!("{API}/registered-models/search?max_results=10"),
        Some(&erin),
        &json!({}),
    )
    .await;
    let names: Vec<&str> = models["registered_models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["admins-model"]);
}

#[tokio::test]
async fn unknown_users_wrong_passwords_and_locked_accounts_are_answered_alike() {
    let (server, _data) = auth_server("READ").await;
    let admin = basic("admin", ADMIN_PASSWORD);
    create_user(&server, &admin, "frank", "frank's password").await;
    let current = format!("{API}/users/current");
    let unknown = json_request(
        &server,
        "GET",
        &current,
        Some(&basic("nobody-here", "whatever it is")),
        &json!({}),
    )
    .await;
    let wrong = json_request(
        &server,
        "GET",
        &current,
        Some(&basic("frank", "not his password")),
        &json!({}),
    )
    .await;
    assert_eq!(unknown, wrong);
    assert_eq!(unknown.0, 401);
    for _ in 0..5 {
        json_request(
            &server,
            "GET",
            &current,
            Some(&basic("frank", "still not it")),
            &json!({}),
        )
        .await;
    }
    // Locked now: even the right password is refused, with the same answer.
    let locked = json_request(
        &server,
        "GET",
        &current,
        Some(&basic("frank", "frank's password")),
        &json!({}),
    )
    .await;
    assert_eq!(locked, wrong);
    // Headers that cannot be read are 401s in each protocol's shape, never a 500.
    for header in [
        "Basic",
        "Basic !!!",
        "Bearer",
        "Bearer a b",
        "Digest x",
        "Basic OnBhc3N3b3Jk",
        "Bearer llt_",
    ] {
        let response = raw_request(server.address, "GET", &current, &[("authorization", header)], b"")
            .await
            .unwrap();
        assert_eq!(response.status, 401, "{header}");
        assert!(response.header("www-authenticate").is_some());
        let response = raw_request(server.address, "GET", "/v2/models/m", &[("authorization", header)], b"")
            .await
            .unwrap();
        assert_eq!(response.status, 401);
        assert!(response.json()["error"].is_string());
    }
}

/// The whole audit trail, as `who` (an admin) reads it.
async fn audit_trail(server: &TestServer, who: &str) -> Value {
    let (status, trail) = json_request(server, "GET", "/api/loopline/v1/access/audit", Some(who), &json!({})).await;
    assert_eq!(status, 200, "{trail}");
    trail
}

#[tokio::test]
async fn a_change_answered_just_before_a_shutdown_is_in_the_trail_after_the_restart() {
    let (server, data) = auth_server("READ").await;
    let admin = basic("admin", ADMIN_PASSWORD);
    new_experiment(&server, &admin, "made-before-the-stop").await;
    server.stop().await.unwrap();
    let server = auth_server_in("READ", data.path()).await;
    let trail = audit_trail(&server, &admin).await;
    let recorded = trail["entries"].as_array().unwrap().iter().any(|entry| {
        entry["outcome"] == "allowed"
            && entry["path"]
                .as_str()
                .unwrap_or_default()
                .ends_with("/experiments/create")
    });
    assert!(
        recorded,
        "the queued entry was written before the store closed: {trail}"
    );
}

#[tokio::test]
async fn the_audit_trail_records_changes_and_refusals_without_secrets() {
    let (server, _data) = auth_server("READ").await;
    let admin = basic("admin", ADMIN_PASSWORD);
    create_user(&server, &admin, "grace", "grace's password").await;
    make_editor(&server, &admin, "grace").await;
    let grace = basic("grace", "grace's password");
    new_experiment(&server, &grace, "graces").await;
    json_request(
        &server,
        "POST",
        &format!("{API}/users/create"),
        Some(&grace),
        &json!({"username": "x", "password": "secret value 1234"}),
    )
    .await;
    json_request(
        &server,
        "GET",
        &format!("{API}/users/current"),
        Some(&basic("grace", "wrong password")),
        &json!({}),
    )
    .await;
    let trail = audit_trail(&server, &admin).await;
    let entries = trail["entries"].as_array().unwrap();
    let has = |outcome: &str, path: &str| {
        entries
            .iter()
            .any(|entry| entry["outcome"] == outcome && entry["path"].as_str().unwrap_or_default().ends_with(path))
    };
    assert!(has("allowed", "/experiments/create"), "{trail}");
    assert!(has("denied", "/users/create"), "{trail}");
    assert!(has("unauthenticated", "/users/current"), "{trail}");
    assert!(
        entries
            .iter()
            .any(|entry| entry["principal"] == "grace" && entry["source"] == "127.0.0.1")
    );
    assert!(!trail.to_string().contains("secret value") && !trail.to_string().contains("wrong password"));
    let (status, denied) = json_request(
        &server,
        "GET",
        "/api/loopline/v1/access/audit?outcome=denied",
        Some(&grace),
        &json!({}),
    )
    .await;
    assert_eq!(
        (status, denied["error_code"].as_str()),
        (403, Some("PERMISSION_DENIED"))
    );
    let export = raw_request(
        server.address,
        "GET",
        "/api/loopline/v1/access/audit/export?principal=grace",
        &[("authorization", admin.as_str())],
        b"",
    )
    .await
    .unwrap();
    assert_eq!(export.status, 200);
    let lines: Vec<Value> = export
        .body_text()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert!(!lines.is_empty() && lines.iter().all(|line| line["principal"] == "grace"));
}
