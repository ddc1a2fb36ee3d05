//! Materialisation on the server: each view's latest rows in a window read from its source (on a blocking
//! thread) and written to the online store, then its watermark moved on. Only after every row is written is
//! the watermark recorded, so a crash part-way leaves the window to be read again, and the store's
//! keep-the-newer rule makes the second pass write no duplicates.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use loopline_features::materialize::latest_in_window;
use loopline_features::{Definitions, Silent};
use serde_json::Value;

use crate::FeatureApi;
use crate::error::ApiError;

/// Fifty-two weeks, Feast's first window for a view without a TTL.
const YEAR_NANOS: i64 = 52 * 7 * 86_400 * 1_000_000_000;

/// The time range to materialise.
#[derive(Debug, Clone, Copy)]
pub enum Window {
    /// From `start` to `end`, both inclusive (nanoseconds).
    Range { start: i64, end: i64 },
    /// Every row up to now.
    Everything,
    /// From each view's watermark (or now minus its TTL, or 52 weeks) to `end`.
    Incremental { end: i64 },
}

/// A time as Feast's server reads one (`2024-05-01T00:00:00`, with or without zone; naive is UTC; a bare date
/// is its midnight).
pub fn parse_time(text: &str, field: &str) -> Result<i64, String> {
    let text = text.trim();
    let full = if text.len() == 10 && text.as_bytes().get(4) == Some(&b'-') {
        format!("{text}T00:00:00")
    } else {
        text.to_string()
    };
    crate::rows::parse_times(&[Value::String(full)], field)?[0]
        .ok_or_else(|| format!("`{field}` {text:?} is not a time"))
}

/// The views a request names (all online views when it names none), refusing unknown and offline ones.
pub fn views_to_run(definitions: &Definitions, asked: Option<Vec<String>>) -> Result<Vec<String>, ApiError> {
    match asked {
        None => Ok(definitions
            .views
            .values()
            .filter(|v| v.online)
            .map(|v| v.name.clone())
            .collect()),
        Some(names) => {
            for name in &names {
                let view = definitions.view(name).map_err(ApiError::from_features)?;
                if !view.online {
                    return Err(ApiError::bad_request(format!(
                        "feature view `{name}` is not online (`online: false`); it cannot be materialised"
                    )));
                }
            }
            Ok(names)
        }
    }
}

/// Views materialising now, per project, and the last failure of each view's materialisation (kept until one
/// succeeds, so a background run that failed is seen at `/views`).
#[derive(Default, Clone)]
pub struct Running(
    Arc<Mutex<HashSet<(String, String)>>>,
    Arc<Mutex<HashMap<(String, String), String>>>,
);

/// Views held while their materialisation runs; released when dropped.
pub struct Claim {
    running: Running,
    held: Vec<(String, String)>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut set = self.running.0.lock().unwrap_or_else(PoisonError::into_inner);
        for item in &self.held {
            set.remove(item);
        }
    }
}

impl Running {
    /// Claims the views, unless one is already materialising (and `force` is off).
    pub fn claim(&self, project: &str, views: &[String], force: bool) -> Option<Claim> {
        let mut set = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let items: Vec<(String, String)> = views.iter().map(|v| (project.to_string(), v.clone())).collect();
        if !force && items.iter().any(|item| set.contains(item)) {
            return None;
        }
        let held: Vec<(String, String)> = items.into_iter().filter(|item| set.insert(item.clone())).collect();
        Some(Claim {
            running: self.clone(),
            held,
        })
    }

    /// The last failure of a view's materialisation, if the last one failed.
    pub fn failure(&self, project: &str, view: &str) -> Option<String> {
        let failures = self.1.lock().unwrap_or_else(PoisonError::into_inner);
        failures.get(&(project.to_string(), view.to_string())).cloned()
    }

    fn record(&self, project: &str, view: &str, failure: Option<String>) {
        let mut failures = self.1.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (project.to_string(), view.to_string());
        match failure {
            Some(message) => failures.insert(key, message),
            None => failures.remove(&key),
        };
    }

    /// Whether a view is materialising.
    pub fn is_running(&self, project: &str, view: &str) -> bool {
        let set = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        set.contains(&(project.to_string(), view.to_string()))
    }

    /// Which of the views are materialising.
    pub fn busy(&self, project: &str, views: &[String]) -> Vec<String> {
        let set = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        views
            .iter()
            .filter(|v| set.contains(&(project.to_string(), (*v).clone())))
            .cloned()
            .collect()
    }
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Materialises the views one after another; each view's outcome is recorded.
pub async fn run(
    api: &FeatureApi,
    definitions: &Arc<Definitions>,
    views: &[String],
    window: Window,
) -> Result<(), ApiError> {
    for name in views {
        let outcome = run_view(api, definitions, name, window).await;
        api.running.record(
            &definitions.project,
            name,
            outcome.as_ref().err().map(|e| e.message.clone()),
        );
        outcome?;
    }
    Ok(())
}

async fn run_view(
    api: &FeatureApi,
    definitions: &Arc<Definitions>,
    name: &str,
    window: Window,
) -> Result<(), ApiError> {
    let project = &definitions.project;
    {
        let view = definitions.view(name).map_err(ApiError::from_features)?.clone();
        let stored = view.storage_name();
        let (start, end) = match window {
            Window::Range { start, end } => (Some(start), end),
            Window::Everything => (None, now_nanos()),
            Window::Incremental { end } => {
                let watermark = api
                    .online
                    .watermark(project, &stored)
                    .await
                    .map_err(|e| ApiError::internal(e.to_string()))?;
                let start = watermark.unwrap_or_else(|| {
                    let back = view.ttl_seconds.map_or(YEAR_NANOS, |s| s.saturating_mul(1_000_000_000));
                    now_nanos().saturating_sub(back)
                });
                (Some(start), end)
            }
        };
        if start.is_some_and(|start| start >= end) {
            // Already materialised past `end` (or the first window, now minus the TTL, starts after it):
            // nothing to read, and the watermark stays where it is.
            tracing::info!(project = %project, view = %name, "nothing to materialise: the window starts after its end");
            return Ok(());
        }
        let owned =
            crate::remote_sources::localize(definitions, Some(std::slice::from_ref(&view.source)), &api.remote_cache)
                .await
                .map_err(|e| ApiError::bad_request(format!("materialising `{name}`: {e}")))?;
        let read = view.clone();
        let latest = tokio::task::spawn_blocking(move || latest_in_window(&owned, &read, start, end, &Silent))
            .await
            .map_err(|e| ApiError::internal(format!("materialising `{name}`: {e}")))?
            .map_err(ApiError::from_features)?;
        let written = latest.rows.len();
        api.online
            .write(project, &stored, latest.rows)
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let previous = api
            .online
            .watermark(project, &stored)
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
        api.online
            .set_watermark(project, &stored, previous.map_or(end, |p| p.max(end)))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
        tracing::info!(project = %project, view = %name, rows_read = latest.rows_read, entities = written, "materialised");
    }
    Ok(())
}
