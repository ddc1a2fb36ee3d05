//! Roll-ups: a longer span (a day, a week) as the merge of the stored windows inside it, without reading the
//! prediction log again. Counts add up exactly; health, realised performance and expected accuracy merge as
//! sums (`crate::span_sketch`); columns merge through their sketches (`crate::sketches`), and the merged span
//! is compared with the reference of the version that served most of its rows, with the same drift methods
//! and thresholds as the monitor's windows.

use std::collections::BTreeMap;

use loopline_artifact_store::ArtifactPath;
use loopline_drift_report::DriftReport;
use serde_json::{Value, json};

use crate::service::{MonitorError, Monitoring, invalid, parse_record};
use crate::sketches::{WindowSketch, current_data, describe};

/// The file beside each window's report holding its sketch.
pub const SKETCH_FILE: &str = "sketch.json";
/// Most windows merged in one roll-up.
const MAX_WINDOWS: usize = 10_000;
/// The largest stored sketch read back.
const MAX_SKETCH_BYTES: u64 = 64 << 20;
/// The longest span: a little over a year.
const MAX_SPAN_MS: i64 = 400 * 24 * 3_600_000;

/// A roll-up: the summary, and the drift report of the merged span when there was one to make.
pub struct Rollup {
    /// Counts, column summaries and drift, as JSON.
    pub summary: Value,
    /// The drift report of the merged span against the reference.
    pub report: Option<DriftReport>,
}

impl Monitoring {
    /// The windows of monitor `name` lying within `[from_ms, to_ms)`, merged.
    pub async fn rollup(&self, name: &str, from_ms: i64, to_ms: i64) -> Result<Rollup, MonitorError> {
        if to_ms <= from_ms {
            return Err(invalid("to", format!("{to_ms} is not after from ({from_ms})")));
        }
        if to_ms.saturating_sub(from_ms) > MAX_SPAN_MS {
            return Err(invalid("to", "a roll-up spans at most 400 days"));
        }
        let record = self.store.get_monitor(name).await?;
        let (spec, _) = parse_record(&record)?;
        let (model, _) = self.target(&spec).await?;
        // Time windows are keyed by their start (from one window before the span, to see any it cuts through);
        // count windows by their number, in order of time too.
        let key = match spec.window.seconds {
            Some(seconds) => from_ms.saturating_sub((seconds as i64).saturating_mul(1000)),
            None => i64::MIN,
        };
        let (mut windows, mut partial, mut newest_end) = (Vec::new(), 0usize, None::<i64>);
        self.visit_windows(name, key, |window| {
            newest_end = newest_end.max(Some(window.window_end));
            if window.window_start >= to_ms {
                return Ok(false);
            }
            if window.window_start >= from_ms && window.window_end <= to_ms {
                if windows.len() == MAX_WINDOWS {
                    return Err(invalid("to", format!("the span holds more than {MAX_WINDOWS} windows")));
                }
                windows.push(window);
            } else if window.window_end > from_ms {
                partial += 1;
            }
            Ok(true)
        })
        .await?;
        let (mut rows, mut labels, mut requests) = (0i64, 0i64, 0f64);
        let mut versions: BTreeMap<String, u64> = BTreeMap::new();
        let mut merged: Option<WindowSketch> = None;
        let (mut summarised, mut unsketched, mut changed) = (0usize, 0usize, Vec::new());
        let (mut unreadable, mut problem_windows) = (0f64, BTreeMap::<String, usize>::new());
        for window in &windows {
            rows += window.rows_seen;
            labels += window.labels_seen;
            let document: Value = serde_json::from_str(&window.figures).unwrap_or_default();
            requests += document["figures"]["requests"].as_f64().unwrap_or_default();
            unreadable += document["figures"]["health.unreadable_files"]
                .as_f64()
                .unwrap_or_default();
            if window.status == "problems" {
                // Its columns were not compared: say why, once per kind of problem.
                let problems = document["details"]["problems"].as_array().cloned().unwrap_or_default();
                let why = problems
                    .first()
                    .and_then(Value::as_str)
                    .unwrap_or("its columns were not compared");
                *problem_windows.entry(why.to_string()).or_default() += 1;
            }
            if let Some(counts) = document["details"]["versions"].as_object() {
                for (version, count) in counts {
                    *versions.entry(version.clone()).or_default() += count.as_u64().unwrap_or_default();
                }
            }
            let Some(directory) = document["details"]["sketch"].as_str().or(window.report_path.as_deref()) else {
                unsketched += usize::from(window.rows_seen > 0);
                continue;
            };
            let Some(sketch) = self.stored_sketch(directory, window).await? else {
                unsketched += usize::from(window.rows_seen > 0);
                continue;
            };
            summarised += 1;
            merged = Some(match merged {
                None => sketch,
                Some(so_far) => so_far.merge(&sketch, &mut changed),
            });
        }
        changed.dedup();
        let version = versions.iter().max_by_key(|(_, count)| **count).map(|(v, _)| v.clone());
        let reference = match &version {
            Some(version) => self.reference_of(&model, version).await?,
            None => None,
        };
        let mut notes: Vec<String> = changed;
        notes.sort();
        notes.dedup();
        if partial > 0 {
            notes.push(format!(
                "{partial} window(s) only partly inside the span are left out: a roll-up merges whole windows"
            ));
        }
        match newest_end {
            Some(end) if end < to_ms => notes.push(format!(
                "the span reaches past the newest evaluated window (which ends at {})",
                loopline_core::time::rfc3339_millis(end)
            )),
            None => notes.push("the monitor has evaluated no window yet".into()),
            _ => {}
        }
        if windows.is_empty() {
            notes.push("no evaluated window lies wholly within the span".into());
        }
        for (why, count) in problem_windows.iter().take(5) {
            notes.push(format!(
                "{count} window(s) compared no columns ({why}): their rows count in the totals, not in the columns"
            ));
        }
        if unreadable > 0.0 {
            notes.push(format!(
                "{unreadable} prediction log file(s) could not be read in the span's windows (see each window's \
                 details.unreadable_files): their rows are not counted"
            ));
        }
        if unsketched > 0 {
            notes.push(format!(
                "{unsketched} window(s) with traffic have no sketch (evaluated before sketches were kept, or it \
                 was removed): they count in rows, requests and labels only"
            ));
        }
        // A column with no values in the whole span cannot be compared: it is named, the others still are.
        if let Some(sketch) = merged.as_mut() {
            sketch.columns.retain(|column| {
                let valued = column.numeric.as_ref().is_some_and(|n| n.finite > 0.0)
                    || column.categorical.as_ref().is_some_and(|c| !c.counts.is_empty());
                if !valued {
                    notes.push(format!(
                        "column '{}' holds no values within the span and is not compared",
                        column.name
                    ));
                }
                valued
            });
        }
        let report = match (&merged, &reference) {
            _ if !spec.drift.enabled => None,
            (Some(sketch), Some(reference)) if !sketch.columns.is_empty() => {
                let source = format!(
                    "monitor {name}, {} to {}: {} windows and {rows} rows merged from their sketches, compared \
                     through a stand-in of at most {} rows per column",
                    loopline_core::time::rfc3339_millis(from_ms),
                    loopline_core::time::rfc3339_millis(to_ms),
                    summarised,
                    spec.sample_rows
                );
                let current = current_data(sketch, spec.sample_rows, &source);
                match crate::evaluate::report_against(reference, &current, &spec) {
                    Ok(report) => Some(report),
                    Err(problems) => {
                        notes.extend(problems);
                        None
                    }
                }
            }
            (Some(_), None) => {
                notes.push("no reference profile for the version that served most rows: drift not tested".into());
                None
            }
            (Some(_), Some(_)) => {
                notes.push("none of the span's windows compared its columns with the reference".into());
                None
            }
            (None, _) => None,
        };
        let drift = report.as_ref().map(|report| {
            let columns: Vec<Value> = report
                .columns
                .iter()
                .map(|c| json!({"column": c.name, "method": c.method, "score": c.score, "threshold": c.threshold, "drifted": c.drifted}))
                .collect();
            json!({
                "share": report.share_of_drifted_columns,
                "dataset": report.dataset_drift,
                "columns": columns,
            })
        });
        // Health, realised performance and expected accuracy of the windows with sketches, merged.
        let mut figures: BTreeMap<String, f64> = BTreeMap::new();
        let mut performance = Value::Null;
        if let Some(sketch) = &merged {
            sketch.health.figures(&mut figures);
            if let Some(merged_performance) = &sketch.performance {
                performance = merged_performance.figures(&mut figures);
            }
            if let Some(estimated) = sketch.estimated.filter(|e| e.rows > 0.0) {
                figures.insert("estimated.accuracy".into(), estimated.expected_correct / estimated.rows);
            }
        }
        // Exact for every window, sketched or not.
        figures.insert("requests".into(), requests);
        figures.insert("health.unreadable_files".into(), unreadable);
        let summary = json!({
            "monitor": name,
            "from_ms": from_ms,
            "to_ms": to_ms,
            "windows": windows.len(),
            "windows_summarised": summarised,
            "rows": rows,
            "requests": requests,
            "labels": labels,
            "versions": versions,
            "version": version,
            "figures": figures,
            "performance": performance,
            "columns": merged.as_ref().map(|m| m.columns.iter().map(describe).collect::<Vec<_>>()).unwrap_or_default(),
            "drift": drift,
            "notes": notes,
        });
        Ok(Rollup { summary, report })
    }

    /// A window's stored sketch, checked on its own and against the window's counts; `None` for a window
    /// evaluated before sketches were kept.
    async fn stored_sketch(
        &self,
        directory: &str,
        window: &loopline_metadata_store::MonitorWindow,
    ) -> Result<Option<WindowSketch>, MonitorError> {
        let key = window.window_key;
        let unusable = |why: String| MonitorError::Internal(format!("the sketch of window {key} {why}"));
        let path = ArtifactPath::parse(&format!("{directory}/{SKETCH_FILE}"))
            .map_err(|e| unusable(format!("has an unusable path: {e}")))?;
        let bytes = match self.artifacts.read_all(&path, MAX_SKETCH_BYTES).await {
            Ok(bytes) => bytes,
            Err(loopline_artifact_store::ArtifactError::NotFound(_)) => return Ok(None),
            Err(error) => return Err(unusable(format!("cannot be read: {error}"))),
        };
        let sketch: WindowSketch =
            serde_json::from_slice(&bytes).map_err(|e| unusable(format!("is unreadable: {e}")))?;
        sketch.check().map_err(|e| unusable(format!("is damaged: {e}")))?;
        // Its counts cannot pass the window's: labels joined, rows seen (a sample's weighted counts may pass
        // the rows seen by the sampling's error, never twice over).
        let labelled = window.labels_seen as f64 * sketch.weight;
        let seen = window.rows_seen as f64;
        let past = |claimed: f64, most: f64| claimed > most * (1.0 + 1e-9) + sketch.weight;
        if sketch.performance.as_ref().is_some_and(|p| past(p.rows(), labelled))
            || sketch.estimated.is_some_and(|e| past(e.rows, 2.0 * seen))
            || past(sketch.health.requests, seen)
            || sketch.columns.iter().any(|c| past(c.cells, 2.0 * seen))
        {
            return Err(unusable(format!(
                "is damaged: it counts more rows or labels than window {key} saw ({seen} rows, {} labels)",
                window.labels_seen
            )));
        }
        Ok(Some(sketch))
    }
}

/// The roll-up's drift report as HTML, opening with what was merged: windows, rows, figures and notes.
pub fn render_html(rollup: &Rollup, report: &DriftReport) -> String {
    use loopline_core::html::{escape, format_number};
    let summary = &rollup.summary;
    let mut section = String::from("<section class=\"sub\"><h2>Roll-up</h2><p>");
    section.push_str(&format!(
        "{} windows ({} with sketches), {} rows, {} labels, from {} to {}",
        summary["windows"],
        summary["windows_summarised"],
        summary["rows"],
        summary["labels"],
        escape(
            &summary["from_ms"]
                .as_i64()
                .map(loopline_core::time::rfc3339_millis)
                .unwrap_or_default()
        ),
        escape(
            &summary["to_ms"]
                .as_i64()
                .map(loopline_core::time::rfc3339_millis)
                .unwrap_or_default()
        ),
    ));
    section.push_str("</p><ul>");
    for (name, value) in summary["figures"].as_object().into_iter().flatten() {
        let value = value.as_f64().map(format_number).unwrap_or_default();
        section.push_str(&format!("<li>{}: {}</li>", escape(name), escape(&value)));
    }
    section.push_str("</ul>");
    let notes: Vec<&str> = summary["notes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !notes.is_empty() {
        section.push_str("<h3>Notes</h3><ul>");
        for note in notes {
            section.push_str(&format!("<li>{}</li>", escape(note)));
        }
        section.push_str("</ul>");
    }
    section.push_str("</section>");
    let page = loopline_drift_report::html::render(report);
    match page.find("<main>") {
        Some(at) => format!(
            "{}{section}{}",
            &page[..at + "<main>".len()],
            &page[at + "<main>".len()..]
        ),
        None => format!("{section}{page}"),
    }
}
