//! What the guard remembers of a kept-alive connection (its last caller, so the same `Authorization` header
//! again costs no check) never outlives a change: a revoked token, a changed password or a new DENY is refused
//! on the next request of the same connection, and callers that take turns on one connection (as behind a
//! proxy) are each themselves.

use super::route_permissions::{ADMIN_PASSWORD, auth_server, basic, grant, json_request};
use loopline_test_support::{KeptConnection, RawResponse};
use serde_json::json;

const API: &str = "/api/2.0/mlflow";

async fn get(connection: &mut KeptConnection, path: &str, authorization: &str) -> RawResponse {
    connection
        .request("GET", path, &[("authorization", authorization)], b"")
        .await
        .expect("the kept connection stays open")
}

/// The user name `users/current` answers on the connection, or the status when it refuses.
async fn current(connection: &mut KeptConnection, authorization: &str) -> Result<String, u16> {
    let response = get(connection, &format!("{API}/users/current"), authorization).await;
    match response.status {
        200 => Ok(response.json()["user"]["username"].as_str().unwrap().to_string()),
        status => Err(status),
    }
}

#[tokio::test]
async fn a_kept_alive_connection_is_refused_at_once_after_revocation_password_change_or_deny() {
    let (server, _data) = auth_server("READ").await;
    let admin = basic("admin", ADMIN_PASSWORD);
    for name in ["carol", "dave"] {
        let (status, body) = json_request(
            &server,
            "POST",
            &format!("{API}/users/create"),
            Some(&admin),
            &json!({"username": name, "password": format!("{name}'s password")}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let mut tokens = Vec::new();
    for name in ["carol", "dave"] {
        let (status, issued) = json_request(
            &server,
            "POST",
            "/api/loopline/v1/access/tokens",
            Some(&basic(name, &format!("{name}'s password"))),
            &json!({"name": "laptop"}),
        )
        .await;
        assert_eq!(status, 200, "{issued}");
        tokens.push((
            format!("Bearer {}", issued["token"].as_str().unwrap()),
            issued["token_id"].as_str().unwrap().to_string(),
        ));
    }
    let (carol, carol_id) = tokens[0].clone();
    let (dave, _) = tokens[1].clone();
    let mut connection = KeptConnection::open(server.address).await.unwrap();

    // The same header again, and callers taking turns: each request is answered as its own caller.
    for expected in ["carol", "carol", "dave", "carol", "dave", "dave"] {
        let header = if expected == "carol" { &carol } else { &dave };
        assert_eq!(current(&mut connection, header).await.as_deref(), Ok(expected));
    }
    // A token with carol's id and a wrong secret, right after carol's own on the same connection.
    let last = carol.chars().last().unwrap();
    let forged = format!("{}{}", &carol[..carol.len() - 1], if last == 'A' { 'B' } else { 'A' });
    assert_eq!(current(&mut connection, &carol).await.as_deref(), Ok("carol"));
    assert_eq!(current(&mut connection, &forged).await, Err(401));

    // Revoked on another connection: refused on this one at its next request.
    assert_eq!(current(&mut connection, &carol).await.as_deref(), Ok("carol"));
    let (status, body) = json_request(
        &server,
        "DELETE",
        &format!("/api/loopline/v1/access/tokens/{carol_id}"),
        Some(&basic("carol", "carol's password")),
        &json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(current(&mut connection, &carol).await, Err(401));
    assert_eq!(current(&mut connection, &dave).await.as_deref(), Ok("dave"));

    // A password changed by the admin: the old one is refused on the connection that used it.
    let old = basic("carol", "carol's password");
    assert_eq!(current(&mut connection, &old).await.as_deref(), Ok("carol"));
    let (status, body) = json_request(
        &server,
        "PATCH",
        &format!("{API}/users/update-password"),
        Some(&admin),
        &json!({"username": "carol", "password": "carol's new password"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(current(&mut connection, &old).await, Err(401));
    let new = basic("carol", "carol's new password");
    assert_eq!(current(&mut connection, &new).await.as_deref(), Ok("carol"));

    // A DENY on one experiment holds from the next request of a connection that just read it.
    let (status, created) = json_request(
        &server,
        "POST",
        &format!("{API}/experiments/create"),
        Some(&admin),
        &json!({"name": "kept"}),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let read = format!(
        "{API}/experiments/get?experiment_id={}",
        created["experiment_id"].as_str().unwrap()
    );
    assert_eq!(get(&mut connection, &read, &dave).await.status, 200);
    assert_eq!(get(&mut connection, &read, &dave).await.status, 200);
    let experiment_id = created["experiment_id"].as_str().unwrap();
    let (status, body) = grant(&server, &admin, "dave", "experiment", experiment_id, "DENY").await;
    assert_eq!(status, 200, "{body}");
    let refused = get(&mut connection, &read, &dave).await;
    assert_eq!(refused.status, 403, "{}", refused.body_text());
    assert_eq!(refused.json()["error_code"], "PERMISSION_DENIED");
}
