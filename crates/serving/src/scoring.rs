//! The MLflow scoring protocol's bodies: `dataframe_split`, `dataframe_records`, `instances` and `inputs`
//! JSON (with `params`) and CSV with a header line, turned into tensors (a table column is a tensor of shape
//! `[rows]`), and predictions turned into `{"predictions": ...}` as `mlflow models serve` writes them.

use loopline_model_runtime_api::{DataType, ParamSpec, Tensor, TensorData};
use serde_json::{Map, Value};

use crate::oip::json_data;

/// A decoded scoring request.
#[derive(Debug)]
pub struct ScoringRequest {
    /// Inputs.
    pub inputs: Vec<Tensor>,
    /// Inference parameters after checking against the signature (defaults filled in).
    pub params: Map<String, Value>,
}

const FORMATS: [&str; 4] = ["dataframe_split", "dataframe_records", "instances", "inputs"];

/// Python's bare `NaN` becomes null (a missing number, as pandas reads it); the bare infinities become marker
/// strings (a NUL and the word) that no caller's text holds, so a column of nothing but infinities is still a
/// number column.
const NON_FINITE: crate::python_json::Replacements = crate::python_json::Replacements {
    nan: "null",
    infinity: "\"\\u0000Infinity\"",
    negative_infinity: "\"\\u0000-Infinity\"",
};

/// A bare infinity from Python's JSON.
fn bare_infinity(value: &Value) -> Option<f64> {
    match value.as_str()? {
        "\0Infinity" => Some(f64::INFINITY),
        "\0-Infinity" => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

/// A bare infinity, or `"Infinity"`, `"-Infinity"` or `"NaN"` written as text in a column that holds numbers.
fn non_finite(value: &Value) -> Option<f64> {
    bare_infinity(value).or_else(|| crate::python_json::non_finite_word(value.as_str()?))
}

/// Decodes a JSON body.
pub fn decode_json(body: &[u8], params_schema: &[ParamSpec]) -> Result<ScoringRequest, String> {
    let value: Value = crate::python_json::parse(body, NON_FINITE)
        .map_err(|e| format!("Invalid input. The body is not valid JSON: {e}"))?;
    let Value::Object(mut object) = value else {
        return Err(format!(
            "Invalid input. The body must be a JSON object with one of the keys {FORMATS:?} (and optionally 'params')"
        ));
    };
    let present: Vec<&str> = FORMATS.iter().copied().filter(|k| object.contains_key(*k)).collect();
    let [format] = present.as_slice() else {
        return Err(format!(
            "Invalid input. The body must hold exactly one of {FORMATS:?}; it has {}",
            if present.is_empty() {
                "none".to_string()
            } else {
                format!("{present:?}")
            }
        ));
    };
    let data = object.remove(*format).expect("present");
    let inputs = match *format {
        "dataframe_split" => dataframe_split(data)?,
        "dataframe_records" => records(data, "dataframe_records")?,
        "instances" => match &data {
            Value::Array(rows) if rows.first().is_some_and(Value::is_object) => records(data, "instances")?,
            _ => vec![array_tensor("instances", &data)?],
        },
        _ => match data {
            Value::Object(columns) => columns
                .into_iter()
                .map(|(name, values)| array_tensor(&name, &values))
                .collect::<Result<_, _>>()?,
            other => vec![array_tensor("inputs", &other)?],
        },
    };
    if inputs.is_empty() {
        return Err("Invalid input. The request has no columns".to_string());
    }
    let params = check_params(object.remove("params"), params_schema)?;
    Ok(ScoringRequest { inputs, params })
}

fn dataframe_split(data: Value) -> Result<Vec<Tensor>, String> {
    let Value::Object(mut split) = data else {
        return Err("Invalid input. dataframe_split must be an object with 'columns' and 'data'".to_string());
    };
    if let Some(key) = split
        .keys()
        .find(|k| !["columns", "data", "index"].contains(&k.as_str()))
    {
        return Err(format!("Invalid input. dataframe_split has an unknown key '{key}'"));
    }
    let Some(Value::Array(rows)) = split.remove("data") else {
        return Err("Invalid input. Dataframe split format must have a 'data' list of rows".to_string());
    };
    let width = match rows.first() {
        Some(Value::Array(first)) => first.len(),
        Some(_) => 1,
        None => 0,
    };
    let names: Vec<String> = match split.remove("columns") {
        Some(Value::Array(names)) => names
            .iter()
            .map(|n| match n {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        None | Some(Value::Null) => (0..width).map(|i| i.to_string()).collect(),
        Some(_) => return Err("Invalid input. dataframe_split 'columns' must be a list of names".to_string()),
    };
    let mut columns: Vec<Vec<&Value>> = vec![Vec::with_capacity(rows.len()); names.len()];
    for (index, row) in rows.iter().enumerate() {
        let cells: Vec<&Value> = match row {
            Value::Array(cells) => cells.iter().collect(),
            scalar => vec![scalar],
        };
        if cells.len() != names.len() {
            return Err(format!(
                "Invalid input. dataframe_split row {index} has {} values for {} columns",
                cells.len(),
                names.len()
            ));
        }
        for (column, cell) in columns.iter_mut().zip(cells) {
            column.push(cell);
        }
    }
    names
        .into_iter()
        .zip(columns)
        .map(|(name, cells)| column_tensor(&name, &cells))
        .collect()
}

/// Missing cells a records body may imply beyond its own count of values.
const MAX_IMPLIED_MISSING_CELLS: usize = 100_000;

fn records(data: Value, key: &str) -> Result<Vec<Tensor>, String> {
    let Value::Array(rows) = data else {
        return Err(format!("Invalid input. {key} must be a list of row objects"));
    };
    let mut names: Vec<String> = Vec::new();
    let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut given_cells = 0usize;
    for (index, row) in rows.iter().enumerate() {
        let Value::Object(row) = row else {
            return Err(format!("Invalid input. {key} row {index} is not an object"));
        };
        given_cells += row.len();
        for name in row.keys() {
            if seen.insert(name.as_str()) {
                names.push(name.clone());
            }
        }
    }
    // Rows that each name different columns would make a table of mostly missing cells, rows x columns in
    // size, from a small body: the table may hold at most twice the cells the rows give (plus some slack).
    let table_cells = rows.len().saturating_mul(names.len());
    let allowed_cells = given_cells.saturating_mul(2).saturating_add(MAX_IMPLIED_MISSING_CELLS);
    if table_cells > allowed_cells {
        return Err(format!(
            "Invalid input. the {key} name {} different columns over {} rows but give only {given_cells} values: \
             the table would be mostly missing values; send the columns every row has (or use dataframe_split)",
            names.len(),
            rows.len()
        ));
    }
    let null = Value::Null;
    names
        .iter()
        .map(|name| {
            let cells: Vec<&Value> = rows.iter().map(|row| row.get(name).unwrap_or(&null)).collect();
            column_tensor(name, &cells)
        })
        .collect()
}

/// A column from JSON cells: booleans, integers, floats (nulls become NaN) or strings.
fn column_tensor(name: &str, cells: &[&Value]) -> Result<Tensor, String> {
    let rows = cells.len();
    let all = |test: fn(&Value) -> bool| cells.iter().all(|c| test(c));
    let (datatype, data) = if rows > 0 && all(Value::is_boolean) {
        (
            DataType::Bool,
            TensorData::Bool(cells.iter().map(|c| c.as_bool().expect("bool")).collect()),
        )
    } else if rows > 0 && all(|c| c.is_i64()) {
        (
            DataType::Int64,
            TensorData::Int(cells.iter().map(|c| c.as_i64().expect("int")).collect()),
        )
    } else if rows == 0
        || (all(|c| c.is_number() || c.is_null() || non_finite(c).is_some())
            && cells
                .iter()
                .any(|c| c.is_number() || c.is_null() || bare_infinity(c).is_some()))
    {
        (
            DataType::Fp64,
            TensorData::F64(
                cells
                    .iter()
                    .map(|c| c.as_f64().or_else(|| non_finite(c)).unwrap_or(f64::NAN))
                    .collect(),
            ),
        )
    } else if all(Value::is_string) {
        (
            DataType::Bytes,
            TensorData::Bytes(
                cells
                    .iter()
                    .map(|c| c.as_str().expect("string").as_bytes().to_vec())
                    .collect(),
            ),
        )
    } else {
        let odd = cells
            .iter()
            .find(|c| c.is_array() || c.is_object())
            .or(cells.first())
            .expect("non-empty");
        return Err(format!(
            "Invalid input. Column '{name}' mixes kinds of values (for example {odd}); a column holds numbers, booleans or strings"
        ));
    };
    Tensor::new(name, datatype, vec![rows], data)
}

/// A tensor from a (possibly nested) JSON array; its shape is the nesting.
fn array_tensor(name: &str, value: &Value) -> Result<Tensor, String> {
    let mut shape = Vec::new();
    let mut probe = value;
    while let Value::Array(items) = probe {
        shape.push(items.len());
        match items.first() {
            Some(first) => probe = first,
            None => break,
        }
    }
    if shape.is_empty() {
        shape.push(1);
    }
    let mut cells = Vec::new();
    collect(value, &mut cells);
    let Some(expected) = loopline_model_runtime_api::tensor::element_count(&shape) else {
        return Err(format!(
            "Invalid input. '{name}' nests arrays whose lengths multiply past any size a tensor can have"
        ));
    };
    if cells.len() != expected {
        return Err(format!(
            "Invalid input. '{name}' is a ragged array: its first rows suggest shape {shape:?} but it holds {} values",
            cells.len()
        ));
    }
    let column = column_tensor(name, &cells)?;
    Tensor::new(name, column.datatype, shape, column.data)
}

fn collect<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    match value {
        Value::Array(items) => items.iter().for_each(|i| collect(i, out)),
        other => out.push(other),
    }
}

/// Checks `params` against the signature's parameters: unknown keys are dropped (MLflow warns), missing ones
/// take their defaults, values of the wrong type are refused.
fn check_params(given: Option<Value>, schema: &[ParamSpec]) -> Result<Map<String, Value>, String> {
    let given = match given {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map,
        Some(_) => return Err("Invalid input. 'params' must be an object".to_string()),
    };
    let mut params = Map::new();
    for spec in schema {
        let value = given.get(&spec.name).cloned().unwrap_or_else(|| spec.default.clone());
        let fits = match (spec.kind.as_str(), &value) {
            (_, Value::Null) => true,
            _ if spec.shape.is_some() => value.is_array(),
            ("double" | "float", v) => v.is_number(),
            ("long" | "integer", v) => v.is_i64() || v.is_u64(),
            ("boolean", v) => v.is_boolean(),
            ("string" | "datetime", v) => v.is_string(),
            _ => true,
        };
        if !fits {
            return Err(format!(
                "Invalid input. Parameter '{}' must be a {}, got {value}",
                spec.name, spec.kind
            ));
        }
        params.insert(spec.name.clone(), value);
    }
    Ok(params)
}

/// Decodes CSV with a header line; column types are inferred (integers, then floats, else text; empty cells
/// in numeric columns are missing values).
pub fn decode_csv(body: &[u8]) -> Result<Vec<Tensor>, String> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(body);
    let names: Vec<String> = reader
        .headers()
        .map_err(|e| format!("Invalid input. The CSV header cannot be read: {e}"))?
        .iter()
        .map(str::to_string)
        .collect();
    let mut columns: Vec<Vec<String>> = vec![Vec::new(); names.len()];
    for (line, record) in reader.records().enumerate() {
        let record = record.map_err(|e| format!("Invalid input. CSV line {}: {e}", line + 2))?;
        for (column, cell) in columns.iter_mut().zip(record.iter()) {
            column.push(cell.to_string());
        }
    }
    names
        .into_iter()
        .zip(columns)
        .map(|(name, cells)| {
            let rows = cells.len();
            let (datatype, data) = if let Ok(ints) = cells
                .iter()
                .map(|c| c.trim().parse::<i64>())
                .collect::<Result<Vec<_>, _>>()
            {
                (DataType::Int64, TensorData::Int(ints))
            } else if let Ok(floats) = cells
                .iter()
                .map(|c| {
                    if c.trim().is_empty() {
                        Ok(f64::NAN)
                    } else {
                        c.trim().parse::<f64>()
                    }
                })
                .collect::<Result<Vec<_>, _>>()
            {
                (DataType::Fp64, TensorData::F64(floats))
            } else {
                (
                    DataType::Bytes,
                    TensorData::Bytes(cells.into_iter().map(String::into_bytes).collect()),
                )
            };
            Tensor::new(name, datatype, vec![rows], data)
        })
        .collect()
}

/// `{"predictions": ...}`: one output as a (nested) list; several as a list of row objects.
pub fn encode_predictions(outputs: &[Tensor]) -> Vec<u8> {
    let value = match outputs {
        [single] => nested(single),
        many => {
            let rows = many.first().map(Tensor::rows).unwrap_or(0);
            let columns: Vec<Value> = many.iter().map(nested).collect();
            Value::Array(
                (0..rows)
                    .map(|row| {
                        Value::Object(
                            many.iter()
                                .zip(&columns)
                                .map(|(tensor, column)| (tensor.name.clone(), column[row].clone()))
                                .collect(),
                        )
                    })
                    .collect(),
            )
        }
    };
    let mut body = b"{\"predictions\":".to_vec();
    body.extend_from_slice(&serde_json::to_vec(&value).expect("JSON values serialise"));
    body.push(b'}');
    body
}

/// A tensor as nested lists (its elements printed at their own precision).
fn nested(tensor: &Tensor) -> Value {
    let flat: Value = match &tensor.data {
        // Single-precision values are written at their own shortest precision, as the binary and OIP forms are.
        TensorData::F32(values) => Value::Array(
            values
                .iter()
                .map(|v| {
                    v.to_string()
                        .parse::<f64>()
                        .ok()
                        .and_then(serde_json::Number::from_f64)
                        .map_or(Value::Null, Value::Number)
                })
                .collect(),
        ),
        data => serde_json::to_value(json_data(data)).expect("JSON values serialise"),
    };
    let Value::Array(mut items) = flat else { return flat };
    for &dimension in tensor.shape.iter().skip(1).rev() {
        if dimension == 0 {
            break;
        }
        let mut grouped = Vec::with_capacity(items.len() / dimension);
        let mut iter = items.into_iter();
        loop {
            let chunk: Vec<Value> = iter.by_ref().take(dimension).collect();
            if chunk.is_empty() {
                break;
            }
            grouped.push(Value::Array(chunk));
        }
        items = grouped;
    }
    Value::Array(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_four_json_forms_give_the_same_columns() {
        let bodies = [
            r#"{"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2.5], [3, null]]}}"#,
            r#"{"dataframe_records": [{"a": 1, "b": 2.5}, {"a": 3, "b": null}]}"#,
            r#"{"instances": [{"a": 1, "b": 2.5}, {"a": 3, "b": null}]}"#,
            r#"{"inputs": {"a": [1, 3], "b": [2.5, null]}}"#,
        ];
        for body in bodies {
            let request = decode_json(body.as_bytes(), &[]).unwrap();
            assert_eq!(request.inputs[0].data, TensorData::Int(vec![1, 3]), "{body}");
            assert!(
                matches!(&request.inputs[1].data, TensorData::F64(v) if v[0] == 2.5 && v[1].is_nan()),
                "{body}"
            );
        }
        let matrix = decode_json(br#"{"inputs": [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]}"#, &[]).unwrap();
        assert_eq!(matrix.inputs[0].shape, vec![3, 2]);
    }

    #[test]
    fn python_json_with_bare_non_finite_numbers_is_read_as_mlflow_reads_it() {
        // What `requests.post(url, json=frame.to_dict(orient="split"))` sends for a frame with gaps.
        let body = br#"{"dataframe_split": {"columns": ["a", "b", "c"], "data": [[NaN, Infinity, "x"], [1.5, -Infinity, "NaN"]]}}"#;
        let request = decode_json(body, &[]).unwrap();
        assert!(matches!(&request.inputs[0].data, TensorData::F64(v) if v[0].is_nan() && v[1] == 1.5));
        assert_eq!(
            request.inputs[1].data,
            TensorData::F64(vec![f64::INFINITY, f64::NEG_INFINITY])
        );
        // Text stays text, even where it spells a number's name.
        assert_eq!(
            request.inputs[2].data,
            TensorData::Bytes(vec![b"x".to_vec(), b"NaN".to_vec()])
        );
        let all_missing = decode_json(br#"{"inputs": {"a": [NaN, NaN]}}"#, &[]).unwrap();
        assert!(matches!(&all_missing.inputs[0].data, TensorData::F64(v) if v.iter().all(|x| x.is_nan())));
    }

    #[test]
    fn records_that_each_name_other_columns_are_refused_before_the_table_is_built() {
        let sparse: Vec<Value> = (0..2_000).map(|i| serde_json::json!({format!("c{i}"): 1})).collect();
        let body = serde_json::json!({"dataframe_records": sparse}).to_string();
        let error = decode_json(body.as_bytes(), &[]).unwrap_err();
        assert!(error.contains("mostly missing"), "{error}");
        let mostly_full: Vec<Value> = (0..2_000)
            .map(|i| {
                if i % 2 == 0 {
                    serde_json::json!({"a": 1, "b": 2})
                } else {
                    serde_json::json!({"a": 1})
                }
            })
            .collect();
        let body = serde_json::json!({"dataframe_records": mostly_full}).to_string();
        assert_eq!(decode_json(body.as_bytes(), &[]).unwrap().inputs.len(), 2);
    }

    #[test]
    fn malformed_bodies_are_refused_with_the_reason() {
        let two = decode_json(br#"{"inputs": [1], "instances": [1]}"#, &[]).unwrap_err();
        assert!(two.contains("exactly one"), "{two}");
        assert!(decode_json(b"[1, 2]", &[]).unwrap_err().contains("JSON object"));
        assert!(
            decode_json(br#"{"dataframe_split": {"columns": ["a"]}}"#, &[])
                .unwrap_err()
                .contains("'data'")
        );
        let ragged = decode_json(
            br#"{"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2], [3]]}}"#,
            &[],
        )
        .unwrap_err();
        assert!(ragged.contains("row 1 has 1 values for 2 columns"), "{ragged}");
        let mixed = decode_json(br#"{"dataframe_records": [{"a": 1}, {"a": "x"}]}"#, &[]).unwrap_err();
        assert!(mixed.contains("Column 'a' mixes"), "{mixed}");
    }

    #[test]
    fn params_take_defaults_and_are_type_checked() {
        let schema = vec![ParamSpec {
            name: "threshold".to_string(),
            kind: "double".to_string(),
            default: serde_json::json!(0.5),
            shape: None,
        }];
        let request = decode_json(br#"{"inputs": [1], "params": {"other": 1}}"#, &schema).unwrap();
        assert_eq!(request.params["threshold"], 0.5);
        assert!(!request.params.contains_key("other"));
        let bad = decode_json(br#"{"inputs": [1], "params": {"threshold": "high"}}"#, &schema).unwrap_err();
        assert!(bad.contains("'threshold' must be a double"), "{bad}");
    }

    #[test]
    fn csv_columns_are_typed_and_predictions_nested() {
        let columns = decode_csv(b"a,b,c\n1,2.5,x\n2,,y\n").unwrap();
        assert_eq!(columns[0].data, TensorData::Int(vec![1, 2]));
        assert!(matches!(&columns[1].data, TensorData::F64(v) if v[1].is_nan()));
        assert_eq!(columns[2].datatype, DataType::Bytes);
        let probabilities = Tensor::new(
            "p",
            DataType::Fp32,
            vec![2, 2],
            TensorData::F32(vec![0.25, 0.75, 1.0, 0.0]),
        )
        .unwrap();
        assert_eq!(
            encode_predictions(&[probabilities]),
            br#"{"predictions":[[0.25,0.75],[1.0,0.0]]}"#.to_vec()
        );
    }
}
