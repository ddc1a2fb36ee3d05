//! The stock MLflow web UI, served as-is from the build inside the user's installed `mlflow` wheel
//! (`mlflow/server/js/build`; never copied into this repository): `index.html` at `/`, the bundle under
//! `/static-files/`. Without a build, `/` says how to get one.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use std::path::{Component, PathBuf};
use std::sync::Arc;

/// How long browsers may keep a bundle file (MLflow's 28 days: file names carry their content hash).
const STATIC_MAX_AGE: &str = "public, max-age=2419200";
/// The largest `index.html` taken (the wheel's is 701 bytes; it is kept in memory).
const MAX_INDEX_BYTES: u64 = 1024 * 1024;
/// The largest bundle file served (the wheel's largest is a few MB).
const MAX_STATIC_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// A UI build found on disk: its directory (canonical) and its `index.html`.
#[derive(Debug, Clone)]
pub struct UiBuild {
    root: PathBuf,
    index: Arc<str>,
}

impl UiBuild {
    /// The build in `directory` (it must hold `index.html` and `static/`), or why it is not one.
    pub fn open(directory: &std::path::Path) -> Result<Self, String> {
        let root = directory
            .canonicalize()
            .map_err(|error| format!("{}: {error}", directory.display()))?;
        let index_path = root.join("index.html");
        let size = std::fs::metadata(&index_path)
            .map_err(|error| format!("{} has no readable index.html ({error})", root.display()))?
            .len();
        if size > MAX_INDEX_BYTES {
            return Err(format!(
                "{} is {size} bytes, more than an index page's {MAX_INDEX_BYTES}: not a UI build",
                index_path.display()
            ));
        }
        let index = std::fs::read_to_string(&index_path)
            .map_err(|error| format!("{} has no readable index.html ({error})", root.display()))?;
        if !root.join("static").is_dir() {
            return Err(format!("{} has no static/ directory: not a UI build", root.display()));
        }
        Ok(UiBuild {
            root,
            index: index.into(),
        })
    }

    /// Where the build is.
    pub fn root(&self) -> &std::path::Path {
        &self.root
    }
}

/// The routes of the UI: `/` and `/static-files/...`.
pub fn routes(build: Option<UiBuild>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/static-files/{*path}", get(static_file))
        .with_state(build.map(Arc::new))
}

async fn index(State(build): State<Option<Arc<UiBuild>>>) -> Response {
    match build {
        Some(build) => {
            let mut response = Html(build.index.to_string()).into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            response
        }
        None => Html(NO_UI_PAGE).into_response(),
    }
}

/// A path under the build, or None when it is not a plain relative path (`..`, absolute, backslashes, NUL).
fn confined(build: &UiBuild, path: &str) -> Option<PathBuf> {
    if path.is_empty() || path.contains(['\\', '\0']) {
        return None;
    }
    let relative = std::path::Path::new(path);
    if !relative
        .components()
        .all(|component| matches!(component, Component::Normal(_)))
    {
        return None;
    }
    // Symbolic links inside the build must not lead out of it.
    let resolved = build.root.join(relative).canonicalize().ok()?;
    resolved.starts_with(&build.root).then_some(resolved)
}

fn content_type(path: &std::path::Path) -> &'static str {
    match path
        .extension()
        .and_then(|extension| extension.to_str())
        .unwrap_or_default()
    {
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "html" => "text/html; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "eot" => "application/vnd.ms-fontobject",
        "txt" => "text/plain; charset=utf-8",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

fn not_found(path: &str) -> Response {
    let shown: String = path.chars().take(200).collect();
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("no UI file '{shown}'\n"),
    )
        .into_response()
}

async fn static_file(State(build): State<Option<Arc<UiBuild>>>, Path(path): Path<String>) -> Response {
    let Some(build) = build else {
        return not_found(&path);
    };
    let Some(file) = confined(&build, &path) else {
        return not_found(&path);
    };
    let Ok(metadata) = tokio::fs::metadata(&file).await else {
        return not_found(&path);
    };
    if !metadata.is_file() || metadata.len() > MAX_STATIC_FILE_BYTES {
        return not_found(&path);
    }
    match tokio::fs::read(&file).await {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, content_type(&file)),
                (header::CACHE_CONTROL, STATIC_MAX_AGE),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            Body::from(bytes),
        )
            .into_response(),
        Err(error) => {
            tracing::warn!(file = %file.display(), %error, "a UI file could not be read");
            not_found(&path)
        }
    }
}

/// What `/` shows when no MLflow UI build was found.
const NO_UI_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Loopline</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#1a1a1a}
code{background:#f2f2f2;padding:.1rem .3rem;border-radius:3px}a{color:#0645ad}</style></head>
<body><h1>Loopline</h1>
<p>This server speaks MLflow's tracking, registry and tracing APIs. The MLflow web UI is served from your own
<code>mlflow</code> installation, and none was found.</p>
<p>To get it, install MLflow in the project's virtual environment (or the active Python) and restart the server:</p>
<p><code>python3 -m venv .venv &amp;&amp; .venv/bin/pip install mlflow==3.17.2</code></p>
<p>or point the server at an installed UI build with <code>--mlflow-ui /path/to/site-packages/mlflow</code>.</p>
<h2>Loopline's own pages</h2>
<ul><li><a href="/loopline/">Overview</a>: what is in motion now</li>
<li><a href="/loopline/deployments">Deployments</a>: rollouts in progress, promote and roll back</li>
<li><a href="/loopline/monitors">Monitors</a>: drift, performance and alerts over time</li>
<li><a href="/loopline/models">Models</a>: each version's lineage and gate evidence</li>
<li><a href="/loopline/data">Data</a>, <a href="/loopline/pipelines">pipelines</a> and
<a href="/loopline/predictions">the prediction log</a></li></ul>
</body></html>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_build() {
        let directory = std::env::temp_dir().join(format!("ui-test-{}", std::process::id()));
        std::fs::create_dir_all(directory.join("static/js")).unwrap();
        std::fs::write(directory.join("index.html"), "<html></html>").unwrap();
        std::fs::write(directory.join("static/js/main.js"), "1").unwrap();
        let build = UiBuild::open(&directory).unwrap();
        assert!(confined(&build, "static/js/main.js").is_some());
        for hostile in [
            "../etc/passwd",
            "static/../../x",
            "/etc/passwd",
            "static\\js",
            "a\0b",
            "",
            "./index.html",
        ] {
            assert!(confined(&build, hostile).is_none(), "{hostile}");
        }
        assert!(UiBuild::open(&directory.join("static")).is_err());
        std::fs::remove_dir_all(directory).unwrap();
    }
}
