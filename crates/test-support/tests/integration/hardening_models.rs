//! Models and model requests that used to crash the server or fill its memory, replayed: declared sizes that
//! do not fit the body are 400s that never count against the model, model files that lie about their counts
//! are refused at load with the reason, failed loads leave no cache behind, and (property tests) no generated
//! tensor request or model file makes the server answer 500 or stop. (Issue 11's findings 2, 4 and 8.)

use loopline_test_support::{RawResponse, TestServer, raw_request};
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::serving::{fixtures, post, post_json, register, v2_columns};

const INFER: &str = "/v2/models/booster/versions/1/infer";

async fn assert_alive(server: &TestServer) {
    let health = raw_request(server.address, "GET", "/health", &[], b"").await.unwrap();
    assert_eq!(health.status, 200, "the server stopped answering");
}

fn binary_request(header: &Value, binary: &[u8]) -> (Vec<u8>, String) {
    let header = header.to_string();
    let mut body = header.clone().into_bytes();
    body.extend_from_slice(binary);
    (body, header.len().to_string())
}

async fn post_binary(server: &TestServer, header: &Value, binary: &[u8]) -> RawResponse {
    let (body, length) = binary_request(header, binary);
    post(
        server,
        INFER,
        &[
            ("Inference-Header-Content-Length", length.as_str()),
            ("Content-Type", "application/octet-stream"),
        ],
        &body,
    )
    .await
}

fn failures_counted(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with("loopline_inference_requests_total") && line.contains("booster"))
        .filter(|line| line.contains("outcome=\"failure\""))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn declared_tensor_sizes_are_checked_before_allocation_and_never_count_against_the_model() {
    let server = TestServer::start().await.unwrap();
    register(&server, "booster", "xgb_booster", None).await;
    let oversized = [
        json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [35_184_372_088_832u64], "data": [1]}]}),
        json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [4_294_967_296u64, 4_294_967_296u64, 0], "data": []}]}),
        json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1_099_511_627_776u64, 0], "data": []}]}),
        json!({"inputs": [{"name": "x", "datatype": "BYTES", "shape": [35_184_372_088_832u64], "data": ["a"]}]}),
    ];
    for body in &oversized {
        let answer = post_json(&server, INFER, body).await;
        assert_eq!(answer.status, 400, "{body}: {}", answer.body_text());
    }
    let bytes_header = json!({"inputs": [{"name": "x", "datatype": "BYTES", "shape": [35_184_372_088_832u64],
        "parameters": {"binary_data_size": 4}}]});
    let answer = post_binary(&server, &bytes_header, &0u32.to_le_bytes()).await;
    assert_eq!(answer.status, 400, "{}", answer.body_text());
    let wrapping_header = json!({"inputs": [{"name": "x", "datatype": "FP64", "shape": [4_611_686_018_427_387_904u64],
        "parameters": {"binary_data_size": 8}}]});
    let answer = post_binary(&server, &wrapping_header, &1.0f64.to_le_bytes()).await;
    assert_eq!(answer.status, 400, "{}", answer.body_text());
    let mut valid = v2_columns();
    valid["id"] = json!("x".repeat(100_000));
    let valid = post_json(&server, INFER, &valid).await;
    assert_eq!(valid.status, 200, "{}", valid.body_text());
    let request_id = valid.header("x-request-id").unwrap_or_default();
    assert!(
        (1..=256).contains(&request_id.len()),
        "a 100 KB id is not echoed into a header"
    );
    let metrics = raw_request(server.address, "GET", "/metrics", &[], b"").await.unwrap();
    assert_eq!(
        failures_counted(&metrics.body_text()),
        0.0,
        "bad input counted as a model failure"
    );
    assert_alive(&server).await;
}

/// The test process's peak resident memory, in KiB (the server runs in this process).
fn peak_resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn large_json_tensors_and_sparse_records_cost_about_their_own_size() {
    let server = TestServer::start().await.unwrap();
    register(&server, "booster", "xgb_booster", None).await;
    // 8M zeros: a 16 MB body. Read through a JSON tree it used to cost over 300 MB; typed, about 50 MB.
    let count = 8_000_000;
    let zeros = vec!["0"; count].join(",");
    let body =
        format!("{{\"inputs\":[{{\"name\":\"f0\",\"shape\":[{count}],\"datatype\":\"FP32\",\"data\":[{zeros}]}}]}}");
    let before = peak_resident_kib();
    let answer = post(&server, INFER, &[("Content-Type", "application/json")], body.as_bytes()).await;
    assert_eq!(answer.status, 400, "five features are needed: {}", answer.body_text());
    let grown_mib = (peak_resident_kib() - before) / 1024;
    assert!(
        grown_mib < 200,
        "a 16 MB tensor request grew the server by {grown_mib} MiB"
    );
    // Rows that each name another column: a table of rows x columns cells from a small body.
    let sparse: Vec<Value> = (0..20_000).map(|index| json!({format!("c{index}"): 1})).collect();
    let answer = post_json(
        &server,
        "/models/booster/versions/1/invocations",
        &json!({"dataframe_records": sparse}),
    )
    .await;
    assert_eq!(answer.status, 400, "{}", answer.body_text());
    assert!(answer.body_text().contains("mostly missing"));
    assert_alive(&server).await;
}

/// Uploads `files` under `serving/<name>/` and registers them as version 1 of `name`.
async fn register_files(server: &TestServer, name: &str, files: &[(&str, Vec<u8>)]) {
    for (file, bytes) in files {
        let path = format!("/api/2.0/mlflow-artifacts/artifacts/serving/{name}/{file}");
        let response = raw_request(server.address, "PUT", &path, &[], bytes).await.unwrap();
        assert_eq!(response.status, 200, "{}", response.body_text());
    }
    post_json(
        server,
        "/api/2.0/mlflow/registered-models/create",
        &json!({"name": name}),
    )
    .await;
    let version = post_json(
        server,
        "/api/2.0/mlflow/model-versions/create",
        &json!({"name": name, "source": format!("mlflow-artifacts:/serving/{name}")}),
    )
    .await;
    assert_eq!(version.status, 200, "{}", version.body_text());
}

const XGBOOST_JSON_MLMODEL: &str =
    "flavors:\n  xgboost:\n    data: model.json\n    model_class: xgboost.core.Booster\n    model_format: json\n";

fn xgboost_document() -> Value {
    let path = fixtures().join("../xgboost/binary_logistic.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Model directories this test process downloaded into its model cache.
fn cached_model_directories() -> usize {
    let prefix = format!("loopline-models-{}-", std::process::id());
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(&prefix))
        .flat_map(|cache| std::fs::read_dir(cache.path()).into_iter().flatten().flatten())
        .count()
}

#[tokio::test]
async fn model_files_that_lie_about_their_counts_are_refused_and_leave_no_cache() {
    let server = TestServer::start().await.unwrap();
    let hostile: [(&str, &str, Value); 2] = [
        ("classes", "num_class", json!("100000000000")),
        ("features", "num_feature", json!("18446744073709551615")),
    ];
    for (name, field, value) in hostile {
        let mut document = xgboost_document();
        document["learner"]["learner_model_param"][field] = value;
        register_files(
            &server,
            name,
            &[
                ("MLmodel", XGBOOST_JSON_MLMODEL.into()),
                ("model.json", document.to_string().into_bytes()),
            ],
        )
        .await;
        for _attempt in 0..2 {
            let answer = post_json(
                &server,
                &format!("/v2/models/{name}/versions/1/infer"),
                &json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 8], "data": vec![0.5; 8]}]}),
            )
            .await;
            assert_eq!(answer.status, 503, "{}", answer.body_text());
            assert!(answer.body_text().contains(field), "{}", answer.body_text());
            assert!(!answer.body_text().contains(&std::env::temp_dir().display().to_string()));
        }
    }
    let laughs = {
        let mut text = String::from("flavors:\n  xgboost: {data: model.json}\na: &a [x, x, x, x, x, x, x, x, x, x]\n");
        let mut previous = 'a';
        for name in 'b'..='i' {
            text.push_str(&format!(
                "{name}: &{name} [{}]\n",
                vec![format!("*{previous}"); 10].join(", ")
            ));
            previous = name;
        }
        text
    };
    register_files(&server, "laughs", &[("MLmodel", laughs.into_bytes())]).await;
    let answer = post_json(
        &server,
        "/v2/models/laughs/versions/1/infer",
        &json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}),
    )
    .await;
    assert_eq!(answer.status, 503, "{}", answer.body_text());
    assert!(answer.body_text().contains("expands"), "{}", answer.body_text());
    assert_eq!(
        cached_model_directories(),
        0,
        "failed loads left their downloads behind"
    );
    assert_alive(&server).await;
}

fn hostile_tensor() -> impl Strategy<Value = Value> {
    let dimension = prop_oneof![
        Just(0u64),
        1u64..10,
        Just(u64::MAX),
        Just(1u64 << 32),
        Just(1u64 << 62),
        any::<u64>()
    ];
    let datatype = prop_oneof![
        Just("FP32"),
        Just("FP64"),
        Just("INT64"),
        Just("BYTES"),
        Just("BOOL"),
        Just("UINT8"),
        Just("FP8")
    ];
    let data = prop_oneof![
        Just(json!([1.5, 2.5])),
        Just(json!([[1, 2], [3, 4]])),
        Just(json!(["a", "NaN"])),
        Just(json!([])),
        Just(json!(null)),
        Just(json!({"x": 1})),
    ];
    (prop::collection::vec(dimension, 0..5), datatype, data).prop_map(|(shape, datatype, data)| {
        json!({"inputs": [{"name": "x", "datatype": datatype, "shape": shape, "data": data}]})
    })
}

#[test]
fn generated_tensor_requests_never_get_a_server_error() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(async {
        let server = TestServer::start().await.unwrap();
        register(&server, "booster", "xgb_booster", None).await;
        server
    });
    let config = ProptestConfig {
        cases: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(body in hostile_tensor(), binary in prop::collection::vec(any::<u8>(), 0..64))| {
        runtime.block_on(async {
            let answer = post_json(&server, INFER, &body).await;
            prop_assert!(answer.status < 500, "{body}: {} {}", answer.status, answer.body_text());
            let mut header = body.clone();
            if let Some(input) = header["inputs"][0].as_object_mut() {
                input.remove("data");
                input.insert("parameters".into(), json!({"binary_data_size": binary.len()}));
            }
            let answer = post_binary(&server, &header, &binary).await;
            prop_assert!(answer.status < 500, "{header}: {} {}", answer.status, answer.body_text());
            Ok(())
        })?;
    });
    runtime.block_on(assert_alive(&server));
}

#[test]
fn generated_model_files_are_refused_or_served_never_crashing_the_server() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(TestServer::start()).unwrap();
    let base = xgboost_document();
    let count = prop_oneof![
        Just(json!("0")),
        Just(json!("18446744073709551615")),
        Just(json!("100000000000")),
        Just(json!(-1)),
        Just(json!(u64::MAX)),
        Just(json!("not a number")),
        (0u64..20).prop_map(|n| json!(n.to_string())),
    ];
    let config = ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let case = std::sync::atomic::AtomicUsize::new(0);
    proptest!(config, |(field in prop_oneof![Just("num_class"), Just("num_feature"), Just("num_target")],
                         value in count,
                         trees in prop_oneof![Just(None), Just(Some(json!([]))), Just(Some(json!([{"left_children": [1]}])))])| {
        let case = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut document = base.clone();
        document["learner"]["learner_model_param"][field] = value;
        if let Some(trees) = trees {
            document["learner"]["gradient_booster"]["model"]["trees"] = trees;
        }
        let name = format!("generated-{case}");
        runtime.block_on(async {
            register_files(
                &server,
                &name,
                &[("MLmodel", XGBOOST_JSON_MLMODEL.into()), ("model.json", document.to_string().into_bytes())],
            )
            .await;
            let answer = post_json(
                &server,
                &format!("/v2/models/{name}/versions/1/infer"),
                &json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 8], "data": vec![0.5; 8]}]}),
            )
            .await;
            prop_assert!(answer.status != 500, "{}", answer.body_text());
            Ok(())
        })?;
    });
    runtime.block_on(assert_alive(&server));
}

#[tokio::test]
async fn files_replaced_after_registration_are_not_served() {
    let server = TestServer::start().await.unwrap();
    register(&server, "booster", "xgb_booster", None).await;
    let before = post_json(&server, INFER, &crate::serving::v2_columns()).await;
    assert_eq!(before.status, 200, "{}", before.body_text());
    // The digest is kept apart from the version's tags, which stay the user's own.
    let version = raw_request(
        server.address,
        "GET",
        "/api/2.0/mlflow/model-versions/get?name=booster&version=1",
        &[],
        b"",
    )
    .await
    .unwrap();
    assert!(!version.body_text().contains("digest"), "{}", version.body_text());
    // Through the artifact proxy, the registered files can be neither replaced nor deleted.
    let other = std::fs::read(fixtures().join("xgb_regressor/model.ubj")).unwrap();
    let path = "/api/2.0/mlflow-artifacts/artifacts/serving/booster/model.ubj";
    let replaced = raw_request(server.address, "PUT", path, &[], &other).await.unwrap();
    assert_eq!(replaced.status, 409, "{}", replaced.body_text());
    assert!(replaced.body_text().contains("version 1, which is registered"));
    for target in [path, "/api/2.0/mlflow-artifacts/artifacts/serving"] {
        let deleted = raw_request(server.address, "DELETE", target, &[], b"").await.unwrap();
        assert_eq!(deleted.status, 409, "{target}: {}", deleted.body_text());
    }
    let beside = raw_request(
        server.address,
        "PUT",
        "/api/2.0/mlflow-artifacts/artifacts/serving/notes.txt",
        &[],
        b"x",
    )
    .await
    .unwrap();
    assert_eq!(beside.status, 200, "files next to a registered model are the user's");
    // Registered before its files were uploaded: the place is protected from registration on.
    post_json(
        &server,
        "/api/2.0/mlflow/registered-models/create",
        &json!({"name": "early"}),
    )
    .await;
    let early = post_json(
        &server,
        "/api/2.0/mlflow/model-versions/create",
        &json!({"name": "early", "source": "mlflow-artifacts:/serving/early"}),
    )
    .await;
    assert_eq!(early.status, 200, "{}", early.body_text());
    let late = raw_request(
        server.address,
        "PUT",
        "/api/2.0/mlflow-artifacts/artifacts/serving/early/MLmodel",
        &[],
        b"x",
    )
    .await
    .unwrap();
    assert_eq!(late.status, 409, "{}", late.body_text());
    // Changed behind the server's back (on disk), the files are refused when a new server loads them.
    std::fs::write(server.data_dir.join("artifacts/serving/booster/model.ubj"), &other).unwrap();
    let restarted = TestServer::start_with_config(loopline_server::config::ServerConfig {
        host: "127.0.0.1".to_string(),
        port: 0,
        backend_store_uri: format!("sqlite:///{}", server.data_dir.join("loopline.db").display()),
        artifacts_destination: server.data_dir.join("artifacts").display().to_string(),
        data_dir: server.data_dir.clone(),
        serving: Default::default(),
        network: Default::default(),
        pipelines: Default::default(),
        registry: Default::default(),
        ui: Default::default(),
        auth: Default::default(),
        gateway: Default::default(),
    })
    .await
    .unwrap();
    let after = post_json(&restarted, INFER, &crate::serving::v2_columns()).await;
    assert_eq!(after.status, 503, "{}", after.body_text());
    assert!(
        after.body_text().contains("changed after it was registered"),
        "{}",
        after.body_text()
    );
}
