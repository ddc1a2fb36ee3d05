//! Loopline's own web pages under `/loopline/`: deployments and their rollouts (with promote and roll back
//! behind a confirmation), monitors and alerts, data checks, pipelines and lineage, the prediction log and a
//! model version's evidence. Server-rendered HTML with inline SVG charts; one small script refreshes the
//! pages that show something in motion. Every figure comes from the server's public API, called in-process
//! (see [`api`]), so a page never knows more, or allows more, than the API.

pub mod api;
mod data;
mod deployments;
pub mod html;
mod models;
mod monitors;
mod overview;
mod pipelines;
mod predictions;
pub mod svg;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

/// The pages, reading through `api` (the server's API routes).
pub fn routes(api: Router) -> Router {
    let api = api::Api::new(api);
    Router::new()
        .route("/loopline", get(|| async { Redirect::permanent("/loopline/") }))
        .route("/loopline/", get(overview::page))
        .route("/loopline/assets/loopline.css", get(style_sheet))
        .route("/loopline/assets/live.js", get(script))
        .merge(deployments::routes())
        .merge(monitors::routes())
        .merge(pipelines::routes())
        .merge(predictions::routes())
        .merge(models::routes())
        .merge(data::routes())
        .with_state(api)
}

async fn style_sheet() -> Response {
    asset(include_str!("../assets/loopline.css"), "text/css; charset=utf-8")
}

async fn script() -> Response {
    asset(include_str!("../assets/live.js"), "text/javascript; charset=utf-8")
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}
