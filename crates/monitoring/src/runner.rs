//! Evaluating a monitor: its due windows in order (each stored with its report, then applied to the alert
//! rules), recent windows again when late labels arrive, actions of rules that fire, and delivery of the
//! notifications waiting in its outbox. Every change to a monitor is one optimistic update, so a restart or a
//! second replica never records a window twice; a window is recomputed from the log, never accumulated.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use loopline_artifact_store::ArtifactPath;
use loopline_core::time::now_millis;
use loopline_metadata_store::{MonitorEvent, MonitorUpdate, MonitorWindow, ReferenceRecord};
use loopline_serving::log_reader::{FEEDBACK_PREFIX, PostedLabel, log_files, posted_labels};
use loopline_tabular::DatasetProfile;
use serde_json::{Value, json};

use crate::alerts::{AlertStatus, Transition, apply, is_silenced};
use crate::evaluate::{WindowInput, evaluate};
use crate::figures::Figures;
use crate::service::{MonitorError, Monitoring, monitor_event, parse_record, to_json};
use crate::spec::MonitorSpec;
use crate::state::MonitorState;
use crate::window_data::{LogCursor, Reading, WindowRows, count_window, time_window, time_window_from};

/// Windows evaluated at once.
const PARALLEL_WINDOWS: usize = 2;
/// Least time between two evaluations of recent windows for late labels (on demand: at once).
const RELABEL_EVERY_MS: i64 = 300_000;
/// Most windows whose labels are read in one pass over the feedback (their samples are held meanwhile, up to
/// one window's sample limit in rows).
const LABEL_BATCH: usize = 8;

/// A window read and waiting to be evaluated: its key, span, rows and (count windows) log positions.
type ReadWindow = (i64, (i64, i64), WindowRows, Value);
/// Time windows read at once.
const READ_AHEAD: usize = 1;
/// Recent windows evaluated again when new labels arrive.
const RELABEL_WINDOWS: usize = 24;

/// A window as the API shows it.
pub fn window_json(window: &MonitorWindow) -> Value {
    let stored: Value = serde_json::from_str(&window.figures).unwrap_or(Value::Null);
    json!({
        "window": window.window_key,
        "start_ms": window.window_start,
        "end_ms": window.window_end,
        "status": window.status,
        "rows": window.rows_seen,
        "labels": window.labels_seen,
        "figures": stored["figures"],
        "details": stored["details"],
        "report": window.report_path,
        "evaluated_time": window.evaluated_time,
    })
}

/// The artifact directories a stored window points at: its report's, and its sketch's when apart.
pub(crate) fn window_directories(window: &MonitorWindow) -> Vec<String> {
    let stored: Value = serde_json::from_str(&window.figures).unwrap_or(Value::Null);
    let mut directories: Vec<String> = window.report_path.iter().cloned().collect();
    if let Some(sketch) = stored["details"]["sketch"].as_str()
        && !directories.iter().any(|d| d == sketch)
    {
        directories.push(sketch.to_string());
    }
    directories
}

/// What one window's evaluation produced.
pub(crate) struct Evaluated {
    pub(crate) window: MonitorWindow,
    pub(crate) figures: Figures,
}

impl Evaluated {
    /// Adds the business figures posted for this window, to the figures and to what is stored.
    pub(crate) fn with_business(mut self, state: &MonitorState) -> Evaluated {
        let Some(posted) = state.business.get(&self.window.window_key) else {
            return self;
        };
        let mut stored: Value = serde_json::from_str(&self.window.figures).unwrap_or_default();
        for (metric, value) in posted {
            let figure = format!("business.{metric}");
            self.figures.insert(figure.clone(), *value);
            stored["figures"][figure] = json!(value);
        }
        self.window.figures = stored.to_string();
        self
    }
}

/// What a run changes, gathered before the one update that stores it.
#[derive(Default)]
pub(crate) struct Changes {
    pub(crate) windows: Vec<MonitorWindow>,
    pub(crate) events: Vec<MonitorEvent>,
    /// Reports replaced by this change, deleted once it is stored.
    pub(crate) replaced_reports: Vec<String>,
}

fn window_length_ms(spec: &MonitorSpec) -> Option<i64> {
    spec.window.seconds.map(|s| s as i64 * 1000)
}

fn most_rows_version(rows: &WindowRows) -> Option<String> {
    rows.version_counts()
        .into_iter()
        .max_by_key(|(_, count)| *count)
        .map(|(version, _)| version)
}

/// Profiles a window's logged inputs and predictions as a reference (`reference_window`).
fn profile_window(spec: &MonitorSpec, rows: &WindowRows, output: Option<&str>) -> Option<DatasetProfile> {
    use arrow_schema::Field;
    let mut fields: Vec<(Field, String)> = Vec::new();
    for batch in &rows.batches {
        for field in batch.schema().fields() {
            let renamed = match field.name().strip_prefix("input.") {
                Some(column) => column.to_string(),
                None if Some(field.name().as_str()) == output => spec.prediction_column.clone(),
                None => continue,
            };
            if !fields.iter().any(|(f, _)| f.name() == &renamed) {
                fields.push((
                    Field::new(renamed, field.data_type().clone(), true),
                    field.name().clone(),
                ));
            }
        }
    }
    let schema = Arc::new(arrow_schema::Schema::new(
        fields.iter().map(|f| f.0.clone()).collect::<Vec<_>>(),
    ));
    let plain: Vec<Field> = fields.iter().map(|f| f.0.clone()).collect();
    let mut collector = loopline_tabular::collect::Collector::new(&plain);
    for batch in &rows.batches {
        let columns: Option<Vec<arrow_array::ArrayRef>> = fields
            .iter()
            .map(|(field, logged)| {
                Some(match batch.column_by_name(logged) {
                    Some(column) if column.data_type() == field.data_type() => column.clone(),
                    Some(column) => arrow_cast::cast(column, field.data_type()).ok()?,
                    None => arrow_array::new_null_array(field.data_type(), batch.num_rows()),
                })
            })
            .collect();
        let projected = arrow_array::RecordBatch::try_new(schema.clone(), columns?).ok()?;
        collector.push(&projected).ok()?;
    }
    Some(DatasetProfile::of(
        "reference window",
        rows.rows() as u64,
        &collector.finish(),
    ))
}

impl Monitoring {
    /// Evaluates a monitor's due windows and delivers its notifications. On demand (`run` from the API or
    /// CLI) the prediction log is written out first, windows are due as soon as they end, and every waiting
    /// notification is tried at once.
    pub async fn run(&self, name: &str, on_demand: bool) -> Result<Value, MonitorError> {
        let _running = self.run_lock.lock().await;
        if on_demand && let Some(log) = &self.log {
            log.flush().await.map_err(MonitorError::Internal)?;
        }
        let record = self.store.get_monitor(name).await?;
        let (spec, mut state) = parse_record(&record)?;
        let (model, _) = self.target(&spec).await?;
        let now = now_millis();
        let mut changes = Changes::default();
        let (labels_since, feedback_mark) = self.feedback_scope(&spec, &state, now).await?;
        let labels = labels_since.as_deref();
        let evaluated = self
            .due_windows(&spec, &mut state, &model, labels, now, on_demand)
            .await?;
        let mut evaluated_keys: Vec<i64> = Vec::new();
        for result in evaluated {
            let mut result = result.with_business(&state);
            result.window.monitor = name.to_string();
            evaluated_keys.push(result.window.window_key);
            self.apply_rules(name, &spec, &model, &mut state, &result, false, &mut changes)
                .await;
            changes.windows.push(result.window);
        }
        let relabel_due = on_demand || state.last_relabel_ms.is_none_or(|last| now - last >= RELABEL_EVERY_MS);
        if spec.task.is_some() && feedback_mark.is_some() && feedback_mark != state.feedback_mark && relabel_due {
            state.last_relabel_ms = Some(now);
            self.relabel(name, &spec, &model, &mut state, labels, &evaluated_keys, &mut changes)
                .await?;
        }
        if relabel_due {
            state.feedback_mark = feedback_mark.or(state.feedback_mark.take());
        }
        self.resend_to_alertmanager(name, &spec, &model, &mut state, now);
        let update = MonitorUpdate {
            spec: &record.spec,
            state: &to_json(&state),
            windows: &changes.windows,
            events: &changes.events,
        };
        let stored = self.store.update_monitor(name, record.revision, &update).await?;
        self.delete_reports(&changes.replaced_reports).await;
        let delivered = self
            .deliver_outbox(name, &spec, stored.revision, &mut state, on_demand)
            .await?;
        self.remember_latest(name, &spec, &state).await;
        Ok(json!({
            "monitor": name,
            "evaluated": changes.windows.iter().map(|w| json!({"window": w.window_key, "status": w.status})).collect::<Vec<_>>(),
            "notifications_delivered": delivered,
            "notifications_waiting": state.outbox.len(),
        }))
    }

    /// The hour from which feedback is read for this run's windows (`None`: the monitor joins no labels), and
    /// the newest feedback file.
    async fn feedback_scope(
        &self,
        spec: &MonitorSpec,
        state: &MonitorState,
        now: i64,
    ) -> Result<(Option<String>, Option<String>), MonitorError> {
        if spec.task.is_none() {
            return Ok((None, None));
        }
        let oldest = match window_length_ms(spec) {
            Some(length) => state
                .next_key
                .saturating_sub(length.saturating_mul(RELABEL_WINDOWS as i64)),
            None => now - 7 * 24 * 3_600_000,
        };
        let since = loopline_core::time::utc_hour(oldest.min(now - 7 * 24 * 3_600_000));
        let files = log_files(self.artifacts.as_ref(), FEEDBACK_PREFIX, Some(&since), None)
            .await
            .map_err(MonitorError::Internal)?;
        let newest = files.iter().map(|f| f.name.clone()).max();
        Ok((Some(since), newest))
    }

    /// Reads and evaluates the windows that are due: each window is read while those before it are evaluated
    /// (both on the blocking pool), so both cores work. (Reading two windows at once as well was measured: a
    /// few percent faster, a third more memory.)
    async fn due_windows(
        &self,
        spec: &MonitorSpec,
        state: &mut MonitorState,
        model: &str,
        labels: Option<&str>,
        now: i64,
        on_demand: bool,
    ) -> Result<Vec<Evaluated>, MonitorError> {
        let most = self.config.windows_per_run.max(1);
        match window_length_ms(spec) {
            Some(length) => {
                let grace = if on_demand { 0 } else { spec.grace_seconds as i64 * 1000 };
                let mut spans = Vec::new();
                let mut start = state.next_key;
                while spans.len() < most && start.saturating_add(length).saturating_add(grace) <= now {
                    spans.push((start, start.saturating_add(length)));
                    start = start.saturating_add(length);
                }
                let reading = Reading::for_spec(spec);
                // The sampling rate the last window read reached: the next one is read at it.
                let reached = &std::sync::atomic::AtomicUsize::new(0);
                let reads = futures::stream::iter(spans.clone())
                    .map(|(start, end)| async move {
                        let floor = reached.load(std::sync::atomic::Ordering::Relaxed);
                        let rows =
                            time_window_from(self.artifacts.as_ref(), model, (start, end), (false, reading), floor)
                                .await
                                .map_err(MonitorError::Internal)?;
                        if rows.seen_rows > 0 {
                            reached.store(rows.halvings(), std::sync::atomic::Ordering::Relaxed);
                        }
                        Ok((start, (start, end), rows, Value::Null))
                    })
                    .buffered(READ_AHEAD)
                    .boxed();
                let evaluated = self.evaluate_as_read(spec, model, labels, reads).await?;
                if let Some((_, end)) = spans.last() {
                    state.next_key = *end;
                }
                Ok(evaluated)
            }
            None => {
                let reads = futures::stream::unfold(state, |state| async move {
                    match self.next_window(spec, state, model, now).await {
                        Ok(Some(window)) => Some((Ok(window), state)),
                        Ok(None) => None,
                        Err(error) => Some((Err(error), state)),
                    }
                })
                .take(most)
                .boxed();
                self.evaluate_as_read(spec, model, labels, reads).await
            }
        }
    }

    /// Evaluates windows as they are read, the next read while the ones before it are evaluated.
    async fn evaluate_as_read(
        &self,
        spec: &MonitorSpec,
        model: &str,
        labels: Option<&str>,
        reads: impl futures::Stream<Item = Result<ReadWindow, MonitorError>>,
    ) -> Result<Vec<Evaluated>, MonitorError> {
        let mut reads = std::pin::pin!(reads);
        let mut evaluated = Vec::new();
        let mut pending: Vec<ReadWindow> = Vec::new();
        let mut ready: Option<Vec<ReadWindow>> = None;
        loop {
            let evaluating = ready.take();
            let (window, done) = futures::join!(reads.next(), async {
                match evaluating {
                    Some(windows) => self.evaluate_windows(spec, model, windows, labels).await,
                    None => Ok(Vec::new()),
                }
            });
            evaluated.extend(done?);
            let Some(window) = window.transpose()? else {
                break;
            };
            pending.push(window);
            let held: usize = pending.iter().map(|(_, _, rows, _)| rows.rows()).sum();
            if pending.len() == LABEL_BATCH || held >= spec.sample_rows {
                ready = Some(std::mem::take(&mut pending));
            }
        }
        evaluated.extend(self.evaluate_windows(spec, model, pending, labels).await?);
        Ok(evaluated)
    }

    /// Reads the next count window (`None`: fewer predictions than it needs are logged), moving the monitor's
    /// cursor past it.
    async fn next_window(
        &self,
        spec: &MonitorSpec,
        state: &mut MonitorState,
        model: &str,
        now: i64,
    ) -> Result<Option<ReadWindow>, MonitorError> {
        let Some(count) = spec.window.predictions else {
            return Ok(None);
        };
        let cursor = state.cursor.clone();
        let Some((rows, next)) = self.count_window_from(spec, model, &cursor, count).await? else {
            return Ok(None);
        };
        let key = state.next_key;
        state.next_key = state.next_key.saturating_add(1);
        state.cursor = next.clone();
        let span = rows.span.unwrap_or((now, now));
        Ok(Some((
            key,
            (span.0, span.1.saturating_add(1)),
            rows,
            json!({"from": cursor, "to": next}),
        )))
    }

    /// The `count` predictions after `cursor`, read as the monitor's checks need (`None`: fewer are logged).
    async fn count_window_from(
        &self,
        spec: &MonitorSpec,
        model: &str,
        cursor: &LogCursor,
        count: u64,
    ) -> Result<Option<(WindowRows, LogCursor)>, MonitorError> {
        count_window(
            self.artifacts.as_ref(),
            model,
            cursor,
            count as usize,
            Reading::for_spec(spec),
        )
        .await
        .map_err(MonitorError::Internal)
    }

    /// Evaluates windows whose rows are read, reading the feedback once for all of them.
    async fn evaluate_windows(
        &self,
        spec: &MonitorSpec,
        model: &str,
        windows: Vec<ReadWindow>,
        labels_since: Option<&str>,
    ) -> Result<Vec<Evaluated>, MonitorError> {
        let labels = match labels_since {
            Some(since) if !windows.is_empty() => {
                let mut wanted = loopline_serving::log_reader::RequestSet::default();
                let mut first_start = i64::MAX;
                let mut last_end = i64::MIN;
                for (_, span, rows, _) in &windows {
                    wanted.extend(rows.request_ids());
                    first_start = first_start.min(span.0);
                    last_end = last_end.max(span.1);
                }
                // Labels arrive after their predictions, and no later than the label delay.
                let from = loopline_core::time::utc_hour(first_start).max(since.to_string());
                let until = loopline_core::time::utc_hour(
                    last_end.saturating_add((spec.label_delay_seconds as i64).saturating_mul(1000)),
                );
                posted_labels(self.artifacts.as_ref(), (Some(&from), Some(&until)), Some(&wanted))
                    .await
                    .map_err(MonitorError::Internal)?
            }
            _ => Default::default(),
        };
        // Shared, not copied, by the windows' evaluations (each joins only its own requests).
        let labels = std::sync::Arc::new(labels);
        let mut evaluated = Vec::new();
        let mut windows = windows.into_iter().peekable();
        if spec.reference_window {
            // The first window with traffic becomes the reference: until a reference exists, windows are
            // evaluated one at a time, in order, so a later window never takes its place.
            while let Some((_, _, rows, _)) = windows.peek() {
                let version = self.window_version(spec, model, rows).await;
                if let Some(version) = &version
                    && self.stored_reference(model, version).await?.is_some()
                {
                    break;
                }
                let Some((key, span, rows, cursor)) = windows.next() else {
                    break;
                };
                evaluated.push(
                    self.evaluate_window(spec, model, key, span, rows, labels.clone(), cursor)
                        .await?,
                );
            }
        }
        // Two windows at a time: their statistics run on the blocking pool, so both cores work.
        loop {
            let group: Vec<_> = windows.by_ref().take(PARALLEL_WINDOWS).collect();
            if group.is_empty() {
                break;
            }
            let running = group.into_iter().map(|(key, span, rows, cursor)| {
                self.evaluate_window(spec, model, key, span, rows, labels.clone(), cursor)
            });
            for result in futures::future::join_all(running).await {
                evaluated.push(result?);
            }
        }
        Ok(evaluated)
    }

    /// The version a window is judged as: the alias's, else the one that served most of its rows.
    async fn window_version(&self, spec: &MonitorSpec, model: &str, rows: &WindowRows) -> Option<String> {
        match (&spec.alias, most_rows_version(rows)) {
            (Some(alias), _) => self
                .store
                .get_model_version_by_alias(model, alias)
                .await
                .ok()
                .map(|v| v.version),
            (None, version) => version,
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn evaluate_window(
        &self,
        spec: &MonitorSpec,
        model: &str,
        key: i64,
        span: (i64, i64),
        rows: WindowRows,
        labels: std::sync::Arc<loopline_serving::log_reader::RequestMap<PostedLabel>>,
        cursor: Value,
    ) -> Result<Evaluated, MonitorError> {
        let version = self.window_version(spec, model, &rows).await;
        let (mut reference, estimation) = match &version {
            Some(version) => match self.stored_reference(model, version).await? {
                Some((profile, estimation)) => (Some(profile), estimation),
                None => (None, None),
            },
            None => (None, None),
        };
        if reference.is_none()
            && spec.reference_window
            && rows.rows() > 0
            && let Some(version) = &version
        {
            let output = rows.batches.iter().find_map(|b| {
                b.schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .find(|n| match &spec.output {
                        Some(o) => n == &format!("output.{o}"),
                        None => n.starts_with("output."),
                    })
            });
            if let Some(profile) = profile_window(spec, &rows, output.as_deref()) {
                self.store
                    .set_reference(&ReferenceRecord {
                        name: model.to_string(),
                        version: version.clone(),
                        profile: to_json(&profile),
                        source: format!("window {key}"),
                        set_time: now_millis(),
                    })
                    .await?;
                reference = Some(profile);
            }
        }
        let (failures_from, failures_until) = match window_length_ms(spec) {
            Some(_) => span,
            None => rows
                .span
                .map_or((0, 0), |(first, last)| (first, last.saturating_add(1))),
        };
        let failed = crate::window_data::failures(self.artifacts.as_ref(), model, failures_from, failures_until)
            .await
            .map_err(MonitorError::Internal)?;
        let owned_spec = spec.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            crate::background::yield_to_serving();
            evaluate(&WindowInput {
                spec: &owned_spec,
                rows: &rows,
                labels: &labels,
                reference: reference.as_ref(),
                estimation: estimation.as_ref(),
                failures: &failed,
            })
        })
        .await
        .map_err(|e| MonitorError::Internal(format!("window evaluation stopped: {e}")))?;
        self.store_window(key, span, version, outcome, cursor).await
    }

    async fn store_window(
        &self,
        key: i64,
        span: (i64, i64),
        version: Option<String>,
        outcome: crate::evaluate::WindowOutcome,
        cursor: Value,
    ) -> Result<Evaluated, MonitorError> {
        let figures = outcome.figures;
        let mut details = outcome.details;
        details["version"] = json!(version);
        if !cursor.is_null() {
            details["cursor"] = cursor;
        }
        let report_path = match &outcome.report {
            Some(report) => Some(self.write_report(key, report, &details).await?),
            None => None,
        };
        if let Some(sketch) = &outcome.sketch {
            // What roll-ups of longer spans merge: beside the report, or on its own.
            let directory = report_path
                .clone()
                .unwrap_or_else(|| format!("monitoring/sketches/{}-{key}", uuid::Uuid::new_v4().simple()));
            self.put_text(&directory, crate::rollup::SKETCH_FILE, json!(sketch).to_string())
                .await?;
            details["sketch"] = json!(directory);
        }
        let window = MonitorWindow {
            monitor: String::new(),
            window_key: key,
            window_start: span.0,
            window_end: span.1,
            status: outcome.status.to_string(),
            rows_seen: figures.get("rows").copied().unwrap_or_default() as i64,
            labels_seen: outcome.labels_seen as i64,
            figures: json!({"figures": figures, "details": details}).to_string(),
            report_path,
            evaluated_time: now_millis(),
        };
        Ok(Evaluated { window, figures })
    }

    /// Deletes reports no stored window points at any more (best effort: a leftover is only disk).
    pub(crate) async fn delete_reports(&self, directories: &[String]) {
        for directory in directories {
            let Ok(path) = ArtifactPath::parse(directory) else {
                continue;
            };
            if let Err(error) = self.artifacts.delete(&path).await {
                tracing::warn!(report = %directory, %error, "a replaced window report was not deleted");
            }
        }
    }

    async fn write_report(
        &self,
        key: i64,
        report: &loopline_drift_report::DriftReport,
        details: &Value,
    ) -> Result<String, MonitorError> {
        // Reports are named by a random directory under the monitor's key so that a window evaluated
        // again never overwrites what an earlier answer pointed at.
        let directory = format!("monitoring/reports/{}-{key}", uuid::Uuid::new_v4().simple());
        let html = loopline_drift_report::html::render(report);
        let document = json!({"report": report, "details": details});
        for (file, body) in [("report.json", document.to_string()), ("report.html", html)] {
            self.put_text(&directory, file, body).await?;
        }
        Ok(directory)
    }

    async fn put_text(&self, directory: &str, file: &str, body: String) -> Result<(), MonitorError> {
        let path =
            ArtifactPath::parse(&format!("{directory}/{file}")).map_err(|e| MonitorError::Internal(e.to_string()))?;
        let bytes = Bytes::from(body);
        self.artifacts
            .put(&path, Box::pin(futures::stream::once(async move { Ok(bytes) })))
            .await
            .map_err(|e| MonitorError::Internal(format!("the window's {file} could not be written: {e}")))?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn relabel(
        &self,
        name: &str,
        spec: &MonitorSpec,
        model: &str,
        state: &mut MonitorState,
        labels: Option<&str>,
        skip: &[i64],
        changes: &mut Changes,
    ) -> Result<(), MonitorError> {
        let recent = self.store.latest_monitor_windows(name, RELABEL_WINDOWS).await?;
        let mut before: Vec<MonitorWindow> = Vec::new();
        let mut pending: Vec<(i64, (i64, i64), WindowRows, Value)> = Vec::new();
        for stored in recent.into_iter().rev() {
            if skip.contains(&stored.window_key) || stored.rows_seen == 0 {
                continue;
            }
            let details: Value = serde_json::from_str::<Value>(&stored.figures).unwrap_or_default()["details"].clone();
            let rows = match (window_length_ms(spec), spec.window.predictions) {
                (Some(_), _) => time_window(
                    self.artifacts.as_ref(),
                    model,
                    (stored.window_start, stored.window_end),
                    Reading::for_spec(spec),
                )
                .await
                .map_err(MonitorError::Internal)?,
                (None, Some(count)) => {
                    let Ok(from) = serde_json::from_value::<LogCursor>(details["cursor"]["from"].clone()) else {
                        continue;
                    };
                    match self.count_window_from(spec, model, &from, count).await? {
                        Some((rows, _)) => rows,
                        None => continue,
                    }
                }
                (None, None) => continue,
            };
            let cursor = details.get("cursor").cloned().unwrap_or(Value::Null);
            let span = (stored.window_start, stored.window_end);
            before.push(stored.clone());
            pending.push((stored.window_key, span, rows, cursor));
            if pending.len() == LABEL_BATCH {
                let results = self
                    .evaluate_windows(spec, model, std::mem::take(&mut pending), labels)
                    .await?;
                self.record_relabelled(name, spec, model, state, std::mem::take(&mut before), results, changes)
                    .await;
            }
        }
        let results = self.evaluate_windows(spec, model, pending, labels).await?;
        self.record_relabelled(name, spec, model, state, before, results, changes)
            .await;
        Ok(())
    }

    /// Stores the windows whose label count changed on evaluation again, re-applying the rules when it is the
    /// newest window.
    #[allow(clippy::too_many_arguments)]
    async fn record_relabelled(
        &self,
        name: &str,
        spec: &MonitorSpec,
        model: &str,
        state: &mut MonitorState,
        before: Vec<MonitorWindow>,
        results: Vec<Evaluated>,
        changes: &mut Changes,
    ) {
        for (stored, result) in before.into_iter().zip(results) {
            let mut result = result.with_business(state);
            if result.window.labels_seen == stored.labels_seen {
                // Nothing new: the report and sketch just written for it are not kept.
                changes.replaced_reports.extend(window_directories(&result.window));
                continue;
            }
            changes.events.push(monitor_event(
                name,
                "window_relabelled",
                "monitor",
                format!(
                    "window {} evaluated again: {} labels now, {} before",
                    stored.window_key, result.window.labels_seen, stored.labels_seen
                ),
                json!({"window": stored.window_key, "labels": result.window.labels_seen, "labels_before": stored.labels_seen}),
            ));
            if state.last_key == Some(stored.window_key) {
                self.apply_rules(name, spec, model, state, &result, true, changes).await;
            }
            result.window.monitor = name.to_string();
            let kept = window_directories(&result.window);
            changes.replaced_reports.extend(
                window_directories(&stored)
                    .into_iter()
                    .filter(|old| !kept.contains(old)),
            );
            changes.windows.push(result.window);
        }
    }

    /// Applies a window to every rule; `again` re-applies the newest window from the states before it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn apply_rules(
        &self,
        name: &str,
        spec: &MonitorSpec,
        model: &str,
        state: &mut MonitorState,
        result: &Evaluated,
        again: bool,
        changes: &mut Changes,
    ) {
        let window = &result.window;
        let mut figures = result.figures.clone();
        for (metric, value) in state.business.get(&window.window_key).cloned().unwrap_or_default() {
            figures.insert(format!("business.{metric}"), value);
        }
        for rule in &spec.alerts {
            let current = state.rules.get(&rule.name).cloned().unwrap_or_default();
            let base = if again {
                state.rules_before_last.get(&rule.name).cloned().unwrap_or_default()
            } else {
                state.rules_before_last.insert(rule.name.clone(), current.clone());
                current.clone()
            };
            let (mut next, _) = apply(
                rule,
                &base,
                figures.get(&rule.figure).copied(),
                (window.window_key, window.window_end),
                || uuid::Uuid::new_v4().simple().to_string(),
            );
            let transition = match (
                current.status == AlertStatus::Firing,
                next.status == AlertStatus::Firing,
            ) {
                (false, true) => Transition::Fired,
                (true, false) => Transition::Resolved,
                (true, true) => {
                    next.episode = current.episode.clone();
                    next.alertmanager_sent_ms = current.alertmanager_sent_ms;
                    Transition::Unchanged
                }
                (false, false) => Transition::Unchanged,
            };
            next.silenced_until_ms = current.silenced_until_ms;
            next.silenced_by = current.silenced_by.clone();
            if transition == Transition::Unchanged {
                next.acknowledged_by = next.acknowledged_by.or(current.acknowledged_by.clone());
                state.rules.insert(rule.name.clone(), next);
                continue;
            }
            let resolved = transition == Transition::Resolved;
            let shown_state = if resolved {
                crate::alerts::RuleState {
                    episode: current.episode.clone(),
                    since_ms: current.since_ms,
                    ..next.clone()
                }
            } else {
                next.clone()
            };
            let notice = self.notice(
                name,
                model,
                spec,
                rule,
                &shown_state,
                (window.window_key, window.window_end),
                resolved,
            );
            let kind = if resolved { "alert_resolved" } else { "alert_firing" };
            changes
                .events
                .push(monitor_event(name, kind, "monitor", notice.summary(), json!(notice)));
            if is_silenced(&next, now_millis()) {
                changes.events.push(monitor_event(
                    name,
                    "notification_silenced",
                    "monitor",
                    format!("alert '{}' is silenced; nobody was notified", rule.name),
                    json!({"rule": rule.name, "until_ms": next.silenced_until_ms}),
                ));
            } else {
                Self::enqueue_notice(spec, rule, state, &notice, false);
                if !resolved {
                    next.alertmanager_sent_ms = Some(now_millis());
                }
            }
            if !resolved {
                self.act(name, spec, model, rule, &notice, state, changes).await;
            }
            state.rules.insert(rule.name.clone(), next);
        }
        state.last_key = Some(window.window_key);
    }

    async fn remember_latest(&self, name: &str, spec: &MonitorSpec, state: &MonitorState) {
        let Ok(latest) = self.store.latest_monitor_windows(name, 1).await else {
            return;
        };
        let figures: Figures = latest
            .first()
            .and_then(|w| serde_json::from_str::<Value>(&w.figures).ok())
            .and_then(|v| serde_json::from_value(v["figures"].clone()).ok())
            .unwrap_or_default();
        let firing = spec
            .alerts
            .iter()
            .filter(|r| {
                state
                    .rules
                    .get(&r.name)
                    .is_some_and(|s| s.status == AlertStatus::Firing)
            })
            .map(|r| r.severity.clone())
            .collect();
        self.latest
            .lock()
            .expect("latest figures lock: this is a bug")
            .insert(name.to_string(), crate::service::Latest { figures, firing });
    }
}
