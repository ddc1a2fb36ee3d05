//! `runs/create-promptlab-run`: the web UI's prompt lab records one prompt evaluation as a finished run, with
//! the model's parameters, route and template as params, the prompt-engineering tags, and the inputs and
//! output as an `eval_results_table.json` artifact, as MLflow records them. MLflow also saves a pyfunc model
//! that calls the AI gateway route; Loopline has no gateway yet (issue 17), so the run carries no model.

use super::JsonResult;
use super::ui_artifacts::store_directory;
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{KeyValueInput, MlflowMessage, to_tags};
use axum::extract::State;
use loopline_artifact_store::ArtifactPath;
use loopline_metadata_store::{LogBatch, RunUpdate, Tag};
use loopline_tracking::service::StartRun;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
pub(super) struct PromptlabRequest {
    experiment_id: Option<String>,
    run_name: Option<String>,
    #[serde(default)]
    tags: Vec<KeyValueInput>,
    prompt_template: Option<String>,
    prompt_parameters: Option<Vec<KeyValueInput>>,
    model_route: Option<String>,
    #[serde(default)]
    model_parameters: Vec<KeyValueInput>,
    model_input: Option<String>,
    model_output: Option<String>,
    #[serde(default)]
    model_output_parameters: Vec<KeyValueInput>,
    mlflow_version: Option<String>,
    user_id: Option<String>,
    start_time: Option<i64>,
}

/// MLflow's check: the field is present and not empty.
fn required<T>(name: &str, value: Option<T>, empty: impl Fn(&T) -> bool) -> ApiResult<T> {
    value
        .filter(|value| !empty(value))
        .ok_or_else(|| ApiError::invalid(format!("CreatePromptlabRun request must specify {name}.")))
}

pub(super) async fn create(
    State(state): State<AppState>,
    MlflowMessage(request): MlflowMessage<PromptlabRequest>,
) -> JsonResult {
    let experiment_id = required("experiment_id", request.experiment_id, String::is_empty)?;
    let template = required("prompt_template", request.prompt_template, String::is_empty)?;
    let prompt_parameters = to_tags(
        required("prompt_parameters", request.prompt_parameters, Vec::is_empty)?,
        "prompt_parameters",
    )?;
    let route = required("model_route", request.model_route, String::is_empty)?;
    let input = required("model_input", request.model_input, String::is_empty)?;
    required("mlflow_version", request.mlflow_version, String::is_empty)?;
    let output_parameters = to_tags(request.model_output_parameters, "model_output_parameters")?;
    let mut params = to_tags(request.model_parameters, "model_parameters")?;
    params.push(Tag::new("model_route", route));
    params.push(Tag::new("prompt_template", template));
    let run = state
        .tracking
        .create_run(StartRun {
            experiment_id: Some(experiment_id),
            user_id: Some(request.user_id.unwrap_or_else(|| "unknown".into())),
            run_name: request.run_name.clone(),
            start_time: request.start_time,
            tags: to_tags(request.tags, "tags")?,
        })
        .await?;
    let run_id = run.info.run_id.clone();
    let recorded = record(&state, &run.info.artifact_uri, &run_id, params, {
        let mut columns: Vec<&str> = prompt_parameters.iter().map(|p| p.key.as_str()).collect();
        columns.extend(["prompt", "output"]);
        columns.extend(output_parameters.iter().map(|p| p.key.as_str()));
        let mut row: Vec<serde_json::Value> = prompt_parameters.iter().map(|p| json!(p.value)).collect();
        row.extend([json!(input), json!(request.model_output)]);
        row.extend(output_parameters.iter().map(|p| json!(p.value)));
        json!({"columns": columns, "data": [row]})
    })
    .await;
    let status = if recorded.is_ok() { "FINISHED" } else { "FAILED" };
    state
        .tracking
        .update_run(
            &run_id,
            RunUpdate {
                status: Some(status.into()),
                end_time: Some(loopline_core::time::now_millis()),
                run_name: request.run_name,
            },
        )
        .await?;
    recorded?;
    let run = state.tracking.store().get_run(&run_id).await?;
    super::single("run", &run)
}

/// The run's params, tags and results table.
async fn record(
    state: &AppState,
    artifact_uri: &str,
    run_id: &str,
    params: Vec<Tag>,
    table: serde_json::Value,
) -> ApiResult<()> {
    let tags = vec![
        Tag::new(
            "mlflow.loggedArtifacts",
            r#"[{"path": "eval_results_table.json", "type": "table"}]"#,
        ),
        Tag::new("mlflow.runSourceType", "PROMPT_ENGINEERING"),
    ];
    state
        .tracking
        .log_batch(
            run_id,
            LogBatch {
                metrics: Vec::new(),
                params,
                tags,
            },
        )
        .await?;
    let path = store_directory(artifact_uri)?.join(&ArtifactPath::parse("eval_results_table.json")?);
    let body = bytes::Bytes::from(table.to_string());
    state
        .artifacts
        .put(&path, Box::pin(futures::stream::once(async move { Ok(body) })))
        .await?;
    Ok(())
}
