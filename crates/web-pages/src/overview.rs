//! The overview: what is in motion now (rollouts, firing alerts, running pipelines), with links into each
//! section and to MLflow's UI for experiments and runs.

use std::fmt::Write;

use axum::extract::State;
use axum::http::HeaderMap;

use crate::api::{Api, Caller, encode};
use crate::html::{Page, badge, esc, link, list, text};

pub async fn page(State(api): State<Api>, headers: HeaderMap) -> Page {
    let caller = Caller::of(&headers);
    let get = |path: &'static str| {
        let (api, caller) = (api.clone(), caller.clone());
        async move { api.get(&caller, path).await.ok() }
    };
    let (deployments, monitors, pipelines) = (
        get("/api/loopline/v1/deployments").await,
        get("/api/loopline/v1/monitors").await,
        get("/api/loopline/v1/pipelines").await,
    );
    let mut body = String::from(
        "<p>Loopline's own pages: rollouts, monitors, data, pipelines and lineage. Experiments, runs, traces \
         and the registry are in the <a href=\"/\">MLflow UI</a>.</p><div class=\"cards\">",
    );
    body.push_str(&card(
        "Deployments",
        "/loopline/deployments",
        deployments.as_ref().map(|d| {
            let all = list(d, "deployments");
            let rolling: Vec<String> = all
                .iter()
                .filter(|d| !d["rollout"].is_null())
                .map(|d| {
                    link(
                        &format!("/loopline/deployments/{}", encode(text(d, "name"))),
                        text(d, "name"),
                    )
                })
                .collect();
            format!(
                "<p>{} deployments; {} rolling out{}</p>",
                all.len(),
                rolling.len(),
                if rolling.is_empty() {
                    String::new()
                } else {
                    format!(": {}", rolling.join(", "))
                }
            )
        }),
    ));
    body.push_str(&card(
        "Monitors",
        "/loopline/monitors",
        monitors.as_ref().map(|m| {
            let all = list(m, "monitors");
            let firing: Vec<String> = all
                .iter()
                .filter(|m| list(m, "alerts").iter().any(|a| a["state"]["status"] == "firing"))
                .map(|m| {
                    link(
                        &format!("/loopline/monitors/{}", encode(text(m, "name"))),
                        text(m, "name"),
                    )
                })
                .collect();
            format!(
                "<p>{} monitors; {}{}</p>",
                all.len(),
                if firing.is_empty() {
                    badge("ok")
                } else {
                    badge("firing")
                },
                if firing.is_empty() {
                    String::new()
                } else {
                    format!(" {}", firing.join(", "))
                }
            )
        }),
    ));
    body.push_str(&card(
        "Pipelines",
        "/loopline/pipelines",
        pipelines.as_ref().map(|p| {
            let names: Vec<String> = list(p, "pipelines")
                .iter()
                .map(|p| {
                    link(
                        &format!("/loopline/pipelines/{}", encode(text(p, "name"))),
                        text(p, "name"),
                    )
                })
                .collect();
            format!("<p>{} registered{}</p>", names.len(), colon_list(&names))
        }),
    ));
    body.push_str(&card(
        "Models",
        "/loopline/models",
        Some("<p>Each version's lineage, gate evidence, deployments and monitors.</p>".into()),
    ));
    body.push_str(&card(
        "Data",
        "/loopline/data",
        Some("<p>Versioned datasets, their profiles, and the monitors' drift reports.</p>".into()),
    ));
    body.push_str(&card(
        "Predictions",
        "/loopline/predictions",
        Some("<p>The newest logged predictions with their feedback labels.</p>".into()),
    ));
    body.push_str("</div>");
    Page::new("Loopline", "Overview", body).live(15)
}

fn colon_list(items: &[String]) -> String {
    if items.is_empty() {
        String::new()
    } else {
        format!(": {}", items.join(", "))
    }
}

fn card(title: &str, href: &str, content: Option<String>) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<section class=\"card\" aria-labelledby=\"card-{id}\"><h2 id=\"card-{id}\">{}</h2>{}</section>",
        link(href, title),
        content.unwrap_or_else(|| "<p class=\"empty\">Not available.</p>".into()),
        id = esc(&title.to_ascii_lowercase()),
    );
    out
}
