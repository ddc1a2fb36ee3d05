//! Tensors: what every backend takes and returns. A request is a list of named tensors whose first dimension
//! is the row (batch) dimension; a table column is a tensor of shape `[rows]`. The element type is kept by
//! family (booleans, signed and unsigned integers, 32- and 64-bit floats, byte strings) with the wire datatype
//! name of the Open Inference Protocol alongside, so replies can say exactly what they hold.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int64Type, UInt64Type};
use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Float32Array, Float64Array, Int64Array, RecordBatch, StringArray,
    UInt64Array,
};
use arrow_schema::DataType as ArrowType;

/// Element types of the Open Inference Protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    /// `BOOL`.
    Bool,
    /// `UINT8`.
    Uint8,
    /// `UINT16`.
    Uint16,
    /// `UINT32`.
    Uint32,
    /// `UINT64`.
    Uint64,
    /// `INT8`.
    Int8,
    /// `INT16`.
    Int16,
    /// `INT32`.
    Int32,
    /// `INT64`.
    Int64,
    /// `FP32`.
    Fp32,
    /// `FP64`.
    Fp64,
    /// `BYTES`.
    Bytes,
}

impl DataType {
    /// Parses a wire name (`FP32`, `INT64`, ...).
    pub fn parse(name: &str) -> Option<DataType> {
        Some(match name {
            "BOOL" => DataType::Bool,
            "UINT8" => DataType::Uint8,
            "UINT16" => DataType::Uint16,
            "UINT32" => DataType::Uint32,
            "UINT64" => DataType::Uint64,
            "INT8" => DataType::Int8,
            "INT16" => DataType::Int16,
            "INT32" => DataType::Int32,
            "INT64" => DataType::Int64,
            "FP32" => DataType::Fp32,
            "FP64" => DataType::Fp64,
            "BYTES" => DataType::Bytes,
            _ => return None,
        })
    }

    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            DataType::Bool => "BOOL",
            DataType::Uint8 => "UINT8",
            DataType::Uint16 => "UINT16",
            DataType::Uint32 => "UINT32",
            DataType::Uint64 => "UINT64",
            DataType::Int8 => "INT8",
            DataType::Int16 => "INT16",
            DataType::Int32 => "INT32",
            DataType::Int64 => "INT64",
            DataType::Fp32 => "FP32",
            DataType::Fp64 => "FP64",
            DataType::Bytes => "BYTES",
        }
    }

    /// Bytes per element in the binary form; `None` for `BYTES` (length-prefixed).
    pub fn width(self) -> Option<usize> {
        match self {
            DataType::Bool | DataType::Uint8 | DataType::Int8 => Some(1),
            DataType::Uint16 | DataType::Int16 => Some(2),
            DataType::Uint32 | DataType::Int32 | DataType::Fp32 => Some(4),
            DataType::Uint64 | DataType::Int64 | DataType::Fp64 => Some(8),
            DataType::Bytes => None,
        }
    }

    /// The type of an MLflow tensor-spec dtype (numpy name).
    pub fn of_numpy(dtype: &str) -> Option<DataType> {
        Some(match dtype {
            "bool" => DataType::Bool,
            "uint8" => DataType::Uint8,
            "uint16" => DataType::Uint16,
            "uint32" => DataType::Uint32,
            "uint64" => DataType::Uint64,
            "int8" => DataType::Int8,
            "int16" => DataType::Int16,
            "int32" => DataType::Int32,
            "int64" => DataType::Int64,
            "float32" => DataType::Fp32,
            "float64" => DataType::Fp64,
            "str" | "object" | "bytes" => DataType::Bytes,
            _ => return None,
        })
    }

    /// True for the integer types.
    pub fn is_integer(self) -> bool {
        !matches!(self, DataType::Bool | DataType::Fp32 | DataType::Fp64 | DataType::Bytes)
    }
}

/// Tensor elements, by family.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// Booleans.
    Bool(Vec<bool>),
    /// Signed integers (any width).
    Int(Vec<i64>),
    /// Unsigned integers (any width).
    UInt(Vec<u64>),
    /// Single-precision floats.
    F32(Vec<f32>),
    /// Double-precision floats.
    F64(Vec<f64>),
    /// Byte strings (text is UTF-8).
    Bytes(Vec<Vec<u8>>),
}

impl TensorData {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            TensorData::Bool(v) => v.len(),
            TensorData::Int(v) => v.len(),
            TensorData::UInt(v) => v.len(),
            TensorData::F32(v) => v.len(),
            TensorData::F64(v) => v.len(),
            TensorData::Bytes(v) => v.len(),
        }
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An empty buffer of the same family.
    fn empty_like(&self) -> TensorData {
        match self {
            TensorData::Bool(_) => TensorData::Bool(Vec::new()),
            TensorData::Int(_) => TensorData::Int(Vec::new()),
            TensorData::UInt(_) => TensorData::UInt(Vec::new()),
            TensorData::F32(_) => TensorData::F32(Vec::new()),
            TensorData::F64(_) => TensorData::F64(Vec::new()),
            TensorData::Bytes(_) => TensorData::Bytes(Vec::new()),
        }
    }

    /// Appends `other`, which must be of the same family.
    fn extend(&mut self, other: &TensorData) -> bool {
        match (self, other) {
            (TensorData::Bool(a), TensorData::Bool(b)) => a.extend_from_slice(b),
            (TensorData::Int(a), TensorData::Int(b)) => a.extend_from_slice(b),
            (TensorData::UInt(a), TensorData::UInt(b)) => a.extend_from_slice(b),
            (TensorData::F32(a), TensorData::F32(b)) => a.extend_from_slice(b),
            (TensorData::F64(a), TensorData::F64(b)) => a.extend_from_slice(b),
            (TensorData::Bytes(a), TensorData::Bytes(b)) => a.extend_from_slice(b),
            _ => return false,
        }
        true
    }

    /// Elements `start..end`.
    fn slice(&self, start: usize, end: usize) -> TensorData {
        match self {
            TensorData::Bool(v) => TensorData::Bool(v[start..end].to_vec()),
            TensorData::Int(v) => TensorData::Int(v[start..end].to_vec()),
            TensorData::UInt(v) => TensorData::UInt(v[start..end].to_vec()),
            TensorData::F32(v) => TensorData::F32(v[start..end].to_vec()),
            TensorData::F64(v) => TensorData::F64(v[start..end].to_vec()),
            TensorData::Bytes(v) => TensorData::Bytes(v[start..end].to_vec()),
        }
    }

    /// Element `index` as a double, for numeric families (booleans as 0/1); `None` for byte strings.
    pub fn number(&self, index: usize) -> Option<f64> {
        Some(match self {
            TensorData::Bool(v) => f64::from(u8::from(v[index])),
            TensorData::Int(v) => v[index] as f64,
            TensorData::UInt(v) => v[index] as f64,
            TensorData::F32(v) => f64::from(v[index]),
            TensorData::F64(v) => v[index],
            TensorData::Bytes(_) => return None,
        })
    }
}

/// The number of elements of `shape`, or None when its non-zero dimensions multiply past `usize`.
///
/// Zero dimensions are skipped for the overflow check: `[0, 2^40, 2^40]` holds no element, but its row width
/// (`2^40 * 2^40`) would still wrap, so such a shape is refused too. Every partial product of an accepted
/// shape fits in `usize`.
pub fn element_count(shape: &[usize]) -> Option<usize> {
    nonzero_dimension_product(shape)?;
    Some(if shape.contains(&0) { 0 } else { shape.iter().product() })
}

/// The product of the non-zero dimensions of `shape` (1 for none), or None when it overflows `usize`. This
/// bounds the work any per-row or per-element loop over the shape can do.
pub fn nonzero_dimension_product(shape: &[usize]) -> Option<usize> {
    shape
        .iter()
        .filter(|dimension| **dimension != 0)
        .try_fold(1usize, |product, dimension| product.checked_mul(*dimension))
}

/// A named tensor; `shape[0]` is the row dimension.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Its name (an input or output name, or a column name).
    pub name: String,
    /// Its wire element type.
    pub datatype: DataType,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its elements, row-major.
    pub data: TensorData,
}

impl Tensor {
    /// A tensor, checking that the element count matches the shape.
    pub fn new(
        name: impl Into<String>,
        datatype: DataType,
        shape: Vec<usize>,
        data: TensorData,
    ) -> Result<Tensor, String> {
        let name = name.into();
        let Some(expected) = element_count(&shape) else {
            return Err(format!(
                "tensor '{name}' has shape {shape:?}, whose dimensions multiply past any size a tensor can have"
            ));
        };
        if expected != data.len() {
            return Err(format!(
                "tensor '{name}' has shape {shape:?} ({expected} elements) but {} values",
                data.len()
            ));
        }
        Ok(Tensor {
            name,
            datatype,
            shape,
            data,
        })
    }

    /// Rows: the first dimension (1 for a scalar).
    pub fn rows(&self) -> usize {
        self.shape.first().copied().unwrap_or(1)
    }

    /// A tensor like this one with `rows` rows of `data`.
    fn with_rows(&self, rows: usize, data: TensorData) -> Tensor {
        let mut shape = self.shape.clone();
        match shape.first_mut() {
            Some(first) => *first = rows,
            None => shape.push(rows),
        }
        Tensor {
            name: self.name.clone(),
            datatype: self.datatype,
            shape,
            data,
        }
    }

    /// Elements per row.
    pub fn row_width(&self) -> usize {
        self.shape.iter().skip(1).product()
    }
}

/// The position of the tensor called `name`, looking first at `hint` (where it sits when a request lists
/// columns in the model's order, the common case) and then everywhere.
pub fn position_of(tensors: &[Tensor], name: &str, hint: usize) -> Option<usize> {
    if tensors.get(hint).is_some_and(|t| t.name == name) {
        return Some(hint);
    }
    tensors.iter().position(|t| t.name == name)
}

/// Rows of a request: the first dimension its tensors agree on.
pub fn request_rows(tensors: &[Tensor]) -> Result<usize, String> {
    let Some(first) = tensors.first() else {
        return Err("the request has no inputs".to_string());
    };
    let rows = first.rows();
    if let Some(other) = tensors.iter().find(|t| t.rows() != rows) {
        return Err(format!(
            "inputs disagree on the number of rows: '{}' has {rows}, '{}' has {}",
            first.name,
            other.name,
            other.rows()
        ));
    }
    Ok(rows)
}

/// True when requests can run as one batch: same input names, types and per-row shapes, in the same order.
pub fn stackable(a: &[Tensor], b: &[Tensor]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.name == y.name
                && x.datatype == y.datatype
                && x.shape.len() == y.shape.len()
                && x.shape.get(1..) == y.shape.get(1..)
                && std::mem::discriminant(&x.data) == std::mem::discriminant(&y.data)
        })
}

/// Stacks requests (checked with [`stackable`]) along the row dimension.
pub fn stack(requests: &[&[Tensor]]) -> Vec<Tensor> {
    let Some(first) = requests.first() else {
        return Vec::new();
    };
    first
        .iter()
        .enumerate()
        .map(|(index, template)| {
            let mut data = template.data.empty_like();
            let mut rows = 0;
            for request in requests {
                let tensor = &request[index];
                data.extend(&tensor.data);
                rows += tensor.rows();
            }
            template.with_rows(rows, data)
        })
        .collect()
}

/// Splits a batch's outputs back into per-request outputs of `rows` rows each.
pub fn split_rows(outputs: &[Tensor], rows: &[usize]) -> Vec<Vec<Tensor>> {
    let mut start_row = 0;
    rows.iter()
        .map(|&count| {
            let parts = outputs
                .iter()
                .map(|tensor| {
                    let width = tensor.row_width();
                    tensor.with_rows(count, tensor.data.slice(start_row * width, (start_row + count) * width))
                })
                .collect();
            start_row += count;
            parts
        })
        .collect()
}

/// A table's columns as tensors of shape `[rows]`. Numeric columns with nulls become doubles with NaN;
/// text columns must not hold nulls.
pub fn tensors_from_batch(batch: &RecordBatch) -> Result<Vec<Tensor>, String> {
    let rows = batch.num_rows();
    let schema = batch.schema();
    let mut tensors = Vec::with_capacity(batch.num_columns());
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        let name = field.name();
        let kind = column.data_type();
        let has_nulls = column.null_count() > 0;
        let cast = |to: &ArrowType| {
            arrow_cast::cast(column, to).map_err(|e| format!("column '{name}' ({kind}) cannot be read: {e}"))
        };
        let (datatype, data) = match kind {
            ArrowType::Boolean if !has_nulls => (
                DataType::Bool,
                TensorData::Bool(column.as_boolean().iter().map(|v| v.unwrap_or(false)).collect()),
            ),
            ArrowType::Float32 if !has_nulls => (
                DataType::Fp32,
                TensorData::F32(column.as_primitive::<Float32Type>().values().to_vec()),
            ),
            ArrowType::Int8 | ArrowType::Int16 | ArrowType::Int32 | ArrowType::Int64 if !has_nulls => (
                DataType::Int64,
                TensorData::Int(cast(&ArrowType::Int64)?.as_primitive::<Int64Type>().values().to_vec()),
            ),
            ArrowType::UInt8 | ArrowType::UInt16 | ArrowType::UInt32 | ArrowType::UInt64 if !has_nulls => (
                DataType::Uint64,
                TensorData::UInt(cast(&ArrowType::UInt64)?.as_primitive::<UInt64Type>().values().to_vec()),
            ),
            kind if kind.is_numeric() || matches!(kind, ArrowType::Boolean | ArrowType::Null) => {
                let numbers = cast(&ArrowType::Float64)?;
                let numbers = numbers.as_primitive::<Float64Type>();
                (
                    DataType::Fp64,
                    TensorData::F64(
                        (0..rows)
                            .map(|i| {
                                if numbers.is_valid(i) {
                                    numbers.value(i)
                                } else {
                                    f64::NAN
                                }
                            })
                            .collect(),
                    ),
                )
            }
            _ => {
                if has_nulls {
                    return Err(format!("column '{name}' holds nulls among its {kind} values"));
                }
                let bytes = match kind {
                    ArrowType::Binary | ArrowType::LargeBinary => {
                        let binary = cast(&ArrowType::Binary)?;
                        binary
                            .as_binary::<i32>()
                            .iter()
                            .map(|v| v.unwrap_or_default().to_vec())
                            .collect()
                    }
                    _ => {
                        let text = cast(&ArrowType::Utf8)?;
                        text.as_string::<i32>()
                            .iter()
                            .map(|v| v.unwrap_or_default().as_bytes().to_vec())
                            .collect()
                    }
                };
                (DataType::Bytes, TensorData::Bytes(bytes))
            }
        };
        tensors.push(Tensor {
            name: name.clone(),
            datatype,
            shape: vec![rows],
            data,
        });
    }
    Ok(tensors)
}

/// Outputs as a table: a tensor of shape `[rows]` is one column named after it; `[rows, k]` is `k` columns
/// `<name>_0` … `<name>_{k-1}`.
pub fn batch_from_tensors(tensors: &[Tensor]) -> Result<RecordBatch, String> {
    let mut columns: Vec<(String, ArrayRef)> = Vec::new();
    for tensor in tensors {
        let width = tensor.row_width();
        let column = |offset: usize| -> ArrayRef {
            let step = width.max(1);
            macro_rules! take {
                ($values:expr, $array:ty) => {
                    if step == 1 {
                        Arc::new(<$array>::from($values.clone()))
                    } else {
                        Arc::new(<$array>::from(
                            $values
                                .iter()
                                .skip(offset)
                                .step_by(step)
                                .cloned()
                                .collect::<Vec<_>>(),
                        ))
                    }
                };
            }
            match &tensor.data {
                TensorData::Bool(v) => take!(v, BooleanArray),
                TensorData::Int(v) => take!(v, Int64Array),
                TensorData::UInt(v) => take!(v, UInt64Array),
                TensorData::F32(v) => take!(v, Float32Array),
                TensorData::F64(v) => take!(v, Float64Array),
                TensorData::Bytes(v) => {
                    let picked: Vec<&[u8]> = v.iter().skip(offset).step_by(step).map(Vec::as_slice).collect();
                    match picked
                        .iter()
                        .map(|b| std::str::from_utf8(b))
                        .collect::<Result<Vec<_>, _>>()
                    {
                        Ok(text) => Arc::new(StringArray::from(text)),
                        Err(_) => Arc::new(BinaryArray::from(picked)),
                    }
                }
            }
        };
        if tensor.shape.len() <= 1 {
            columns.push((tensor.name.clone(), column(0)));
        } else {
            for offset in 0..width {
                columns.push((format!("{}_{offset}", tensor.name), column(offset)));
            }
        }
    }
    RecordBatch::try_from_iter(columns).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, values: Vec<f64>) -> Tensor {
        let rows = values.len();
        Tensor::new(name, DataType::Fp64, vec![rows], TensorData::F64(values)).unwrap()
    }

    #[test]
    fn stacking_and_splitting_round_trip() {
        let a = vec![column("x", vec![1.0, 2.0])];
        let b = vec![column("x", vec![3.0])];
        assert!(stackable(&a, &b));
        let stacked = stack(&[&a, &b]);
        assert_eq!(stacked[0].shape, vec![3]);
        assert_eq!(stacked[0].data, TensorData::F64(vec![1.0, 2.0, 3.0]));
        let matrix = Tensor::new(
            "p",
            DataType::Fp32,
            vec![3, 2],
            TensorData::F32(vec![0., 1., 2., 3., 4., 5.]),
        )
        .unwrap();
        let parts = split_rows(&[matrix], &[2, 1]);
        assert_eq!(parts[0][0].shape, vec![2, 2]);
        assert_eq!(parts[1][0].data, TensorData::F32(vec![4., 5.]));
        assert!(!stackable(&a, &[column("y", vec![1.0])]));
    }

    #[test]
    fn element_counts_must_match_shapes() {
        assert!(Tensor::new("x", DataType::Fp64, vec![2, 2], TensorData::F64(vec![1.0])).is_err());
        let wrapping = vec![1 << 32, 1 << 32, 0];
        assert!(Tensor::new("x", DataType::Fp64, wrapping, TensorData::F64(vec![])).is_err());
        let wide_and_empty = vec![0, 1 << 40, 1 << 40];
        assert!(Tensor::new("x", DataType::Fp64, wide_and_empty, TensorData::F64(vec![])).is_err());
        assert_eq!(element_count(&[3, 0, 5]), Some(0));
        assert_eq!(nonzero_dimension_product(&[3, 0, 5]), Some(15));
        assert!(request_rows(&[column("a", vec![1.0]), column("b", vec![1.0, 2.0])]).is_err());
    }

    #[test]
    fn tables_convert_both_ways() {
        let batch = RecordBatch::try_from_iter([
            ("a", Arc::new(Int64Array::from(vec![Some(1), None])) as ArrayRef),
            ("b", Arc::new(StringArray::from(vec!["x", "y"])) as ArrayRef),
        ])
        .unwrap();
        let tensors = tensors_from_batch(&batch).unwrap();
        assert_eq!(tensors[0].datatype, DataType::Fp64);
        assert!(matches!(&tensors[0].data, TensorData::F64(v) if v[0] == 1.0 && v[1].is_nan()));
        assert_eq!(tensors[1].data, TensorData::Bytes(vec![b"x".to_vec(), b"y".to_vec()]));
        let matrix = Tensor::new(
            "p",
            DataType::Fp64,
            vec![2, 2],
            TensorData::F64(vec![0.1, 0.9, 0.8, 0.2]),
        )
        .unwrap();
        let table = batch_from_tensors(&[matrix]).unwrap();
        assert_eq!(table.schema().field(1).name(), "p_1");
        assert_eq!(
            table.column(1).as_primitive::<Float64Type>().values().to_vec(),
            vec![0.9, 0.2]
        );
    }
}
