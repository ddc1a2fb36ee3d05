//! Qdrant's REST API served over HTTP on loopback: every route, in Qdrant's shapes, and hostile input
//! answered with Qdrant's error shape (never a 5xx).

use proptest::prelude::*;
use serde_json::{Value, json};

mod common;
use common::{Server, with_docs};

#[tokio::test]
async fn collections_are_created_described_listed_and_deleted() {
    let server = with_docs().await;
    assert_eq!(
        server.ok("GET", "/collections", None).await,
        json!({"collections": [{"name": "docs"}]})
    );
    assert_eq!(
        server.ok("GET", "/collections/docs/exists", None).await,
        json!({"exists": true})
    );
    assert_eq!(
        server.ok("GET", "/collections/other/exists", None).await,
        json!({"exists": false})
    );
    let info = server.ok("GET", "/collections/docs", None).await;
    assert_eq!(info["status"], "green");
    assert_eq!(info["points_count"], 4);
    assert_eq!(
        info["config"]["params"]["vectors"],
        json!({"size": 4, "distance": "Cosine"})
    );
    assert_eq!(info["config"]["hnsw_config"]["m"], 8);
    for required in ["optimizer_status", "segments_count", "payload_schema"] {
        assert!(info.get(required).is_some(), "{required}");
    }
    let message = server
        .error(
            "PUT",
            "/collections/docs",
            Some(json!({"vectors": {"size": 4, "distance": "Cosine"}})),
            409,
        )
        .await;
    assert!(message.contains("already exists"), "{message}");
    assert_eq!(server.ok("DELETE", "/collections/docs", None).await, json!(true));
    assert_eq!(server.ok("DELETE", "/collections/docs", None).await, json!(false));
    let message = server.error("GET", "/collections/docs", None, 404).await;
    assert_eq!(message, "Not found: Collection `docs` doesn't exist!");
}

#[tokio::test]
async fn named_vectors_and_batch_upserts() {
    let server = Server::start().await;
    let vectors = json!({"text": {"size": 3, "distance": "Dot"}, "image": {"size": 2, "distance": "Euclid"}});
    server
        .ok("PUT", "/collections/multi", Some(json!({"vectors": vectors})))
        .await;
    let batch = json!({"batch": {
        "ids": [10, 11],
        "vectors": {"text": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], "image": [[0.0, 0.0], [3.0, 4.0]]},
        "payloads": [{"k": 1}, {"k": 2}]
    }});
    server.ok("PUT", "/collections/multi/points", Some(batch)).await;
    let found = server
        .ok(
            "POST",
            "/collections/multi/points/query",
            Some(json!({"query": [0.0, 0.0], "using": "image", "with_vector": ["image"]})),
        )
        .await;
    let hits = found["points"].as_array().unwrap();
    assert_eq!(hits[0]["id"], 10);
    assert_eq!(hits[0]["score"], 0.0);
    assert_eq!(hits[1]["score"], 5.0);
    assert_eq!(hits[1]["vector"], json!({"image": [3.0, 4.0]}));
    let legacy = server
        .ok(
            "POST",
            "/collections/multi/points/search",
            Some(json!({"vector": {"name": "text", "vector": [0.0, 2.0, 0.0]}, "limit": 1})),
        )
        .await;
    assert_eq!(legacy[0]["id"], 11);
    assert_eq!(legacy[0]["score"], 2.0);
}

#[tokio::test]
async fn vectors_on_disk_are_described_and_quantization_search_parameters_are_read() {
    let server = Server::start().await;
    let body = json!({
        "vectors": {"size": 4, "distance": "Cosine", "on_disk": true},
        "quantization_config": {"scalar": {"type": "int8", "always_ram": true}},
        "hnsw_config": {"full_scan_threshold": 1}
    });
    server.ok("PUT", "/collections/disk", Some(body)).await;
    let info = server.ok("GET", "/collections/disk", None).await;
    assert_eq!(info["config"]["params"]["vectors"]["on_disk"], true);
    server
        .ok("PUT", "/collections/disk/points?wait=true", Some(common::points()))
        .await;
    let query = |quantization: Value| json!({"query": [1.0, 0.05, 0.0, 0.0], "limit": 2, "params": {"hnsw_ef": 16, "quantization": quantization}});
    for quantization in [
        json!({"rescore": true, "oversampling": 2.0}),
        json!({"rescore": false}),
        json!({"ignore": true}),
    ] {
        let found = server
            .ok(
                "POST",
                "/collections/disk/points/query",
                Some(query(quantization.clone())),
            )
            .await;
        let ids: Vec<&Value> = found["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|point| &point["id"])
            .collect();
        assert_eq!(ids, [&json!(1), &json!(2)], "{quantization}");
    }
    for (quantization, field) in [
        (json!({"oversampling": 0.5}), "params.quantization.oversampling"),
        (json!({"oversampling": "x"}), "params.quantization.oversampling"),
        (json!({"rescore": 1}), "params.quantization.rescore"),
        (
            json!({"rescore": false, "oversampling": 0.5}),
            "params.quantization.oversampling",
        ),
        (json!([true]), "params.quantization"),
    ] {
        let message = server
            .error("POST", "/collections/disk/points/query", Some(query(quantization)), 400)
            .await;
        assert!(message.contains(field), "{message}");
    }
    let message = server
        .error(
            "PUT",
            "/collections/other",
            Some(json!({"vectors": {"size": 4, "distance": "Cosine", "on_disk": "yes"}})),
            400,
        )
        .await;
    assert!(message.contains("vectors.on_disk"), "{message}");
    for (config, field) in [
        (
            json!({"quantization_config": {"scalar": {"type": 5}}}),
            "quantization_config.scalar.type",
        ),
        (
            json!({"quantization_config": {"scalar": {"type": "int8", "quantile": 5}}}),
            "quantization_config.scalar.quantile",
        ),
        (
            json!({"quantization_config": {"scalar": {"always_ram": "x"}}}),
            "quantization_config.scalar.always_ram",
        ),
        (
            json!({"quantization_config": {"scalar": 1}}),
            "quantization_config.scalar",
        ),
        (json!({"hnsw_config": {"on_disk": "x"}}), "hnsw_config.on_disk"),
    ] {
        let mut body = config.clone();
        body["vectors"] = json!({"size": 4, "distance": "Cosine"});
        let message = server.error("PUT", "/collections/other", Some(body), 400).await;
        assert!(message.contains(field), "{config}: {message}");
    }
}

#[tokio::test]
async fn points_are_read_scrolled_counted_and_searched_with_filters() {
    let server = with_docs().await;
    let records = server
        .ok(
            "POST",
            "/collections/docs/points",
            Some(json!({"ids": [3, 1, 99], "with_vector": true})),
        )
        .await;
    assert_eq!(records.as_array().unwrap().len(), 2);
    assert_eq!(records[0]["id"], 3);
    assert_eq!(records[0]["payload"], json!({"lang": "en", "year": 2023}));
    assert_eq!(records[0]["vector"], json!([0.0, 1.0, 0.0, 0.0]));
    let one = server
        .ok(
            "GET",
            "/collections/docs/points/5c56c793-69f3-4fbf-87e6-c4bf54c28c26",
            None,
        )
        .await;
    assert_eq!(one["payload"], json!({"lang": "fr"}));
    let message = server.error("GET", "/collections/docs/points/42", None, 404).await;
    assert_eq!(message, "Not found: No point with id 42 found");
    let page = server
        .ok("POST", "/collections/docs/points/scroll", Some(json!({"limit": 2})))
        .await;
    assert_eq!(page["points"].as_array().unwrap().len(), 2);
    assert_eq!(page["next_page_offset"], 3);
    let rest = server
        .ok(
            "POST",
            "/collections/docs/points/scroll",
            Some(json!({"limit": 2, "offset": 3, "with_payload": ["lang"]})),
        )
        .await;
    assert_eq!(rest["next_page_offset"], Value::Null);
    assert_eq!(rest["points"][0]["payload"], json!({"lang": "en"}));
    let english = json!({"must": [{"key": "lang", "match": {"value": "en"}}]});
    assert_eq!(
        server
            .ok(
                "POST",
                "/collections/docs/points/count",
                Some(json!({"filter": english}))
            )
            .await,
        json!({"count": 2})
    );
    let found = server
        .ok(
            "POST",
            "/collections/docs/points/query",
            Some(json!({"query": {"nearest": [1.0, 0.05, 0.0, 0.0]}, "filter": english, "with_payload": true, "limit": 5})),
        )
        .await;
    let ids: Vec<&Value> = found["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hit| &hit["id"])
        .collect();
    assert_eq!(ids, [&json!(1), &json!(3)]);
    assert!(found["points"][0]["version"].is_u64());
    // By a stored point's id: its neighbours, without itself.
    let by_id = server
        .ok(
            "POST",
            "/collections/docs/points/query",
            Some(json!({"query": 1, "limit": 1})),
        )
        .await;
    assert_eq!(by_id["points"][0]["id"], 2);
    // Hybrid: two prefetches fused by reciprocal rank.
    let fused = server
        .ok(
            "POST",
            "/collections/docs/points/query",
            Some(json!({"prefetch": [{"query": [1.0, 0.0, 0.0, 0.0], "limit": 2}, {"query": [0.0, 1.0, 0.0, 0.0], "limit": 2}],
                        "query": {"fusion": "rrf"}, "limit": 3})),
        )
        .await;
    let fused = fused["points"].as_array().unwrap();
    assert_eq!(fused.len(), 3);
    // Point 2 is second in both lists: 1/(2+1) twice.
    assert_eq!(fused[0]["id"], 2);
    assert!((fused[0]["score"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-6);
    let thresholded = server
        .ok(
            "POST",
            "/collections/docs/points/query",
            Some(json!({"query": [1.0, 0.0, 0.0, 0.0], "score_threshold": 0.9})),
        )
        .await;
    assert_eq!(thresholded["points"].as_array().unwrap().len(), 2);
    let batch = server
        .ok(
            "POST",
            "/collections/docs/points/search/batch",
            Some(json!({"searches": [{"vector": [0.0, 0.0, 1.0, 0.0], "limit": 1}, {"vector": [0.0, 1.0, 0.0, 0.0], "limit": 1}]})),
        )
        .await;
    assert_eq!(batch[0][0]["id"], "5c56c793-69f3-4fbf-87e6-c4bf54c28c26");
    assert_eq!(batch[1][0]["id"], 3);
}

#[tokio::test]
async fn payloads_indexes_and_deletes_change_what_is_stored() {
    let server = with_docs().await;
    server
        .ok(
            "POST",
            "/collections/docs/points/payload",
            Some(json!({"payload": {"seen": true}, "points": [1, 2]})),
        )
        .await;
    server
        .ok(
            "PUT",
            "/collections/docs/points/payload",
            Some(json!({"payload": {"only": 1}, "filter": {"must": [{"has_id": [3]}]}})),
        )
        .await;
    server
        .ok(
            "POST",
            "/collections/docs/points/payload/delete",
            Some(json!({"keys": ["year"], "points": [2]})),
        )
        .await;
    server
        .ok(
            "POST",
            "/collections/docs/points/payload/clear",
            Some(json!({"points": [1]})),
        )
        .await;
    let records = server
        .ok("POST", "/collections/docs/points", Some(json!({"ids": [1, 2, 3]})))
        .await;
    assert_eq!(records[0]["payload"], json!({}));
    assert_eq!(records[1]["payload"], json!({"lang": "de", "seen": true}));
    assert_eq!(records[2]["payload"], json!({"only": 1}));
    let index = server
        .ok(
            "PUT",
            "/collections/docs/index",
            Some(json!({"field_name": "lang", "field_schema": "keyword"})),
        )
        .await;
    assert_eq!(index["status"], "completed");
    let info = server.ok("GET", "/collections/docs", None).await;
    assert_eq!(info["payload_schema"]["lang"]["data_type"], "keyword");
    server.ok("DELETE", "/collections/docs/index/lang", None).await;
    server
        .ok(
            "POST",
            "/collections/docs/points/delete",
            Some(json!({"filter": {"must": [{"key": "lang", "match": {"value": "de"}}]}})),
        )
        .await;
    server
        .ok("POST", "/collections/docs/points/delete", Some(json!({"points": [3]})))
        .await;
    assert_eq!(
        server.ok("POST", "/collections/docs/points/count", None).await,
        json!({"count": 2})
    );
    let message = server
        .error(
            "POST",
            "/collections/docs/points/payload",
            Some(json!({"payload": {"a": 1}, "points": [404]})),
            404,
        )
        .await;
    assert_eq!(message, "Not found: No point with id 404 found");
}

#[tokio::test]
async fn bad_input_is_refused_in_qdrant_shape_naming_the_field() {
    let server = with_docs().await;
    let message = server
        .error(
            "PUT",
            "/collections/docs/points",
            Some(json!({"points": [{"id": 7, "vector": [1.0, 2.0]}]})),
            400,
        )
        .await;
    assert!(
        message.starts_with("Wrong input: Vector dimension error: expected dim: 4, got 2"),
        "{message}"
    );
    assert!(message.contains("points[0].vector"), "{message}");
    let message = server
        .error(
            "PUT",
            "/collections/docs/points",
            Some(json!({"points": [{"id": -3, "vector": [1.0, 2.0, 3.0, 4.0]}]})),
            400,
        )
        .await;
    assert!(message.contains("points[0].id"), "{message}");
    let message = server
        .error(
            "PUT",
            "/collections/docs/points",
            Some(json!({"points": [{"id": "not-a-uuid", "vector": [1.0, 2.0, 3.0, 4.0]}]})),
            400,
        )
        .await;
    assert!(message.contains("not a valid point id"), "{message}");
    // A batch with one bad point writes nothing.
    let mixed = json!({"points": [{"id": 50, "vector": [1.0, 0.0, 0.0, 0.0]}, {"id": 51, "vector": [1.0]}]});
    server.error("PUT", "/collections/docs/points", Some(mixed), 400).await;
    assert_eq!(
        server.ok("POST", "/collections/docs/points/count", None).await,
        json!({"count": 4})
    );
    let message = server
        .error("POST", "/collections/docs/points/query", Some(json!({"query": [1.0, 0.0, 0.0, 0.0], "filter": {"must": [{"key": "lang", "match": {"value": {"nested": 1}}}]}})), 400)
        .await;
    assert!(
        message.starts_with("Format error in JSON body: filter.must[0].match.value"),
        "{message}"
    );
    let message = server
        .error(
            "POST",
            "/collections/nope/points/query",
            Some(json!({"query": [1.0]})),
            404,
        )
        .await;
    assert_eq!(message, "Not found: Collection `nope` doesn't exist!");
    let message = server
        .error(
            "PUT",
            "/collections/bad%2Fname",
            Some(json!({"vectors": {"size": 4, "distance": "Cosine"}})),
            400,
        )
        .await;
    assert!(message.contains("collection name"), "{message}");
    let message = server
        .error(
            "PUT",
            "/collections/x",
            Some(json!({"vectors": {"size": 4, "distance": "Hamming"}})),
            400,
        )
        .await;
    assert!(message.contains("vectors.distance"), "{message}");
    // NaN is not JSON; a client that writes it gets a format error.
    let response = server
        .client
        .put(format!("{}/collections/docs/points", server.base))
        .header("content-type", "application/json")
        .body(r#"{"points": [{"id": 9, "vector": [NaN, 0, 0, 0]}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let answer: Value = response.json().await.unwrap();
    assert!(
        answer["status"]["error"]
            .as_str()
            .unwrap()
            .starts_with("Format error in JSON body")
    );
    // A body larger than the limit is refused before it is read.
    let response = server
        .client
        .put(format!("{}/collections/docs/points", server.base))
        .header("content-type", "application/json")
        .body(vec![b' '; loopline_vector_api::MAX_BODY_BYTES + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
}

#[tokio::test]
async fn one_request_cannot_ask_for_unbounded_work() {
    let server = with_docs().await;
    let searches: Vec<Value> = (0..20)
        .map(|_| json!({"vector": [1.0, 0.0, 0.0, 0.0], "limit": 100000}))
        .collect();
    let message = server
        .error(
            "POST",
            "/collections/docs/points/search/batch",
            Some(json!({"searches": searches})),
            400,
        )
        .await;
    assert!(message.contains("100000 results in all"), "{message}");
    let prefetch: Vec<Value> = (0..20)
        .map(|_| json!({"query": [1.0, 0.0, 0.0, 0.0], "limit": 100000}))
        .collect();
    let message = server
        .error(
            "POST",
            "/collections/docs/points/query",
            Some(json!({"prefetch": prefetch, "query": {"fusion": "rrf"}})),
            400,
        )
        .await;
    assert!(message.contains("results in all"), "{message}");
    for (body, words) in [
        (
            json!({"prefetch": [{"query": [1.0, 0.0, 0.0, 0.0]}], "query": {"rrf": {"k": 0}}}),
            "rrf.k",
        ),
        (
            json!({"query": [1.0, 0.0, 0.0, 0.0], "params": {"exact": "yes"}}),
            "params.exact",
        ),
        (json!({"query": [3e38, 3e38, 0.0, 0.0]}), "too large"),
    ] {
        let message = server
            .error("POST", "/collections/docs/points/query", Some(body.clone()), 400)
            .await;
        assert!(message.contains(words), "{body}: {message}");
    }
    // A negative distance threshold lets nothing through.
    server
        .ok(
            "PUT",
            "/collections/far",
            Some(json!({"vectors": {"size": 2, "distance": "Euclid"}})),
        )
        .await;
    server
        .ok(
            "PUT",
            "/collections/far/points",
            Some(json!({"points": [{"id": 1, "vector": [0.0, 1.0]}]})),
        )
        .await;
    let found = server
        .ok(
            "POST",
            "/collections/far/points/query",
            Some(json!({"query": [0.0, 0.0], "score_threshold": -2.5})),
        )
        .await;
    assert_eq!(found["points"], json!([]));
    // A point named many times comes back once.
    let records = server
        .ok(
            "POST",
            "/collections/docs/points",
            Some(json!({"ids": [1, 1, 1, 2, 1]})),
        )
        .await;
    assert_eq!(records.as_array().unwrap().len(), 2);
    // Qdrant routes Loopline does not offer say so, in Qdrant's shape.
    let message = server
        .error(
            "POST",
            "/collections/docs/points/recommend",
            Some(json!({"positive": [1]})),
            400,
        )
        .await;
    assert!(message.contains("not supported"), "{message}");
    let message = server.error("GET", "/aliases", None, 400).await;
    assert!(message.contains("not supported"), "{message}");
    // Nested include and exclude paths keep the structure around what they reach.
    server
        .ok(
            "POST",
            "/collections/docs/points/payload",
            Some(json!({"payload": {"meta": {"a": 1, "b": 2}}, "points": [3]})),
        )
        .await;
    let records = server
        .ok(
            "POST",
            "/collections/docs/points",
            Some(json!({"ids": [3], "with_payload": {"include": ["meta.a", "lang"]}})),
        )
        .await;
    assert_eq!(records[0]["payload"], json!({"meta": {"a": 1}, "lang": "en"}));
    server
        .ok(
            "POST",
            "/collections/docs/points/payload/delete",
            Some(json!({"keys": ["meta.b"], "points": [3]})),
        )
        .await;
    let records = server
        .ok(
            "POST",
            "/collections/docs/points",
            Some(json!({"ids": [3], "with_payload": {"exclude": ["year"]}})),
        )
        .await;
    assert_eq!(records[0]["payload"], json!({"lang": "en", "meta": {"a": 1}}));
    // Methods a route does not take: Qdrant's shape too.
    let message = server.error("PATCH", "/collections/docs/points/query", None, 405).await;
    assert!(message.contains("Method not allowed"), "{message}");
}

fn hostile_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        prop_oneof![
            Just("5c56c793-69f3-4fbf-87e6-c4bf54c28c26".to_string()),
            ".{0,6}".prop_map(String::from)
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("query".to_string()),
                    Just("nearest".to_string()),
                    Just("vector".to_string()),
                    Just("points".to_string()),
                    Just("id".to_string()),
                    Just("filter".to_string()),
                    Just("limit".to_string()),
                    Just("offset".to_string()),
                    Just("prefetch".to_string()),
                    Just("fusion".to_string()),
                    Just("must".to_string()),
                    Just("key".to_string()),
                    Just("match".to_string()),
                    Just("ids".to_string()),
                    Just("batch".to_string()),
                    Just("with_payload".to_string()),
                    Just("using".to_string()),
                    Just("payload".to_string())
                ],
                inner,
                0..5
            )
            .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]
    #[test]
    fn hostile_bodies_get_qdrant_errors_never_a_5xx(body in hostile_value(), route in 0usize..8) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let server = with_docs().await;
            let (method, path) = [
                ("POST", "/collections/docs/points/query"),
                ("POST", "/collections/docs/points/search"),
                ("PUT", "/collections/docs/points"),
                ("POST", "/collections/docs/points/scroll"),
                ("POST", "/collections/docs/points/count"),
                ("POST", "/collections/docs/points/delete"),
                ("POST", "/collections/docs/points/payload"),
                ("PUT", "/collections/fresh"),
            ][route];
            let (status, answer) = server.call(method, path, Some(body)).await;
            assert!(status < 500, "{path}: {status} {answer}");
            if status != 200 {
                assert!(answer["status"]["error"].is_string(), "{answer}");
            }
        });
    }
}
