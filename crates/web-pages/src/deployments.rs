//! Deployments: the list, and one deployment's live rollout (step, shares, each version's figures against
//! the guardrails, the event trail) with promote and roll back, each behind a confirmation page.

use std::collections::HashMap;
use std::fmt::Write;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde_json::{Value, json};

use crate::api::{Api, Caller, encode};
use crate::html::{
    MAX_CELL_CHARS, Page, badge, cell, clip, empty, esc, facts, int, link, list, number, table, text, time_ms,
    value_text,
};
use crate::svg;

const SECTION: &str = "Deployments";

/// Events shown on a deployment's page (the newest).
const TRAIL: usize = 100;

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/loopline/deployments", get(index))
        .route("/loopline/deployments/{name}", get(detail))
        .route("/loopline/deployments/{name}/{action}", get(confirm).post(act))
}

async fn index(State(api): State<Api>, headers: HeaderMap) -> Page {
    let caller = Caller::of(&headers);
    let answer = match api.get(&caller, "/api/loopline/v1/deployments").await {
        Ok(answer) => answer,
        Err(error) => return Page::failed(SECTION, "Deployments", &error),
    };
    let deployments = list(&answer, "deployments");
    if deployments.is_empty() {
        return Page::new(
            "Deployments",
            SECTION,
            empty(
                "No deployments yet",
                "Create one with <code>loopline rollout create</code> or POST /api/loopline/v1/deployments.",
            ),
        );
    }
    let rows: Vec<Vec<String>> = deployments
        .iter()
        .map(|d| {
            let name = text(d, "name");
            vec![
                link(&format!("/loopline/deployments/{}", encode(name)), name),
                format!("<code>{}</code>", esc(text(&d["spec"], "model"))),
                esc(text(&d["spec"]["policy"], "type")),
                esc(&value_text(&d["stable_version"])),
                rollout_summary(d),
                if d["ready"].as_bool() == Some(true) {
                    badge("ready")
                } else {
                    badge("not ready")
                },
            ]
        })
        .collect();
    Page::new(
        "Deployments",
        SECTION,
        table(
            "Every deployment, with its rollout in progress",
            &["Deployment", "Model", "Policy", "Stable version", "Rollout", "Serving"],
            &rows,
        ),
    )
    .live(10)
}

fn rollout_summary(deployment: &Value) -> String {
    let rollout = &deployment["rollout"];
    if rollout.is_null() {
        return "none".into();
    }
    let candidates: Vec<String> = list(rollout, "candidates").iter().map(value_text).collect();
    let steps = list(rollout, "steps");
    let step = int(rollout, "step").unwrap_or(0) as usize;
    let position = if steps.is_empty() {
        String::new()
    } else {
        format!(", step {} of {}", step + 1, steps.len())
    };
    format!(
        "{} to version {}{position}",
        badge(text(rollout, "phase")),
        esc(&candidates.join(", "))
    )
}

async fn detail(
    State(api): State<Api>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Page {
    let caller = Caller::of(&headers);
    let title = format!("Deployment {name}");
    let base = format!("/api/loopline/v1/deployments/{}", encode(&name));
    let answer = match api.get(&caller, &base).await {
        Ok(answer) => answer,
        Err(error) => return Page::failed(SECTION, &title, &error),
    };
    let deployment = &answer["deployment"];
    let mut body = String::new();
    match query.get("done").map(String::as_str) {
        Some("promote") => body.push_str("<p class=\"notice\" role=\"status\">Promoted.</p>"),
        Some("rollback") => body.push_str("<p class=\"notice\" role=\"status\">Rolled back.</p>"),
        _ => {}
    }
    body.push_str(&summary(deployment));
    body.push_str(&rollout_section(deployment, &name));
    body.push_str(&figures_section(deployment));
    match api.get(&caller, &format!("{base}/events?limit=10000")).await {
        Ok(events) => body.push_str(&trail(list(&events, "events"))),
        Err(error) => {
            let _ = write!(
                body,
                "<p class=\"error\">The event trail could not be read: {}</p>",
                esc(&error.message)
            );
        }
    }
    Page::new(title, SECTION, body).live(5)
}

fn summary(deployment: &Value) -> String {
    let spec = &deployment["spec"];
    let model = text(spec, "model");
    let registered = model
        .strip_prefix("models:/")
        .and_then(|rest| rest.split(['@', '/']).next())
        .unwrap_or_default();
    let stable = value_text(&deployment["stable_version"]);
    let version_link = if registered.is_empty() {
        esc(&stable)
    } else {
        link(
            &format!("/loopline/models/{}/versions/{}", encode(registered), encode(&stable)),
            &stable,
        )
    };
    let mut pairs = vec![
        ("Model", format!("<code>{}</code>", esc(model))),
        ("Policy", esc(text(&spec["policy"], "type"))),
        ("Stable version", version_link),
        ("Previous version", esc(&previous_version(deployment))),
        (
            "Serving",
            badge(if deployment["ready"].as_bool() == Some(true) {
                "ready"
            } else {
                "not ready"
            }),
        ),
        ("Rollbacks", esc(&value_text(&deployment["rollbacks"]))),
    ];
    if let Some(ms) = int(deployment, "last_update_time") {
        pairs.push(("Last change", time_ms(ms)));
    }
    let mut out = facts(&pairs);
    let reason = text(deployment, "not_ready_reason");
    if !reason.is_empty() {
        out.push_str(&format!(
            "<p class=\"error\" role=\"alert\">Not serving: {}</p>",
            esc(reason)
        ));
    }
    out
}

/// The version a rollback would return to (the API keeps it with how long it stays ready).
fn previous_version(deployment: &Value) -> String {
    match &deployment["previous"] {
        Value::Object(previous) => previous.get("version").map(value_text).unwrap_or_default(),
        other => value_text(other),
    }
}

fn rollout_section(deployment: &Value, name: &str) -> String {
    let mut out = String::from("<h2>Rollout</h2>");
    let rollout = &deployment["rollout"];
    let shares: Vec<(String, f64)> = deployment["shares"]
        .as_object()
        .map(|shares| {
            shares
                .iter()
                // The API gives shares as fractions; the page speaks percent.
                .map(|(version, share)| (version.clone(), share.as_f64().unwrap_or(0.0) * 100.0))
                .collect()
        })
        .unwrap_or_default();
    if rollout.is_null() {
        out.push_str(&empty(
            "No rollout in progress",
            "A new version of the model (or a move of the alias the deployment follows) starts one.",
        ));
        out.push_str(&svg::shares_bar("Traffic share by version", &shares));
        if !deployment["previous"].is_null() {
            let _ = write!(
                out,
                "<div class=\"actions\"><a class=\"button danger\" href=\"/loopline/deployments/{}/rollback\">\
                 Roll back to version {}…</a></div>",
                encode(name),
                esc(&previous_version(deployment))
            );
        }
        return out;
    }
    let candidates: Vec<String> = list(rollout, "candidates").iter().map(value_text).collect();
    let steps: Vec<String> = list(rollout, "steps")
        .iter()
        .map(|s| format!("{}%", value_text(s)))
        .collect();
    let step = int(rollout, "step").unwrap_or(0) as usize;
    let mut pairs = vec![
        ("Phase", badge(text(rollout, "phase"))),
        ("Candidate", esc(&candidates.join(", "))),
        ("Trigger", esc(&value_text(&rollout["trigger"]))),
    ];
    if !steps.is_empty() {
        pairs.push((
            "Step",
            format!("{} of {} ({})", step + 1, steps.len(), esc(&steps.join(" → "))),
        ));
    }
    if let Some(ms) = int(rollout, "step_started_ms") {
        pairs.push(("Step began", time_ms(ms)));
    }
    if let Some(ms) = int(rollout, "started_ms") {
        pairs.push(("Rollout began", time_ms(ms)));
    }
    out.push_str(&facts(&pairs));
    out.push_str(&svg::shares_bar("Traffic share by version", &shares));
    let _ = write!(
        out,
        "<div class=\"actions\"><a class=\"button\" href=\"/loopline/deployments/{name}/promote\">Promote…</a>\
         <a class=\"button danger\" href=\"/loopline/deployments/{name}/rollback\">Roll back…</a></div>",
        name = encode(name)
    );
    out
}

fn figures_section(deployment: &Value) -> String {
    let guardrails = &deployment["spec"]["guardrails"];
    let max_error = guardrails["max_error_rate"].as_f64();
    let max_p99 = guardrails["max_p99_ms"].as_f64();
    let min_requests = guardrails["min_requests"].as_u64().unwrap_or(0);
    let mut out = String::from("<h2>This step, by version</h2>");
    let mut limits = Vec::new();
    if let Some(limit) = max_error {
        limits.push(format!("error rate at most {}", number(limit)));
    }
    if let Some(limit) = max_p99 {
        limits.push(format!("p99 at most {} ms", number(limit)));
    }
    if let Some(ratio) = guardrails["max_p99_ratio"].as_f64() {
        limits.push(format!("p99 at most {}× the stable version's", number(ratio)));
    }
    let _ = write!(
        out,
        "<p>Guardrails: {}; judged after {min_requests} requests. A breach rolls the candidate back at once.</p>",
        esc(&limits.join(", "))
    );
    let Some(versions) = deployment["current_step"]["versions"]
        .as_object()
        .filter(|v| !v.is_empty())
    else {
        out.push_str(&empty(
            "No requests on this step yet",
            "Figures appear with the first predictions.",
        ));
        return out;
    };
    let rows: Vec<Vec<String>> = versions
        .iter()
        .map(|(version, figures)| {
            let requests = figures["requests"].as_u64().unwrap_or(0);
            let error_rate = figures["error_rate"].as_f64();
            let p99 = figures["p99_ms"].as_f64();
            let breached =
                error_rate.zip(max_error).is_some_and(|(v, l)| v > l) || p99.zip(max_p99).is_some_and(|(v, l)| v > l);
            let verdict = if requests < min_requests {
                badge("waiting")
            } else if breached {
                badge("breached")
            } else {
                badge("ok")
            };
            vec![
                esc(version),
                requests.to_string(),
                cell(&figures["failures"]),
                cell(&figures["error_rate"]),
                cell(&figures["p50_ms"]),
                cell(&figures["p99_ms"]),
                verdict,
            ]
        })
        .collect();
    out.push_str(&table(
        "Requests, failures and latency on the current step",
        &[
            "Version",
            "Requests",
            "Failures",
            "Error rate",
            "p50 ms",
            "p99 ms",
            "Guardrails",
        ],
        &rows,
    ));
    if let Some(shadow) = deployment["current_step"].get("shadow") {
        out.push_str(&facts(&[
            ("Mirrored requests", cell(&shadow["mirrored"])),
            ("Shadow failures", cell(&shadow["failures"])),
            ("Agreement", cell(&shadow["agreement"])),
            ("Prediction divergence (KS)", cell(&shadow["divergence"])),
        ]));
    }
    out
}

fn trail(events: &[Value]) -> String {
    let mut out = String::from("<h2>Event trail</h2>");
    if events.is_empty() {
        out.push_str(&empty("No events yet", ""));
        return out;
    }
    let rows: Vec<Vec<String>> = events
        .iter()
        .rev()
        .take(TRAIL)
        .map(|e| {
            vec![
                int(e, "timestamp_ms").map(time_ms).unwrap_or_default(),
                badge(text(e, "kind")),
                esc(text(e, "actor")),
                esc(&clip(text(e, "message"), MAX_CELL_CHARS)),
            ]
        })
        .collect();
    let caption = if events.len() > TRAIL {
        format!("The newest {TRAIL} of {} events", events.len())
    } else {
        "Newest first".to_string()
    };
    out.push_str(&table(&caption, &["When", "Event", "By", "What"], &rows));
    out
}

/// The two actions a page can take on a deployment.
#[derive(Clone, Copy, PartialEq)]
enum Action {
    Promote,
    Rollback,
}

impl Action {
    fn parse(word: &str) -> Option<Action> {
        match word {
            "promote" => Some(Action::Promote),
            "rollback" => Some(Action::Rollback),
            _ => None,
        }
    }

    fn word(self) -> &'static str {
        match self {
            Action::Promote => "promote",
            Action::Rollback => "rollback",
        }
    }
}

async fn confirm(State(api): State<Api>, Path((name, action)): Path<(String, String)>, headers: HeaderMap) -> Page {
    let Some(action) = Action::parse(&action) else {
        return not_an_action(&action);
    };
    confirmation(&api, &Caller::of(&headers), &name, action, None).await
}

fn not_an_action(action: &str) -> Page {
    let mut page = Page::new(
        "No such action",
        SECTION,
        format!(
            "<p class=\"error\" role=\"alert\">'{}' is not an action on a deployment; the pages offer promote and \
             rollback.</p>",
            esc(action)
        ),
    );
    page.status = StatusCode::NOT_FOUND;
    page
}

/// The confirmation page: what the action will do, on the deployment as it is now.
async fn confirmation(api: &Api, caller: &Caller, name: &str, action: Action, refusal: Option<String>) -> Page {
    let title = match action {
        Action::Promote => format!("Promote in deployment {name}?"),
        Action::Rollback => format!("Roll back deployment {name}?"),
    };
    let answer = match api
        .get(caller, &format!("/api/loopline/v1/deployments/{}", encode(name)))
        .await
    {
        Ok(answer) => answer,
        Err(error) => return Page::failed(SECTION, &title, &error),
    };
    let deployment = &answer["deployment"];
    let stable = value_text(&deployment["stable_version"]);
    let candidates: Vec<String> = list(&deployment["rollout"], "candidates")
        .iter()
        .map(value_text)
        .collect();
    let mut body = String::new();
    if let Some(message) = refusal {
        let _ = write!(
            body,
            "<p class=\"error\" role=\"alert\">The server refused: {}</p>",
            esc(&message)
        );
    }
    let _ = write!(
        body,
        "<form class=\"confirm\" method=\"post\" action=\"/loopline/deployments/{}/{}\">\
         <input type=\"hidden\" name=\"confirm\" value=\"yes\">\
         <input type=\"hidden\" name=\"revision\" value=\"{}\">",
        encode(name),
        action.word(),
        esc(&value_text(&deployment["revision"]))
    );
    match action {
        Action::Promote => {
            if candidates.is_empty() {
                let _ = write!(
                    body,
                    "<p>There is no rollout to promote: the deployment serves version {} to all traffic.</p>",
                    esc(&stable)
                );
            } else {
                let _ = write!(
                    body,
                    "<p>The chosen version becomes stable and takes all traffic now, skipping the remaining steps. \
                     An alias the deployment follows moves with it (the registry's quality gate still decides).</p>\
                     <label for=\"version\">Version to promote</label><select id=\"version\" name=\"version\">"
                );
                for version in candidates.iter().chain(std::iter::once(&stable)) {
                    let _ = write!(body, "<option value=\"{0}\">version {0}</option>", esc(version));
                }
                body.push_str("</select>");
            }
        }
        Action::Rollback => {
            let to = if candidates.is_empty() {
                previous_version(deployment)
            } else {
                stable.clone()
            };
            let _ = write!(
                body,
                "<p>Traffic returns to version {} at once{}. An alias the deployment follows is pointed back too.</p>\
                 <label for=\"reason\">Reason (kept in the event trail)</label>\
                 <input type=\"text\" id=\"reason\" name=\"reason\" maxlength=\"500\" value=\"rolled back from the web UI\">",
                esc(&to),
                if candidates.is_empty() {
                    String::new()
                } else {
                    format!(", ending the rollout of version {}", esc(&candidates.join(", ")))
                }
            );
        }
    }
    let button = match action {
        Action::Promote => "<button type=\"submit\">Promote</button>",
        Action::Rollback => "<button type=\"submit\" class=\"danger\">Roll back</button>",
    };
    let _ = write!(
        body,
        "<div class=\"actions\">{button}<a class=\"button secondary\" href=\"/loopline/deployments/{}\">Cancel</a></div></form>",
        encode(name)
    );
    Page::new(title, SECTION, body)
}

/// The largest form a confirmation sends.
const MAX_FORM_BYTES: usize = 16 * 1024;

async fn act(
    State(api): State<Api>,
    Path((name, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(action) = Action::parse(&action) else {
        return not_an_action(&action).into_response();
    };
    let caller = Caller::of(&headers);
    let form = match axum::body::to_bytes(body, MAX_FORM_BYTES).await {
        Ok(bytes) => form_urlencoded::parse(&bytes)
            .into_owned()
            .collect::<HashMap<String, String>>(),
        Err(_) => {
            let mut page = Page::new(
                "Form too large",
                SECTION,
                format!("<p class=\"error\" role=\"alert\">The form is larger than {MAX_FORM_BYTES} bytes.</p>"),
            );
            page.status = StatusCode::PAYLOAD_TOO_LARGE;
            return page.into_response();
        }
    };
    if form.get("confirm").map(String::as_str) != Some("yes") {
        let mut page = confirmation(
            &api,
            &caller,
            &name,
            action,
            Some("the action was not confirmed".into()),
        )
        .await;
        page.status = StatusCode::BAD_REQUEST;
        return page.into_response();
    }
    // The action applies to the deployment as the confirmation showed it: a step, a new rollout or another
    // action since then asks for a fresh confirmation.
    if let Some(seen) = form.get("revision") {
        let current = api
            .get(&caller, &format!("/api/loopline/v1/deployments/{}", encode(&name)))
            .await
            .map(|answer| value_text(&answer["deployment"]["revision"]));
        if let Ok(current) = current
            && &current != seen
        {
            let mut page = confirmation(
                &api,
                &caller,
                &name,
                action,
                Some(
                    "the deployment changed since this page was shown (a step, a new rollout or another action); \
                      check it below and confirm again"
                        .into(),
                ),
            )
            .await;
            page.status = StatusCode::CONFLICT;
            return page.into_response();
        }
    }
    let path = format!("/api/loopline/v1/deployments/{}/{}", encode(&name), action.word());
    let request = match action {
        Action::Promote => match form.get("version").filter(|v| !v.is_empty()) {
            Some(version) => json!({"version": version}),
            None => json!({}),
        },
        Action::Rollback => match form.get("reason").map(|r| r.trim()).filter(|r| !r.is_empty()) {
            Some(reason) => json!({"reason": reason.chars().take(500).collect::<String>()}),
            None => json!({}),
        },
    };
    match api.post(&caller, &path, &request).await {
        Ok(_) => Redirect::to(&format!(
            "/loopline/deployments/{}?done={}",
            encode(&name),
            action.word()
        ))
        .into_response(),
        Err(error) => {
            let mut page = confirmation(&api, &caller, &name, action, Some(error.message)).await;
            page.status = error.status;
            page.into_response()
        }
    }
}
