//! Slices: a window's figures again for each of the most frequent values of chosen input columns, so a drift or
//! an accuracy drop confined to one segment (one country, one plan) shows even when the whole window looks fine.
//! A slice's figures are named `slice[<column>=<value>].<figure>`.

use std::collections::HashMap;

use arrow_array::{BooleanArray, RecordBatch};
use serde_json::{Value, json};

use crate::evaluate::{WindowInput, cell, class_of, evaluate};
use crate::figures::Figures;
use crate::window_data::WindowRows;

/// The value of `column` at `row` as a slice names it.
fn slice_value(batch: &RecordBatch, column: &str, row: usize) -> Option<String> {
    batch.column_by_name(column).and_then(|c| class_of(&cell(c, row)))
}

/// The most frequent values of `column` in the window, most frequent first (ties by value).
fn top_values(rows: &WindowRows, column: &str, limit: usize) -> Vec<(String, u64)> {
    let mut counts: HashMap<String, u64> = HashMap::new();
    for batch in &rows.batches {
        for row in 0..batch.num_rows() {
            if let Some(value) = slice_value(batch, column, row) {
                *counts.entry(value).or_insert(0) += 1;
            }
        }
    }
    let mut sorted: Vec<(String, u64)> = counts.into_iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    sorted.truncate(limit);
    sorted
}

fn only(rows: &WindowRows, column: &str, value: &str) -> WindowRows {
    let mut batches = Vec::new();
    for batch in &rows.batches {
        let mask: BooleanArray = (0..batch.num_rows())
            .map(|row| Some(slice_value(batch, column, row).as_deref() == Some(value)))
            .collect();
        if let Ok(filtered) = arrow_select::filter::filter_record_batch(batch, &mask)
            && filtered.num_rows() > 0
        {
            batches.push(filtered);
        }
    }
    WindowRows::of(batches, rows.span)
}

/// Adds every slice's figures to `figures` and returns what was sliced, for the window's details.
pub fn slice_figures(input: &WindowInput<'_>, figures: &mut Figures) -> Value {
    if input.spec.slices.is_empty() || input.rows.rows() == 0 {
        return Value::Null;
    }
    let mut plain = input.spec.clone();
    plain.slices.clear();
    let mut described = serde_json::Map::new();
    for column in &input.spec.slices {
        let logged = format!("input.{column}");
        let values = top_values(input.rows, &logged, input.spec.slice_values);
        let mut shown = Vec::new();
        for (value, count) in values {
            let subset = only(input.rows, &logged, &value);
            let outcome = evaluate(&WindowInput {
                spec: &plain,
                rows: &subset,
                labels: input.labels,
                reference: input.reference,
                estimation: input.estimation,
                failures: &[],
            });
            for (figure, number) in outcome.figures.iter().filter(|(f, _)| crate::figures::is_sliced(f)) {
                figures.insert(format!("slice[{column}={value}].{figure}"), *number);
            }
            shown.push(json!({"value": value, "rows": count, "status": outcome.status}));
        }
        described.insert(column.clone(), Value::Array(shown));
    }
    Value::Object(described)
}
