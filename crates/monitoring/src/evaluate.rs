//! One window evaluated: its inputs and predictions compared with the reference profile (drift and data
//! quality, through `loopline-drift-report`), its labels joined by request id (live performance), and every
//! result flattened into named figures.

use std::collections::BTreeMap;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch, new_null_array};
use arrow_schema::{DataType, Field, Schema};
use loopline_drift_report::compare::Choice;
use loopline_drift_report::{CurrentData, DriftOptions, DriftReport, ReferenceData, build_report};
use loopline_drift_statistics::method_choice::DriftMethod;
use loopline_serving::log_reader::PostedLabel;
use loopline_tabular::DatasetProfile;
use loopline_tabular::collect::{Collector, ColumnValues};
use serde_json::{Value, json};

use crate::figures::Figures;
use crate::performance;
use crate::sketches::WindowSketch;
use crate::span_sketch::{EstimateSketch, HealthSketch, PerformanceSketch};
use crate::spec::{MonitorSpec, Task};
use crate::window_data::WindowRows;

/// What a window's evaluation needs.
pub struct WindowInput<'a> {
    /// The monitor.
    pub spec: &'a MonitorSpec,
    /// Its rows.
    pub rows: &'a WindowRows,
    /// Labels by request id.
    pub labels: &'a loopline_serving::log_reader::RequestMap<PostedLabel>,
    /// The reference profile, when there is one.
    pub reference: Option<&'a DatasetProfile>,
    /// The performance-estimation fit of the reference, when there is one.
    pub estimation: Option<&'a crate::estimation::EstimationReference>,
    /// Kinds of the requests that failed in the window's span (`bad_input`, `rejected`, `internal`...).
    pub failures: &'a [String],
}

/// A window's results.
#[derive(Debug)]
pub struct WindowOutcome {
    /// `ok`, `no_traffic`, `no_reference` or `problems`.
    pub status: &'static str,
    /// Named figures.
    pub figures: Figures,
    /// The drift report, when a reference was compared.
    pub report: Option<DriftReport>,
    /// Everything else worth keeping: versions, problems, performance, label coverage.
    pub details: Value,
    /// Mergeable summaries of the compared columns, when the reference was compared.
    pub sketch: Option<WindowSketch>,
    /// Labels joined.
    pub labels_seen: u64,
}

/// A class as text: integral numbers without a fraction (`1.0` and `1` are one class), strings as they are.
pub fn class_of(value: &Value) -> Option<String> {
    match value {
        Value::Number(number) => number.as_f64().map(number_class),
        Value::String(text) => Some(text.clone()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

fn number_class(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 9.0e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

/// A numeric column as 64-bit floats (text and booleans are not numbers: `None`).
fn numbers(column: &ArrayRef) -> Option<arrow_array::Float64Array> {
    if matches!(column.data_type(), DataType::Utf8 | DataType::Boolean) {
        return None;
    }
    let cast = arrow_cast::cast(column, &DataType::Float64).ok()?;
    Some(cast.as_primitive::<arrow_array::types::Float64Type>().clone())
}

/// Whether each row's class is `positive` (as [`class_of`] spells classes), without building the text of
/// every row: `None` for a row with no class.
fn positives<'a>(column: &'a ArrayRef, positive: &'a str) -> Option<Box<dyn Fn(usize) -> Option<bool> + 'a>> {
    match column.data_type() {
        DataType::Utf8 => {
            let text = column.as_string::<i32>();
            Some(Box::new(move |row| {
                text.is_valid(row).then(|| text.value(row) == positive)
            }))
        }
        DataType::Boolean => {
            let flags = column.as_boolean();
            let wanted = match positive {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            };
            Some(Box::new(move |row| {
                flags.is_valid(row).then(|| Some(flags.value(row)) == wanted)
            }))
        }
        _ => {
            let values = numbers(column)?;
            // The one number whose class text is `positive`, if any.
            let wanted = positive
                .parse::<f64>()
                .ok()
                .filter(|p| p.is_finite() && number_class(*p) == positive);
            Some(Box::new(move |row| {
                (values.is_valid(row) && values.value(row).is_finite()).then(|| Some(values.value(row)) == wanted)
            }))
        }
    }
}

/// A logged column's value at `row`, as JSON (numbers, text, booleans; null otherwise).
pub fn cell(column: &ArrayRef, row: usize) -> Value {
    if column.is_null(row) {
        return Value::Null;
    }
    use arrow_array::types::{Float32Type, Float64Type, Int32Type, Int64Type, UInt64Type};
    let number = |value: f64| serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number);
    match column.data_type() {
        DataType::Utf8 => json!(column.as_string::<i32>().value(row)),
        DataType::Boolean => json!(column.as_boolean().value(row)),
        DataType::Float64 => number(column.as_primitive::<Float64Type>().value(row)),
        DataType::Float32 => number(f64::from(column.as_primitive::<Float32Type>().value(row))),
        DataType::Int64 => json!(column.as_primitive::<Int64Type>().value(row)),
        DataType::Int32 => json!(column.as_primitive::<Int32Type>().value(row)),
        DataType::UInt64 => json!(column.as_primitive::<UInt64Type>().value(row)),
        _ => arrow_cast::cast(&column.slice(row, 1), &DataType::Float64)
            .ok()
            .and_then(|c| {
                let values = c.as_primitive::<arrow_array::types::Float64Type>();
                (!values.is_null(0)).then(|| values.value(0))
            })
            .and_then(|v| serde_json::Number::from_f64(v).map(Value::Number))
            .unwrap_or(Value::Null),
    }
}

/// The output column holding predictions (`output.<name>`).
fn output_column(spec: &MonitorSpec, rows: &WindowRows) -> Option<String> {
    if let Some(name) = &spec.output {
        return Some(format!("output.{name}"));
    }
    rows.batches.iter().find_map(|b| {
        b.schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .find(|n| n.starts_with("output."))
    })
}

/// The label of one row: the element at the row's position in its request when the label is a list (one per
/// row of the request, which may span two windows), else the label itself.
fn row_label(posted: &PostedLabel, row: usize) -> Option<Value> {
    // Most labels are one integer class: read those without the JSON parser (the same value it would give).
    if let Ok(class) = posted.label.parse::<i64>()
        && posted.label == class.to_string()
    {
        return Some(Value::from(class));
    }
    let label: Value = serde_json::from_str(&posted.label).ok()?;
    match label {
        Value::Array(items) => items
            .into_iter()
            .nth(row)
            .filter(|item| !item.is_null() && !item.is_array()),
        Value::Null | Value::Object(_) => None,
        single => Some(single),
    }
}

/// Predictions and labels aligned row by row (rows without a label left out).
#[derive(Default)]
struct Joined {
    labels: Vec<Value>,
    predictions: Vec<Value>,
    scores: Vec<Option<f64>>,
    newest_label_ms: Option<i64>,
}

/// A batch's request ids and the column `output`, when it has both.
pub(crate) fn ids_and_answers<'a>(
    batch: &'a RecordBatch,
    output: &str,
) -> Option<(&'a arrow_array::StringArray, &'a arrow_array::ArrayRef)> {
    Some((
        batch.column_by_name("request_id")?.as_string_opt::<i32>()?,
        batch.column_by_name(output)?,
    ))
}

fn join_labels(input: &WindowInput<'_>, output: &str) -> Joined {
    let probability = input.spec.probability_output.as_ref().map(|p| format!("output.{p}"));
    let mut joined = Joined::default();
    for batch in &input.rows.batches {
        let Some((ids, predictions)) = ids_and_answers(batch, output) else {
            continue;
        };
        let positions = batch
            .column_by_name("row")
            .and_then(|c| c.as_primitive_opt::<arrow_array::types::Int64Type>());
        let scores = probability.as_ref().and_then(|p| batch.column_by_name(p));
        for row in 0..batch.num_rows() {
            if !ids.is_valid(row) {
                continue;
            }
            let Some(posted) = input.labels.get(ids.value(row)) else {
                continue;
            };
            let position = positions.map(|p| p.value(row).max(0) as usize).unwrap_or(0);
            let Some(label) = row_label(posted, position) else {
                continue;
            };
            joined.labels.push(label);
            joined.predictions.push(cell(predictions, row));
            joined
                .scores
                .push(scores.map(|s| cell(s, row)).and_then(|v| v.as_f64()));
            joined.newest_label_ms = joined.newest_label_ms.max(Some(posted.timestamp_ms));
        }
    }
    joined
}

fn performance_figures(
    spec: &MonitorSpec,
    joined: &Joined,
    weight: f64,
    figures: &mut Figures,
) -> (Value, Option<PerformanceSketch>) {
    match spec.task {
        None => (Value::Null, None),
        Some(Task::Classification) => {
            let pairs: Vec<(String, String, Option<f64>)> = joined
                .labels
                .iter()
                .zip(&joined.predictions)
                .zip(&joined.scores)
                .filter_map(|((l, p), s)| Some((class_of(l)?, class_of(p)?, *s)))
                .collect();
            let scores: Option<Vec<f64>> = pairs.iter().map(|p| p.2).collect();
            let scores = scores.filter(|_| spec.probability_output.is_some());
            let sketch = PerformanceSketch::classification(&pairs, &spec.positive_label, weight, scores.is_some());
            let (labels, predicted): (Vec<String>, Vec<String>) = pairs.into_iter().map(|p| (p.0, p.1)).unzip();
            let Some(result) =
                performance::classification(&labels, &predicted, &spec.positive_label, scores.as_deref())
            else {
                return (Value::Null, None);
            };
            for (name, value) in [
                ("accuracy", Some(result.accuracy)),
                ("precision", Some(result.precision)),
                ("recall", Some(result.recall)),
                ("f1", Some(result.f1)),
                ("roc_auc", result.roc_auc),
                ("log_loss", result.log_loss),
            ] {
                if let Some(value) = value {
                    figures.insert(format!("performance.{name}"), value);
                }
            }
            (json!(result), sketch)
        }
        Some(Task::Regression) => {
            let pairs: Vec<(f64, f64)> = joined
                .labels
                .iter()
                .zip(&joined.predictions)
                .filter_map(|(l, p)| Some((l.as_f64()?, p.as_f64()?)))
                .filter(|(l, p)| l.is_finite() && p.is_finite())
                .collect();
            let labels: Vec<f64> = pairs.iter().map(|p| p.0).collect();
            let predicted: Vec<f64> = pairs.iter().map(|p| p.1).collect();
            let Some(result) = performance::regression(&labels, &predicted) else {
                return (Value::Null, None);
            };
            for (name, value) in [
                ("rmse", result.rmse),
                ("mae", result.mae),
                ("mape", result.mape),
                ("r2", result.r2),
            ] {
                figures.insert(format!("performance.{name}"), value);
            }
            (json!(result), PerformanceSketch::regression(&pairs, weight))
        }
    }
}

/// CBPE estimates of a classifier's accuracy and ROC AUC over every row of the window, labelled or not.
fn estimated_figures(input: &WindowInput<'_>, output: &str, figures: &mut Figures) -> (Value, Option<EstimateSketch>) {
    let (Some(fitted), Some(probability), false) = (
        input.estimation,
        input.spec.probability_output.as_ref(),
        input.spec.task == Some(Task::Regression),
    ) else {
        return (Value::Null, None);
    };
    let probability = format!("output.{probability}");
    let mut scores = Vec::with_capacity(input.rows.rows());
    let mut predicted = Vec::with_capacity(input.rows.rows());
    for batch in &input.rows.batches {
        let (Some(scored), Some(classes)) = (batch.column_by_name(&probability), batch.column_by_name(output)) else {
            continue;
        };
        let (Some(scored), Some(positive)) = (numbers(scored), positives(classes, &input.spec.positive_label)) else {
            continue;
        };
        for row in 0..batch.num_rows() {
            // Rows whose score or class is missing (or not a finite number) are left out, as `cell` would.
            let (Some(score), Some(is_positive)) = (scored.is_valid(row).then(|| scored.value(row)), positive(row))
            else {
                continue;
            };
            if score.is_finite() {
                scores.push(score);
                predicted.push(f64::from(u8::from(is_positive)));
            }
        }
    }
    let Some((accuracy, roc_auc)) = crate::estimation::estimate(fitted, &scores, &predicted) else {
        return (Value::Null, None);
    };
    figures.insert("estimated.accuracy".into(), accuracy.value);
    figures.insert("estimated.accuracy_lower".into(), accuracy.lower);
    figures.insert("estimated.accuracy_upper".into(), accuracy.upper);
    if let Some(auc) = roc_auc {
        figures.insert("estimated.roc_auc".into(), auc.value);
        figures.insert("estimated.roc_auc_lower".into(), auc.lower);
        figures.insert("estimated.roc_auc_upper".into(), auc.upper);
    }
    let weight = 1.0 / input.rows.rate;
    let sketch = EstimateSketch {
        rows: scores.len() as f64 * weight,
        expected_correct: accuracy.value * scores.len() as f64 * weight,
    };
    (
        json!({"accuracy": accuracy, "roc_auc": roc_auc, "rows": scores.len()}),
        Some(sketch),
    )
}

fn drift_options(spec: &MonitorSpec) -> DriftOptions {
    let choice = |method: &Option<String>, threshold: Option<f64>| Choice {
        method: method.as_deref().and_then(DriftMethod::from_name),
        threshold,
    };
    let mut options = DriftOptions {
        default_choice: choice(&spec.drift.method, spec.drift.threshold),
        column_choices: spec
            .drift
            .columns
            .iter()
            .map(|(column, c)| (column.clone(), choice(&c.method, c.threshold)))
            .collect(),
        ..DriftOptions::default()
    };
    if let Some(share) = spec.drift.drift_share {
        options.drift_share = share;
    }
    options
}

/// The logged type of each `input.<column>` (first file that has it).
fn logged_inputs(rows: &WindowRows) -> BTreeMap<String, DataType> {
    let mut types = BTreeMap::new();
    for batch in &rows.batches {
        for field in batch.schema().fields() {
            if let Some(column) = field.name().strip_prefix("input.") {
                types
                    .entry(column.to_string())
                    .or_insert_with(|| field.data_type().clone());
            }
        }
    }
    types
}

/// Collects the compared columns (renamed from their log names) into the drift report's current side.
fn current_data(rows: &WindowRows, wanted: &[(String, String, DataType)]) -> Result<CurrentData, String> {
    let fields: Vec<Field> = wanted
        .iter()
        .map(|(name, _, data_type)| Field::new(name, data_type.clone(), true))
        .collect();
    let schema = std::sync::Arc::new(Schema::new(fields.clone()));
    let mut collector = Collector::new(&fields);
    for batch in &rows.batches {
        let columns: Vec<ArrayRef> = wanted
            .iter()
            .map(|(name, logged, data_type)| match batch.column_by_name(logged) {
                Some(column) if column.data_type() == data_type => Ok(column.clone()),
                Some(column) => arrow_cast::cast(column, data_type).map_err(|e| {
                    format!(
                        "column '{name}' is logged as {} in one file and {data_type} in another: {e}",
                        column.data_type()
                    )
                }),
                None => Ok(new_null_array(data_type, batch.num_rows())),
            })
            .collect::<Result<_, String>>()?;
        let projected = RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())?;
        collector.push(&projected).map_err(|e| e.to_string())?;
    }
    let columns: Vec<(String, DataType, ColumnValues)> = collector
        .finish()
        .into_iter()
        .map(|(field, values)| (field.name().clone(), field.data_type().clone(), values))
        .collect();
    Ok(CurrentData {
        source: "live traffic".to_string(),
        rows: rows.rows() as u64,
        schema: wanted.iter().map(|(n, _, t)| (n.clone(), t.clone())).collect(),
        columns,
        duplicate_rows: None,
    })
}

/// The drift report of `current` (live rows, or a stand-in merged from window sketches) against the reference.
pub(crate) fn report_against(
    reference: &DatasetProfile,
    current: &CurrentData,
    spec: &MonitorSpec,
) -> Result<DriftReport, Vec<String>> {
    let names: Vec<String> = current.schema.iter().map(|(name, _)| name.clone()).collect();
    let mut reference_data = ReferenceData::of_profile(reference, Some(&names));
    reference_data.schema.retain(|(name, _)| names.contains(name));
    build_report(&reference_data, current, &drift_options(spec)).map_err(|e| e.problems)
}

/// Drift and quality figures from the reference comparison; problems that prevent it are returned.
fn compare_with_reference(
    input: &WindowInput<'_>,
    reference: &DatasetProfile,
    output: Option<&str>,
    figures: &mut Figures,
    notes: &mut Vec<String>,
) -> Result<(DriftReport, WindowSketch), Vec<String>> {
    let spec = input.spec;
    let logged = logged_inputs(input.rows);
    let mut problems = Vec::new();
    let features: Vec<String> = match &spec.columns {
        Some(columns) => columns.clone(),
        None => reference
            .columns
            .iter()
            .map(|c| c.name.clone())
            .filter(|n| n != &spec.label_column && n != &spec.prediction_column && logged.contains_key(n))
            .collect(),
    };
    let mut wanted: Vec<(String, String, DataType)> = Vec::new();
    for column in &features {
        let Some(reference_column) = reference.column(column) else {
            problems.push(format!("column '{column}' is not in the reference profile"));
            continue;
        };
        match logged.get(column) {
            Some(data_type) => wanted.push((column.clone(), format!("input.{column}"), data_type.clone())),
            None => wanted.push((
                column.clone(),
                format!("input.{column}"),
                reference_column.data_type.clone(),
            )),
        }
    }
    let prediction_compared = match (output, reference.column(&spec.prediction_column)) {
        (Some(output), Some(_)) => {
            let data_type = input
                .rows
                .batches
                .iter()
                .find_map(|b| b.column_by_name(output).map(|c| c.data_type().clone()));
            match data_type {
                Some(data_type) => {
                    wanted.push((spec.prediction_column.clone(), output.to_string(), data_type));
                    true
                }
                None => false,
            }
        }
        _ => false,
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    // A column with no values at all in the window (a dead upstream feature) cannot be compared: it is named,
    // counted as wholly missing, and the other columns are still compared.
    wanted.retain(|(name, logged, _)| {
        let empty = input
            .rows
            .batches
            .iter()
            .all(|batch| batch.column_by_name(logged).is_none_or(|c| c.null_count() == c.len()));
        if empty {
            notes.push(format!(
                "column '{name}' has no values in this window and is not compared"
            ));
            figures.insert(format!("quality.missing_share.{name}"), 1.0);
        }
        !empty
    });
    let prediction_compared = prediction_compared && wanted.iter().any(|w| w.0 == spec.prediction_column);
    let compare = |wanted: &[(String, String, DataType)]| -> Result<(DriftReport, WindowSketch), Vec<String>> {
        let current = current_data(input.rows, wanted).map_err(|e| vec![e])?;
        let report = report_against(reference, &current, spec)?;
        // Each kept row stands for 1 / rate rows (a power of two).
        Ok((report, WindowSketch::of_current(&current, 1.0 / input.rows.rate)))
    };
    // The prediction is compared when it can be; a prediction that cannot (the reference holds probabilities,
    // the model answers classes) costs only the prediction-drift figures, never the features'.
    let ((mut report, sketch), prediction_compared) = match compare(&wanted) {
        Ok(compared) => (compared, prediction_compared),
        Err(problems) if prediction_compared => {
            wanted.pop();
            notes.extend(
                problems
                    .into_iter()
                    .map(|p| format!("prediction drift not tested: {p}")),
            );
            (compare(&wanted)?, false)
        }
        Err(problems) => return Err(problems),
    };
    let feature_reports: Vec<_> = report
        .columns
        .iter()
        .filter(|c| !(prediction_compared && c.name == spec.prediction_column))
        .collect();
    let tested = feature_reports.iter().filter(|c| c.score.is_some()).count();
    let drifted = feature_reports.iter().filter(|c| c.drifted).count();
    let share = if tested == 0 {
        0.0
    } else {
        drifted as f64 / tested as f64
    };
    figures.insert("drift.share".into(), share);
    figures.insert("drift.columns_drifted".into(), drifted as f64);
    figures.insert(
        "drift.dataset".into(),
        f64::from(u8::from(tested > 0 && share >= report.drift_share)),
    );
    // The window's report tells the same verdict as its figures: the share is the features' (the prediction's
    // drift is its own figure and its own row in the table).
    report.tested_columns = tested;
    report.drifted_columns = drifted;
    report.share_of_drifted_columns = share;
    report.dataset_drift = tested > 0 && share >= report.drift_share;
    for column in &report.columns {
        let is_prediction = prediction_compared && column.name == spec.prediction_column;
        if let Some(score) = column.score {
            let (score_name, detected_name) = if is_prediction {
                (
                    "prediction_drift.score".to_string(),
                    "prediction_drift.detected".to_string(),
                )
            } else {
                (
                    format!("drift.score.{}", column.name),
                    format!("drift.detected.{}", column.name),
                )
            };
            figures.insert(score_name, score);
            figures.insert(detected_name, f64::from(u8::from(column.drifted)));
        }
        if !is_prediction && column.current.rows > 0 {
            figures.insert(
                format!("quality.missing_share.{}", column.name),
                column.current.missing as f64 / column.current.rows as f64,
            );
        }
    }
    figures.insert("quality.findings".into(), report.findings.len() as f64);
    for check in crate::figures::QUALITY_CHECKS {
        let count = report.findings.iter().filter(|f| f.check == check).count();
        figures.insert(format!("quality.{check}"), count as f64);
    }
    Ok((report, sketch))
}

/// The value at probability `q` of ascending `sorted`, interpolated linearly (numpy's default).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let position = q * (sorted.len() - 1) as f64;
    let (low, high) = (position.floor() as usize, position.ceil() as usize);
    sorted[low] + (sorted[high] - sorted[low]) * (position - low as f64)
}

/// Serving health: failures by kind, the error rate, and latency quantiles (one latency per request).
fn health_figures(input: &WindowInput<'_>, requests: usize, figures: &mut Figures) -> HealthSketch {
    let count = |kinds: &[&str]| input.failures.iter().filter(|k| kinds.contains(&k.as_str())).count() as f64;
    let failed = count(&["internal", "unavailable", "timeout"]);
    figures.insert("health.failures".into(), failed);
    figures.insert("health.bad_inputs".into(), count(&["bad_input"]));
    figures.insert("health.rejected".into(), count(&["rejected"]));
    let mut health = HealthSketch {
        requests: requests as f64,
        failures: failed,
        bad_inputs: count(&["bad_input"]),
        rejected: count(&["rejected"]),
        other_failures: input.failures.len() as f64 - failed - count(&["bad_input"]) - count(&["rejected"]),
        latency_ms: None,
    };
    let asked = requests as f64 + input.failures.len() as f64;
    if asked > 0.0 {
        figures.insert("health.error_rate".into(), failed / asked);
    }
    let mut latencies: Vec<f64> = Vec::with_capacity(input.rows.rows());
    for batch in &input.rows.batches {
        let (Some(latency), positions) = (
            batch
                .column_by_name("latency_ms")
                .and_then(|c| c.as_primitive_opt::<arrow_array::types::Float64Type>()),
            batch
                .column_by_name("row")
                .and_then(|c| c.as_primitive_opt::<arrow_array::types::Int64Type>()),
        ) else {
            continue;
        };
        for row in 0..batch.num_rows() {
            let first_of_request = positions.is_none_or(|p| p.is_valid(row) && p.value(row) == 0);
            if first_of_request && latency.is_valid(row) && latency.value(row).is_finite() {
                latencies.push(latency.value(row));
            }
        }
    }
    if latencies.is_empty() {
        return health;
    }
    latencies.sort_unstable_by(f64::total_cmp);
    for (name, q) in [("p50", 0.5), ("p95", 0.95), ("p99", 0.99)] {
        figures.insert(format!("health.latency_{name}_ms"), quantile(&latencies, q));
    }
    health.latency_ms = crate::sketches::Digest::of_sorted(&latencies, 1.0 / input.rows.rate);
    health
}

/// Evaluates one window, and each of its slices.
pub fn evaluate(input: &WindowInput<'_>) -> WindowOutcome {
    let mut outcome = evaluate_whole(input);
    let sliced = crate::slices::slice_figures(input, &mut outcome.figures);
    if !sliced.is_null() {
        outcome.details["slices"] = sliced;
    }
    outcome
}

fn evaluate_whole(input: &WindowInput<'_>) -> WindowOutcome {
    let rows = input.rows.seen_rows as usize;
    let mut figures = Figures::new();
    figures.insert("rows".into(), rows as f64);
    let requests = input.rows.seen_requests as usize;
    figures.insert("requests".into(), requests as f64);
    let health = health_figures(input, requests, &mut figures);
    let unreadable = &input.rows.unreadable;
    figures.insert("health.unreadable_files".into(), unreadable.len() as f64);
    if rows == 0 {
        figures.insert("labels".into(), 0.0);
        let (status, message) = if unreadable.is_empty() {
            ("no_traffic", "no predictions were logged in this window")
        } else {
            (
                "problems",
                "no readable predictions: every log file of this window was left out",
            )
        };
        return WindowOutcome {
            status,
            figures,
            report: None,
            sketch: None,
            details: json!({"message": message, "unreadable_files": unreadable}),
            labels_seen: 0,
        };
    }
    let output = output_column(input.spec, input.rows);
    let joined = output.as_deref().map(|o| join_labels(input, o)).unwrap_or_default();
    figures.insert("labels".into(), joined.labels.len() as f64);
    let weight = 1.0 / input.rows.rate;
    let (performance, performance_sketch) = performance_figures(input.spec, &joined, weight, &mut figures);
    let (estimated, estimate_sketch) = output
        .as_deref()
        .map(|o| estimated_figures(input, o, &mut figures))
        .unwrap_or((Value::Null, None));
    // What merges into longer spans; the compared columns join it below when there is a comparison.
    let mut sketch = WindowSketch {
        health,
        performance: performance_sketch,
        estimated: estimate_sketch,
        ..WindowSketch::empty(weight)
    };
    let expectations = crate::expectations::run_suite(input.spec, input.rows, output.as_deref(), &mut figures);
    let versions = input.rows.version_counts();
    let mut details = json!({
        "versions": versions,
        "output": output,
        "performance": performance,
        "estimated_performance": estimated,
        "expectations": expectations,
        "labels_through_ms": joined.newest_label_ms,
        "span": input.rows.span.map(|(low, high)| json!({"first_ms": low, "last_ms": high})),
        "sample": json!({"rows": input.rows.rows(), "rate": input.rows.rate}),
    });
    if !unreadable.is_empty() {
        // Damaged log files cost their own rows, and say so.
        details["unreadable_files"] = json!(unreadable);
    }
    if !input.spec.drift.enabled {
        details["message"] = json!("drift and quality are not checked by this monitor (drift.enabled is false)");
        return WindowOutcome {
            status: "ok",
            figures,
            report: None,
            sketch: Some(sketch),
            details,
            labels_seen: joined.labels.len() as u64,
        };
    }
    let Some(reference) = input.reference else {
        details["message"] =
            json!("no reference profile for the version that served; drift and quality were not checked");
        return WindowOutcome {
            status: "no_reference",
            figures,
            report: None,
            sketch: Some(sketch),
            details,
            labels_seen: joined.labels.len() as u64,
        };
    };
    let mut notes = Vec::new();
    let compared = compare_with_reference(input, reference, output.as_deref(), &mut figures, &mut notes);
    if !notes.is_empty() {
        details["notes"] = json!(notes);
    }
    match compared {
        Ok((report, compared)) => {
            sketch.columns = compared.columns;
            details["findings"] = json!(report.findings);
            WindowOutcome {
                status: "ok",
                figures,
                report: Some(report),
                sketch: Some(sketch),
                details,
                labels_seen: joined.labels.len() as u64,
            }
        }
        Err(problems) => {
            figures.insert("quality.problems".into(), problems.len() as f64);
            details["problems"] = json!(problems);
            WindowOutcome {
                status: "problems",
                figures,
                report: None,
                sketch: Some(sketch),
                details,
                labels_seen: joined.labels.len() as u64,
            }
        }
    }
}

#[cfg(test)]
mod tests;
