//! `loopline lineage models:/NAME/V`: where a model version came from and what it led to, as a tree: dataset
//! versions -> pipeline run -> training run -> the version -> gates -> deployments -> monitors -> alerts ->
//! the retraining runs they caused and the versions those registered.

use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

use super::input_error;
use super::monitor::segment;
use super::rollout::{Client, ServerArgs, runtime_block};

/// Alert events shown per monitor in the tree.
const ALERTS_SHOWN: usize = 4;

/// `loopline lineage`.
#[derive(Args, Debug)]
pub struct LineageArgs {
    /// The model version: `models:/NAME/VERSION` (or `models:/NAME@ALIAS`).
    uri: String,
    /// Print the server's JSON instead of the tree.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArgs,
}

/// Runs `loopline lineage`.
pub fn run(args: LineageArgs) -> ExitCode {
    match runtime_block(fetch(&args)) {
        Ok(lineage) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&lineage).unwrap_or_default());
            } else {
                print!("{}", tree(&lineage));
            }
            ExitCode::SUCCESS
        }
        Err(message) => input_error(message),
    }
}

async fn fetch(args: &LineageArgs) -> Result<Value, String> {
    let client = Client::new(&args.server)?;
    let rest = args
        .uri
        .strip_prefix("models:/")
        .ok_or_else(|| format!("'{}' is not models:/NAME/VERSION or models:/NAME@ALIAS", args.uri))?;
    let (name, version) = if let Some((name, alias)) = rest.split_once('@') {
        let found = client
            .ok(
                reqwest::Method::GET,
                &format!(
                    "/api/2.0/mlflow/registered-models/alias?name={}&alias={}",
                    segment(name),
                    segment(alias)
                ),
                None,
            )
            .await?;
        let version = found["model_version"]["version"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        (name.to_string(), version)
    } else {
        let (name, version) = rest
            .rsplit_once('/')
            .ok_or_else(|| format!("'{}' is not models:/NAME/VERSION or models:/NAME@ALIAS", args.uri))?;
        (name.to_string(), version.to_string())
    };
    lineage_of(&client, &name, &version).await
}

/// The server's lineage of one version.
pub(crate) async fn lineage_of(client: &Client, name: &str, version: &str) -> Result<Value, String> {
    client
        .ok(
            reqwest::Method::GET,
            &format!(
                "/api/loopline/v1/lineage?model={}&version={}",
                segment(name),
                segment(version)
            ),
            None,
        )
        .await
}

fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => "-".to_string(),
        other => other.to_string(),
    }
}

fn short(digest: &Value) -> String {
    text(digest).chars().take(12).collect()
}

/// The lineage as indented lines, from the data to what the version led to.
pub fn tree(lineage: &Value) -> String {
    let mut lines = Vec::new();
    let mut depth = 0;
    let mut line = |depth: usize, text: String| lines.push(format!("{}{text}", "   ".repeat(depth)));
    let empty = Vec::new();
    let list = |key: &str| lineage[key].as_array().unwrap_or(&empty).clone();
    for dataset in list("datasets") {
        let version = match dataset["version"].as_i64() {
            Some(version) => format!("@{version}"),
            None => " (not a registered version)".to_string(),
        };
        line(
            depth,
            format!(
                "dataset {}{version}  [{}]",
                text(&dataset["name"]),
                short(&dataset["digest"])
            ),
        );
        // A training set the feature store built: what it was computed from.
        let built = &dataset["computed_from"];
        if built.is_object() {
            let asked = match built["service"].as_str() {
                Some(service) => format!("service {service}"),
                None => format!("{} feature(s)", built["features"].as_array().map_or(0, Vec::len)),
            };
            line(
                depth + 1,
                format!(
                    "built from feature project {} ({asked})  [definitions {}]",
                    text(&built["definitions"]["project"]),
                    short(&built["definitions"]["hash"])
                ),
            );
            line(
                depth + 1,
                format!(
                    "entity frame {}  [{}]",
                    text(&built["entity_frame"]["path"]),
                    short(&built["entity_frame"]["hash"])
                ),
            );
            for source in built["sources"].as_array().unwrap_or(&empty) {
                line(
                    depth + 1,
                    format!(
                        "source {} {}  [{}]",
                        text(&source["name"]),
                        text(&source["path"]),
                        short(&source["hash"])
                    ),
                );
            }
        }
    }
    if !list("datasets").is_empty() {
        depth += 1;
    }
    let pipeline = &lineage["pipeline_run"];
    if pipeline.is_object() {
        let detail = if pipeline["on_server"] == true {
            format!(
                " of {} ({}, {})",
                text(&pipeline["pipeline"]),
                text(&pipeline["cause"]["detail"]),
                text(&pipeline["status"])
            )
        } else {
            " (run outside the server)".to_string()
        };
        line(depth, format!("-> pipeline run {}{detail}", text(&pipeline["run_id"])));
        depth += 1;
    }
    let training = &lineage["training_run"];
    if training.is_object() {
        line(
            depth,
            format!(
                "-> training run {} '{}' ({})",
                text(&training["run_id"]),
                text(&training["run_name"]),
                text(&training["status"])
            ),
        );
        depth += 1;
    }
    let version = &lineage["model_version"];
    let aliases: Vec<String> = version["aliases"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(text)
        .collect();
    let aliases = if aliases.is_empty() {
        String::new()
    } else {
        format!("  aliases: {}", aliases.join(", "))
    };
    line(
        depth,
        format!(
            "-> model version {}/{}{aliases}",
            text(&version["name"]),
            text(&version["version"])
        ),
    );
    depth += 1;
    for gate in list("gates") {
        let verdict = if gate["passed"] == true { "passed" } else { "failed" };
        line(
            depth,
            format!(
                "-> gate #{} {verdict} on {} (policy revision {}, champion {})",
                text(&gate["evaluation_id"]),
                text(&gate["dataset"]),
                text(&gate["policy_revision"]),
                text(&gate["champion_version"])
            ),
        );
    }
    for record in list("overrides") {
        line(
            depth,
            format!(
                "-> override of '{}' by {}: {}",
                text(&record["alias"]),
                text(&record["created_by"]),
                text(&record["reason"])
            ),
        );
    }
    for deployment in list("deployments") {
        let serving = if deployment["serves_this_version"] == true {
            "serves this version"
        } else {
            "serves another version"
        };
        line(
            depth,
            format!(
                "-> deployment {} ({}, stable {}; {serving})",
                text(&deployment["name"]),
                text(&deployment["model"]),
                text(&deployment["stable"])
            ),
        );
    }
    let alerts = list("alerts");
    for monitor in list("monitors") {
        line(depth + 1, format!("-> monitor {}", text(&monitor["name"])));
        let of_monitor: Vec<&Value> = alerts.iter().filter(|a| a["monitor"] == monitor["name"]).collect();
        for alert in of_monitor.iter().take(ALERTS_SHOWN) {
            line(
                depth + 2,
                format!(
                    "-> {} #{}: {}",
                    text(&alert["kind"]),
                    text(&alert["event_id"]),
                    text(&alert["message"])
                ),
            );
        }
        if of_monitor.len() > ALERTS_SHOWN {
            line(
                depth + 2,
                format!(
                    "-> ... and {} later alert events (--json lists them all)",
                    of_monitor.len() - ALERTS_SHOWN
                ),
            );
        }
    }
    for run in list("retraining_runs") {
        let registered: Vec<String> = run["registered"]
            .as_array()
            .unwrap_or(&empty)
            .iter()
            .map(|v| format!("{}/{}", text(&v["name"]), text(&v["version"])))
            .collect();
        let registered = if registered.is_empty() {
            String::new()
        } else {
            format!(" -> registered {}", registered.join(", "))
        };
        line(
            depth + 3,
            format!(
                "-> retraining run {} of {} ({}){registered}",
                text(&run["run_id"]),
                text(&run["pipeline"]),
                text(&run["status"])
            ),
        );
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_training_set_shows_what_it_was_built_from() {
        let lineage = serde_json::json!({
            "datasets": [{"name": "train", "version": 2, "digest": "0123456789abcdef", "computed_from": {
                "service": "ranking", "definitions": {"project": "rides", "hash": "ffffffffffffffff"},
                "entity_frame": {"path": "/d/entities.parquet", "hash": "aaaaaaaaaaaaaaaa"},
                "sources": [{"name": "stats", "path": "/d/stats.parquet", "hash": "bbbbbbbbbbbbbbbb"}]}}],
        });
        let shown = tree(&lineage);
        assert!(shown.starts_with("dataset train@2  [0123456789ab]\n"), "{shown}");
        assert!(shown.contains("\n   built from feature project rides (service ranking)  [definitions ffffffffffff]"));
        assert!(shown.contains("\n   entity frame /d/entities.parquet  [aaaaaaaaaaaa]"));
        assert!(shown.contains("\n   source stats /d/stats.parquet  [bbbbbbbbbbbb]"));
    }
}
