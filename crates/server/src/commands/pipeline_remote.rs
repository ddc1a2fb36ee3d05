//! `loopline pipeline register|start|runs|logs|cancel`: pipelines run by a server (one started with
//! `--pipeline-root` covering the project), through `/api/loopline/v1/pipelines`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use super::monitor::segment;
use super::rollout::{Client, ServerArgs, runtime_block};
use super::{FINDING, OK};

/// Parameter values given as KEY=VALUE (VALUE read as YAML).
pub(crate) fn parse_params(params: &[String]) -> Result<BTreeMap<String, Value>, String> {
    let mut parsed = BTreeMap::new();
    for param in params {
        let (key, value) = param
            .split_once('=')
            .ok_or_else(|| format!("--param '{param}' is not KEY=VALUE"))?;
        let value = loopline_model_runtime_api::yaml_bounds::load_json(value).unwrap_or(Value::from(value));
        parsed.insert(key.to_string(), value);
    }
    Ok(parsed)
}

/// Registers the pipeline in `file` (its directory must be the same path on the server's host).
pub(crate) fn register(
    server: &ServerArgs,
    file: &Path,
    name: Option<String>,
    params: &[String],
) -> Result<u8, String> {
    let absolute = std::path::absolute(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let directory = absolute
        .parent()
        .ok_or_else(|| format!("{} has no directory", file.display()))?
        .canonicalize()
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let file_name = absolute
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{} has no file name", file.display()))?;
    let mut body = json!({"directory": directory, "file": file_name, "params": parse_params(params)?});
    if let Some(name) = &name {
        body["name"] = json!(name);
    }
    let client = Client::new(server)?;
    let answer = runtime_block(async {
        let (status, answer) = client
            .call(Method::POST, "/api/loopline/v1/pipelines", Some(body.clone()))
            .await?;
        if status == 409
            && let Some(registered) = name
                .clone()
                .or_else(|| answer["message"].as_str().and_then(quoted_name))
        {
            // Registered before from this directory: register it again (its file may have changed). Another
            // project's registration under the same name is left alone.
            let path = format!("/api/loopline/v1/pipelines/{}", segment(&registered));
            let existing = client.ok(Method::GET, &path, None).await?;
            let theirs = existing["pipeline"]["spec"]["directory"].as_str().unwrap_or_default();
            if theirs != body["directory"].as_str().unwrap_or_default() {
                return Err(format!(
                    "a pipeline named '{registered}' is already registered for {theirs}; give this one another \
                     name with --name (or a pipeline: name in its file)"
                ));
            }
            return client.ok(Method::PUT, &path, Some(body)).await;
        }
        if (200..300).contains(&status) {
            Ok(answer)
        } else {
            Err(format!(
                "the server refused ({status}): {}",
                answer["message"].as_str().unwrap_or("no message")
            ))
        }
    })?;
    let pipeline = &answer["pipeline"];
    println!(
        "pipeline {} registered (revision {}): steps {}; triggers {}",
        pipeline["name"].as_str().unwrap_or_default(),
        pipeline["revision"],
        pipeline["spec"]["steps"],
        pipeline["spec"]["triggers"]
    );
    Ok(OK)
}

/// The name in `Pipeline 'NAME' already exists.`
fn quoted_name(message: &str) -> Option<String> {
    let start = message.find('\'')? + 1;
    let end = start + message[start..].find('\'')?;
    Some(message[start..end].to_string())
}

/// Queues a run; with `wait`, follows it to its end.
pub(crate) fn start(
    server: &ServerArgs,
    name: &str,
    params: &[String],
    (force, force_all): (Vec<String>, bool),
    wait: bool,
) -> Result<u8, String> {
    let client = Client::new(server)?;
    let body = json!({"params": parse_params(params)?, "force": force, "force_all": force_all});
    runtime_block(async {
        let answer = client
            .ok(
                Method::POST,
                &format!("/api/loopline/v1/pipelines/{}/runs", segment(name)),
                Some(body),
            )
            .await?;
        let run_id = answer["run"]["run_id"].as_str().unwrap_or_default().to_string();
        println!(
            "run {run_id} queued; status: {}{}",
            client.base,
            answer["run"]["status_url"].as_str().unwrap_or_default()
        );
        if !wait {
            return Ok(OK);
        }
        follow(&client, &run_id).await
    })
}

/// Prints a run's step changes until it ends; exit code 0 when it succeeded.
pub(crate) async fn follow(client: &Client, run_id: &str) -> Result<u8, String> {
    let mut shown: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let answer = client
            .ok(
                Method::GET,
                &format!("/api/loopline/v1/pipeline-runs/{}", segment(run_id)),
                None,
            )
            .await?;
        let run = &answer["run"];
        for step in run["steps"].as_array().into_iter().flatten() {
            let name = step["name"].as_str().unwrap_or_default().to_string();
            let state = match step["reason"].as_str() {
                Some(reason) => format!("{}: {reason}", step["state"].as_str().unwrap_or_default()),
                None => step["state"].as_str().unwrap_or_default().to_string(),
            };
            if shown.get(&name) != Some(&state) {
                println!("  {name:<24} {state}");
                shown.insert(name, state);
            }
        }
        let status = run["status"].as_str().unwrap_or_default();
        if !matches!(status, "queued" | "running") {
            if let Some(error) = run["error"].as_str() {
                eprintln!("error: {error}");
            }
            println!("run {run_id} {status}");
            return Ok(if status == "succeeded" { OK } else { FINDING });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Lists a pipeline's runs.
pub(crate) fn runs(server: &ServerArgs, name: &str) -> Result<u8, String> {
    let client = Client::new(server)?;
    let answer = runtime_block(client.ok(
        Method::GET,
        &format!("/api/loopline/v1/pipelines/{}/runs", segment(name)),
        None,
    ))?;
    println!("{:<28} {:<10} cause", "run", "status");
    for run in answer["runs"].as_array().into_iter().flatten() {
        println!(
            "{:<28} {:<10} {}",
            run["run_id"].as_str().unwrap_or_default(),
            run["status"].as_str().unwrap_or_default(),
            run["cause"]["detail"].as_str().unwrap_or_default()
        );
    }
    Ok(OK)
}

/// Prints a step's log; with `follow`, keeps printing until the run ends.
pub(crate) fn logs(server: &ServerArgs, run_id: &str, step: &str, follow: bool) -> Result<u8, String> {
    let client = Client::new(server)?;
    runtime_block(async {
        let mut offset = 0u64;
        loop {
            let answer = client
                .ok(
                    Method::GET,
                    &format!(
                        "/api/loopline/v1/pipeline-runs/{}/logs/{}?offset={offset}",
                        segment(run_id),
                        segment(step)
                    ),
                    None,
                )
                .await?;
            print!("{}", answer["text"].as_str().unwrap_or_default());
            let next = answer["next_offset"].as_u64().unwrap_or(offset);
            let done = answer["done"] == true;
            if next == offset && (done || !follow) {
                return Ok(OK);
            }
            if next == offset {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            offset = next;
        }
    })
}

/// Asks a run to stop.
pub(crate) fn cancel(server: &ServerArgs, run_id: &str) -> Result<u8, String> {
    let client = Client::new(server)?;
    runtime_block(client.ok(
        Method::POST,
        &format!("/api/loopline/v1/pipeline-runs/{}/cancel", segment(run_id)),
        None,
    ))?;
    println!("run {run_id}: cancellation asked for");
    Ok(OK)
}
