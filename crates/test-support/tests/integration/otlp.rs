//! OTLP/HTTP trace ingest (`POST /v1/traces`): protobuf and JSON, compressed or not, spans read back through
//! the MLflow trace API, and hostile bodies answered with OTLP's error statuses, never a 5xx.

use std::io::Write;

use loopline_http_api::otlp::messages::{
    Any, AnyValue, Event, ExportTraceServiceRequest, KeyValue, ResourceSpans, RpcStatus, ScopeSpans, Span, Status,
};
use loopline_test_support::{RawResponse, TestServer, raw_request};
use prost::Message;
use serde_json::{Value, json};

const TRACE: [u8; 16] = [0xab; 16];

fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Any::String(value.into())),
        }),
    }
}

fn span(id: u8, parent: Option<u8>, name: &str, start: u64, end: u64) -> Span {
    Span {
        trace_id: TRACE.to_vec(),
        span_id: vec![id; 8],
        parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
        name: name.into(),
        kind: 1,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        attributes: vec![
            text("mlflow.spanInputs", r#"{"question": "why"}"#),
            KeyValue {
                key: "tokens".into(),
                value: Some(AnyValue {
                    value: Some(Any::Int(42)),
                }),
            },
        ],
        events: vec![Event {
            time_unix_nano: start + 1,
            name: "checkpoint".into(),
            attributes: vec![text("note", "halfway")],
        }],
        status: Some(Status {
            message: String::new(),
            code: 1,
        }),
        ..Span::default()
    }
}

fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: None,
            scope_spans: vec![ScopeSpans { spans }],
        }],
    }
}

async fn post(server: &TestServer, headers: &[(&str, &str)], body: &[u8]) -> RawResponse {
    raw_request(server.address, "POST", "/v1/traces", headers, body)
        .await
        .unwrap()
}

async fn get_json(server: &TestServer, path: &str) -> Value {
    let answer = raw_request(server.address, "GET", path, &[], b"").await.unwrap();
    assert_eq!(answer.status, 200, "{path}: {}", answer.body_text());
    answer.json()
}

#[tokio::test]
async fn spans_sent_over_otlp_become_a_trace_read_back_through_mlflows_api() {
    let server = TestServer::start().await.unwrap();
    let protobuf = [
        ("Content-Type", "application/x-protobuf"),
        ("x-mlflow-experiment-id", "0"),
    ];
    // The child arrives first, then the root: the trace is made by the first and finished by the second.
    let child = request(vec![span(2, Some(1), "retrieve", 1_500_000_000, 1_700_000_000)]).encode_to_vec();
    let answer = post(&server, &protobuf, &child).await;
    assert_eq!(answer.status, 200, "{}", answer.body_text());
    assert_eq!(answer.header("content-type"), Some("application/x-protobuf"));
    assert!(answer.body.is_empty());
    let trace_id = format!("tr-{}", "ab".repeat(16));
    let open = get_json(&server, &format!("/api/3.0/mlflow/traces/{trace_id}")).await;
    assert_eq!(open["trace"]["trace_info"]["state"], "IN_PROGRESS");

    let root = request(vec![span(1, None, "answer", 1_000_000_000, 2_000_000_000)]).encode_to_vec();
    let mut gzipped = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzipped.write_all(&root).unwrap();
    let headers = [
        ("Content-Type", "application/x-protobuf"),
        ("Content-Encoding", "gzip"),
        ("x-mlflow-experiment-id", "0"),
    ];
    assert_eq!(post(&server, &headers, &gzipped.finish().unwrap()).await.status, 200);

    let trace = get_json(&server, &format!("/api/3.0/mlflow/traces/get?trace_id={trace_id}")).await["trace"].clone();
    let info = &trace["trace_info"];
    assert_eq!(info["state"], "OK");
    assert_eq!(info["execution_duration"], "1.000s");
    assert_eq!(info["tags"]["mlflow.trace.spansLocation"], "TRACKING_STORE");
    assert_eq!(info["tags"]["mlflow.traceName"], "answer");
    assert_eq!(info["trace_metadata"]["mlflow.traceInputs"], r#"{"question": "why"}"#);
    let spans = trace["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 2);
    // Root first; ids in base64, times as numbers, enums by name, attributes as OTLP key-values.
    assert_eq!(spans[0]["name"], "answer");
    assert!(spans[0].get("parent_span_id").is_none());
    assert_eq!(spans[1]["parent_span_id"], "AQEBAQEBAQE=");
    assert_eq!(spans[0]["trace_id"], "q6urq6urq6urq6urq6urqw==");
    assert_eq!(spans[0]["start_time_unix_nano"], 1_000_000_000);
    assert_eq!(spans[0]["kind"], "SPAN_KIND_INTERNAL");
    assert_eq!(spans[0]["status"]["code"], "STATUS_CODE_OK");
    assert_eq!(
        spans[0]["attributes"][1],
        json!({"key": "tokens", "value": {"int_value": 42}})
    );
    assert_eq!(spans[0]["events"][0]["name"], "checkpoint");
    let batch = get_json(
        &server,
        &format!("/api/3.0/mlflow/traces/batchGet?trace_ids={trace_id}&trace_ids=tr-none"),
    )
    .await;
    assert_eq!(batch["traces"].as_array().unwrap().len(), 1);
    // The client finishing the trace afterwards keeps the spans where they are.
    let finish = json!({"trace": {"trace_info": {
        "trace_id": trace_id, "trace_location": {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": "0"}},
        "request_time": "1970-01-01T00:00:01Z", "execution_duration": "1s", "state": "OK", "tags": {"mlflow.user": "me"}}}});
    let started = raw_request(
        server.address,
        "POST",
        "/api/3.0/mlflow/traces",
        &[("Content-Type", "application/json")],
        finish.to_string().as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(started.status, 200, "{}", started.body_text());
    assert_eq!(
        started.json()["trace"]["trace_info"]["tags"]["mlflow.trace.spansLocation"],
        "TRACKING_STORE"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_coding_agents_service_name_is_put_on_its_root_span() {
    let server = TestServer::start().await.unwrap();
    let protobuf = [
        ("Content-Type", "application/x-protobuf"),
        ("x-mlflow-experiment-id", "0"),
    ];
    for (service, expected) in [("gemini-cli", Some("gemini-cli")), ("my-app", None)] {
        let mut body = request(vec![
            span(1, None, "root", 1_000_000_000, 2_000_000_000),
            span(2, Some(1), "child", 1_100_000_000, 1_500_000_000),
        ]);
        body.resource_spans[0].resource = Some(loopline_http_api::otlp::messages::Resource {
            attributes: vec![text("service.name", service)],
        });
        let answer = post(&server, &protobuf, &body.encode_to_vec()).await;
        assert_eq!(answer.status, 200, "{}", answer.body_text());
        let trace = get_json(
            &server,
            &format!("/api/3.0/mlflow/traces/get?trace_id=tr-{}", "ab".repeat(16)),
        )
        .await;
        let spans = trace["trace"]["spans"].as_array().unwrap().clone();
        let service_of = |name: &str| {
            let span = spans.iter().find(|span| span["name"] == name).unwrap();
            span["attributes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|entry| entry["key"] == "service.name")
                .map(|entry| entry["value"]["string_value"].as_str().unwrap().to_string())
        };
        assert_eq!(service_of("root").as_deref(), expected, "{service}");
        assert_eq!(service_of("child"), None, "only the root span is named");
        let (status, _) = loopline_test_support::send_json(
            &reqwest::Client::new(),
            reqwest::Method::POST,
            &server.url("/api/2.0/mlflow/traces/delete-traces"),
            &json!({"experiment_id": "0", "request_ids": [format!("tr-{}", "ab".repeat(16))]}),
        )
        .await
        .unwrap();
        assert_eq!(status, 200);
    }
}

#[tokio::test]
async fn otlp_json_bodies_use_hex_ids() {
    let server = TestServer::start().await.unwrap();
    let body = json!({"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174", "name": "json-span",
        "kind": 2, "startTimeUnixNano": "1544712660000000000", "endTimeUnixNano": 1544712661000000000u64,
        "attributes": [{"key": "model", "value": {"stringValue": "gpt"}}], "status": {"code": 2, "message": "boom"}
    }]}]}]});
    let answer = post(
        &server,
        &[("Content-Type", "application/json"), ("x-mlflow-experiment-id", "0")],
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body_text());
    assert_eq!(answer.json(), json!({}));
    let trace = get_json(
        &server,
        "/api/3.0/mlflow/traces/get?trace_id=tr-5b8efff798038103d269b633813fc60c",
    )
    .await;
    assert_eq!(trace["trace"]["trace_info"]["state"], "ERROR");
    assert_eq!(trace["trace"]["spans"][0]["kind"], "SPAN_KIND_SERVER");
    assert_eq!(trace["trace"]["spans"][0]["status"]["message"], "boom");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn bad_otlp_requests_get_otlps_error_answers() {
    let server = TestServer::start().await.unwrap();
    let valid = request(vec![span(1, None, "s", 1, 2)]).encode_to_vec();
    let decode_status = |answer: &RawResponse| RpcStatus::decode(answer.body.as_slice()).unwrap();
    let protobuf = |experiment: &'static str| {
        vec![
            ("Content-Type", "application/x-protobuf"),
            ("x-mlflow-experiment-id", experiment),
        ]
    };

    let wrong_type = post(
        &server,
        &[("Content-Type", "text/plain"), ("x-mlflow-experiment-id", "0")],
        &valid,
    )
    .await;
    assert_eq!(wrong_type.status, 400);
    assert!(wrong_type.body_text().contains("Invalid Content-Type"));
    let no_header = post(&server, &[("Content-Type", "application/x-protobuf")], &valid).await;
    assert_eq!(no_header.status, 422);
    let garbage = post(&server, &protobuf("0"), b"this is not valid protobuf data at all").await;
    assert_eq!(garbage.status, 400);
    assert_eq!(decode_status(&garbage).code, 3);
    let truncated = post(&server, &protobuf("0"), &valid[..valid.len() - 3]).await;
    assert_eq!(truncated.status, 400);
    let empty = post(
        &server,
        &protobuf("0"),
        &ExportTraceServiceRequest::default().encode_to_vec(),
    )
    .await;
    assert_eq!(empty.status, 400);
    assert!(decode_status(&empty).message.contains("no spans found"));
    let mut no_span_id = span(1, None, "s", 1, 2);
    no_span_id.span_id.clear();
    let unconvertible = post(&server, &protobuf("0"), &request(vec![no_span_id]).encode_to_vec()).await;
    assert_eq!(unconvertible.status, 422);
    let unknown = post(&server, &protobuf("999"), &valid).await;
    assert_eq!(unknown.status, 404);
    let bomb = post(
        &server,
        &[
            ("Content-Type", "application/x-protobuf"),
            ("Content-Encoding", "gzip"),
            ("x-mlflow-experiment-id", "0"),
        ],
        b"not gzip at all",
    )
    .await;
    assert_eq!(bomb.status, 400);
    let json_garbage = post(
        &server,
        &[("Content-Type", "application/json"), ("x-mlflow-experiment-id", "0")],
        b"{\"resourceSpans\": 5}",
    )
    .await;
    assert_eq!(json_garbage.status, 400);
    assert_eq!(json_garbage.json()["code"], 3);
    // Nothing was half-written: only the traces of valid requests exist (none here).
    let search = raw_request(
        server.address,
        "POST",
        "/api/3.0/mlflow/traces/search",
        &[("Content-Type", "application/json")],
        br#"{"locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": "0"}}]}"#,
    )
    .await
    .unwrap();
    assert!(
        search.json()["traces"].as_array().is_none_or(Vec::is_empty),
        "{}",
        search.body_text()
    );
    server.stop().await.unwrap();
}

#[test]
fn hostile_otlp_bodies_never_get_a_server_error() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(TestServer::start()).unwrap();
    let valid = request(vec![span(1, None, "s", 1, 2), span(2, Some(1), "t", 1, 2)]).encode_to_vec();
    let config = proptest::prelude::ProptestConfig {
        cases: 200,
        failure_persistence: None,
        ..proptest::prelude::ProptestConfig::default()
    };
    proptest::proptest!(config, |(
        flips in proptest::collection::vec((0..valid.len(), proptest::prelude::any::<u8>()), 0..6),
        cut in 0..=valid.len(),
        random in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        use_random in proptest::prelude::any::<bool>(),
    )| {
        let body = if use_random {
            random
        } else {
            let mut mutated = valid[..cut].to_vec();
            for (at, byte) in flips {
                if at < mutated.len() {
                    mutated[at] = byte;
                }
            }
            mutated
        };
        let answer = runtime.block_on(post(
            &server,
            &[("Content-Type", "application/x-protobuf"), ("x-mlflow-experiment-id", "0")],
            &body,
        ));
        proptest::prop_assert!(answer.status < 500, "{}: {}", answer.status, answer.body_text());
    });
    runtime.block_on(async {
        let health = raw_request(server.address, "GET", "/health", &[], b"").await.unwrap();
        assert_eq!(health.status, 200);
    });
}
