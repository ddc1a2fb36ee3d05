//! Registered models and a model version's page: everything Loopline knows about one version in one
//! place: its lineage (data, training, pipeline), the quality gate's evidence, the deployments serving it,
//! the monitors watching it and what their alerts caused.

use std::fmt::Write;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::get;
use serde_json::Value;

use crate::api::{Api, Caller, encode};
use crate::html::{
    MAX_CELL_CHARS, Page, badge, cell, clip, empty, esc, facts, int, link, list, table, text, time_ms, value_text,
};
use crate::svg::{self, Node};

const SECTION: &str = "Models";

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/loopline/models", get(index))
        .route("/loopline/models/{name}", get(model))
        .route("/loopline/models/{name}/versions/{version}", get(version))
}

fn aliases(model: &Value) -> String {
    list(model, "aliases")
        .iter()
        .map(|a| format!("@{} → {}", text(a, "alias"), value_text(&a["version"])))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn index(State(api): State<Api>, headers: HeaderMap) -> Page {
    let caller = Caller::of(&headers);
    let answer = match api
        .get(&caller, "/api/2.0/mlflow/registered-models/search?max_results=1000")
        .await
    {
        Ok(answer) => answer,
        Err(error) => return Page::failed(SECTION, "Models", &error),
    };
    let models = list(&answer, "registered_models");
    if models.is_empty() {
        return Page::new(
            "Models",
            SECTION,
            empty(
                "No registered models yet",
                "Register one with the mlflow client (<code>mlflow.register_model</code>) or a pipeline's register step.",
            ),
        );
    }
    let rows: Vec<Vec<String>> = models
        .iter()
        .map(|m| {
            let name = text(m, "name");
            let latest = list(m, "latest_versions")
                .iter()
                .filter_map(|v| v["version"].as_str().and_then(|v| v.parse::<i64>().ok()))
                .max();
            vec![
                link(&format!("/loopline/models/{}", encode(name)), name),
                latest.map(|v| v.to_string()).unwrap_or_default(),
                esc(&aliases(m)),
                int(m, "last_updated_timestamp").map(time_ms).unwrap_or_default(),
            ]
        })
        .collect();
    Page::new(
        "Models",
        SECTION,
        table(
            "Registered models",
            &["Model", "Newest version", "Aliases", "Last change"],
            &rows,
        ),
    )
}

async fn model(State(api): State<Api>, Path(name): Path<String>, headers: HeaderMap) -> Page {
    let caller = Caller::of(&headers);
    let title = format!("Model {name}");
    let registered = match api
        .get(
            &caller,
            &format!("/api/2.0/mlflow/registered-models/get?name={}", encode(&name)),
        )
        .await
    {
        Ok(answer) => answer["registered_model"].clone(),
        Err(error) => return Page::failed(SECTION, &title, &error),
    };
    let filter = format!("name='{}'", name.replace('\'', "\\'"));
    let versions = api
        .get(
            &caller,
            &format!(
                "/api/2.0/mlflow/model-versions/search?filter={}&max_results=200&order_by=version_number%20DESC",
                encode(&filter)
            ),
        )
        .await
        .map(|answer| list(&answer, "model_versions").to_vec())
        .unwrap_or_default();
    let mut body = facts(&[
        ("Aliases", esc(&aliases(&registered))),
        ("Description", esc(text(&registered, "description"))),
        (
            "In the MLflow UI",
            link(&format!("/#/models/{}", encode(&name)), "registered model page"),
        ),
        (
            "Prediction log",
            link(
                &format!("/loopline/predictions?model={}", encode(&name)),
                "newest predictions",
            ),
        ),
    ]);
    let rows: Vec<Vec<String>> = versions
        .iter()
        .map(|v| {
            let number = text(v, "version");
            vec![
                link(
                    &format!("/loopline/models/{}/versions/{}", encode(&name), encode(number)),
                    number,
                ),
                badge(text(v, "status")),
                esc(&list(v, "aliases").iter().map(value_text).collect::<Vec<_>>().join(", ")),
                int(v, "creation_timestamp").map(time_ms).unwrap_or_default(),
                format!("<code>{}</code>", esc(text(v, "source"))),
            ]
        })
        .collect();
    body.push_str("<h2>Versions</h2>");
    body.push_str(&table(
        "Newest first",
        &["Version", "Status", "Aliases", "Created", "Source"],
        &rows,
    ));
    Page::new(title, SECTION, body)
}

async fn version(State(api): State<Api>, Path((name, version)): Path<(String, String)>, headers: HeaderMap) -> Page {
    let caller = Caller::of(&headers);
    let title = format!("{name} version {version}");
    let lineage = match api
        .get(
            &caller,
            &format!(
                "/api/loopline/v1/lineage?model={}&version={}",
                encode(&name),
                encode(&version)
            ),
        )
        .await
    {
        Ok(lineage) => lineage,
        Err(error) => return Page::failed(SECTION, &title, &error),
    };
    let mv = &lineage["model_version"];
    let mut pairs = vec![
        ("Model", link(&format!("/loopline/models/{}", encode(&name)), &name)),
        (
            "Aliases",
            esc(&list(mv, "aliases")
                .iter()
                .map(value_text)
                .collect::<Vec<_>>()
                .join(", ")),
        ),
        ("Source", format!("<code>{}</code>", esc(text(mv, "source")))),
    ];
    if let Some(ms) = int(mv, "creation_timestamp") {
        pairs.push(("Created", time_ms(ms)));
    }
    let training = &lineage["training_run"];
    if !training.is_null() {
        pairs.push((
            "Training run",
            link(
                &format!(
                    "/#/experiments/{}/runs/{}",
                    encode(text(training, "experiment_id")),
                    encode(text(training, "run_id"))
                ),
                &value_text(&training["run_name"]),
            ),
        ));
    }
    let mut body = facts(&pairs);
    body.push_str("<h2>Lineage</h2>");
    body.push_str(&lineage_graph(&lineage));
    body.push_str(&gate_section(&api, &caller, &name, &version).await);
    body.push_str(&deployments_section(&lineage));
    body.push_str(&monitors_section(&lineage));
    Page::new(title, SECTION, body)
}

/// The version between what made it and what it caused.
fn lineage_graph(lineage: &Value) -> String {
    let mv = &lineage["model_version"];
    let name = text(mv, "name");
    let version_key = format!("version {}", value_text(&mv["version"]));
    let mut nodes = Vec::new();
    let mut edges = Vec::new();
    let node = |key: String, label: String, detail: String, href: Option<String>, fill: &'static str| Node {
        key,
        label,
        detail,
        href,
        fill,
    };
    let training = &lineage["training_run"];
    let training_key = (!training.is_null()).then(|| "training".to_string());
    for dataset in list(lineage, "datasets") {
        let key = format!("dataset {}", text(dataset, "name"));
        let version = value_text(&dataset["version"]);
        nodes.push(node(
            key.clone(),
            text(dataset, "name").into(),
            format!("dataset v{version}"),
            Some(format!("/loopline/data/{}", encode(text(dataset, "name")))),
            "#dbeafe",
        ));
        edges.push((key, training_key.clone().unwrap_or_else(|| version_key.clone())));
    }
    let pipeline_run = &lineage["pipeline_run"];
    if !pipeline_run.is_null() {
        nodes.push(node(
            "pipeline run".into(),
            format!("pipeline {}", value_text(&pipeline_run["pipeline"])),
            value_text(&pipeline_run["status"]),
            (pipeline_run["on_server"].as_bool() == Some(true))
                .then(|| format!("/loopline/pipeline-runs/{}", encode(text(pipeline_run, "run_id")))),
            svg::state_fill(text(pipeline_run, "status")),
        ));
        edges.push((
            "pipeline run".into(),
            training_key.clone().unwrap_or_else(|| version_key.clone()),
        ));
    }
    if let Some(key) = &training_key {
        nodes.push(node(
            key.clone(),
            "training run".into(),
            value_text(&training["run_name"]),
            Some(format!(
                "/#/experiments/{}/runs/{}",
                encode(text(training, "experiment_id")),
                encode(text(training, "run_id"))
            )),
            svg::state_fill(&text(training, "status").to_ascii_lowercase()),
        ));
        edges.push((key.clone(), version_key.clone()));
    }
    nodes.push(node(
        version_key.clone(),
        name.into(),
        version_key.clone(),
        None,
        "#e9d5ff",
    ));
    for gate in list(lineage, "gates").iter().take(1) {
        let passed = gate["passed"].as_bool() == Some(true);
        nodes.push(node(
            "gate".into(),
            "quality gate".into(),
            if passed { "passed" } else { "failed" }.into(),
            Some("#gate".into()),
            svg::state_fill(if passed { "passed" } else { "failed" }),
        ));
        edges.push((version_key.clone(), "gate".into()));
    }
    for deployment in list(lineage, "deployments") {
        let key = format!("deployment {}", text(deployment, "name"));
        let serves = deployment["serves_this_version"].as_bool() == Some(true);
        nodes.push(node(
            key.clone(),
            format!("deployment {}", text(deployment, "name")),
            if serves { "serves it" } else { "serves another" }.into(),
            Some(format!("/loopline/deployments/{}", encode(text(deployment, "name")))),
            if serves { "#dafbe1" } else { "#eaeef2" },
        ));
        edges.push((version_key.clone(), key.clone()));
        for monitor in list(lineage, "monitors") {
            if monitor["deployment"].as_str() == Some(text(deployment, "name")) {
                edges.push((key.clone(), format!("monitor {}", text(monitor, "name"))));
            }
        }
    }
    for monitor in list(lineage, "monitors") {
        let key = format!("monitor {}", text(monitor, "name"));
        let alerts = list(lineage, "alerts")
            .iter()
            .filter(|a| a["monitor"] == monitor["name"])
            .count();
        nodes.push(node(
            key.clone(),
            key.clone(),
            format!("{alerts} alert events"),
            Some(format!("/loopline/monitors/{}", encode(text(monitor, "name")))),
            if alerts > 0 { "#fff1c2" } else { "#eaeef2" },
        ));
        if monitor["deployment"].is_null() {
            edges.push((version_key.clone(), key));
        }
    }
    for run in list(lineage, "retraining_runs") {
        let key = format!("retraining {}", text(run, "run_id"));
        nodes.push(node(
            key.clone(),
            "retraining run".into(),
            value_text(&run["status"]),
            Some(format!("/loopline/pipeline-runs/{}", encode(text(run, "run_id")))),
            svg::state_fill(text(run, "status")),
        ));
        if let Some(source) = run["cause"]["source"]["monitor"].as_str() {
            edges.push((format!("monitor {source}"), key.clone()));
        }
        for registered in list(run, "registered") {
            let made = format!("made version {}", value_text(&registered["version"]));
            nodes.push(node(
                made.clone(),
                text(registered, "name").into(),
                made.clone(),
                Some(format!(
                    "/loopline/models/{}/versions/{}",
                    encode(text(registered, "name")),
                    encode(&value_text(&registered["version"]))
                )),
                "#e9d5ff",
            ));
            edges.push((key.clone(), made));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    nodes.retain(|n| seen.insert(n.key.clone()));
    svg::layered_graph("Lineage of this version", &nodes, &edges)
}

async fn gate_section(api: &Api, caller: &Caller, name: &str, version: &str) -> String {
    let mut out = String::from("<h2 id=\"gate\">Quality gate evidence</h2>");
    let evaluations = match api
        .get(
            caller,
            &format!(
                "/api/loopline/v1/registered-models/{}/versions/{}/gate",
                encode(name),
                encode(version)
            ),
        )
        .await
    {
        Ok(answer) => list(&answer, "evaluations").to_vec(),
        Err(error) => {
            let _ = write!(out, "<p class=\"error\">{}</p>", esc(&error.message));
            return out;
        }
    };
    let Some(newest) = evaluations.first() else {
        out.push_str(&empty(
            "Not evaluated by a gate",
            "A gate policy on the model evaluates each version before an alias may move to it.",
        ));
        return out;
    };
    let evidence = &newest["evidence"];
    let passed = newest["passed"].as_bool() == Some(true);
    out.push_str(&facts(&[
        ("Verdict", badge(if passed { "passed" } else { "failed" })),
        ("Dataset", esc(&value_text(&evidence["dataset"]))),
        ("Rows", cell(&evidence["rows"])),
        ("Against champion", esc(&value_text(&evidence["champion_version"]))),
        (
            "Evaluated",
            int(newest, "created_time").map(time_ms).unwrap_or_default(),
        ),
        ("Policy revision", cell(&newest["policy_revision"])),
    ]));
    let checks: Vec<Vec<String>> = list(evidence, "checks")
        .iter()
        .map(|c| {
            vec![
                esc(text(c, "check")),
                esc(text(c, "kind")),
                badge(if c["passed"].as_bool() == Some(true) {
                    "passed"
                } else {
                    "failed"
                }),
                esc(&detail_text(&c["details"])),
            ]
        })
        .collect();
    out.push_str(&table(
        "The checks of the newest evaluation",
        &["Check", "Kind", "Result", "Details"],
        &checks,
    ));
    let candidate = evidence["candidate"].as_object();
    if let Some(candidate) = candidate {
        let rows: Vec<Vec<String>> = candidate
            .iter()
            .map(|(figure, value)| {
                vec![
                    esc(figure),
                    esc(&value_text(value)),
                    esc(&value_text(&evidence["champion"][figure])),
                ]
            })
            .collect();
        out.push_str(&table(
            "Figures on the evaluation data",
            &["Figure", "This version", "Champion"],
            &rows,
        ));
    }
    if evaluations.len() > 1 {
        let _ = write!(out, "<p>{} earlier evaluations are kept.</p>", evaluations.len() - 1);
    }
    out
}

fn detail_text(details: &Value) -> String {
    match details.as_object() {
        Some(map) => map
            .iter()
            .map(|(k, v)| format!("{k}: {}", value_text(v)))
            .collect::<Vec<_>>()
            .join("; "),
        None => value_text(details),
    }
}

fn deployments_section(lineage: &Value) -> String {
    let mut out = String::from("<h2>Deployments</h2>");
    let deployments = list(lineage, "deployments");
    if deployments.is_empty() {
        out.push_str(&empty("No deployment serves this model", ""));
        return out;
    }
    let rows: Vec<Vec<String>> = deployments
        .iter()
        .map(|d| {
            vec![
                link(
                    &format!("/loopline/deployments/{}", encode(text(d, "name"))),
                    text(d, "name"),
                ),
                format!("<code>{}</code>", esc(text(d, "model"))),
                esc(text(d, "stable")),
                if d["serves_this_version"].as_bool() == Some(true) {
                    badge("serving")
                } else {
                    "no".into()
                },
            ]
        })
        .collect();
    out.push_str(&table(
        "Deployments of this model",
        &["Deployment", "Follows", "Stable version", "This version"],
        &rows,
    ));
    out
}

fn monitors_section(lineage: &Value) -> String {
    let mut out = String::from("<h2>Monitors and alerts</h2>");
    let monitors = list(lineage, "monitors");
    if monitors.is_empty() {
        out.push_str(&empty("No monitor watches this model", ""));
        return out;
    }
    let names: Vec<String> = monitors
        .iter()
        .map(|m| {
            link(
                &format!("/loopline/monitors/{}", encode(text(m, "name"))),
                text(m, "name"),
            )
        })
        .collect();
    let _ = write!(out, "<p>Watched by {}.</p>", names.join(", "));
    let alerts: Vec<Vec<String>> = list(lineage, "alerts")
        .iter()
        .rev()
        .take(50)
        .map(|a| {
            vec![
                int(a, "timestamp_ms").map(time_ms).unwrap_or_default(),
                esc(text(a, "monitor")),
                badge(text(a, "kind")),
                esc(&clip(text(a, "message"), MAX_CELL_CHARS)),
            ]
        })
        .collect();
    if !alerts.is_empty() {
        out.push_str(&table(
            "Alerts and retraining requests, newest first",
            &["When", "Monitor", "Event", "What"],
            &alerts,
        ));
    }
    out
}
