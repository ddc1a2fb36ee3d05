//! Registered versions served by `loopline server`: model directories saved by mlflow 3.17.2 are uploaded
//! through the artifact proxy and registered over the REST API, then answer the Open Inference Protocol (JSON
//! and binary tensors) and the MLflow scoring protocol with mlflow.pyfunc's predictions; bad input is refused
//! in each protocol's error shape, and a version that cannot load is not-ready with its reason while the
//! others keep serving.

use std::path::PathBuf;

use loopline_server::config::ServingOptions;
use loopline_test_support::{RawResponse, TestServer, raw_request};
use serde_json::{Value, json};

pub(crate) fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../model-runtimes/tests/fixtures/mlflow")
}

pub(crate) fn expected() -> Value {
    serde_json::from_slice(&std::fs::read(fixtures().join("expected.json")).unwrap()).unwrap()
}

pub(crate) async fn post(server: &TestServer, path: &str, headers: &[(&str, &str)], body: &[u8]) -> RawResponse {
    raw_request(server.address, "POST", path, headers, body).await.unwrap()
}

pub(crate) async fn post_json(server: &TestServer, path: &str, body: &Value) -> RawResponse {
    post(
        server,
        path,
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
    .await
}

/// Uploads a model directory (with an optional replacement MLmodel) and registers it as version 1 of `name`
/// with the alias `champion`.
pub(crate) async fn register(server: &TestServer, name: &str, fixture: &str, mlmodel: Option<&str>) {
    for entry in std::fs::read_dir(fixtures().join(fixture)).unwrap() {
        let entry = entry.unwrap();
        let file = entry.file_name().into_string().unwrap();
        let mut bytes = std::fs::read(entry.path()).unwrap();
        if file == "MLmodel"
            && let Some(text) = mlmodel
        {
            bytes = text.as_bytes().to_vec();
        }
        let path = format!("/api/2.0/mlflow-artifacts/artifacts/serving/{name}/{file}");
        let response = raw_request(server.address, "PUT", &path, &[], &bytes).await.unwrap();
        assert_eq!(response.status, 200, "{}", response.body_text());
    }
    let api = "/api/2.0/mlflow";
    let created = post_json(
        server,
        &format!("{api}/registered-models/create"),
        &json!({"name": name}),
    )
    .await;
    assert_eq!(created.status, 200, "{}", created.body_text());
    let version = post_json(
        server,
        &format!("{api}/model-versions/create"),
        &json!({"name": name, "source": format!("mlflow-artifacts:/serving/{name}")}),
    )
    .await;
    assert_eq!(version.status, 200, "{}", version.body_text());
    let alias = post_json(
        server,
        &format!("{api}/registered-models/alias"),
        &json!({"name": name, "alias": "champion", "version": "1"}),
    )
    .await;
    assert_eq!(alias.status, 200, "{}", alias.body_text());
}

fn expected_values(model: &str) -> Vec<f64> {
    expected()["models"][model]["values"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
        .collect()
}

fn assert_close(got: &[f64], want: &[f64], tolerance: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= tolerance * w.abs().max(1.0), "{what}: {g} != {w}");
    }
}

fn flat_numbers(value: &Value) -> Vec<f64> {
    match value {
        Value::Array(items) => items.iter().flat_map(flat_numbers).collect(),
        other => vec![other.as_f64().unwrap()],
    }
}

/// The fixture inputs as OIP JSON: one FP64 column tensor per feature (nulls as "NaN").
pub(crate) fn v2_columns() -> Value {
    let inputs = expected()["inputs"].clone();
    let rows = inputs["data"].as_array().unwrap().clone();
    let columns: Vec<Value> = inputs["columns"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let data: Vec<Value> = rows
                .iter()
                .map(|r| if r[i].is_null() { json!("NaN") } else { r[i].clone() })
                .collect();
            json!({"name": name, "datatype": "FP64", "shape": [rows.len()], "data": data})
        })
        .collect();
    json!({"id": "req-1", "inputs": columns})
}

#[tokio::test]
async fn registered_versions_answer_both_protocols_with_pyfunc_predictions() {
    let server = TestServer::start().await.unwrap();
    register(&server, "churn", "xgb_classifier", None).await;
    register(&server, "species", "lgb_multiclass_booster", None).await;
    for reference in ["1", "champion"] {
        let path = format!("/v2/models/churn/versions/{reference}/infer");
        let response = post_json(&server, &path, &v2_columns()).await;
        assert_eq!(response.status, 200, "{}", response.body_text());
        let body = response.json();
        assert_eq!(
            (
                body["model_name"].as_str(),
                body["model_version"].as_str(),
                body["id"].as_str()
            ),
            (Some("churn"), Some("1"), Some("req-1"))
        );
        assert_eq!(body["outputs"][0]["datatype"], "INT64");
        assert_close(
            &flat_numbers(&body["outputs"][0]["data"]),
            &expected_values("xgb_classifier"),
            0.0,
            "churn labels",
        );
    }
    let split = json!({"dataframe_split": expected()["inputs"].clone()});
    let scored = post_json(&server, "/models/species/versions/champion/invocations", &split).await;
    assert_eq!(scored.status, 200, "{}", scored.body_text());
    let predictions = scored.json()["predictions"].clone();
    assert_eq!(
        predictions[0].as_array().unwrap().len(),
        3,
        "one column per class, as pyfunc gives"
    );
    assert_close(
        &flat_numbers(&predictions),
        &expected_values("lgb_multiclass_booster"),
        1e-9,
        "species",
    );
    let metadata = raw_request(server.address, "GET", "/v2/models/species/versions/1", &[], b"")
        .await
        .unwrap();
    assert_eq!(metadata.json()["platform"], "lightgbm_text");
    assert_eq!(metadata.json()["outputs"][0]["shape"], json!([-1, 3]));
    let ready = raw_request(
        server.address,
        "GET",
        "/v2/models/species/versions/champion/ready",
        &[],
        b"",
    )
    .await
    .unwrap();
    assert_eq!((ready.status, ready.json()["ready"].clone()), (200, json!(true)));
    let metrics = raw_request(server.address, "GET", "/metrics", &[], b"").await.unwrap();
    let content_type = metrics
        .headers
        .iter()
        .find(|(k, _)| k == "content-type")
        .unwrap()
        .1
        .clone();
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let text = metrics.body_text();
    assert!(
        text.contains(
            "loopline_inference_requests_total{model=\"churn\",version=\"1\",protocol=\"v2\",outcome=\"success\"} 2"
        ),
        "{text}"
    );
    assert!(
        text.contains("loopline_inference_rows_total{model=\"species\",version=\"1\"} 30"),
        "{text}"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn binary_tensors_go_both_ways() {
    let server = TestServer::start().await.unwrap();
    register(&server, "price", "xgb_regressor", None).await;
    let rows = expected()["inputs"]["data"].as_array().unwrap().clone();
    let mut data = Vec::new();
    for row in &rows {
        for value in row.as_array().unwrap() {
            data.extend_from_slice(&(value.as_f64().map_or(f32::NAN, |v| v as f32)).to_le_bytes());
        }
    }
    let header = json!({
        "inputs": [{"name": "features", "datatype": "FP32", "shape": [rows.len(), 5], "parameters": {"binary_data_size": data.len()}}],
        "outputs": [{"name": "prediction", "parameters": {"binary_data": true}}],
    })
    .to_string();
    let mut body = header.as_bytes().to_vec();
    body.extend_from_slice(&data);
    let length = header.len().to_string();
    let response = post(
        &server,
        "/v2/models/price/versions/1/infer",
        &[("Inference-Header-Content-Length", &length)],
        &body,
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.body_text());
    let json_length: usize = response
        .headers
        .iter()
        .find(|(k, _)| k == "inference-header-content-length")
        .expect("binary replies say where the JSON ends")
        .1
        .parse()
        .unwrap();
    let json: Value = serde_json::from_slice(&response.body[..json_length]).unwrap();
    assert_eq!(json["outputs"][0]["parameters"]["binary_data_size"], rows.len() * 4);
    let values: Vec<f64> = response.body[json_length..]
        .chunks_exact(4)
        .map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap())))
        .collect();
    assert_close(&values, &expected_values("xgb_regressor"), 1e-6, "price");
    server.stop().await.unwrap();
}

const SIGNED: &str = r#"flavors:
  python_function: {data: model.ubj, loader_module: mlflow.xgboost}
  xgboost: {data: model.ubj, model_class: xgboost.sklearn.XGBRegressor, model_format: ubj}
signature:
  inputs: '[{"type": "double", "name": "f0", "required": true}, {"type": "double", "name": "f1", "required": true}, {"type": "double", "name": "f2", "required": true}, {"type": "double", "name": "f3", "required": true}, {"type": "long", "name": "f4", "required": true}]'
  outputs: '[{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1]}}]'
  params: null
"#;

#[tokio::test]
async fn signature_violations_are_refused_naming_the_field() {
    let server = TestServer::start_serving(ServingOptions {
        max_request_mb: 1,
        ..ServingOptions::default()
    })
    .await
    .unwrap();
    register(&server, "signed", "xgb_regressor", Some(SIGNED)).await;
    let invocations = "/models/signed/versions/1/invocations";
    let columns = json!(["f0", "f1", "f2", "f3", "f4"]);
    let good = post_json(
        &server,
        invocations,
        &json!({"dataframe_split": {"columns": columns, "data": [[1.0, 2.0, 3.0, 4.0, 5]]}}),
    )
    .await;
    assert_eq!(good.status, 200, "{}", good.body_text());
    let cases = [
        (
            json!({"dataframe_split": {"columns": ["f0", "f1", "f2", "f3"], "data": [[1, 2, 3, 4]]}}),
            "[\"f4\"]",
        ),
        (
            json!({"dataframe_records": [{"f0": 1, "f1": 2, "f2": 3, "f3": 4, "f4": 5, "zz": 6}]}),
            "[\"zz\"]",
        ),
        (
            json!({"dataframe_records": [{"f0": "a", "f1": 2, "f2": 3, "f3": 4, "f4": 5}]}),
            "column 'f0'",
        ),
        (
            json!({"dataframe_records": [{"f0": 1, "f1": 2, "f2": 3, "f3": 4, "f4": null}]}),
            "column 'f4'",
        ),
        (json!({"dataframe_split": {"columns": columns, "data": []}}), "no rows"),
        (json!({"inputs": [[1.0, 2.0, 3.0, 4.0]]}), "4 columns per row"),
        (json!({"instances": [1], "inputs": [1]}), "exactly one"),
    ];
    for (body, named) in cases {
        let response = post_json(&server, invocations, &body).await;
        assert_eq!(response.status, 400, "{body}: {}", response.body_text());
        assert_eq!(response.json()["error_code"], "BAD_REQUEST");
        let message = response.json()["message"].as_str().unwrap().to_string();
        assert!(message.contains(named), "{body}: {message}");
    }
    let nan = json!({"inputs": [{"name": "f4", "datatype": "FP64", "shape": [1], "data": ["NaN"]}, {"name": "f0", "datatype": "FP64", "shape": [1], "data": [1]}]});
    let refused = post_json(&server, "/v2/models/signed/versions/1/infer", &nan).await;
    assert_eq!(refused.status, 400);
    assert!(
        refused.json()["error"].as_str().unwrap().contains("'f4'"),
        "{}",
        refused.body_text()
    );
    let shape = json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 5], "data": [1, 2, 3]}]});
    let wrong = post_json(&server, "/v2/models/signed/versions/1/infer", &shape).await;
    assert!(
        wrong.status == 400 && wrong.json()["error"].as_str().unwrap().contains("'x' has 3 values"),
        "{}",
        wrong.body_text()
    );
    let text = post(&server, invocations, &[("Content-Type", "text/plain")], b"f0\n1\n").await;
    assert_eq!(text.status, 415);
    let huge = vec![b' '; 2 * 1024 * 1024];
    let oversized = post(&server, invocations, &[("Content-Type", "application/json")], &huge).await;
    assert_eq!(
        (oversized.status, oversized.json()["error_code"].clone()),
        (413, json!("RESOURCE_EXHAUSTED"))
    );
    let oversized = post(&server, "/v2/models/signed/versions/1/infer", &[], &huge).await;
    assert_eq!(oversized.status, 413);
    assert!(oversized.json()["error"].as_str().unwrap().contains("limit"));
    server.stop().await.unwrap();
}

const PICKLED: &str = r#"flavors:
  python_function: {loader_module: mlflow.sklearn, model_path: model.pkl}
  sklearn: {pickled_model: model.pkl, serialization_format: cloudpickle}
"#;

#[tokio::test]
async fn a_version_that_cannot_load_is_not_ready_with_its_reason_and_others_keep_serving() {
    let server = TestServer::start().await.unwrap();
    register(&server, "pickled", "xgb_booster", Some(PICKLED)).await;
    register(&server, "booster", "xgb_booster", None).await;
    let infer = post_json(&server, "/v2/models/pickled/versions/1/infer", &v2_columns()).await;
    assert_eq!(infer.status, 503);
    let reason = infer.json()["error"].as_str().unwrap().to_string();
    assert!(
        reason.contains("version 1 cannot be loaded") && reason.contains("--allow-python-models"),
        "a Python model is refused by default, with the way to allow it: {reason}"
    );
    let ready = raw_request(server.address, "GET", "/v2/models/pickled/versions/1/ready", &[], b"")
        .await
        .unwrap();
    assert_eq!(ready.status, 503);
    let scoring = post_json(
        &server,
        "/models/pickled/versions/1/invocations",
        &json!({"inputs": [[1, 2]]}),
    )
    .await;
    assert_eq!(
        (scoring.status, scoring.json()["error_code"].clone()),
        (503, json!("TEMPORARILY_UNAVAILABLE"))
    );
    let other = post_json(&server, "/v2/models/booster/versions/champion/infer", &v2_columns()).await;
    assert_eq!(other.status, 200, "{}", other.body_text());
    assert_close(
        &flat_numbers(&other.json()["outputs"][0]["data"]),
        &expected_values("xgb_booster"),
        1e-6,
        "booster",
    );
    for path in [
        "/v2/models/nobody/versions/1/infer",
        "/v2/models/booster/versions/7/infer",
        "/v2/models/booster/versions/nosuchalias/infer",
    ] {
        let missing = post_json(&server, path, &v2_columns()).await;
        assert_eq!(missing.status, 404, "{path}: {}", missing.body_text());
        assert!(missing.json()["error"].is_string());
    }
    server.stop().await.unwrap();
}

pub(crate) fn parquet_rows(directory: &std::path::Path) -> Vec<arrow_array::RecordBatch> {
    let mut batches = Vec::new();
    let mut pending = vec![directory.to_path_buf()];
    while let Some(path) = pending.pop() {
        for entry in std::fs::read_dir(&path).unwrap() {
            let entry = entry.unwrap().path();
            if entry.is_dir() {
                pending.push(entry);
            } else {
                let file = std::fs::File::open(&entry).unwrap();
                let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                    .unwrap()
                    .build()
                    .unwrap();
                batches.extend(reader.map(Result::unwrap));
            }
        }
    }
    batches
}

pub(crate) fn strings(batches: &[arrow_array::RecordBatch], column: &str) -> Vec<String> {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    batches
        .iter()
        .flat_map(|b| {
            let values = b.column_by_name(column).unwrap().as_string::<i32>().clone();
            (0..values.len()).map(move |i| values.value(i).to_string())
        })
        .collect()
}

#[tokio::test]
async fn answered_requests_and_feedback_land_in_the_prediction_log() {
    let server = TestServer::start().await.unwrap();
    register(&server, "churn", "xgb_classifier", None).await;
    let columns = json!(["f0", "f1", "f2", "f3", "f4"]);
    let row = json!({"dataframe_split": {"columns": columns, "data": [[1.0, 2.0, 3.0, 4.0, 5.0], [0.0, 0.0, 0.0, 0.0, -1.0]]}});
    let path = "/models/churn/versions/champion/invocations";
    let tagged = post(
        &server,
        path,
        &[("Content-Type", "application/json"), ("X-Request-Id", "req-9")],
        row.to_string().as_bytes(),
    )
    .await;
    assert_eq!(tagged.status, 200);
    assert!(tagged.headers.iter().any(|(k, v)| k == "x-request-id" && v == "req-9"));
    let untagged = post_json(&server, path, &row).await;
    let generated = untagged
        .headers
        .iter()
        .find(|(k, _)| k == "x-request-id")
        .unwrap()
        .1
        .clone();
    assert_eq!(
        generated.len(),
        32,
        "a generated id is returned for feedback to refer to"
    );
    let v2 = post_json(&server, "/v2/models/churn/versions/1/infer", &v2_columns()).await;
    assert_eq!(v2.json()["id"], "req-1");
    let refused = post_json(&server, path, &json!({"dataframe_records": [{"f0": "x"}]})).await;
    assert_eq!(refused.status, 400, "refused requests are not logged");

    let feedback = "/api/loopline/v1/feedback";
    let one = post_json(&server, feedback, &json!({"request_id": "req-9", "label": [1, 0]})).await;
    assert_eq!((one.status, one.json()["recorded"].clone()), (200, json!(1)));
    let many = post_json(
        &server,
        feedback,
        &json!({"feedback": [{"request_id": generated, "label": 1}, {"request_id": "req-1", "label": 0}]}),
    )
    .await;
    assert_eq!(many.json()["recorded"], 2);
    let bad = post_json(&server, feedback, &json!({"label": 1})).await;
    assert!(bad.status == 400 && bad.json()["message"].as_str().unwrap().contains("request_id"));
    let flushed = post_json(&server, "/api/loopline/v1/predictions/flush", &json!({})).await;
    assert_eq!(flushed.status, 200, "{}", flushed.body_text());

    let logged = parquet_rows(&server.data_dir.join("artifacts/predictions/model=churn"));
    let mut ids = strings(&logged, "request_id");
    ids.sort();
    let mut want = vec![
        "req-9".to_string(),
        "req-9".to_string(),
        generated.clone(),
        generated.clone(),
    ];
    want.extend(std::iter::repeat_n("req-1".to_string(), 30));
    want.sort();
    assert_eq!(ids, want, "two rows per scoring request, thirty for the v2 request");
    assert!(strings(&logged, "model_version").iter().all(|v| v == "1"));
    for batch in &logged {
        for column in ["timestamp", "row", "input.f0", "input.f4", "output.prediction"] {
            assert!(
                batch.schema().index_of(column).is_ok(),
                "{column} in {:?}",
                batch.schema()
            );
        }
    }
    let hours: Vec<String> = std::fs::read_dir(server.data_dir.join("artifacts/predictions/model=churn"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        hours
            .iter()
            .all(|h| h.starts_with("hour=") && h.len() == "hour=2026-11-22T10".len()),
        "{hours:?}"
    );
    let labels = parquet_rows(&server.data_dir.join("artifacts/feedback"));
    let mut pairs: Vec<(String, String)> = strings(&labels, "request_id")
        .into_iter()
        .zip(strings(&labels, "label"))
        .collect();
    pairs.sort();
    let mut want = vec![
        ("req-1".to_string(), "0".to_string()),
        ("req-9".to_string(), "[1,0]".to_string()),
        (generated, "1".to_string()),
    ];
    want.sort();
    assert_eq!(pairs, want);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn with_the_log_off_nothing_is_written_and_feedback_says_why() {
    let server = TestServer::start_serving(ServingOptions {
        prediction_log_sample_rate: 0.0,
        ..ServingOptions::default()
    })
    .await
    .unwrap();
    register(&server, "churn", "xgb_classifier", None).await;
    let answered = post_json(&server, "/v2/models/churn/versions/1/infer", &v2_columns()).await;
    assert_eq!(answered.status, 200);
    let feedback = post_json(
        &server,
        "/api/loopline/v1/feedback",
        &json!({"request_id": "req-1", "label": 1}),
    )
    .await;
    assert_eq!(feedback.status, 503);
    assert!(
        feedback.json()["message"]
            .as_str()
            .unwrap()
            .contains("prediction log is off")
    );
    let flush = post_json(&server, "/api/loopline/v1/predictions/flush", &json!({})).await;
    assert_eq!(flush.status, 503);
    assert!(!server.data_dir.join("artifacts/predictions").exists());
    server.stop().await.unwrap();
}
