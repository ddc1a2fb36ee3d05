//! Pipelines: the list, one pipeline's runs, and one run as a graph of its steps with their states,
//! results and logs.

use std::fmt::Write;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::get;
use serde_json::Value;

use crate::api::{Api, Caller, encode};
use crate::html::{Page, badge, duration_ms, empty, esc, facts, int, link, list, table, text, time_ms, value_text};
use crate::svg::{self, Node};

const SECTION: &str = "Pipelines";

/// Log text shown per step (the end of it).
const LOG_TAIL_BYTES: usize = 64 * 1024;
/// Log text shown on one page, all steps together.
const LOG_PAGE_BYTES: usize = 512 * 1024;
/// Log pages read per step.
const LOG_PAGES: usize = 16;

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/loopline/pipelines", get(index))
        .route("/loopline/pipelines/{name}", get(pipeline))
        .route("/loopline/pipeline-runs/{run}", get(run))
}

async fn index(State(api): State<Api>, headers: HeaderMap) -> Page {
    let caller = Caller::of(&headers);
    let answer = match api.get(&caller, "/api/loopline/v1/pipelines").await {
        Ok(answer) => answer,
        Err(error) => return Page::failed(SECTION, "Pipelines", &error),
    };
    let mut body = String::new();
    if answer["runs_pipelines"].as_bool() == Some(false) {
        body.push_str(
            "<p>This server runs no pipelines: start it with <code>--pipeline-root DIR</code> to run the \
             pipelines of projects under DIR.</p>",
        );
    }
    let pipelines = list(&answer, "pipelines");
    if pipelines.is_empty() {
        body.push_str(&empty(
            "No pipelines registered",
            "Register one with <code>loopline pipeline register</code> in a project with a loopline.yaml.",
        ));
        return Page::new("Pipelines", SECTION, body);
    }
    let rows: Vec<Vec<String>> = pipelines
        .iter()
        .map(|p| {
            let name = text(p, "name");
            vec![
                link(&format!("/loopline/pipelines/{}", encode(name)), name),
                esc(&list(&p["spec"], "steps")
                    .iter()
                    .map(value_text)
                    .collect::<Vec<_>>()
                    .join(" → ")),
                esc(&triggers(&p["spec"])),
                format!("<code>{}</code>", esc(text(&p["spec"], "directory"))),
            ]
        })
        .collect();
    body.push_str(&table(
        "Registered pipelines",
        &["Pipeline", "Steps", "Triggers", "Project"],
        &rows,
    ));
    Page::new("Pipelines", SECTION, body)
}

fn triggers(spec: &Value) -> String {
    let words: Vec<String> = list(spec, "triggers")
        .iter()
        .map(|t| match t.as_object().and_then(|m| m.iter().next()) {
            Some((kind, value)) => format!("{kind} {}", value_text(value)),
            None => value_text(t),
        })
        .collect();
    if words.is_empty() {
        "by hand".into()
    } else {
        words.join(", ")
    }
}

fn cause_text(cause: &Value) -> String {
    let kind = text(cause, "kind");
    let detail = text(cause, "detail");
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {detail}")
    }
}

fn run_rows(runs: &[Value]) -> Vec<Vec<String>> {
    runs.iter()
        .map(|r| {
            let id = text(r, "run_id");
            let took = int(r, "end_time")
                .zip(int(r, "creation_time"))
                .map(|(end, start)| duration_ms(end - start))
                .unwrap_or_default();
            vec![
                link(&format!("/loopline/pipeline-runs/{}", encode(id)), id),
                badge(text(r, "status")),
                esc(&cause_text(&r["cause"])),
                int(r, "creation_time").map(time_ms).unwrap_or_default(),
                took,
            ]
        })
        .collect()
}

async fn pipeline(State(api): State<Api>, Path(name): Path<String>, headers: HeaderMap) -> Page {
    let caller = Caller::of(&headers);
    let title = format!("Pipeline {name}");
    let answer = match api
        .get(&caller, &format!("/api/loopline/v1/pipelines/{}", encode(&name)))
        .await
    {
        Ok(answer) => answer,
        Err(error) => return Page::failed(SECTION, &title, &error),
    };
    let spec = &answer["pipeline"]["spec"];
    let mut body = facts(&[
        ("Project", format!("<code>{}</code>", esc(text(spec, "directory")))),
        ("File", esc(text(spec, "file"))),
        ("Triggers", esc(&triggers(spec))),
        ("Registered by", esc(text(spec, "registered_by"))),
    ]);
    let runs = list(&answer, "recent_runs");
    body.push_str("<h2>Recent runs</h2>");
    if runs.is_empty() {
        body.push_str(&empty(
            "No runs yet",
            "Start one with <code>loopline pipeline start</code>.",
        ));
    } else {
        body.push_str(&table(
            "Newest first",
            &["Run", "Status", "Cause", "Started", "Took"],
            &run_rows(runs),
        ));
    }
    Page::new(title, SECTION, body).live(10)
}

async fn run(State(api): State<Api>, Path(run_id): Path<String>, headers: HeaderMap) -> Page {
    let caller = Caller::of(&headers);
    let title = format!("Pipeline run {run_id}");
    let base = format!("/api/loopline/v1/pipeline-runs/{}", encode(&run_id));
    let run = match api.get(&caller, &base).await {
        Ok(answer) => answer["run"].clone(),
        Err(error) => return Page::failed(SECTION, &title, &error),
    };
    let pipeline = text(&run, "pipeline");
    let mut pairs = vec![
        (
            "Pipeline",
            link(&format!("/loopline/pipelines/{}", encode(pipeline)), pipeline),
        ),
        ("Status", badge(text(&run, "status"))),
        ("Cause", esc(&cause_text(&run["cause"]))),
    ];
    if let Some(ms) = int(&run, "creation_time") {
        pairs.push(("Started", time_ms(ms)));
    }
    if let Some(ms) = int(&run, "end_time") {
        pairs.push(("Ended", time_ms(ms)));
    }
    let mut body = facts(&pairs);
    if !run["error"].is_null() {
        let _ = write!(
            body,
            "<p class=\"error\" role=\"alert\">{}</p>",
            esc(&value_text(&run["error"]))
        );
    }
    let steps = list(&run, "steps");
    body.push_str(&graph(&run_id, steps));
    body.push_str(&step_table(steps));
    body.push_str("<h2>Logs</h2>");
    let mut budget = LOG_PAGE_BYTES;
    for step in steps {
        let name = text(step, "name");
        let log = if budget == 0 {
            format!(
                "<p>This page shows no more log text; read it with <code>loopline pipeline logs {}</code> or from \
                 <a href=\"{base}/logs/{}\">the API</a>.</p>",
                esc(&run_id),
                encode(name)
            )
        } else {
            let (html, used) = step_log(&api, &caller, &base, name, budget.min(LOG_TAIL_BYTES)).await;
            budget = budget.saturating_sub(used);
            html
        };
        let _ = write!(
            body,
            "<details id=\"log-{}\"{}><summary>{} {}</summary>{log}</details>",
            esc(name),
            if step["state"] == "failed" { " open" } else { "" },
            esc(name),
            badge(text(step, "state"))
        );
    }
    let live = matches!(text(&run, "status"), "queued" | "running");
    let page = Page::new(title, SECTION, body);
    if live { page.live(3) } else { page }
}

fn graph(run_id: &str, steps: &[Value]) -> String {
    let nodes: Vec<Node> = steps
        .iter()
        .map(|s| {
            let state = text(s, "state");
            Node {
                key: text(s, "name").to_string(),
                label: text(s, "name").to_string(),
                detail: state.replace('_', " "),
                href: Some(format!(
                    "/loopline/pipeline-runs/{}#log-{}",
                    encode(run_id),
                    encode(text(s, "name"))
                )),
                fill: svg::state_fill(state),
            }
        })
        .collect();
    let mut edges: Vec<(String, String)> = steps
        .iter()
        .flat_map(|s| {
            list(s, "needs")
                .iter()
                .map(move |need| (value_text(need), text(s, "name").to_string()))
        })
        .collect();
    // Records written before steps kept their dependencies: draw them in run order.
    if edges.is_empty() {
        edges = steps
            .windows(2)
            .map(|pair| (text(&pair[0], "name").to_string(), text(&pair[1], "name").to_string()))
            .collect();
    }
    let mut out = String::from("<h2>Steps</h2>");
    out.push_str(&svg::layered_graph("The run's steps and their states", &nodes, &edges));
    out
}

fn step_table(steps: &[Value]) -> String {
    let rows: Vec<Vec<String>> = steps
        .iter()
        .map(|s| {
            let result = match &s["result"] {
                Value::Object(map) => map
                    .iter()
                    .take(6)
                    .map(|(k, v)| format!("{}: {}", esc(k), esc(&value_text(v))))
                    .collect::<Vec<_>>()
                    .join("<br>"),
                Value::Null => String::new(),
                other => esc(&value_text(other)),
            };
            vec![
                esc(text(s, "name")),
                format!("{} {}", badge(text(s, "state")), esc(text(s, "reason"))),
                s["seconds"]
                    .as_f64()
                    .map(|seconds| format!("{:.1} s", seconds))
                    .unwrap_or_default(),
                result,
            ]
        })
        .collect();
    table("Each step's outcome", &["Step", "State", "Ran", "Result"], &rows)
}

/// The end of one step's log (at most `limit` bytes of it) as HTML, and how many bytes it shows.
async fn step_log(api: &Api, caller: &Caller, base: &str, step: &str, limit: usize) -> (String, usize) {
    let mut text_read = String::new();
    let mut offset = 0u64;
    for _ in 0..LOG_PAGES {
        let page = match api
            .get(caller, &format!("{base}/logs/{}?offset={offset}", encode(step)))
            .await
        {
            Ok(page) => page,
            Err(error) if error.is_missing() => break,
            Err(error) => {
                return (
                    format!(
                        "<p class=\"error\">The log could not be read: {}</p>",
                        esc(&error.message)
                    ),
                    0,
                );
            }
        };
        let chunk = page["text"].as_str().unwrap_or_default();
        text_read.push_str(chunk);
        if text_read.len() > limit {
            let mut cut = text_read.len() - limit;
            while !text_read.is_char_boundary(cut) {
                cut += 1;
            }
            text_read.drain(..cut);
        }
        let next = page["next_offset"].as_u64().unwrap_or(offset);
        if chunk.is_empty() || page["done"].as_bool() == Some(true) || next <= offset {
            break;
        }
        offset = next;
    }
    if text_read.is_empty() {
        return ("<p class=\"empty\">No output.</p>".into(), 0);
    }
    (
        format!("<pre class=\"log\" tabindex=\"0\">{}</pre>", esc(&text_read)),
        text_read.len(),
    )
}
