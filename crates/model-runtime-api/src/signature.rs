//! Model signatures as MLflow records them: each part (inputs, outputs, params) a JSON string inside `MLmodel`,
//! holding either named columns with MLflow data types or tensors with a numpy dtype and shape.

use serde::Deserialize;
use serde_json::Value;

/// An MLflow column data type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnType {
    /// `boolean`.
    Boolean,
    /// `integer` (32-bit).
    Integer,
    /// `long` (64-bit).
    Long,
    /// `float` (32-bit).
    Float,
    /// `double`.
    Double,
    /// `string`.
    String,
    /// `binary`.
    Binary,
    /// `datetime`.
    Datetime,
    /// Arrays, objects, maps and any type this version does not check, by name.
    Other(String),
}

impl ColumnType {
    fn of(name: &str) -> ColumnType {
        match name {
            "boolean" => ColumnType::Boolean,
            "integer" => ColumnType::Integer,
            "long" => ColumnType::Long,
            "float" => ColumnType::Float,
            "double" => ColumnType::Double,
            "string" => ColumnType::String,
            "binary" => ColumnType::Binary,
            "datetime" => ColumnType::Datetime,
            other => ColumnType::Other(other.to_string()),
        }
    }
}

/// A column of a column-based schema.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSpec {
    /// Its name (schemas may leave columns unnamed).
    pub name: Option<String>,
    /// Its type.
    pub kind: ColumnType,
    /// Whether a value must be given.
    pub required: bool,
}

/// A tensor of a tensor-based schema.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    /// Its name, if any.
    pub name: Option<String>,
    /// numpy dtype name (`float32`, `int64`, ...).
    pub dtype: String,
    /// Shape; -1 for a free dimension.
    pub shape: Vec<i64>,
}

/// An inference parameter with its default.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    /// Its name.
    pub name: String,
    /// MLflow data type name.
    pub kind: String,
    /// Default value.
    pub default: Value,
    /// Shape for list parameters.
    pub shape: Option<Vec<i64>>,
}

/// Inputs or outputs.
#[derive(Debug, Clone, PartialEq)]
pub enum Schema {
    /// Named (or positional) columns.
    Columns(Vec<ColumnSpec>),
    /// Tensors.
    Tensors(Vec<TensorSpec>),
}

/// A model's signature.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Signature {
    /// Inputs.
    pub inputs: Option<Schema>,
    /// Outputs.
    pub outputs: Option<Schema>,
    /// Inference parameters.
    pub params: Vec<ParamSpec>,
}

#[derive(Deserialize)]
struct RawTensor {
    dtype: String,
    shape: Vec<i64>,
}

#[derive(Deserialize)]
struct RawEntry {
    #[serde(rename = "type")]
    kind: String,
    name: Option<String>,
    #[serde(default = "yes")]
    required: bool,
    #[serde(rename = "tensor-spec")]
    tensor: Option<RawTensor>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct RawParam {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    default: Value,
    shape: Option<Vec<i64>>,
}

/// A part given as MLflow stores it: a JSON string, or (from other writers) the JSON itself; `null` or absent
/// means no part.
fn part_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Null => None,
        Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}

fn schema(value: Option<&Value>, which: &str) -> Result<Option<Schema>, String> {
    let Some(text) = part_text(value) else { return Ok(None) };
    let entries: Vec<RawEntry> =
        serde_json::from_str(&text).map_err(|e| format!("the signature's {which} are not a schema: {e}"))?;
    if entries.is_empty() {
        return Ok(None);
    }
    let tensors = entries.iter().filter(|e| e.kind == "tensor").count();
    if tensors == entries.len() {
        let specs = entries
            .into_iter()
            .map(|e| {
                let tensor = e.tensor.ok_or_else(|| format!("a {which} tensor has no tensor-spec"))?;
                Ok(TensorSpec {
                    name: e.name,
                    dtype: tensor.dtype,
                    shape: tensor.shape,
                })
            })
            .collect::<Result<_, String>>()?;
        return Ok(Some(Schema::Tensors(specs)));
    }
    if tensors > 0 {
        return Err(format!("the signature's {which} mix tensors and columns"));
    }
    Ok(Some(Schema::Columns(
        entries
            .into_iter()
            .map(|e| ColumnSpec {
                name: e.name,
                kind: ColumnType::of(&e.kind),
                required: e.required,
            })
            .collect(),
    )))
}

impl Signature {
    /// Reads the `signature` entry of an `MLmodel` (converted to JSON).
    pub fn from_value(value: &Value) -> Result<Signature, String> {
        let params = match part_text(value.get("params")) {
            None => Vec::new(),
            Some(text) => serde_json::from_str::<Vec<RawParam>>(&text)
                .map_err(|e| format!("the signature's params are not a list of parameters: {e}"))?
                .into_iter()
                .map(|p| ParamSpec {
                    name: p.name,
                    kind: p.kind,
                    default: p.default,
                    shape: p.shape,
                })
                .collect(),
        };
        Ok(Signature {
            inputs: schema(value.get("inputs"), "inputs")?,
            outputs: schema(value.get("outputs"), "outputs")?,
            params,
        })
    }
}
