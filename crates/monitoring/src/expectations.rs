//! A Great Expectations suite run on each window's live inputs (the `data-validation` crate, GX's semantics and
//! result shape): the logged inputs under their own names, the prediction under the reference's prediction
//! column name.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, new_null_array};
use arrow_schema::{DataType, Field, Schema};
use loopline_data_validation::{ExpectationSuite, Validator};
use serde_json::{Value, json};

use crate::figures::Figures;
use crate::spec::MonitorSpec;
use crate::window_data::WindowRows;

/// Parses a monitor's suite and checks every expectation's type and arguments.
pub fn check_suite(suite: &Value) -> Result<ExpectationSuite, String> {
    let parsed = ExpectationSuite::from_json(&suite.to_string()).map_err(|e| e.to_string())?;
    Validator::new(&parsed, &Schema::empty()).map_err(|e| e.to_string())?;
    Ok(parsed)
}

/// The window's inputs (and prediction) under the names a suite uses, every batch in one schema.
fn renamed(spec: &MonitorSpec, rows: &WindowRows, output: Option<&str>) -> (Arc<Schema>, Vec<RecordBatch>) {
    let mut columns: BTreeMap<String, (String, DataType)> = BTreeMap::new();
    for batch in &rows.batches {
        for field in batch.schema().fields() {
            let name = match field.name().strip_prefix("input.") {
                Some(column) => column.to_string(),
                None if Some(field.name().as_str()) == output => spec.prediction_column.clone(),
                None => continue,
            };
            columns
                .entry(name)
                .or_insert_with(|| (field.name().clone(), field.data_type().clone()));
        }
    }
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|(name, (_, data_type))| Field::new(name, data_type.clone(), true))
            .collect::<Vec<_>>(),
    ));
    let batches = rows
        .batches
        .iter()
        .filter_map(|batch| {
            let arrays: Vec<ArrayRef> = columns
                .values()
                .map(|(logged, data_type)| match batch.column_by_name(logged) {
                    Some(column) if column.data_type() == data_type => column.clone(),
                    Some(column) => arrow_cast::cast(column, data_type)
                        .unwrap_or_else(|_| new_null_array(data_type, batch.num_rows())),
                    None => new_null_array(data_type, batch.num_rows()),
                })
                .collect();
            RecordBatch::try_new(schema.clone(), arrays).ok()
        })
        .collect();
    (schema, batches)
}

/// Runs the suite on the window; adds `quality.expectations_failed` and `quality.expectations_success_percent`.
pub fn run_suite(spec: &MonitorSpec, rows: &WindowRows, output: Option<&str>, figures: &mut Figures) -> Value {
    let Some(suite) = &spec.expectations else {
        return Value::Null;
    };
    let Ok(suite) = ExpectationSuite::from_json(&suite.to_string()) else {
        return json!({"error": "the suite no longer parses"});
    };
    let (schema, batches) = renamed(spec, rows, output);
    let mut validator = match Validator::new(&suite, &schema) {
        Ok(validator) => validator,
        Err(error) => return json!({"error": error.to_string()}),
    };
    for batch in &batches {
        if let Err(error) = validator.push(batch) {
            return json!({"error": error.to_string()});
        }
    }
    let result = validator.finish(serde_json::Map::new());
    figures.insert(
        "quality.expectations_failed".into(),
        result.statistics.unsuccessful_expectations as f64,
    );
    if let Some(percent) = result.statistics.success_percent {
        figures.insert("quality.expectations_success_percent".into(), percent);
    }
    let failed: Vec<Value> = result
        .results
        .iter()
        .filter(|r| !r.success)
        .map(|r| json!({"expectation": r.expectation_config, "result": r.result}))
        .collect();
    json!({"suite": result.suite_name, "success": result.success, "statistics": result.statistics, "failed": failed})
}
