//! Monitors: the list, and one monitor's alerts, drift per feature over time, realised and estimated
//! performance, health, its windows (each with its stored drift report) and the alert history.

use std::collections::BTreeMap;
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
use crate::svg::{self, Rule, Series};

const SECTION: &str = "Monitors";

/// Windows drawn on a monitor's charts (the newest).
const CHARTED_WINDOWS: usize = 200;
/// Lines on the drift chart (the columns that drifted most).
const CHARTED_COLUMNS: usize = 8;

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/loopline/monitors", get(index))
        .route("/loopline/monitors/{name}", get(detail))
}

/// What a monitor watches, in words.
pub fn target(spec: &Value) -> String {
    if let Some(deployment) = spec["deployment"].as_str() {
        return format!(
            "deployment {}",
            link(&format!("/loopline/deployments/{}", encode(deployment)), deployment)
        );
    }
    let model = text(spec, "model");
    match spec["alias"].as_str() {
        Some(alias) => format!("model {}@{}", esc(model), esc(alias)),
        None => format!("model {}", esc(model)),
    }
}

fn firing(monitor: &Value) -> usize {
    list(monitor, "alerts")
        .iter()
        .filter(|a| a["state"]["status"] == "firing")
        .count()
}

async fn index(State(api): State<Api>, headers: HeaderMap) -> Page {
    let caller = Caller::of(&headers);
    let answer = match api.get(&caller, "/api/loopline/v1/monitors").await {
        Ok(answer) => answer,
        Err(error) => return Page::failed(SECTION, "Monitors", &error),
    };
    let monitors = list(&answer, "monitors");
    if monitors.is_empty() {
        return Page::new(
            "Monitors",
            SECTION,
            empty(
                "No monitors yet",
                "Create one with <code>loopline monitor create</code> to watch a deployment's traffic.",
            ),
        );
    }
    let rows: Vec<Vec<String>> = monitors
        .iter()
        .map(|m| {
            let name = text(m, "name");
            let newest = list(m, "windows").first();
            vec![
                link(&format!("/loopline/monitors/{}", encode(name)), name),
                target(&m["spec"]),
                match firing(m) {
                    0 => badge("ok"),
                    n => format!("{} {n}", badge("firing")),
                },
                newest
                    .map(|w| badge(text(w, "status")))
                    .unwrap_or_else(|| "none yet".into()),
                newest.and_then(|w| int(w, "end_ms")).map(time_ms).unwrap_or_default(),
            ]
        })
        .collect();
    Page::new(
        "Monitors",
        SECTION,
        table(
            "Every monitor, with its alerts and newest window",
            &["Monitor", "Watches", "Alerts", "Newest window", "Window end"],
            &rows,
        ),
    )
    .live(15)
}

async fn detail(State(api): State<Api>, Path(name): Path<String>, headers: HeaderMap) -> Page {
    let caller = Caller::of(&headers);
    let title = format!("Monitor {name}");
    let base = format!("/api/loopline/v1/monitors/{}", encode(&name));
    let monitor = match api.get(&caller, &base).await {
        Ok(answer) => answer["monitor"].clone(),
        Err(error) => return Page::failed(SECTION, &title, &error),
    };
    let windows = match api
        .get(&caller, &format!("{base}/windows?newest={CHARTED_WINDOWS}"))
        .await
    {
        Ok(answer) => list(&answer, "windows").to_vec(),
        Err(error) => return Page::failed(SECTION, &title, &error),
    };
    let spec = &monitor["spec"];
    let mut body = facts(&[
        ("Watches", target(spec)),
        ("Window", esc(&describe_window(&spec["window"]))),
        ("Task", esc(&value_text(&spec["task"]))),
        ("Windows evaluated", windows.len().to_string()),
    ]);
    body.push_str(&alerts(&monitor));
    body.push_str(&charts(spec, &windows));
    body.push_str(&window_table(&name, &windows));
    body.push_str(&history(&api, &caller, &base).await);
    Page::new(title, SECTION, body).live(15)
}

fn describe_window(window: &Value) -> String {
    match window {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k} {}", value_text(v)))
            .collect::<Vec<_>>()
            .join(", "),
        other => value_text(other),
    }
}

fn alerts(monitor: &Value) -> String {
    let rules = list(monitor, "alerts");
    let mut out = String::from("<h2>Alerts</h2>");
    if rules.is_empty() {
        out.push_str(&empty(
            "No alert rules",
            "Rules are part of the monitor's specification.",
        ));
        return out;
    }
    let rows: Vec<Vec<String>> = rules
        .iter()
        .map(|rule| {
            let state = &rule["state"];
            let word = state["status"].as_str().unwrap_or("inactive");
            let mut since = int(state, "since_ms").map(time_ms).unwrap_or_default();
            if let Some(who) = state["acknowledged_by"].as_str() {
                since.push_str(&format!(" (acknowledged by {})", esc(who)));
            }
            vec![
                esc(text(rule, "rule")),
                format!("<code>{}</code>", esc(&value_text(&rule["figure"]))),
                esc(&value_text(&rule["severity"])),
                badge(word),
                esc(&value_text(&state["last_value"])),
                since,
            ]
        })
        .collect();
    out.push_str(&table(
        "Alert rules and their state",
        &["Rule", "Figure", "Severity", "State", "Last value", "Since"],
        &rows,
    ));
    out
}

/// The figure `name` of each window, as points at the window's end.
fn series(windows: &[Value], name: &str, label: &str) -> Series {
    Series {
        name: label.to_string(),
        points: windows
            .iter()
            .filter_map(|w| Some((int(w, "end_ms")? as f64, w["figures"][name].as_f64()?)))
            .collect(),
    }
}

/// The thresholds of the monitor's alert rules on the charted figures, as dashed lines.
fn thresholds(spec: &Value, charted: &[&str]) -> Vec<Rule> {
    list(spec, "alerts")
        .iter()
        .filter(|rule| charted.iter().any(|figure| rule["figure"] == *figure))
        .filter_map(|rule| {
            Some(Rule {
                name: format!(
                    "{} ({} {})",
                    text(rule, "name"),
                    text(rule, "figure"),
                    text(rule, "operator")
                ),
                y: rule["threshold"].as_f64()?,
            })
        })
        .collect()
}

fn charts(spec: &Value, windows: &[Value]) -> String {
    let mut out = String::from("<h2>Over time</h2>");
    if windows.is_empty() {
        out.push_str(&empty(
            "No windows evaluated yet",
            "A window is evaluated when it closes, or at once with <code>loopline monitor run</code>.",
        ));
        return out;
    }
    // The columns that drifted most in any window get a line each.
    let mut peak: BTreeMap<String, f64> = BTreeMap::new();
    for window in windows {
        if let Some(figures) = window["figures"].as_object() {
            for (name, value) in figures {
                if let (Some(column), Some(value)) = (name.strip_prefix("drift.score."), value.as_f64()) {
                    let entry = peak.entry(column.to_string()).or_insert(f64::NEG_INFINITY);
                    *entry = entry.max(value);
                }
            }
        }
    }
    let mut columns: Vec<(String, f64)> = peak.into_iter().collect();
    columns.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut drift: Vec<Series> = columns
        .iter()
        .take(CHARTED_COLUMNS)
        .map(|(column, _)| series(windows, &format!("drift.score.{column}"), column))
        .collect();
    drift.push(series(windows, "prediction_drift.score", "prediction"));
    drift.retain(|s| !s.points.is_empty());
    out.push_str("<h3>Drift score per feature</h3>");
    let drift_figures: Vec<String> = columns
        .iter()
        .map(|(column, _)| format!("drift.score.{column}"))
        .chain(["prediction_drift.score".to_string()])
        .collect();
    let drift_rules = thresholds(spec, &drift_figures.iter().map(String::as_str).collect::<Vec<_>>());
    out.push_str(&svg::time_chart(
        "Drift score per feature, by window end",
        &drift,
        &drift_rules,
    ));
    if columns.len() > CHARTED_COLUMNS {
        let _ = write!(
            out,
            "<p>The {CHARTED_COLUMNS} columns with the highest drift of {} are drawn.</p>",
            columns.len()
        );
    }
    let performance: Vec<Series> = ["accuracy", "f1", "roc_auc", "rmse", "mae", "r2"]
        .iter()
        .map(|f| series(windows, &format!("performance.{f}"), &format!("realised {f}")))
        .chain(
            ["accuracy", "roc_auc"]
                .iter()
                .map(|f| series(windows, &format!("estimated.{f}"), &format!("estimated {f}"))),
        )
        .filter(|s| !s.points.is_empty())
        .collect();
    out.push_str("<h3>Performance, realised from feedback and estimated before labels</h3>");
    let performance_figures: Vec<String> = ["accuracy", "f1", "roc_auc", "rmse", "mae", "r2"]
        .iter()
        .map(|f| format!("performance.{f}"))
        .chain(["estimated.accuracy".to_string(), "estimated.roc_auc".to_string()])
        .collect();
    out.push_str(&svg::time_chart(
        "Realised and estimated performance, by window end",
        &performance,
        &thresholds(
            spec,
            &performance_figures.iter().map(String::as_str).collect::<Vec<_>>(),
        ),
    ));
    let health = vec![
        series(windows, "health.error_rate", "error rate"),
        series(windows, "drift.share", "share of columns drifted"),
    ];
    out.push_str("<h3>Health</h3>");
    out.push_str(&svg::time_chart(
        "Error rate and share of drifted columns, by window end",
        &health,
        &thresholds(spec, &["health.error_rate", "drift.share"]),
    ));
    out
}

fn window_table(name: &str, windows: &[Value]) -> String {
    let rows: Vec<Vec<String>> = windows
        .iter()
        .rev()
        .map(|w| {
            let key = value_text(&w["window"]);
            let report = if w["report"].is_null() {
                "–".to_string()
            } else {
                link(
                    &format!(
                        "/api/loopline/v1/monitors/{}/windows/{}/report?format=html",
                        encode(name),
                        encode(&key)
                    ),
                    "drift report",
                )
            };
            vec![
                esc(&key),
                int(w, "start_ms").map(time_ms).unwrap_or_default(),
                int(w, "end_ms").map(time_ms).unwrap_or_default(),
                badge(text(w, "status")),
                cell(&w["rows"]),
                cell(&w["labels"]),
                cell(&w["figures"]["drift.share"]),
                cell(&w["figures"]["quality.findings"]),
                report,
            ]
        })
        .collect();
    let mut out = String::from("<h2>Windows</h2>");
    if !rows.is_empty() {
        out.push_str(&table(
            "Newest first",
            &[
                "Window",
                "Start",
                "End",
                "Status",
                "Rows",
                "Labels",
                "Drift share",
                "Quality findings",
                "Report",
            ],
            &rows,
        ));
    }
    out
}

/// Most events read for the history (in pages of the API's limit).
const MAX_EVENTS: usize = 5_000;

async fn history(api: &Api, caller: &Caller, base: &str) -> String {
    let mut events: Vec<Value> = Vec::new();
    let mut after = 0i64;
    loop {
        let page = match api
            .get(caller, &format!("{base}/events?after={after}&limit=1000"))
            .await
        {
            Ok(answer) => list(&answer, "events").to_vec(),
            Err(error) => {
                return format!(
                    "<p class=\"error\">The history could not be read: {}</p>",
                    esc(&error.message)
                );
            }
        };
        let Some(last) = page.last().and_then(|e| int(e, "event_id")) else {
            break;
        };
        let full = page.len() == 1000;
        events.extend(page);
        if !full || events.len() >= MAX_EVENTS || last <= after {
            break;
        }
        after = last;
    }
    let mut out = String::from("<h2>Alert and action history</h2>");
    if events.is_empty() {
        out.push_str(&empty("Nothing has happened yet", ""));
        return out;
    }
    let rows: Vec<Vec<String>> = events
        .iter()
        .rev()
        .take(100)
        .map(|e| {
            vec![
                int(e, "timestamp_ms").map(time_ms).unwrap_or_default(),
                badge(text(e, "kind")),
                esc(text(e, "actor")),
                esc(&clip(text(e, "message"), MAX_CELL_CHARS)),
            ]
        })
        .collect();
    out.push_str(&table("Newest first", &["When", "Event", "By", "What"], &rows));
    out
}
