//! The feature store's HTTP API on loopback over a fresh metadata store and embedded online store: applying
//! definitions (versions, changes, conflicts), materialising, looking up, pushing; and hostile bodies answered
//! with 4xx in Feast's shapes, never a 5xx.

use std::fs::File;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, TimestampMicrosecondArray};
use loopline_feature_api::{FeatureApi, FeatureRegistry, routes};
use loopline_features::online::EmbeddedOnlineStore;
use loopline_metadata_store::SqlStore;
use proptest::prelude::*;
use serde_json::{Value, json};

struct Server {
    base: String,
    client: reqwest::Client,
    dir: tempfile::TempDir,
}

const DEFINITIONS: &str = "
project: shop
entities: [{name: driver, join_keys: [driver_id], value_type: int64}]
sources: [{name: stats, path: stats.parquet, timestamp_field: ts}]
push_sources: [{name: stats_push, batch_source: stats}]
feature_views:
  - {name: driver_stats, entities: [driver], ttl: 1d, source: stats, schema: [{name: rate, dtype: float64}]}
  - {name: driver_live, entities: [driver], source: stats_push,
     schema: [{name: rate, dtype: float64}, {name: trips, dtype: int64}]}
feature_services: [{name: scoring, features: [driver_stats]}]
";

const HOUR: i64 = 3_600_000_000;

impl Server {
    async fn start() -> Server {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<(i64, i64, f64)> = vec![(1, 10, 0.1), (1, 12, 0.2), (2, 11, 0.3), (1, 30, 0.9)];
        let batch = RecordBatch::try_from_iter([
            (
                "driver_id",
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))) as ArrayRef,
            ),
            (
                "ts",
                Arc::new(
                    TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.1 * HOUR)).with_timezone("UTC"),
                ),
            ),
            (
                "rate",
                Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2))),
            ),
            (
                "trips",
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0 * 100))),
            ),
        ])
        .unwrap();
        let mut writer = parquet::arrow::ArrowWriter::try_new(
            File::create(dir.path().join("stats.parquet")).unwrap(),
            batch.schema(),
            None,
        )
        .unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let uri = format!("sqlite:///{}", dir.path().join("meta.db").display());
        let store = Arc::new(
            SqlStore::connect(&uri, dir.path().join("artifacts").to_str().unwrap())
                .await
                .unwrap(),
        );
        let online = Arc::new(EmbeddedOnlineStore::open(&dir.path().join("online.db")).unwrap());
        let api = FeatureApi::new(Arc::new(FeatureRegistry::new(store)), online);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, routes(api)).await.unwrap() });
        Server {
            base: format!("http://{address}"),
            client: reqwest::Client::new(),
            dir,
        }
    }

    async fn call(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            if text.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).unwrap()
            },
        )
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.client.get(format!("{}{path}", self.base)).send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    async fn apply(&self, yaml: &str, expected: Option<i64>, dry: bool) -> (u16, Value) {
        let body = json!({"yaml": yaml, "base_dir": self.dir.path(), "expected_version": expected, "dry_run": dry});
        self.call("/api/loopline/v1/features/projects/shop/apply", body).await
    }
}

fn feast_message(answer: &Value) -> Value {
    serde_json::from_str(answer.as_str().expect("Feast's error body is a JSON string")).unwrap()
}

#[tokio::test]
async fn definitions_are_versioned_and_an_apply_on_a_stale_version_is_refused() {
    let server = Server::start().await;
    let (status, plan) = server.apply(DEFINITIONS, None, true).await;
    assert_eq!(status, 200, "{plan}");
    assert_eq!(
        (plan["version"].clone(), plan["applied"].clone()),
        (json!(0), json!(false))
    );
    assert!(
        plan["changes"]
            .as_array()
            .unwrap()
            .contains(&json!("+ feature view driver_stats"))
    );
    assert_eq!(
        server.get("/api/loopline/v1/features/projects").await.1,
        json!({"projects": []})
    );

    assert_eq!(server.apply(DEFINITIONS, Some(0), false).await.1["version"], 1);
    let again = server.apply(DEFINITIONS, None, false).await.1;
    assert_eq!(
        (again["version"].clone(), again["applied"].clone()),
        (json!(1), json!(false)),
        "nothing changed"
    );
    let changed = DEFINITIONS.replace("ttl: 1d", "ttl: 2d");
    let (status, stale) = server.apply(&changed, Some(0), false).await;
    assert_eq!(status, 409, "{stale}");
    let applied = server.apply(&changed, Some(1), false).await.1;
    assert_eq!(
        applied["changes"],
        json!(["~ feature view driver_stats (ttl_seconds: 86400 -> 172800)"])
    );
    assert_eq!(applied["version"], 2);
    let first = server.get("/api/loopline/v1/features/projects/shop?version=1").await.1;
    assert_eq!(first["definitions"]["views"]["driver_stats"]["ttl_seconds"], 86_400);

    let (status, wrong) = server
        .apply(&DEFINITIONS.replace("project: shop", "project: other"), None, false)
        .await;
    assert_eq!(status, 400);
    assert!(wrong["message"].as_str().unwrap().contains("not `shop`"));
    let (status, bad) = server
        .apply(&DEFINITIONS.replace("float64", "decimal"), None, false)
        .await;
    assert_eq!(status, 400);
    assert!(bad["message"].as_str().unwrap().contains("unknown type"), "{bad}");
}

#[tokio::test]
async fn materialised_and_pushed_values_are_served() {
    let server = Server::start().await;
    server.apply(DEFINITIONS, None, false).await;
    let lookup = json!({"feature_service": "scoring", "entities": {"driver_id": [1, 2, 3]}});
    let (status, answer) = server.call("/get-online-features", lookup.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(
        answer["results"][1]["statuses"],
        json!(["NOT_FOUND", "NOT_FOUND", "NOT_FOUND"])
    );

    // Hours 0..=20: driver 1's latest is 0.2 (hour 12); the row at hour 30 is outside the window.
    let window = json!({"start_ts": "1970-01-01T00:00:00", "end_ts": "1970-01-01T20:00:00"});
    assert_eq!(server.call("/materialize", window).await, (200, Value::Null));
    let answer = server.call("/get-online-features", lookup.clone()).await.1;
    assert_eq!(answer["results"][1]["values"], json!([0.2, 0.3, null]));
    assert_eq!(answer["results"][1]["event_timestamps"][0], "1970-01-01T12:00:00Z");
    let views = server.get("/api/loopline/v1/features/projects/shop/views").await.1;
    assert_eq!(views["views"][1]["materialized_until"], "1970-01-01T20:00:00Z");

    // Incremental from the watermark: the hour-30 row arrives.
    let (status, _) = server
        .call("/materialize-incremental", json!({"end_ts": "1970-01-03T00:00:00"}))
        .await;
    assert_eq!(status, 200);
    let answer = server.call("/get-online-features", lookup).await.1;
    assert_eq!(answer["results"][1]["values"], json!([0.9, 0.3, null]));

    // A push reaches the view that reads the push source; an older push never replaces a newer value.
    let push = |rate: f64, ts: &str| {
        json!({"push_source_name": "stats_push", "to": "online",
               "df": {"driver_id": [7], "ts": [ts], "rate": [rate], "trips": [70]}})
    };
    assert_eq!(server.call("/push", push(0.5, "2024-01-02T00:00:00Z")).await.0, 200);
    assert_eq!(server.call("/push", push(0.1, "2024-01-01T00:00:00Z")).await.0, 200);
    let live = json!({"features": ["driver_live:trips", "driver_live:rate"], "entities": {"driver_id": [7]}});
    let answer = server.call("/get-online-features", live).await.1;
    assert_eq!(
        answer["metadata"]["feature_names"],
        json!(["driver_id", "trips", "rate"])
    );
    assert_eq!(answer["results"][2]["values"], json!([0.5]));

    let (status, refused) = server
        .call("/push", json!({"push_source_name": "nope", "df": {"driver_id": [1]}}))
        .await;
    assert_eq!(status, 422);
    assert_eq!(feast_message(&refused)["class"], "PushSourceNotFoundException");
    let (status, refused) = server.call("/push", push(0.5, "not a time")).await;
    assert_eq!(status, 400);
    assert!(
        feast_message(&refused)["message"]
            .as_str()
            .unwrap()
            .contains("not a time")
    );
    let (status, _) = server
        .call(
            "/materialize",
            json!({"start_ts": "2024-01-02", "end_ts": "2024-01-01"}),
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn on_demand_features_are_computed_from_request_fields_and_stored_features() {
    let server = Server::start().await;
    let on_demand = format!(
        "{DEFINITIONS}request_sources: [{{name: req, schema: [{{name: km, dtype: float64}}, {{name: city, dtype: string}}]}}]
on_demand_feature_views:
  - {{name: est, sources: [driver_stats, req], schema: [
      {{name: cost, dtype: float64, expression: 'km * (1 + rate)'}},
      {{name: shout, dtype: string, expression: 'upper(city)'}},
      {{name: known, dtype: bool, expression: 'not is_null(rate)'}}]}}
"
    );
    // A type error is refused when applied, and nothing is applied.
    let broken = on_demand.replace("'upper(city)'", "'upper(km)'");
    let (status, refused) = server.apply(&broken, None, false).await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains("`upper` needs text"),
        "{refused}"
    );
    assert_eq!(
        server.get("/api/loopline/v1/features/projects").await.1["projects"],
        json!([])
    );

    assert_eq!(server.apply(&on_demand, None, false).await.0, 200);
    let window = json!({"start_ts": "1970-01-01T00:00:00", "end_ts": "1970-01-01T20:00:00"});
    assert_eq!(server.call("/materialize", window).await.0, 200);
    let lookup = json!({
        "features": ["est:cost", "est:shout", "est:known"],
        "entities": {"city": ["oslo", null, "rome"], "driver_id": [1, 2, 3], "km": [10, 2.5, 4.0], "extra": [1, 2, 3]}
    });
    let (status, answer) = server.call("/get-online-features", lookup).await;
    assert_eq!(status, 200, "{answer}");
    // The stored feature the expressions read is fetched but not returned; request fields are not echoed.
    assert_eq!(
        answer["metadata"]["feature_names"],
        json!(["driver_id", "cost", "shout", "known"])
    );
    assert_eq!(answer["results"][1]["values"], json!([12.0, 3.25, null]));
    assert_eq!(answer["results"][2]["values"], json!(["OSLO", null, "ROME"]));
    assert_eq!(answer["results"][3]["values"], json!([true, true, false]));
    assert_eq!(
        answer["results"][3]["statuses"],
        json!(["PRESENT", "PRESENT", "PRESENT"])
    );

    let (status, refused) = server
        .call(
            "/get-online-features",
            json!({"features": ["est:cost"], "entities": {"driver_id": [1], "km": ["far"]}}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        feast_message(&refused)["message"]
            .as_str()
            .unwrap()
            .contains("request field `km`")
    );
    let (status, refused) = server
        .call(
            "/get-online-features",
            json!({"features": ["est:cost"], "entities": {"driver_id": [1]}}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        feast_message(&refused)["message"]
            .as_str()
            .unwrap()
            .contains("[\"km\"]")
    );
}

#[tokio::test]
async fn rows_pushed_to_the_offline_store_are_added_to_the_batch_source() {
    let server = Server::start().await;
    server.apply(DEFINITIONS, None, false).await;
    let stats = server.dir.path().join("stats.parquet");
    let before = std::fs::read(&stats).unwrap();
    let push = |to: &str, driver: i64, rate: f64| {
        json!({"push_source_name": "stats_push", "to": to,
               "df": {"driver_id": [driver], "ts": ["1970-01-01T15:00:00Z"], "rate": [rate], "trips": [5]}})
    };
    // A row missing a column of the source, or of the wrong type, changes nothing.
    let mut incomplete = push("offline", 3, 0.5);
    incomplete["df"].as_object_mut().unwrap().remove("trips");
    let (status, refused) = server.call("/push", incomplete).await;
    assert_eq!(status, 400);
    assert!(
        feast_message(&refused)["message"]
            .as_str()
            .unwrap()
            .contains("lacks column `trips`"),
        "{refused}"
    );
    let mut mistyped = push("offline", 3, 0.5);
    mistyped["df"]["trips"] = json!(["many"]);
    assert_eq!(server.call("/push", mistyped).await.0, 400);
    assert_eq!(std::fs::read(&stats).unwrap(), before);

    assert_eq!(server.call("/push", push("offline", 3, 0.5)).await.0, 200);
    assert_eq!(server.call("/push", push("online_and_offline", 4, 0.75)).await.0, 200);
    // Offline only: not online until materialised; both: online at once.
    let live = json!({"features": ["driver_live:rate"], "entities": {"driver_id": [3, 4]}});
    let answer = server.call("/get-online-features", live.clone()).await.1;
    assert_eq!(answer["results"][1]["values"], json!([null, 0.75]));
    let window = json!({"start_ts": "1970-01-01T00:00:00", "end_ts": "1970-01-01T20:00:00"});
    assert_eq!(server.call("/materialize", window).await.0, 200);
    let lookup = json!({"features": ["driver_stats:rate"], "entities": {"driver_id": [1, 3, 4]}});
    let answer = server.call("/get-online-features", lookup).await.1;
    assert_eq!(answer["results"][1]["values"], json!([0.2, 0.5, 0.75]));
    let answer = server.call("/get-online-features", live).await.1;
    assert_eq!(answer["results"][1]["values"], json!([0.5, 0.75]));
    assert!(
        !std::fs::read_dir(server.dir.path()).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".partial")),
        "no temporary files are left"
    );
}

#[tokio::test]
async fn writes_that_would_lose_data_and_oversized_requests_are_refused_in_feasts_shape() {
    let server = Server::start().await;
    server.apply(DEFINITIONS, None, false).await;
    let push = |df: Value| json!({"push_source_name": "stats_push", "df": df});
    // A feature left out would wipe the stored value; a key of the wrong type could never be read.
    let (status, refused) = server
        .call(
            "/push",
            push(json!({"driver_id": [7], "ts": ["2024-01-01T00:00:00Z"], "rate": [0.5]})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        feast_message(&refused)["message"]
            .as_str()
            .unwrap()
            .contains("lacks column `trips`")
    );
    let (status, refused) = server
        .call(
            "/push",
            push(json!({"driver_id": ["7"], "ts": ["2024-01-01T00:00:00Z"], "rate": [0.5], "trips": [1]})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        feast_message(&refused)["message"]
            .as_str()
            .unwrap()
            .contains("value_type is Int64")
    );

    // An answer is built whole, so its size is bounded before any work.
    let many: Vec<Value> = (0..20_000).map(Value::from).collect();
    let mut entities = serde_json::Map::new();
    entities.insert("driver_id".into(), Value::Array(many.clone()));
    for extra in 0..60 {
        entities.insert(format!("c{extra}"), Value::Array(many.clone()));
    }
    let (status, refused) = server
        .call(
            "/get-online-features",
            json!({"feature_service": "scoring", "entities": entities}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        feast_message(&refused)["message"]
            .as_str()
            .unwrap()
            .contains("values one answer holds")
    );

    let huge = "x".repeat(loopline_feature_api::MAX_BODY_BYTES + 1);
    let response = server
        .client
        .post(format!("{}/push", server.base))
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
    assert!(
        feast_message(&response.json().await.unwrap())["message"]
            .as_str()
            .unwrap()
            .contains("larger than")
    );
    let (status, refused) = server
        .call(
            "/get-online-features?project=a&project=b",
            json!({"features": [], "entities": {}}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        feast_message(&refused)["message"]
            .as_str()
            .unwrap()
            .contains("given twice")
    );
}

#[tokio::test]
async fn a_background_materialisation_that_fails_is_shown_on_the_views() {
    let server = Server::start().await;
    server.apply(DEFINITIONS, None, false).await;
    std::fs::remove_file(server.dir.path().join("stats.parquet")).unwrap();
    let window = json!({"start_ts": "1970-01-01T00:00:00", "end_ts": "1970-01-02T00:00:00",
                        "feature_views": ["driver_stats"]});
    let (status, accepted) = server.call("/materialize?async=true", window).await;
    assert_eq!((status, accepted["status"].clone()), (202, json!("accepted")));
    let mut failure = Value::Null;
    for _ in 0..200 {
        let views = server.get("/api/loopline/v1/features/projects/shop/views").await.1;
        failure = views["views"][1]["last_failure"].clone();
        if failure.is_string() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        failure.as_str().is_some_and(|f| f.contains("stats.parquet")),
        "{failure}"
    );
    // Applying definitions whose sources the server cannot see is refused at once.
    let (status, refused) = server
        .apply(&DEFINITIONS.replace("ttl: 1d", "ttl: 3d"), None, false)
        .await;
    assert_eq!(status, 400);
    assert!(refused["message"].as_str().unwrap().contains("not on the server"));
}

#[tokio::test]
async fn a_view_whose_schema_changes_starts_afresh_instead_of_mixing_up_values() {
    let server = Server::start().await;
    server.apply(DEFINITIONS, None, false).await;
    let window = json!({"start_ts": "1970-01-01T00:00:00", "end_ts": "1970-01-02T00:00:00"});
    assert_eq!(server.call("/materialize", window.clone()).await.0, 200);
    let live = json!({"features": ["driver_live:rate", "driver_live:trips"], "entities": {"driver_id": [1]}});
    let before = server.call("/get-online-features", live.clone()).await.1;
    assert_eq!(before["results"][1]["values"], json!([0.2]));
    assert_eq!(before["results"][2]["values"], json!([100]));
    // The features of driver_live swap places: stored rows hold values by position.
    let swapped = DEFINITIONS.replace(
        "schema: [{name: rate, dtype: float64}, {name: trips, dtype: int64}]",
        "schema: [{name: trips, dtype: int64}, {name: rate, dtype: float64}]",
    );
    assert_eq!(server.apply(&swapped, None, false).await.1["version"], 2);
    let after = server.call("/get-online-features", live.clone()).await.1;
    assert_eq!(after["results"][1]["statuses"], json!(["NOT_FOUND"]));
    let views = server.get("/api/loopline/v1/features/projects/shop/views").await.1;
    assert_eq!(views["views"][0]["materialized_until"], Value::Null);
    assert_eq!(server.call("/materialize", window).await.0, 200);
    let again = server.call("/get-online-features", live).await.1;
    assert_eq!(again["results"][1]["values"], json!([0.2]));
    assert_eq!(again["results"][2]["values"], json!([100]));
}

#[tokio::test]
async fn projects_have_scoped_feast_routes_and_can_be_deleted() {
    let server = Server::start().await;
    server.apply(DEFINITIONS, None, false).await;
    let other = DEFINITIONS.replace("project: shop", "project: other");
    let body = json!({"yaml": other, "base_dir": server.dir.path()});
    assert_eq!(
        server
            .call("/api/loopline/v1/features/projects/other/apply", body)
            .await
            .0,
        200
    );
    let lookup = json!({"feature_service": "scoring", "entities": {"driver_id": [1]}});
    let (status, refused) = server.call("/get-online-features", lookup.clone()).await;
    assert_eq!(status, 400);
    assert!(
        feast_message(&refused)["message"]
            .as_str()
            .unwrap()
            .contains("several feature projects")
    );
    // Feast's remote online store can point at a project's prefix.
    let window = json!({"start_ts": "1970-01-01T00:00:00", "end_ts": "1970-01-02T00:00:00"});
    let scoped = "/api/loopline/v1/features/projects/shop";
    assert_eq!(server.call(&format!("{scoped}/materialize"), window).await.0, 200);
    let answer = server
        .call(&format!("{scoped}/get-online-features"), lookup.clone())
        .await
        .1;
    assert_eq!(answer["results"][1]["values"], json!([0.2]));
    // An incremental run whose window starts after its end reads nothing and moves no watermark.
    let (status, _) = server
        .call(
            &format!("{scoped}/materialize-incremental"),
            json!({"end_ts": "1970-01-01T10:00:00"}),
        )
        .await;
    assert_eq!(status, 200);
    let views = server.get(&format!("{scoped}/views")).await.1;
    assert_eq!(views["views"][1]["materialized_until"], "1970-01-02T00:00:00Z");

    let response = server
        .client
        .delete(format!("{}{scoped}", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        server.get("/api/loopline/v1/features/projects").await.1["projects"],
        json!([{"name": "other", "version": 1}])
    );
    // With one project left, the root routes serve it again.
    assert_eq!(server.call("/get-online-features", lookup).await.0, 200);
}

#[tokio::test]
async fn a_server_without_definitions_says_how_to_add_them() {
    let server = Server::start().await;
    let (status, answer) = server
        .call(
            "/get-online-features",
            json!({"features": ["v:f"], "entities": {"id": [1]}}),
        )
        .await;
    assert_eq!(status, 404);
    assert!(
        feast_message(&answer)["message"]
            .as_str()
            .unwrap()
            .contains("loopline features apply")
    );
}

fn hostile_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        prop_oneof![
            Just("driver_stats:rate".to_string()),
            Just("2024-01-01T00:00:00Z".to_string()),
            Just("stats_push".to_string()),
            ".{0,6}".prop_map(String::from)
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("features".to_string()),
                    Just("feature_service".to_string()),
                    Just("entities".to_string()),
                    Just("driver_id".to_string()),
                    Just("push_source_name".to_string()),
                    Just("df".to_string()),
                    Just("ts".to_string()),
                    Just("rate".to_string()),
                    Just("feature_view_name".to_string()),
                    Just("start_ts".to_string()),
                    Just("end_ts".to_string()),
                    Just("feature_views".to_string()),
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn hostile_bodies_get_client_errors_never_a_5xx(body in hostile_value(), route in 0usize..5) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let server = Server::start().await;
            server.apply(DEFINITIONS, None, false).await;
            let path = ["/get-online-features", "/push", "/write-to-online-store", "/materialize",
                        "/materialize-incremental"][route];
            let (status, answer) = server.call(path, body).await;
            assert!(status < 500, "{path}: {status} {answer}");
        });
    }
}
