//! A model run over an evaluation table: its predictions beside the truth (as [`Outcomes`]), the slice
//! and protected-attribute columns, and one-row latencies as the runtime measures them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;
use loopline_model_runtime_api::Model;
use loopline_model_runtime_api::tensor::{batch_from_tensors, tensors_from_batch};
use loopline_tabular::TableSource;

use super::metrics::Outcomes;
use super::policy::{GatePolicy, Task};

/// Rows timed one at a time for the latency figures.
const LATENCY_ROWS: usize = 100;
/// Distinct integral target values up to which a numeric target is taken as classes.
const MAX_INFERRED_CLASSES: usize = 20;

/// A loaded model with what the gate needs to know about it.
#[derive(Clone)]
pub struct GateModel {
    /// The model.
    pub model: Arc<dyn Model>,
    /// The columns it takes, when its signature names them (else every column but the target and the excluded).
    pub input_columns: Option<Vec<String>>,
    /// Its files' total size.
    pub size_bytes: u64,
    /// Whatever must live as long as the model (its downloaded directory).
    pub holder: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

/// What a model did on the table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableEvaluation {
    /// Predictions and truth.
    pub outcomes: Outcomes,
    /// Slice and attribute columns, as text, by name.
    pub side: BTreeMap<String, Vec<String>>,
    /// One-row latencies, milliseconds.
    pub latencies_ms: Vec<f64>,
    /// The task.
    pub task: Task,
}

/// A cell as text: numbers without a fractional part print as integers, so `1`, `1.0` and `"1"` agree.
fn cell(array: &ArrayRef, row: usize) -> String {
    if array.is_null(row) {
        return String::new();
    }
    if let Some(values) = array.as_any().downcast_ref::<arrow_array::Float64Array>() {
        let v = values.value(row);
        return if v.fract() == 0.0 && v.abs() < 1e15 {
            format!("{}", v as i64)
        } else {
            v.to_string()
        };
    }
    arrow_cast::display::array_value_to_string(array, row).unwrap_or_default()
}

fn numbers(array: &ArrayRef) -> Result<Vec<f64>, String> {
    let cast = arrow_cast::cast(array, &DataType::Float64).map_err(|e| e.to_string())?;
    let values = cast
        .as_any()
        .downcast_ref::<arrow_array::Float64Array>()
        .ok_or("not numbers")?;
    Ok((0..values.len())
        .map(|i| if values.is_null(i) { f64::NAN } else { values.value(i) })
        .collect())
}

fn texts(array: &ArrayRef) -> Vec<String> {
    let cast = arrow_cast::cast(array, &DataType::Float64)
        .ok()
        .filter(|_| array.data_type().is_numeric());
    let source = cast.as_ref().unwrap_or(array);
    (0..source.len()).map(|row| cell(source, row)).collect()
}

/// The task a target implies when the policy does not say.
fn infer_task(target: &ArrayRef) -> Task {
    if !target.data_type().is_numeric() {
        return Task::Classification;
    }
    let values = numbers(target).unwrap_or_default();
    let mut distinct: Vec<i64> = Vec::new();
    for v in values.iter().filter(|v| !v.is_nan()) {
        if v.fract() != 0.0 {
            return Task::Regression;
        }
        if !distinct.contains(&(*v as i64)) {
            distinct.push(*v as i64);
            if distinct.len() > MAX_INFERRED_CLASSES {
                return Task::Regression;
            }
        }
    }
    Task::Classification
}

/// The positive class among `classes` (sorted): the policy's, else `1`, `true` or `yes`, else the last.
fn positive_class(policy: &GatePolicy, classes: &[String]) -> Option<String> {
    if let Some(positive) = &policy.positive_label {
        return Some(positive.clone());
    }
    if classes.len() != 2 {
        return None;
    }
    ["1", "true", "True", "yes"]
        .iter()
        .find(|c| classes.iter().any(|k| k == *c))
        .map(|c| c.to_string())
        .or_else(|| classes.last().cloned())
}

/// Runs `model` over the table.
pub fn evaluate(model: &GateModel, source: &TableSource, policy: &GatePolicy) -> Result<TableEvaluation, String> {
    let schema = source.schema();
    for column in std::iter::once(&policy.target).chain(policy.side_columns().iter()) {
        if schema.index_of(column).is_err() {
            return Err(format!("the evaluation data has no column '{column}'"));
        }
    }
    let inputs: Vec<String> = match &model.input_columns {
        Some(columns) => columns.clone(),
        None => schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|n| n != &policy.target && !policy.exclude.contains(n))
            .collect(),
    };
    for column in &inputs {
        if schema.index_of(column).is_err() {
            return Err(format!(
                "the model takes a column '{column}' the evaluation data does not have"
            ));
        }
    }
    let mut truth_cells: Vec<ArrayRef> = Vec::new();
    let mut predicted: Vec<RecordBatch> = Vec::new();
    let mut side: BTreeMap<String, Vec<String>> = policy.side_columns().into_iter().map(|c| (c, Vec::new())).collect();
    let mut latencies_ms = Vec::new();
    for batch in source.batches(None).map_err(|e| e.to_string())? {
        let batch = batch.map_err(|e| e.to_string())?;
        let features = batch
            .project(
                &inputs
                    .iter()
                    .map(|c| batch.schema().index_of(c).unwrap_or(0))
                    .collect::<Vec<_>>(),
            )
            .map_err(|e| e.to_string())?;
        let tensors = tensors_from_batch(&features)?;
        let outputs = model
            .model
            .predict(&tensors)
            .map_err(|e| format!("the model failed to predict: {e}"))?;
        predicted.push(batch_from_tensors(&outputs)?);
        let timed = LATENCY_ROWS.saturating_sub(latencies_ms.len()).min(features.num_rows());
        for row in 0..timed {
            let single = tensors_from_batch(&features.slice(row, 1))?;
            let started = Instant::now();
            model
                .model
                .predict(&single)
                .map_err(|e| format!("the model failed to predict: {e}"))?;
            latencies_ms.push(started.elapsed().as_secs_f64() * 1_000.0);
        }
        truth_cells.push(
            batch
                .column(batch.schema().index_of(&policy.target).unwrap_or(0))
                .clone(),
        );
        for (column, values) in side.iter_mut() {
            let array = batch.column(batch.schema().index_of(column).unwrap_or(0));
            values.extend(texts(array));
        }
    }
    let truth = arrow_select_concat(&truth_cells)?;
    let task = policy.task.unwrap_or_else(|| infer_task(&truth));
    let outcomes = match task {
        Task::Regression => {
            let truth = numbers(&truth)?;
            let mut values = Vec::new();
            for batch in &predicted {
                values.extend(numbers(batch.column(0))?);
            }
            Outcomes::Values {
                truth,
                predicted: values,
            }
        }
        Task::Classification => {
            let truth = texts(&truth);
            let mut classes: Vec<String> = truth.clone();
            classes.sort();
            classes.dedup();
            classes.retain(|c| !c.is_empty());
            if classes.is_empty() {
                return Err(format!("the target column '{}' holds no values", policy.target));
            }
            if let Some(positive) = &policy.positive_label
                && !classes.contains(positive)
            {
                return Err(format!(
                    "positive_label '{positive}' is not a value of '{}' (it has {})",
                    policy.target,
                    shown(&classes)
                ));
            }
            let positive = positive_class(policy, &classes);
            let (labels, scores) = class_predictions(&predicted, &classes, positive.as_deref())?;
            // Answers that share no value with the truth mean the wrong column (or a model of something else),
            // not a model that is always wrong: say so rather than report an accuracy of 0.
            if !labels.is_empty() && !labels.iter().any(|l| classes.binary_search(l).is_ok()) {
                let mut answered: Vec<String> = labels.clone();
                answered.sort();
                answered.dedup();
                return Err(format!(
                    "the model's answers ({}) share no value with the target column '{}' ({}); is it the column \
                     the model predicts?",
                    shown(&answered),
                    policy.target,
                    shown(&classes)
                ));
            }
            Outcomes::Classes {
                truth,
                predicted: labels,
                scores,
                positive,
            }
        }
    };
    Ok(TableEvaluation {
        outcomes,
        side,
        latencies_ms,
        task,
    })
}

/// A few values, for a message.
fn shown(values: &[String]) -> String {
    let mut listed: Vec<String> = values.iter().take(5).map(|v| format!("'{v}'")).collect();
    if values.len() > 5 {
        listed.push(format!("and {} more", values.len() - 5));
    }
    listed.join(", ")
}

fn arrow_select_concat(arrays: &[ArrayRef]) -> Result<ArrayRef, String> {
    let refs: Vec<&dyn Array> = arrays.iter().map(|a| a.as_ref()).collect();
    if refs.is_empty() {
        return Err("the evaluation data has no rows".into());
    }
    arrow_select::concat::concat(&refs).map_err(|e| e.to_string())
}

/// Labels (and the positive class's score) from a model's outputs: labels as they are (numbers or text);
/// one column of fractions as the positive class's probability; one column per class as probabilities.
fn class_predictions(
    batches: &[RecordBatch],
    classes: &[String],
    positive: Option<&str>,
) -> Result<(Vec<String>, Option<Vec<f64>>), String> {
    let mut labels = Vec::new();
    let mut scores: Vec<f64> = Vec::new();
    let mut with_scores = true;
    for batch in batches {
        let width = batch.num_columns();
        let first = batch.column(0);
        if width >= 2 && width == classes.len() && first.data_type().is_floating() {
            let columns: Vec<Vec<f64>> = (0..width).map(|c| numbers(batch.column(c))).collect::<Result<_, _>>()?;
            let probabilities = (0..batch.num_rows()).all(|row| {
                let cells: Vec<f64> = columns.iter().map(|c| c[row]).collect();
                cells.iter().all(|p| (0.0..=1.0).contains(p)) && (cells.iter().sum::<f64>() - 1.0).abs() < 1e-3
            });
            if !probabilities {
                return Err(format!(
                    "the model answers {width} numbers per row that are not class probabilities (each in [0, 1], \
                     summing to 1) for the {} classes of the target",
                    classes.len()
                ));
            }
            let positive_index = positive.and_then(|p| classes.iter().position(|c| c == p));
            let cell = |column: usize, row: usize| columns[column][row];
            (0..batch.num_rows()).for_each(|row| {
                let best = (0..width)
                    .max_by(|a, b| cell(*a, row).total_cmp(&cell(*b, row)))
                    .unwrap_or(0);
                labels.push(classes[best].clone());
                scores.push(positive_index.map_or(f64::NAN, |i| cell(i, row)));
            });
            with_scores &= positive_index.is_some();
        } else if width > 1 {
            return Err(format!(
                "the model answers {width} columns per row; a classifier's answer is a label, one score, or one \
                 probability per class ({} classes)",
                classes.len()
            ));
        } else if first.data_type().is_floating() {
            let values = numbers(first)?;
            let fractional = values.iter().any(|v| v.fract() != 0.0);
            match (fractional, positive, classes.len()) {
                (true, Some(positive), 2) => {
                    let negative = classes.iter().find(|c| *c != positive).cloned().unwrap_or_default();
                    for v in values {
                        labels.push(if v >= 0.5 {
                            positive.to_string()
                        } else {
                            negative.clone()
                        });
                        scores.push(v);
                    }
                }
                _ => {
                    labels.extend(texts(first));
                    with_scores = false;
                }
            }
        } else {
            labels.extend(texts(first));
            with_scores = false;
        }
    }
    Ok((labels, with_scores.then_some(scores).filter(|s| !s.is_empty())))
}
