//! The versioned-data API: objects accepted only under their own hash and never replaced, versions
//! registered only when complete and numbered per content, garbage collection, and hostile ids and bodies.

use loopline_test_support::{RawResponse, TestServer, raw_request};
use serde_json::json;

use crate::serving::post_json;

fn id(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

async fn put(server: &TestServer, id: &str, body: &[u8]) -> RawResponse {
    let target = format!("/api/loopline/v1/data/objects/{id}");
    raw_request(
        server.address,
        "PUT",
        &target,
        &[("Content-Type", "application/octet-stream")],
        body,
    )
    .await
    .unwrap()
}

async fn get(server: &TestServer, target: &str) -> RawResponse {
    raw_request(server.address, "GET", target, &[], b"").await.unwrap()
}

async fn missing(server: &TestServer, ids: &[&str]) -> Vec<String> {
    let answer = post_json(server, "/api/loopline/v1/data/objects/missing", &json!({"ids": ids})).await;
    assert_eq!(answer.status, 200, "{}", answer.body_text());
    serde_json::from_value(answer.json()["missing"].clone()).unwrap()
}

/// A directory of two files, as a client sends it: the files' ids, the manifest's bytes and its id.
fn directory() -> (String, String, Vec<u8>, String) {
    let (a, b) = (id(b"first file"), id(b"second"));
    let manifest =
        format!(r#"[{{"path":"a.txt","hash":"{a}","size":10}},{{"path":"sub/b.txt","hash":"{b}","size":6}}]"#)
            .into_bytes();
    let manifest_id = format!("{}.dir", id(&manifest));
    (a, b, manifest, manifest_id)
}

#[tokio::test]
async fn objects_are_stored_only_under_their_own_hash_and_never_replaced() {
    let server = TestServer::start().await.unwrap();
    let right = id(b"content");
    let wrong = put(&server, &right, b"not the content").await;
    assert_eq!(wrong.status, 400, "{}", wrong.body_text());
    assert!(wrong.body_text().contains("nothing was stored"));
    assert_eq!(missing(&server, &[&right]).await, std::slice::from_ref(&right));
    assert_eq!(put(&server, &right, b"content").await.status, 201);
    assert_eq!(missing(&server, &[&right]).await, Vec::<String>::new());
    // A second upload with other bytes changes nothing: stored content is never replaced.
    let again = put(&server, &right, b"other bytes").await;
    assert_eq!((again.status, again.json()["stored"].clone()), (200, json!(false)));
    let download = get(&server, &format!("/api/loopline/v1/data/objects/{right}")).await;
    assert_eq!(
        (download.status, download.body.as_slice()),
        (200, b"content".as_slice())
    );
    // A manifest must be one.
    let junk = b"not a manifest";
    let refused = put(&server, &format!("{}.dir", id(junk)), junk).await;
    assert_eq!(refused.status, 400, "{}", refused.body_text());
    assert!(refused.body_text().contains("not a valid manifest"));
    for hostile in [
        "../../etc/passwd",
        "abc",
        &right.to_uppercase(),
        &format!("{right}.dir.dir"),
        "%2e%2e%2f",
    ] {
        let answer = put(&server, hostile, b"x").await;
        assert!((400..500).contains(&answer.status), "{hostile}: {}", answer.status);
        let answer = get(&server, &format!("/api/loopline/v1/data/objects/{hostile}")).await;
        assert!((400..500).contains(&answer.status), "{hostile}: {}", answer.status);
    }
    let bad_ids = post_json(
        &server,
        "/api/loopline/v1/data/objects/missing",
        &json!({"ids": ["zz"]}),
    )
    .await;
    assert_eq!(bad_ids.status, 400);
}

#[tokio::test]
async fn versions_are_registered_when_complete_and_numbered_per_content() {
    let server = TestServer::start().await.unwrap();
    let (a, b, manifest, manifest_id) = directory();
    let register = |hash: &str, size: u64, files: u64| json!({"hash": hash, "size": size, "files": files, "source": "data/images"});
    assert_eq!(put(&server, &manifest_id, &manifest).await.status, 201);
    assert_eq!(put(&server, &a, b"first file").await.status, 201);
    let incomplete = post_json(
        &server,
        "/api/loopline/v1/datasets/images/versions",
        &register(&manifest_id, 16, 2),
    )
    .await;
    assert_eq!(incomplete.status, 400, "{}", incomplete.body_text());
    assert!(
        incomplete
            .body_text()
            .contains("1 object(s) of this version are not stored")
    );
    assert_eq!(put(&server, &b, b"second").await.status, 201);
    let lying = post_json(
        &server,
        "/api/loopline/v1/datasets/images/versions",
        &register(&manifest_id, 99, 2),
    )
    .await;
    assert_eq!(lying.status, 400, "{}", lying.body_text());
    let created = post_json(
        &server,
        "/api/loopline/v1/datasets/images/versions",
        &register(&manifest_id, 16, 2),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body_text());
    assert_eq!(created.json()["version"]["version"], 1);
    let again = post_json(
        &server,
        "/api/loopline/v1/datasets/images/versions",
        &register(&manifest_id, 16, 2),
    )
    .await;
    assert_eq!(
        (again.status, again.json()["version"]["version"].clone()),
        (200, json!(1))
    );
    let single = post_json(
        &server,
        "/api/loopline/v1/datasets/images/versions",
        &register(&a, 10, 1),
    )
    .await;
    assert_eq!(single.json()["version"]["version"], 2);
    let latest = get(&server, "/api/loopline/v1/datasets/images/versions/latest").await;
    assert_eq!(latest.json()["version"]["hash"], json!(a));
    let listed = get(&server, "/api/loopline/v1/datasets").await.json();
    assert_eq!(listed["datasets"][0]["version_count"], 2);
    let versions = get(&server, "/api/loopline/v1/datasets/images/versions?limit=1")
        .await
        .json();
    assert_eq!(
        (
            versions["versions"][0]["version"].clone(),
            versions["next_before"].clone()
        ),
        (json!(2), json!(2))
    );
    for (target, status) in [
        ("/api/loopline/v1/datasets/images/versions/7", 404),
        ("/api/loopline/v1/datasets/images/versions/seven", 400),
        ("/api/loopline/v1/datasets/none/versions", 404),
        ("/api/loopline/v1/datasets/images/versions?limit=x", 400),
    ] {
        assert_eq!(get(&server, target).await.status, status, "{target}");
    }
    // A manifest whose sizes lie about the stored objects is refused.
    let lying_manifest = format!(r#"[{{"path":"a.txt","hash":"{a}","size":999999999999}}]"#).into_bytes();
    let lying_id = format!("{}.dir", id(&lying_manifest));
    assert_eq!(put(&server, &lying_id, &lying_manifest).await.status, 201);
    let lying = post_json(
        &server,
        "/api/loopline/v1/datasets/images/versions",
        &register(&lying_id, 999_999_999_999, 1),
    )
    .await;
    assert_eq!(lying.status, 400, "{}", lying.body_text());
    assert!(
        lying.body_text().contains("the stored object has 10"),
        "{}",
        lying.body_text()
    );
    // Manifests cannot place files in version control's or Loopline's folders.
    let hook = format!(r#"[{{"path":".git/hooks/post-commit","hash":"{a}","size":10}}]"#).into_bytes();
    let refused = put(&server, &format!("{}.dir", id(&hook)), &hook).await;
    assert_eq!(refused.status, 400, "{}", refused.body_text());
    let bad_name = post_json(
        &server,
        "/api/loopline/v1/datasets/..%2Fx/versions",
        &register(&a, 10, 1),
    )
    .await;
    assert_eq!(bad_name.status, 400, "{}", bad_name.body_text());
}

#[tokio::test]
async fn garbage_collection_removes_only_what_no_version_needs() {
    let server = TestServer::start().await.unwrap();
    let (a, b, manifest, manifest_id) = directory();
    for (key, bytes) in [
        (&manifest_id, manifest.as_slice()),
        (&a, b"first file".as_slice()),
        (&b, b"second".as_slice()),
    ] {
        assert_eq!(put(&server, key, bytes).await.status, 201);
    }
    let orphan = id(b"pushed, never registered");
    assert_eq!(put(&server, &orphan, b"pushed, never registered").await.status, 201);
    let version = json!({"hash": manifest_id, "size": 16, "files": 2});
    assert_eq!(
        post_json(&server, "/api/loopline/v1/datasets/d/versions", &version)
            .await
            .status,
        201
    );
    let server = &server;
    let gc = |body: serde_json::Value| async move { post_json(server, "/api/loopline/v1/data/gc", &body).await };
    // Within the grace period an unregistered object may be a push in progress: kept.
    let recent = gc(json!({"dry_run": false})).await.json()["report"].clone();
    assert_eq!(
        (
            recent["objects"].clone(),
            recent["unreferenced"].clone(),
            recent["removed"].clone()
        ),
        (json!(4), json!(1), json!(0))
    );
    let dry = gc(json!({"dry_run": true, "grace_seconds": 0})).await.json()["report"].clone();
    assert_eq!(
        (dry["removed"].clone(), dry["examples"][0].clone()),
        (json!(0), json!(orphan))
    );
    assert_eq!(missing(server, &[&orphan]).await.len(), 0);
    let done = gc(json!({"dry_run": false, "grace_seconds": 0})).await.json()["report"].clone();
    assert_eq!(done["removed"], 1);
    assert_eq!(missing(server, &[&orphan, &a, &b, &manifest_id]).await, [orphan]);
    assert_eq!(gc(json!({"dry_run": "yes"})).await.status, 400);
}
