//! Snapshot routes over HTTP: create, list, download, recover under another name and over the collection
//! itself, delete; recovering only from this server's artifact store; mistakes in Qdrant's error shape.

mod common;
use common::with_docs;
use serde_json::json;

#[tokio::test]
async fn snapshots_are_made_listed_downloaded_recovered_and_deleted() {
    let server = with_docs().await;
    let made = server.ok("POST", "/collections/docs/snapshots?wait=true", None).await;
    let name = made["name"].as_str().unwrap().to_string();
    assert!(name.starts_with("docs-") && name.ends_with(".snapshot"), "{name}");
    assert_eq!(made["checksum"].as_str().unwrap().len(), 64);
    assert!(made["size"].as_u64().unwrap() > 0);
    assert_eq!(made["creation_time"].as_str().unwrap().len(), 19);
    let listed = server.ok("GET", "/collections/docs/snapshots", None).await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["name"], made["name"]);
    assert_eq!(listed[0]["checksum"], made["checksum"]);
    let file = server
        .client
        .get(format!("{}/collections/docs/snapshots/{name}", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(file.status(), 200);
    assert_eq!(file.headers()["content-type"], "application/octet-stream");
    assert_eq!(file.bytes().await.unwrap().len() as u64, made["size"].as_u64().unwrap());

    // Changes after the snapshot are gone once it is recovered over the collection.
    server
        .ok(
            "POST",
            "/collections/docs/points/delete?wait=true",
            Some(json!({"points": [1, 2]})),
        )
        .await;
    let url = format!("{}/collections/docs/snapshots/{name}", server.base);
    assert_eq!(
        server
            .ok(
                "PUT",
                "/collections/docs/snapshots/recover",
                Some(json!({"location": url}))
            )
            .await,
        json!(true)
    );
    assert_eq!(
        server
            .ok("POST", "/collections/docs/points/count", Some(json!({})))
            .await["count"],
        4
    );
    // Under another name, by the snapshot's name and checksum.
    server
        .ok(
            "PUT",
            "/collections/copy/snapshots/recover",
            Some(json!({"location": url, "checksum": made["checksum"]})),
        )
        .await;
    let hits = server
        .ok(
            "POST",
            "/collections/copy/points/query",
            Some(json!({"query": [1.0, 0.0, 0.0, 0.0], "limit": 1})),
        )
        .await;
    assert_eq!(hits["points"][0]["id"], 1);

    let wrong = server
        .error(
            "PUT",
            "/collections/copy/snapshots/recover",
            Some(json!({"location": url, "checksum": "00"})),
            400,
        )
        .await;
    assert!(wrong.contains("checksum"), "{wrong}");
    for location in [
        "file:///etc/passwd",
        "https://example.com/collections/x/snapshots/y.snapshot.tar",
    ] {
        let refused = server
            .error(
                "PUT",
                "/collections/docs/snapshots/recover",
                Some(json!({"location": location})),
                400,
            )
            .await;
        assert!(
            refused.contains("Loopline recovers only snapshots in its artifact store")
                || refused.contains("snapshot name"),
            "{refused}"
        );
    }
    let missing = server
        .error(
            "PUT",
            "/collections/docs/snapshots/recover",
            Some(json!({"location": "nope.snapshot"})),
            404,
        )
        .await;
    assert!(missing.contains("nope.snapshot"), "{missing}");
    server
        .error("PUT", "/collections/docs/snapshots/recover", Some(json!({})), 400)
        .await;
    server
        .error("GET", "/collections/docs/snapshots/..%2Fx.snapshot", None, 400)
        .await;
    server.error("GET", "/collections/nowhere/snapshots", None, 404).await;
    server.error("POST", "/collections/nowhere/snapshots", None, 404).await;

    assert_eq!(
        server
            .ok("DELETE", &format!("/collections/docs/snapshots/{name}"), None)
            .await,
        json!(true)
    );
    assert_eq!(server.ok("GET", "/collections/docs/snapshots", None).await, json!([]));
    server
        .error("DELETE", &format!("/collections/docs/snapshots/{name}"), None, 404)
        .await;
}
