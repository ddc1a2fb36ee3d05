//! ONNX models through ONNX Runtime itself, loaded at run time (the `ort` crate's `load-dynamic`): the
//! shared library that ships inside the `onnxruntime` wheel on PyPI is found through `ORT_DYLIB_PATH` or a
//! project virtualenv. Without it the server still starts and ONNX models report why they cannot load.
//!
//! Inputs are fed as `mlflow.onnx`'s pyfunc feeds them: a single-input model takes every column as one
//! matrix (or one tensor as it is); a multi-input model takes one column or tensor per input, by name. Values
//! are cast to the element type each input declares. Tensor outputs come back as they are; a sequence of maps
//! (the ZipMap that scikit-learn classifier exports end with) becomes a `[rows, classes]` matrix.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use loopline_model_runtime_api::{
    DataType, Model, ModelDescriptor, ModelMetadata, PredictError, Tensor, TensorData, TensorMetadata,
};
use ort::session::Session;
use ort::value::{DynValue, TensorElementType, ValueType};

/// The process-wide ONNX Runtime, or why it is unavailable.
fn runtime() -> Result<&'static ort::environment::Environment, String> {
    static RUNTIME: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let library = library_path()?;
            let builder = ort::init_from(&library)
                .map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", library.display()))?;
            builder
                .with_name("loopline")
                .build()
                .map_err(|e| format!("cannot start ONNX Runtime from {}: {e}", library.display()))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Whether ONNX models can be served, and if not, why. Loads ONNX Runtime.
pub fn availability() -> Result<(), String> {
    runtime().map(|_| ())
}

/// Where ONNX Runtime would be loaded from, without loading it: the library is loaded with the first ONNX
/// model, so a server that serves none (an LLM gateway, a tracking server) does not carry its ten
/// megabytes and its threads.
pub fn locate() -> Result<PathBuf, String> {
    library_path()
}

/// `ORT_DYLIB_PATH`, else `libonnxruntime.so*` inside an `onnxruntime` wheel in a `.venv` of the working
/// directory or of a directory above the executable.
fn library_path() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("ORT_DYLIB_PATH names {}, which is not a file", path.display()))
        };
    }
    if let Some(found) = crate::project_venvs().iter().find_map(|venv| find_in_venv(venv)) {
        return Ok(found);
    }
    Err(
        "ONNX Runtime is not available: install the onnxruntime wheel (pip install onnxruntime) and set \
         ORT_DYLIB_PATH to its capi/libonnxruntime.so.<version>, or create the project venv with scripts/test.sh"
            .to_string(),
    )
}

fn find_in_venv(venv: &Path) -> Option<PathBuf> {
    let lib = std::fs::read_dir(venv.join("lib")).ok()?;
    for python in lib.flatten() {
        let capi = python.path().join("site-packages/onnxruntime/capi");
        let Ok(files) = std::fs::read_dir(&capi) else { continue };
        let mut candidates: Vec<PathBuf> = files
            .flatten()
            .map(|f| f.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("libonnxruntime.so"))
            })
            .collect();
        candidates.sort();
        if let Some(found) = candidates.pop() {
            return Some(found);
        }
    }
    None
}

#[derive(Debug, Clone)]
struct Input {
    name: String,
    element: TensorElementType,
    shape: Vec<i64>,
}

/// An ONNX model with one session per concurrent caller.
pub struct OnnxModel {
    sessions: Vec<Mutex<Session>>,
    inputs: Vec<Input>,
    output_names: Vec<String>,
    metadata: ModelMetadata,
    next: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxModel").field("metadata", &self.metadata).finish()
    }
}

fn datatype(element: TensorElementType) -> Option<DataType> {
    Some(match element {
        TensorElementType::Float32 => DataType::Fp32,
        TensorElementType::Float64 => DataType::Fp64,
        TensorElementType::Int8 => DataType::Int8,
        TensorElementType::Int16 => DataType::Int16,
        TensorElementType::Int32 => DataType::Int32,
        TensorElementType::Int64 => DataType::Int64,
        TensorElementType::Uint8 => DataType::Uint8,
        TensorElementType::Uint16 => DataType::Uint16,
        TensorElementType::Uint32 => DataType::Uint32,
        TensorElementType::Uint64 => DataType::Uint64,
        TensorElementType::Bool => DataType::Bool,
        TensorElementType::String => DataType::Bytes,
        _ => return None,
    })
}

fn describe(name: &str, value: &ValueType) -> TensorMetadata {
    match value {
        ValueType::Tensor { ty, shape, .. } => TensorMetadata {
            name: name.to_string(),
            datatype: datatype(*ty).unwrap_or(DataType::Bytes),
            shape: shape.iter().copied().collect(),
        },
        // A sequence of maps (ZipMap) is returned as a [rows, classes] matrix.
        _ => TensorMetadata {
            name: name.to_string(),
            datatype: DataType::Fp32,
            shape: vec![-1, -1],
        },
    }
}

impl OnnxModel {
    /// Loads the `onnx` flavor of a model directory with `sessions` sessions (one per concurrent caller).
    pub fn load(descriptor: &ModelDescriptor, sessions: usize) -> Result<Option<OnnxModel>, String> {
        let Some(path) = descriptor.flavor_data("onnx").map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let environment = runtime()?;
        let open = || -> Result<Session, String> {
            Session::builder(environment)
                .map_err(|e| e.to_string())?
                .with_intra_threads(1)
                .map_err(|e| e.to_string())?
                .commit_from_file(&path)
                .map_err(|e| format!("ONNX Runtime cannot load {}: {e}", path.display()))
        };
        let first = open()?;
        let inputs: Vec<Input> = first
            .inputs()
            .iter()
            .map(|outlet| match outlet.dtype() {
                ValueType::Tensor { ty, shape, .. } => Ok(Input {
                    name: outlet.name().to_string(),
                    element: *ty,
                    shape: shape.iter().copied().collect(),
                }),
                other => Err(format!(
                    "input '{}' is a {other}, not a tensor; it cannot be fed",
                    outlet.name()
                )),
            })
            .collect::<Result<_, _>>()?;
        let output_names: Vec<String> = first.outputs().iter().map(|o| o.name().to_string()).collect();
        let metadata = ModelMetadata {
            platform: "onnxruntime_onnx".to_string(),
            inputs: first.inputs().iter().map(|o| describe(o.name(), o.dtype())).collect(),
            outputs: first.outputs().iter().map(|o| describe(o.name(), o.dtype())).collect(),
        };
        let mut all = vec![Mutex::new(first)];
        for _ in 1..sessions.max(1) {
            all.push(Mutex::new(open()?));
        }
        Ok(Some(OnnxModel {
            sessions: all,
            inputs,
            output_names,
            metadata,
            next: std::sync::atomic::AtomicUsize::new(0),
        }))
    }

    /// The feeds: `(input, shape, data)` per model input.
    fn feeds(&self, tensors: &[Tensor]) -> Result<Vec<(Input, Vec<usize>, TensorData)>, PredictError> {
        let rows = loopline_model_runtime_api::tensor::request_rows(tensors).map_err(PredictError::Input)?;
        if let [input] = self.inputs.as_slice() {
            // One input: a tensor as given, or every column side by side.
            if let [tensor] = tensors
                && tensor.shape.len() == input.shape.len().max(1)
            {
                return Ok(vec![(input.clone(), tensor.shape.clone(), tensor.data.clone())]);
            }
            let width: usize = tensors.iter().map(Tensor::row_width).sum();
            let text = tensors.iter().any(|t| matches!(t.data, TensorData::Bytes(_)));
            let data = if text {
                let mut strings = Vec::with_capacity(rows * width);
                for row in 0..rows {
                    for tensor in tensors {
                        let w = tensor.row_width();
                        for offset in row * w..(row + 1) * w {
                            strings.push(match &tensor.data {
                                TensorData::Bytes(values) => values[offset].clone(),
                                data => data.number(offset).unwrap_or(f64::NAN).to_string().into_bytes(),
                            });
                        }
                    }
                }
                TensorData::Bytes(strings)
            } else if input.element == TensorElementType::Float32 {
                TensorData::F32(interleave(tensors, rows, width))
            } else {
                TensorData::F64(interleave(tensors, rows, width))
            };
            return Ok(vec![(input.clone(), vec![rows, width], data)]);
        }
        self.inputs
            .iter()
            .map(|input| {
                let tensor = tensors.iter().find(|t| t.name == input.name).ok_or_else(|| {
                    let wanted: Vec<&str> = self.inputs.iter().map(|i| i.name.as_str()).collect();
                    PredictError::Input(format!(
                        "the model's inputs are {wanted:?}; the request lacks '{}'",
                        input.name
                    ))
                })?;
                // A column fed to a [rows, 1] input gains its second dimension.
                let mut shape = tensor.shape.clone();
                if input.shape.len() == 2 && shape.len() == 1 {
                    shape.push(1);
                }
                Ok((input.clone(), shape, tensor.data.clone()))
            })
            .collect()
    }
}

/// A float element type that every tensor family converts into.
trait Element: Copy + Default {
    fn of_f64(value: f64) -> Self;
    fn of_f32(value: f32) -> Self;
    /// The values themselves when they already are of this type.
    fn borrow_f32(values: &[f32]) -> Option<&[Self]>;
    /// The values themselves when they already are of this type.
    fn borrow_f64(values: &[f64]) -> Option<&[Self]>;
}

impl Element for f32 {
    fn of_f64(value: f64) -> f32 {
        value as f32
    }
    fn of_f32(value: f32) -> f32 {
        value
    }
    fn borrow_f32(values: &[f32]) -> Option<&[f32]> {
        Some(values)
    }
    fn borrow_f64(_: &[f64]) -> Option<&[f32]> {
        None
    }
}

impl Element for f64 {
    fn of_f64(value: f64) -> f64 {
        value
    }
    fn of_f32(value: f32) -> f64 {
        f64::from(value)
    }
    fn borrow_f32(_: &[f32]) -> Option<&[f64]> {
        None
    }
    fn borrow_f64(values: &[f64]) -> Option<&[f64]> {
        Some(values)
    }
}

/// Numeric tensors side by side as one row-major matrix, each column converted once by its type.
fn interleave<T: Element>(tensors: &[Tensor], rows: usize, _width: usize) -> Vec<T> {
    let mut matrix = Vec::new();
    interleave_into(&mut matrix, tensors, rows);
    matrix
}

/// [`interleave`] into a buffer whose memory is reused.
fn interleave_into<T: Element>(matrix: &mut Vec<T>, tensors: &[Tensor], rows: usize) {
    // Columns already of type T are read in place; others are converted once.
    let columns: Vec<(std::borrow::Cow<'_, [T]>, usize)> = tensors
        .iter()
        .map(|tensor| {
            let values = match &tensor.data {
                TensorData::F32(values) => T::borrow_f32(values)
                    .map(std::borrow::Cow::Borrowed)
                    .unwrap_or_else(|| values.iter().map(|v| T::of_f32(*v)).collect()),
                TensorData::F64(values) => T::borrow_f64(values)
                    .map(std::borrow::Cow::Borrowed)
                    .unwrap_or_else(|| values.iter().map(|v| T::of_f64(*v)).collect()),
                data => (0..data.len())
                    .map(|i| T::of_f64(data.number(i).unwrap_or(f64::NAN)))
                    .collect(),
            };
            (values, tensor.row_width())
        })
        .collect();
    let width: usize = columns.iter().map(|(_, w)| w).sum();
    // Reuse the buffer without clearing it: every element is overwritten below.
    if matrix.len() < rows * width {
        matrix.resize(rows * width, T::default());
    }
    matrix.truncate(rows * width);
    // Blocks of rows small enough for the cache: each column is read in order, the block written in place.
    const BLOCK: usize = 64;
    for start in (0..rows).step_by(BLOCK) {
        let end = (start + BLOCK).min(rows);
        let block = &mut matrix[start * width..end * width];
        let mut first = 0;
        for (values, w) in &columns {
            if *w == 1 {
                for (row, value) in values[start..end].iter().enumerate() {
                    block[row * width + first] = *value;
                }
            } else {
                for (row, chunk) in values[start * w..end * w].chunks_exact(*w).enumerate() {
                    block[row * width + first..row * width + first + w].copy_from_slice(chunk);
                }
            }
            first += w;
        }
    }
}

fn to_value(input: &Input, shape: Vec<usize>, data: TensorData) -> Result<DynValue, PredictError> {
    let bad = |what: &str| PredictError::Input(format!("input '{}' expects {what}", input.name));
    let shape: Vec<i64> = shape.into_iter().map(|d| d as i64).collect();
    let numbers = |data: &TensorData| -> Result<Vec<f64>, PredictError> {
        (0..data.len())
            .map(|i| data.number(i).ok_or_else(|| bad("numbers, not text")))
            .collect()
    };
    let fail = |e: ort::Error| PredictError::Internal(e.to_string());
    macro_rules! tensor {
        ($t:ty, $data:expr) => {
            ort::value::Tensor::<$t>::from_array((
                shape,
                numbers($data)?.into_iter().map(|v| v as $t).collect::<Vec<$t>>(),
            ))
            .map(|t| t.into_dyn())
            .map_err(fail)
        };
    }
    match input.element {
        TensorElementType::Float32 => match data {
            TensorData::F32(values) => ort::value::Tensor::from_array((shape, values))
                .map(|t| t.into_dyn())
                .map_err(fail),
            other => tensor!(f32, &other),
        },
        TensorElementType::Float64 => match data {
            TensorData::F64(values) => ort::value::Tensor::from_array((shape, values))
                .map(|t| t.into_dyn())
                .map_err(fail),
            other => tensor!(f64, &other),
        },
        TensorElementType::Int64 => tensor!(i64, &data),
        TensorElementType::Int32 => tensor!(i32, &data),
        TensorElementType::Int16 => tensor!(i16, &data),
        TensorElementType::Int8 => tensor!(i8, &data),
        TensorElementType::Uint8 => tensor!(u8, &data),
        TensorElementType::Uint16 => tensor!(u16, &data),
        TensorElementType::Uint32 => tensor!(u32, &data),
        TensorElementType::Uint64 => tensor!(u64, &data),
        TensorElementType::Bool => {
            let values: Vec<bool> = numbers(&data)?.into_iter().map(|v| v != 0.0).collect();
            ort::value::Tensor::from_array((shape, values))
                .map(|t| t.into_dyn())
                .map_err(fail)
        }
        TensorElementType::String => {
            let TensorData::Bytes(values) = data else {
                return Err(bad("text"));
            };
            let text: Vec<String> = values
                .into_iter()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .collect();
            ort::value::Tensor::from_string_array((shape, text.as_slice()))
                .map(|t| t.into_dyn())
                .map_err(fail)
        }
        other => Err(PredictError::Input(format!(
            "input '{}' has element type {other:?}, which this server does not feed",
            input.name
        ))),
    }
}

fn from_value(name: &str, value: &DynValue) -> Result<Tensor, String> {
    let shaped = |shape: &ort::value::Shape| -> Vec<usize> { shape.iter().map(|d| (*d).max(0) as usize).collect() };
    match value.dtype() {
        ValueType::Tensor { ty, .. } => {
            let ty = *ty;
            macro_rules! take {
                ($t:ty, $variant:ident, $convert:expr) => {{
                    let (shape, values) = value.try_extract_tensor::<$t>().map_err(|e| e.to_string())?;
                    (
                        shaped(shape),
                        TensorData::$variant(values.iter().map($convert).collect()),
                    )
                }};
            }
            let (shape, data) = match ty {
                TensorElementType::Float32 => take!(f32, F32, |v| *v),
                TensorElementType::Float64 => take!(f64, F64, |v| *v),
                TensorElementType::Int64 => take!(i64, Int, |v| *v),
                TensorElementType::Int32 => take!(i32, Int, |v| i64::from(*v)),
                TensorElementType::Int16 => take!(i16, Int, |v| i64::from(*v)),
                TensorElementType::Int8 => take!(i8, Int, |v| i64::from(*v)),
                TensorElementType::Uint8 => take!(u8, UInt, |v| u64::from(*v)),
                TensorElementType::Uint16 => take!(u16, UInt, |v| u64::from(*v)),
                TensorElementType::Uint32 => take!(u32, UInt, |v| u64::from(*v)),
                TensorElementType::Uint64 => take!(u64, UInt, |v| *v),
                TensorElementType::Bool => take!(bool, Bool, |v| *v),
                TensorElementType::String => {
                    let (shape, values) = value.try_extract_strings().map_err(|e| e.to_string())?;
                    (
                        shaped(shape),
                        TensorData::Bytes(values.into_iter().map(String::into_bytes).collect()),
                    )
                }
                other => {
                    return Err(format!(
                        "output '{name}' has element type {other:?}, which cannot be returned"
                    ));
                }
            };
            let datatype = datatype(ty).unwrap_or(DataType::Bytes);
            let shape = if shape.is_empty() { vec![data.len()] } else { shape };
            Tensor::new(name, datatype, shape, data)
        }
        ValueType::Sequence(_) => {
            let maps = value
                .try_extract_sequence::<ort::value::DynMapValueType>()
                .map_err(|e| format!("output '{name}': {e}"))?;
            let rows = maps.len();
            let mut values = Vec::new();
            let mut width = 0;
            for map in &maps {
                let mut row: Vec<(String, f32)> = match map.try_extract_key_values::<i64, f32>() {
                    Ok(pairs) => {
                        let mut pairs = pairs;
                        pairs.sort_by_key(|(k, _)| *k);
                        pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
                    }
                    Err(_) => {
                        let mut pairs = map
                            .try_extract_key_values::<String, f32>()
                            .map_err(|e| format!("output '{name}': {e}"))?;
                        pairs.sort_by(|a, b| a.0.cmp(&b.0));
                        pairs
                    }
                };
                width = row.len();
                values.extend(row.drain(..).map(|(_, v)| v));
            }
            Tensor::new(name, DataType::Fp32, vec![rows, width], TensorData::F32(values))
        }
        other => Err(format!("output '{name}' is a {other}, which cannot be returned")),
    }
}

impl Model for OnnxModel {
    fn metadata(&self) -> &ModelMetadata {
        &self.metadata
    }

    fn predict(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, PredictError> {
        // The common batch case, numeric columns into one float matrix, is laid out in a buffer each thread
        // keeps, so large batches do not fault in fresh pages every time.
        if let Some((input, rows, width)) = self.float_matrix(inputs) {
            return SCRATCH.with_borrow_mut(|scratch| {
                interleave_into(scratch, inputs, rows);
                let view = ort::value::TensorRef::from_array_view(([rows, width], scratch.as_slice()))
                    .map_err(|e| PredictError::Internal(e.to_string()))?
                    .into_dyn();
                self.run(vec![(input.name.clone(), ort::session::SessionInputValue::from(view))])
            });
        }
        let feeds = self.feeds(inputs)?;
        let values: Vec<(String, ort::session::SessionInputValue<'_>)> = feeds
            .into_iter()
            .map(|(input, shape, data)| to_value(&input, shape, data).map(|v| (input.name.clone(), v.into())))
            .collect::<Result<_, _>>()?;
        self.run(values)
    }
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl OnnxModel {
    /// The single float input and the matrix shape when the request is numeric columns (not one tensor that
    /// is fed as it is).
    fn float_matrix(&self, inputs: &[Tensor]) -> Option<(&Input, usize, usize)> {
        let [input] = self.inputs.as_slice() else { return None };
        if input.element != TensorElementType::Float32
            || input.shape.len() != 2
            || inputs.len() < 2
            || inputs.iter().any(|t| matches!(t.data, TensorData::Bytes(_)))
        {
            return None;
        }
        let rows = loopline_model_runtime_api::tensor::request_rows(inputs).ok()?;
        Some((input, rows, inputs.iter().map(Tensor::row_width).sum()))
    }

    /// Runs the model on one free session (else waits for the next in turn) and copies the outputs out.
    fn run(&self, values: Vec<(String, ort::session::SessionInputValue<'_>)>) -> Result<Vec<Tensor>, PredictError> {
        let start = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let count = self.sessions.len();
        let mut guard = (0..count)
            .find_map(|i| self.sessions[(start + i) % count].try_lock().ok())
            .unwrap_or_else(|| {
                self.sessions[start % count]
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
            });
        let outputs = guard
            .run(values)
            .map_err(|e| PredictError::Input(format!("ONNX Runtime refused the input: {e}")))?;
        self.output_names
            .iter()
            .map(|name| from_value(name, &outputs[name.as_str()]).map_err(PredictError::Internal))
            .collect()
    }
}
