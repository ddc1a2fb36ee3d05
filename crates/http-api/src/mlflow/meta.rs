//! Health, version and server capabilities.

use super::JsonResult;
use axum::Json;

/// Liveness.
pub(super) async fn health() -> &'static str {
    "OK"
}

/// The server version, as plain text: the MLflow release whose API Loopline speaks. Clients gate features
/// on it (from 3.4 they send spans over OTLP to `/v1/traces`). Loopline's own version is at
/// `/api/loopline/v1/version` and in the `x-loopline-version` header.
pub(super) async fn version() -> &'static str {
    MLFLOW_API_VERSION
}

/// Loopline's own version, and the MLflow release whose tracking API it speaks.
pub(super) async fn loopline_version() -> JsonResult {
    Ok(Json(serde_json::json!({
        "loopline": env!("CARGO_PKG_VERSION"),
        "mlflow_api": MLFLOW_API_VERSION,
    })))
}

/// The MLflow release whose client (`tests/compat/requirements.txt`) the server is tested against.
pub const MLFLOW_API_VERSION: &str = "3.17.2";

/// Capabilities the client checks before downloads.
pub(super) async fn server_info() -> JsonResult {
    Ok(Json(serde_json::json!({
        "store_type": "SqlStore",
        "workspaces_enabled": false,
        "trace_archival_enabled": false,
        "multipart_uploads_enabled": false,
        "multipart_downloads_enabled": false,
        "presigned_upload_run_id_supported": false,
        "presigned_upload_model_id_supported": false,
        // Read by the web UI: it shows the AI gateway's pages (secrets, models, endpoints), served here.
        "features_enabled": {"gateway": true},
    })))
}

/// The web UI's assistant settings: no assistant here (MLflow's answer when none is set up).
pub(super) async fn assistant_config() -> JsonResult {
    Ok(Json(
        serde_json::json!({"providers": {}, "projects": {}, "remote_access_allowed": false}),
    ))
}

/// The web UI's assistant providers: none.
pub(super) async fn assistant_providers() -> JsonResult {
    Ok(Json(serde_json::json!({"providers": []})))
}

/// The web UI asks whether to send usage telemetry: it never does to Loopline.
pub(super) async fn ui_telemetry_config() -> JsonResult {
    Ok(Json(serde_json::json!({
        "disable_ui_telemetry": true,
        "disable_ui_events": [],
        "ui_rollout_percentage": 0,
    })))
}

/// Telemetry records from the web UI: not kept (MLflow's answer with telemetry off).
pub(super) async fn ui_telemetry_records() -> JsonResult {
    Ok(Json(serde_json::json!({"status": "disabled"})))
}

/// The web UI lists the AI gateway's endpoints through this proxy: there is no gateway yet, so none.
pub(super) async fn gateway_proxy_list() -> JsonResult {
    Ok(Json(serde_json::json!({"endpoints": []})))
}
