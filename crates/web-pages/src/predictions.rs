//! The prediction log: the newest predictions of a model, what went in and came out, which version
//! answered, and the label posted as feedback when one arrived.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::routing::get;
use serde_json::Value;

use crate::api::{Api, Caller, encode};
use crate::html::{Page, empty, esc, int, link, list, table, text, time_ms, value_text};

const SECTION: &str = "Predictions";

pub fn routes() -> Router<Api> {
    Router::new().route("/loopline/predictions", get(page))
}

/// Registered model names (the log is kept per model).
async fn models(api: &Api, caller: &Caller) -> Vec<String> {
    match api
        .get(caller, "/api/2.0/mlflow/registered-models/search?max_results=200")
        .await
    {
        // A name longer than a dropdown can show is left out (it can still be given as ?model=).
        Ok(answer) => list(&answer, "registered_models")
            .iter()
            .map(|m| text(m, "name").to_string())
            .filter(|name| name.len() <= 256)
            .collect(),
        Err(_) => Vec::new(),
    }
}

async fn page(State(api): State<Api>, Query(query): Query<HashMap<String, String>>, headers: HeaderMap) -> Page {
    let caller = Caller::of(&headers);
    let names = models(&api, &caller).await;
    let chosen = query
        .get("model")
        .cloned()
        .filter(|m| !m.is_empty())
        .or_else(|| names.first().cloned());
    let limit = query.get("limit").cloned().unwrap_or_else(|| "50".into());
    let mut body = String::from(
        "<form method=\"get\" action=\"/loopline/predictions\" class=\"actions\"><div>\
         <label for=\"model\">Model</label><select id=\"model\" name=\"model\">",
    );
    for name in &names {
        let selected = if Some(name) == chosen.as_ref() { " selected" } else { "" };
        let _ = write!(body, "<option value=\"{0}\"{selected}>{0}</option>", esc(name));
    }
    let _ = write!(
        body,
        "</select></div><div><label for=\"limit\">Rows</label><select id=\"limit\" name=\"limit\">{}</select></div>\
         <div><label>&nbsp;</label><button type=\"submit\">Show</button></div></form>",
        ["20", "50", "200", "500"]
            .iter()
            .map(|n| format!("<option{}>{n}</option>", if *n == limit { " selected" } else { "" }))
            .collect::<String>()
    );
    let Some(model) = chosen else {
        body.push_str(&empty(
            "No registered models yet",
            "Predictions are logged per registered model once it serves traffic.",
        ));
        return Page::new("Prediction log", SECTION, body);
    };
    let path = format!(
        "/api/loopline/v1/predictions?model={}&limit={}",
        encode(&model),
        encode(&limit)
    );
    let answer = match api.get(&caller, &path).await {
        Ok(answer) => answer,
        Err(error) => {
            let mut page = Page::failed(SECTION, "Prediction log", &error);
            page.body = body + &page.body;
            return page;
        }
    };
    let rows = list(&answer, "predictions");
    if rows.is_empty() {
        body.push_str(&empty(
            &format!("No logged predictions for {model}"),
            "Start the server with the prediction log on (<code>--prediction-log</code>) and send it traffic.",
        ));
        return Page::new("Prediction log", SECTION, body);
    }
    body.push_str(&rows_table(&model, rows));
    let labelled = rows.iter().filter(|r| r.get("label").is_some()).count();
    let _ = write!(
        body,
        "<p>{} rows, {labelled} with a label posted as feedback. {}</p>",
        rows.len(),
        link(
            &format!("/loopline/models/{}", encode(&model)),
            "The model's versions and monitors"
        )
    );
    Page::new(format!("Prediction log of {model}"), SECTION, body).live(30)
}

fn rows_table(model: &str, rows: &[Value]) -> String {
    let columns = |key: &str| -> Vec<String> {
        let mut names = BTreeSet::new();
        for row in rows {
            if let Some(map) = row[key].as_object() {
                names.extend(map.keys().cloned());
            }
        }
        names.into_iter().take(12).collect()
    };
    let (inputs, outputs) = (columns("inputs"), columns("outputs"));
    let mut header: Vec<String> = vec!["When".into(), "Request".into(), "Version".into()];
    header.extend(inputs.iter().map(|c| format!("in: {c}")));
    header.extend(outputs.iter().map(|c| format!("out: {c}")));
    header.extend(["Label".to_string(), "ms".to_string()]);
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            let mut cells = vec![
                int(row, "timestamp_ms").map(time_ms).unwrap_or_default(),
                format!("<code>{}</code>", esc(text(row, "request_id"))),
                format!(
                    "{}{}",
                    link(
                        &format!(
                            "/loopline/models/{}/versions/{}",
                            encode(model),
                            encode(text(row, "model_version"))
                        ),
                        text(row, "model_version")
                    ),
                    if text(row, "role") == "shadow" { " (shadow)" } else { "" }
                ),
            ];
            cells.extend(inputs.iter().map(|c| esc(&value_text(&row["inputs"][c]))));
            cells.extend(outputs.iter().map(|c| esc(&value_text(&row["outputs"][c]))));
            cells.push(match row.get("label") {
                Some(label) => esc(&value_text(label)),
                None => "<span class=\"empty\">none yet</span>".into(),
            });
            cells.push(esc(&value_text(&row["latency_ms"])));
            cells
        })
        .collect();
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    table("Newest first", &header, &cells)
}
