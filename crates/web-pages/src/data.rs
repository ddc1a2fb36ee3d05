//! Data checks: versioned datasets with each version's profile (the same statistics `loopline profile`
//! writes, drawn as small histograms), and the drift and data-quality reports the monitors stored.

use std::fmt::Write;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::get;
use serde_json::Value;

use crate::api::{Api, Caller, encode};
use crate::html::{Page, badge, cell, empty, esc, facts, int, link, list, number, table, text, time_ms, value_text};

const SECTION: &str = "Data";
/// Columns of a profile shown on one page.
const MAX_PROFILE_COLUMNS: usize = 500;

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/loopline/data", get(index))
        .route("/loopline/data/{name}", get(dataset))
}

async fn index(State(api): State<Api>, headers: HeaderMap) -> Page {
    let caller = Caller::of(&headers);
    let answer = match api.get(&caller, "/api/loopline/v1/datasets").await {
        Ok(answer) => answer,
        Err(error) => return Page::failed(SECTION, "Data", &error),
    };
    let mut body = String::from("<h2>Datasets</h2>");
    let datasets = list(&answer, "datasets");
    if datasets.is_empty() {
        body.push_str(&empty(
            "No versioned datasets",
            "Add one with <code>loopline data add PATH</code> and <code>loopline data push</code>.",
        ));
    } else {
        let rows: Vec<Vec<String>> = datasets
            .iter()
            .map(|d| {
                let name = text(d, "name");
                let latest = &d["latest"];
                vec![
                    link(&format!("/loopline/data/{}", encode(name)), name),
                    cell(&d["version_count"]),
                    cell(&latest["rows"]),
                    esc(&bytes(latest["size"].as_f64().unwrap_or(0.0))),
                    int(latest, "creation_time").map(time_ms).unwrap_or_default(),
                ]
            })
            .collect();
        body.push_str(&table(
            "Versioned datasets",
            &[
                "Dataset",
                "Versions",
                "Rows (newest)",
                "Size (newest)",
                "Newest version",
            ],
            &rows,
        ));
    }
    body.push_str(&reports(&api, &caller).await);
    Page::new("Data", SECTION, body)
}

/// The newest window report of every monitor: drift and data quality on live traffic.
async fn reports(api: &Api, caller: &Caller) -> String {
    let mut out = String::from("<h2>Drift and data-quality reports</h2>");
    let monitors = match api.get(caller, "/api/loopline/v1/monitors").await {
        Ok(answer) => list(&answer, "monitors").to_vec(),
        Err(error) => {
            let _ = write!(out, "<p class=\"error\">{}</p>", esc(&error.message));
            return out;
        }
    };
    let rows: Vec<Vec<String>> = monitors
        .iter()
        .flat_map(|m| {
            let name = text(m, "name").to_string();
            list(m, "windows")
                .iter()
                .filter(|w| !w["report"].is_null())
                .map(|w| {
                    let key = value_text(&w["window"]);
                    vec![
                        link(&format!("/loopline/monitors/{}", encode(&name)), &name),
                        esc(&key),
                        int(w, "end_ms").map(time_ms).unwrap_or_default(),
                        badge(text(w, "status")),
                        cell(&w["figures"]["drift.share"]),
                        cell(&w["figures"]["quality.findings"]),
                        link(
                            &format!(
                                "/api/loopline/v1/monitors/{}/windows/{}/report?format=html",
                                encode(&name),
                                encode(&key)
                            ),
                            "open report",
                        ),
                    ]
                })
                .collect::<Vec<_>>()
        })
        .collect();
    if rows.is_empty() {
        out.push_str(&empty(
            "No reports yet",
            "Each monitor window stores one when it is evaluated; <code>loopline drift</code> and \
             <code>loopline validate</code> write the same reports from files.",
        ));
    } else {
        out.push_str(&table(
            "The newest windows of each monitor",
            &[
                "Monitor",
                "Window",
                "End",
                "Status",
                "Drift share",
                "Quality findings",
                "Report",
            ],
            &rows,
        ));
    }
    out
}

fn bytes(size: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = size.max(0.0);
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

async fn dataset(
    State(api): State<Api>,
    Path(name): Path<String>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> Page {
    let caller = Caller::of(&headers);
    let title = format!("Dataset {name}");
    let base = format!("/api/loopline/v1/datasets/{}/versions", encode(&name));
    let versions = match api.get(&caller, &format!("{base}?limit=100")).await {
        Ok(answer) => list(&answer, "versions").to_vec(),
        Err(error) => return Page::failed(SECTION, &title, &error),
    };
    let chosen = query
        .get("version")
        .cloned()
        .or_else(|| versions.first().map(|v| value_text(&v["version"])));
    let rows: Vec<Vec<String>> = versions
        .iter()
        .map(|v| {
            let number = value_text(&v["version"]);
            vec![
                link(
                    &format!("/loopline/data/{}?version={}", encode(&name), encode(&number)),
                    &number,
                ),
                cell(&v["rows"]),
                esc(&bytes(v["size"].as_f64().unwrap_or(0.0))),
                format!(
                    "<code>{}</code>",
                    esc(&text(v, "hash").chars().take(16).collect::<String>())
                ),
                esc(text(v, "source")),
                int(v, "creation_time").map(time_ms).unwrap_or_default(),
            ]
        })
        .collect();
    let mut body = table(
        "Versions, newest first",
        &["Version", "Rows", "Size", "Content hash", "Source", "Added"],
        &rows,
    );
    if let Some(chosen) = chosen {
        match api.get(&caller, &format!("{base}/{}", encode(&chosen))).await {
            Ok(answer) => body.push_str(&profile(&answer["version"])),
            Err(error) => {
                let _ = write!(body, "<p class=\"error\">{}</p>", esc(&error.message));
            }
        }
    }
    Page::new(title, SECTION, body)
}

fn profile(version: &Value) -> String {
    let mut out = format!("<h2>Profile of version {}</h2>", esc(&value_text(&version["version"])));
    out.push_str(&facts(&[
        ("URI", format!("<code>{}</code>", esc(text(version, "uri")))),
        ("Rows", cell(&version["rows"])),
        ("Files", cell(&version["files"])),
        ("Added by", esc(text(version, "created_by"))),
    ]));
    let columns = list(&version["profile"], "columns");
    if columns.is_empty() {
        out.push_str(&empty("No profile", "Only tables (CSV, Parquet) are profiled."));
        return out;
    }
    if columns.len() > MAX_PROFILE_COLUMNS {
        let _ = write!(
            out,
            "<p>The first {MAX_PROFILE_COLUMNS} of {} columns are shown.</p>",
            columns.len()
        );
    }
    let rows: Vec<Vec<String>> = columns
        .iter()
        .take(MAX_PROFILE_COLUMNS)
        .map(|c| {
            let numeric = &c["numeric"];
            let summary = if numeric.is_object() {
                format!(
                    "min {} · mean {} · max {} · {} distinct",
                    value_text(&numeric["min"]),
                    value_text(&numeric["mean"]),
                    value_text(&numeric["max"]),
                    value_text(&numeric["distinct"])
                )
            } else {
                list(&c["categorical"], "counts")
                    .iter()
                    .take(5)
                    .map(|pair| format!("{} ({})", value_text(&pair[0]), value_text(&pair[1])))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            vec![
                esc(text(c, "name")),
                esc(text(c, "data_type")),
                cell(&c["count"]),
                cell(&c["nulls"]),
                esc(&summary),
                histogram(text(c, "name"), &numeric["histogram"]),
            ]
        })
        .collect();
    out.push_str(&table(
        "Each column's statistics",
        &["Column", "Type", "Values", "Missing", "Summary", "Distribution"],
        &rows,
    ));
    out
}

/// A profile histogram as a small bar chart.
fn histogram(column: &str, histogram: &Value) -> String {
    // `loopline profile` writes 20 bins; a profile posted with more is drawn with its first 200.
    let counts: Vec<f64> = list(histogram, "counts")
        .iter()
        .take(200)
        .filter_map(Value::as_f64)
        .collect();
    let edges: Vec<f64> = list(histogram, "edges")
        .iter()
        .take(201)
        .filter_map(Value::as_f64)
        .collect();
    let highest = counts.iter().copied().fold(0.0, f64::max);
    if counts.is_empty() || highest <= 0.0 {
        return String::new();
    }
    let (width, height) = (160.0, 36.0);
    let bar = width / counts.len() as f64;
    let mut out = format!(
        "<svg viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\" role=\"img\" \
         aria-label=\"Histogram of {}\">",
        esc(column)
    );
    for (index, count) in counts.iter().enumerate() {
        let h = count / highest * (height - 2.0);
        let range = match (edges.get(index), edges.get(index + 1)) {
            (Some(lo), Some(hi)) => format!("{} to {}", number(*lo), number(*hi)),
            _ => String::new(),
        };
        let _ = write!(
            out,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"#0b57a4\"><title>{range}: {}</title></rect>",
            index as f64 * bar,
            height - h,
            (bar - 1.0).max(0.5),
            number(*count)
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hostile_profile_is_shown_as_text() {
        let version = serde_json::json!({
            "version": "<b>1</b>",
            "uri": "datasets:/x/1\"><script>",
            "profile": {"columns": [{
                "name": "<img src=x onerror=alert(1)>",
                "count": "<script src=/api/loopline/v1/data/objects/abc></script>",
                "nulls": "<form action=/loopline/deployments/x/rollback>",
                "data_type": "\"><svg onload=alert(1)>",
                "categorical": {"counts": [["<i>a</i>", "<b>2</b>"]]},
                "numeric": {"histogram": {"counts": (0..5_000).collect::<Vec<i64>>(), "edges": []}},
            }]},
        });
        let html = profile(&version);
        for raw in ["<script", "<img", "<form", "<svg onload", "<b>", "<i>"] {
            assert!(!html.contains(raw), "{raw} in {html}");
        }
        assert!(html.contains("&lt;script src=/api/loopline/v1/data/objects/abc&gt;"));
        // At most 200 bars are drawn, whatever the profile says.
        assert!(html.matches("<rect").count() <= 200);
    }
}
