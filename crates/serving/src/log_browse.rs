//! The newest rows of a model's prediction log, with the labels posted for them:
//! `GET /api/loopline/v1/predictions?model=NAME&limit=N`, which the web UI's prediction-log page shows.
//! Reads from the newest hour backwards and stops once it has enough rows, so a long log costs no more
//! than its last files.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, TimestampMillisecondType};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use loopline_artifact_store::ArtifactStore;
use serde_json::{Map, Value, json};

use crate::log_reader::{self, RequestSet};

/// The most rows one answer holds.
pub const MAX_ROWS: usize = 500;
/// Rows when the caller names no limit.
const DEFAULT_ROWS: usize = 50;
/// The most log files read for one answer (the newest).
const MAX_FILES: usize = 64;
/// Input and output columns shown per row; wider rows say they were cut.
const MAX_COLUMNS: usize = 100;
/// The longest text shown for one value.
const MAX_VALUE_CHARS: usize = 500;

/// The route.
pub fn routes(store: Arc<dyn ArtifactStore>) -> Router {
    Router::new()
        .route("/api/loopline/v1/predictions", get(browse))
        .with_state(store)
}

fn refused(status: StatusCode, message: impl std::fmt::Display) -> Response {
    let code = if status == StatusCode::BAD_REQUEST {
        "INVALID_PARAMETER_VALUE"
    } else {
        "TEMPORARILY_UNAVAILABLE"
    };
    (
        status,
        axum::Json(json!({"error_code": code, "message": message.to_string()})),
    )
        .into_response()
}

async fn browse(
    State(store): State<Arc<dyn ArtifactStore>>,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let Some(model) = query.get("model").filter(|m| !m.is_empty()) else {
        return refused(StatusCode::BAD_REQUEST, "name the model: ?model=NAME");
    };
    let limit = match query.get("limit").map(|l| l.parse::<usize>()) {
        None => DEFAULT_ROWS,
        Some(Ok(limit)) if (1..=MAX_ROWS).contains(&limit) => limit,
        Some(_) => {
            return refused(
                StatusCode::BAD_REQUEST,
                format!("'limit' must be a whole number from 1 to {MAX_ROWS}"),
            );
        }
    };
    match newest(store.as_ref(), model, limit).await {
        Ok(answer) => axum::Json(answer).into_response(),
        Err(message) => refused(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("reading the prediction log of '{model}': {message}"),
        ),
    }
}

/// The newest `limit` rows of `model`'s log, newest first, with their labels.
pub async fn newest(store: &dyn ArtifactStore, model: &str, limit: usize) -> Result<Value, String> {
    let prefix = log_reader::predictions_prefix(model);
    let mut hours = log_reader::log_hours(store, &prefix).await?;
    hours.sort_unstable_by(|a, b| b.cmp(a));
    let mut rows: Vec<Value> = Vec::new();
    let (mut files_read, mut oldest_hour) = (0usize, None);
    let mut unreadable: Vec<String> = Vec::new();
    'hours: for hour in &hours {
        let files = log_reader::log_files(store, &prefix, Some(hour), Some(hour)).await?;
        for file in files.iter().rev() {
            if rows.len() >= limit || files_read >= MAX_FILES {
                break 'hours;
            }
            files_read += 1;
            oldest_hour = Some(hour.clone());
            // A file that is not a readable log file is counted and passed over: one bad file must not hide
            // the rest of the model's log.
            let batches = match log_reader::read_log_part(store, &file.path, None).await {
                Ok(batches) => batches,
                Err(log_reader::LogReadError::Unreadable(message)) => {
                    unreadable.push(message);
                    continue;
                }
                Err(log_reader::LogReadError::Storage(message)) => return Err(message),
            };
            for batch in batches.iter().rev() {
                for row in (0..batch.num_rows()).rev() {
                    if rows.len() >= limit {
                        break;
                    }
                    rows.push(row_json(batch, row));
                }
            }
        }
    }
    let wanted: RequestSet = rows
        .iter()
        .filter_map(|r| r["request_id"].as_str().map(str::to_string))
        .collect();
    if !wanted.is_empty() {
        let labels = log_reader::posted_labels(store, (oldest_hour.as_deref(), None), Some(&wanted)).await?;
        for row in &mut rows {
            if let Some(posted) = row["request_id"].as_str().and_then(|id| labels.get(id)) {
                row["label"] = label_json(&posted.label);
                row["label_time_ms"] = json!(posted.timestamp_ms);
            }
        }
    }
    Ok(json!({
        "model": model,
        "predictions": rows,
        "files_read": files_read,
        "more": files_read >= MAX_FILES,
        "unreadable_files": unreadable.iter().take(10).collect::<Vec<_>>(),
    }))
}

/// A posted label as JSON (as it was posted), or as text cut to [`MAX_VALUE_CHARS`] when it is long.
fn label_json(label: &str) -> Value {
    if label.len() > MAX_VALUE_CHARS {
        return json!(clip(label));
    }
    serde_json::from_str(label).unwrap_or_else(|_| json!(label))
}

/// One logged row: its fixed columns, then inputs and outputs by name.
fn row_json(batch: &RecordBatch, row: usize) -> Value {
    let mut out = Map::new();
    let (mut inputs, mut outputs) = (Map::new(), Map::new());
    let mut cut = false;
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        let name = field.name();
        if let Some(input) = name.strip_prefix("input.") {
            if inputs.len() < MAX_COLUMNS {
                inputs.insert(input.to_string(), cell(column, row));
            } else {
                cut = true;
            }
        } else if let Some(output) = name.strip_prefix("output.") {
            if outputs.len() < MAX_COLUMNS {
                outputs.insert(output.to_string(), cell(column, row));
            } else {
                cut = true;
            }
        } else if name == "timestamp" {
            out.insert("timestamp_ms".into(), cell(column, row));
        } else if name != log_reader::REQUEST_KEY {
            if out.len() < MAX_COLUMNS {
                out.insert(name.clone(), cell(column, row));
            } else {
                cut = true;
            }
        }
    }
    out.insert("inputs".into(), Value::Object(inputs));
    out.insert("outputs".into(), Value::Object(outputs));
    if cut {
        out.insert("columns_cut".into(), json!(true));
    }
    Value::Object(out)
}

/// One value as JSON: numbers as numbers (non-finite ones as null), text as text, anything else as its
/// display text, cut to a readable length.
fn cell(column: &ArrayRef, row: usize) -> Value {
    if column.is_null(row) {
        return Value::Null;
    }
    match column.data_type() {
        DataType::Utf8 => json!(clip(column.as_string::<i32>().value(row))),
        DataType::LargeUtf8 => json!(clip(column.as_string::<i64>().value(row))),
        DataType::Boolean => json!(column.as_boolean().value(row)),
        DataType::Timestamp(arrow_schema::TimeUnit::Millisecond, _) => {
            json!(column.as_primitive::<TimestampMillisecondType>().value(row))
        }
        kind if kind.is_integer() && !matches!(kind, DataType::UInt64) => {
            match arrow_cast::cast(&column.slice(row, 1), &DataType::Int64) {
                Ok(cast) => json!(cast.as_primitive::<arrow_array::types::Int64Type>().value(0)),
                Err(_) => Value::Null,
            }
        }
        kind if kind.is_numeric() => match arrow_cast::cast(&column.slice(row, 1), &DataType::Float64) {
            Ok(cast) => serde_json::Number::from_f64(cast.as_primitive::<Float64Type>().value(0))
                .map_or(Value::Null, Value::Number),
            Err(_) => Value::Null,
        },
        DataType::Binary => json!(hex_prefix(column.as_binary::<i32>().value(row))),
        DataType::LargeBinary => json!(hex_prefix(column.as_binary::<i64>().value(row))),
        DataType::List(_) if column.as_list::<i32>().value_length(row) as usize > MAX_LIST_VALUES => {
            json!(format!("[{} values]", column.as_list::<i32>().value_length(row)))
        }
        DataType::LargeList(_) if column.as_list::<i64>().value_length(row) as usize > MAX_LIST_VALUES => {
            json!(format!("[{} values]", column.as_list::<i64>().value_length(row)))
        }
        DataType::FixedSizeList(_, size) if *size as usize > MAX_LIST_VALUES => json!(format!("[{size} values]")),
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) => formatted(column, row),
        // Anything else is formatted only when its column is small per row (a nested value is formatted
        // whole before it could be cut).
        _ if column.get_buffer_memory_size() / column.len().max(1) > MAX_FORMATTED_BYTES => {
            json!(format!("[{} value]", column.data_type()))
        }
        _ => formatted(column, row),
    }
}

/// A value as Arrow displays it, cut to [`MAX_VALUE_CHARS`].
fn formatted(column: &ArrayRef, row: usize) -> Value {
    let options = arrow_cast::display::FormatOptions::default();
    match arrow_cast::display::ArrayFormatter::try_new(column.as_ref(), &options) {
        Ok(formatter) => json!(clip(&formatter.value(row).to_string())),
        Err(_) => Value::Null,
    }
}

/// Values of a list shown; longer lists are described by their length.
const MAX_LIST_VALUES: usize = 64;
/// Average bytes per row under which other nested values are formatted.
const MAX_FORMATTED_BYTES: usize = 64 * 1024;

/// The first bytes of a binary value, in hex.
fn hex_prefix(bytes: &[u8]) -> String {
    let shown: String = bytes
        .iter()
        .take(MAX_VALUE_CHARS / 2)
        .map(|b| format!("{b:02x}"))
        .collect();
    if bytes.len() > MAX_VALUE_CHARS / 2 {
        format!("{shown}… ({} bytes)", bytes.len())
    } else {
        shown
    }
}

fn clip(text: &str) -> String {
    if text.chars().count() <= MAX_VALUE_CHARS {
        return text.to_string();
    }
    let mut clipped: String = text.chars().take(MAX_VALUE_CHARS).collect();
    clipped.push('…');
    clipped
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Float64Array, Int32Array, ListArray, StringArray, types::Int32Type};

    #[test]
    fn cells_keep_their_kind_and_stay_short() {
        let text: ArrayRef = Arc::new(StringArray::from(vec![Some("a".repeat(2000)), None]));
        assert_eq!(cell(&text, 0).as_str().unwrap().chars().count(), MAX_VALUE_CHARS + 1);
        assert_eq!(cell(&text, 1), Value::Null);
        let floats: ArrayRef = Arc::new(Float64Array::from(vec![1.5, f64::NAN]));
        assert_eq!(cell(&floats, 0), json!(1.5));
        assert_eq!(cell(&floats, 1), Value::Null);
        let ints: ArrayRef = Arc::new(Int32Array::from(vec![-7]));
        assert_eq!(cell(&ints, 0), json!(-7));
        let lists: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(vec![Some(vec![
            Some(1),
            Some(2),
        ])]));
        assert_eq!(cell(&lists, 0), json!("[1, 2]"));
        let long: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(vec![Some(
            (0..1000).map(Some).collect::<Vec<_>>(),
        )]));
        assert_eq!(cell(&long, 0), json!("[1000 values]"));
        let binary: ArrayRef = Arc::new(arrow_array::BinaryArray::from_vec(vec![&[0u8; 100_000][..]]));
        assert!(cell(&binary, 0).as_str().unwrap().ends_with("(100000 bytes)"));
        assert_eq!(label_json("{\"a\": 1}"), json!({"a": 1}));
        assert_eq!(
            label_json(&"x".repeat(10_000)).as_str().unwrap().chars().count(),
            MAX_VALUE_CHARS + 1
        );
    }
}
