//! Every other MLflow model (scikit-learn pickles and skops files, custom `PythonModel`s, any pyfunc) runs in a
//! supervised Python worker process that loads it with `mlflow.pyfunc` (this server never unpickles anything).
//! Record batches go to the worker and back as Arrow IPC streams over a Unix socket. A worker that dies fails
//! the requests it held with "unavailable" (503) and is restarted at once.
//!
//! The interpreter is `LOOPLINE_PYTHON`, else the project virtualenv's `python`, else `python3`; it needs
//! mlflow, pyarrow and the model's own libraries.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, FixedSizeListArray, RecordBatch};
use arrow_schema::{DataType as ArrowType, Field};
use loopline_model_runtime_api::tensor::{batch_from_tensors, tensors_from_batch};
use loopline_model_runtime_api::{
    DataType, Model, ModelDescriptor, ModelMetadata, PredictError, Schema, Tensor, TensorMetadata,
};

const WORKER_SOURCE: &str = include_str!("python_worker.py");
/// Longest a worker may take to load its model.
const LOAD_TIMEOUT: Duration = Duration::from_secs(600);

fn interpreter() -> PathBuf {
    if let Some(python) = std::env::var_os("LOOPLINE_PYTHON") {
        return PathBuf::from(python);
    }
    crate::project_venvs()
        .into_iter()
        .map(|venv| venv.join("bin/python"))
        .find(|python| python.is_file())
        .unwrap_or_else(|| PathBuf::from("python3"))
}

struct Worker {
    child: Child,
    stream: UnixStream,
    stderr: PathBuf,
    _directory: tempfile::TempDir,
}

impl Drop for Worker {
    fn drop(&mut self) {
        // The whole group: processes the model started go with it.
        if let Ok(group) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(group), nix::sys::signal::Signal::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(12)..].join("\n")
}

impl Worker {
    fn start(model: &Path) -> Result<Worker, String> {
        // One directory per worker, removed with it: the script, the socket, the log and the private home.
        let directory = tempfile::Builder::new()
            .prefix("loopline-worker-")
            .tempdir()
            .map_err(|e| format!("cannot create the worker's directory: {e}"))?;
        let script = directory.path().join("python_worker.py");
        std::fs::write(&script, WORKER_SOURCE).map_err(|e| format!("cannot write the Python worker script: {e}"))?;
        let socket = directory.path().join("worker.sock");
        let listener =
            UnixListener::bind(&socket).map_err(|e| format!("cannot listen on {}: {e}", socket.display()))?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let stderr = directory.path().join("stderr.log");
        let log = std::fs::File::create(&stderr).map_err(|e| e.to_string())?;
        let private_temporary = directory.path().join("tmp");
        std::fs::create_dir(&private_temporary)
            .map_err(|e| format!("cannot create the worker's temporary directory: {e}"))?;
        let python = interpreter();
        let mut command = Command::new(&python);
        command
            .arg(&script)
            .arg(model)
            .arg(&socket)
            .current_dir(&private_temporary)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let sandbox = crate::worker_sandbox::WorkerPaths {
            model: model.to_path_buf(),
            script_directory: script.parent().map(Path::to_path_buf).unwrap_or_default(),
            interpreter: python.clone(),
            private_directory: private_temporary.clone(),
        };
        crate::worker_sandbox::confine(&mut command, &private_temporary);
        let mut child = crate::worker_sandbox::spawn_confined(&mut command, &sandbox)
            .map_err(|e| {
                format!(
                    "cannot start the Python model worker with {}: {e}; set LOOPLINE_PYTHON to a Python with mlflow and pyarrow",
                    python.display()
                )
            })?;
        let started = Instant::now();
        let stream = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(error) => return Err(format!("the Python worker could not connect: {error}")),
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "the Python model worker ({}) could not load the model ({status}):\n{}",
                    python.display(),
                    tail(&stderr)
                ));
            }
            if started.elapsed() > LOAD_TIMEOUT {
                let _ = child.kill();
                return Err(format!(
                    "the Python model worker did not load the model within {LOAD_TIMEOUT:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        stream.set_nonblocking(false).map_err(|e| e.to_string())?;
        Ok(Worker {
            child,
            stream,
            stderr,
            _directory: directory,
        })
    }

    /// One exchange; an `Err` means the worker is gone.
    fn exchange(&mut self, request: &[u8]) -> std::io::Result<(u8, Vec<u8>)> {
        self.stream.write_all(&(request.len() as u32).to_le_bytes())?;
        self.stream.write_all(request)?;
        let mut length = [0u8; 4];
        self.stream.read_exact(&mut length)?;
        // Grown as bytes arrive, so a worker that declares 4 GB and sends little costs little.
        let declared = u64::from(u32::from_le_bytes(length));
        let mut payload = Vec::new();
        (&mut self.stream).take(declared).read_to_end(&mut payload)?;
        if payload.len() as u64 != declared {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "a reply cut short",
            ));
        }
        if payload.is_empty() {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "an empty reply"));
        }
        let status = payload.remove(0);
        Ok((status, payload))
    }

    fn exit_description(&mut self) -> String {
        match self.child.try_wait() {
            Ok(Some(status)) => status.to_string(),
            _ => "it stopped answering".to_string(),
        }
    }
}

struct Inner {
    directory: PathBuf,
    worker: Mutex<Option<Worker>>,
    /// The longest a call may wait for the worker's answer, in milliseconds (0: no limit).
    call_limit_ms: std::sync::atomic::AtomicU64,
}

impl Inner {
    fn restart_in_background(self: &Arc<Self>) {
        let inner = Arc::clone(self);
        std::thread::spawn(move || {
            let mut slot = inner.worker.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if slot.is_none() {
                match Worker::start(&inner.directory) {
                    Ok(worker) => {
                        tracing::info!(model = %inner.directory.display(), "Python model worker restarted");
                        *slot = Some(worker);
                    }
                    Err(error) => {
                        tracing::error!(model = %inner.directory.display(), %error, "Python model worker did not restart")
                    }
                }
            }
        });
    }
}

/// A model served by a Python worker.
pub struct PythonModel {
    inner: Arc<Inner>,
    metadata: ModelMetadata,
}

fn metadata(descriptor: &ModelDescriptor) -> ModelMetadata {
    let describe = |schema: Option<&Schema>, fallback: &str| -> Vec<TensorMetadata> {
        match schema {
            Some(Schema::Columns(columns)) => columns
                .iter()
                .enumerate()
                .map(|(i, c)| TensorMetadata {
                    name: c.name.clone().unwrap_or_else(|| i.to_string()),
                    datatype: match c.kind {
                        loopline_model_runtime_api::ColumnType::Double => DataType::Fp64,
                        loopline_model_runtime_api::ColumnType::Float => DataType::Fp32,
                        loopline_model_runtime_api::ColumnType::Long
                        | loopline_model_runtime_api::ColumnType::Integer => DataType::Int64,
                        loopline_model_runtime_api::ColumnType::Boolean => DataType::Bool,
                        _ => DataType::Bytes,
                    },
                    shape: vec![-1],
                })
                .collect(),
            Some(Schema::Tensors(tensors)) => tensors
                .iter()
                .enumerate()
                .map(|(i, t)| TensorMetadata {
                    name: t.name.clone().unwrap_or_else(|| {
                        if i == 0 {
                            fallback.to_string()
                        } else {
                            format!("{fallback}_{i}")
                        }
                    }),
                    datatype: DataType::of_numpy(&t.dtype).unwrap_or(DataType::Bytes),
                    shape: t.shape.clone(),
                })
                .collect(),
            None => Vec::new(),
        }
    };
    let signature = descriptor.signature();
    let loader = descriptor
        .flavor_field("python_function", "loader_module")
        .unwrap_or("pyfunc");
    ModelMetadata {
        platform: format!("{}_python", loader.trim_start_matches("mlflow.").replace('.', "_")),
        inputs: describe(signature.and_then(|s| s.inputs.as_ref()), "input"),
        outputs: describe(signature.and_then(|s| s.outputs.as_ref()), "prediction"),
    }
}

impl PythonModel {
    /// Starts a worker for a model with a `python_function` flavor; `Ok(None)` for other models.
    pub fn load(descriptor: &ModelDescriptor) -> Result<Option<PythonModel>, String> {
        if descriptor.flavor("python_function").is_none() {
            return Ok(None);
        }
        let directory = descriptor.directory().to_path_buf();
        let worker = Worker::start(&directory)?;
        Ok(Some(PythonModel {
            inner: Arc::new(Inner {
                directory,
                worker: Mutex::new(Some(worker)),
                call_limit_ms: std::sync::atomic::AtomicU64::new(0),
            }),
            metadata: metadata(descriptor),
        }))
    }
}

/// Inputs as a record batch: columns as they are, `[rows, 1]` tensors as columns, wider tensors as
/// fixed-size-list columns (a matrix).
fn request_batch(inputs: &[Tensor]) -> Result<RecordBatch, String> {
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for tensor in inputs {
        let width = tensor.row_width();
        let flat = Tensor::new(
            tensor.name.clone(),
            tensor.datatype,
            vec![tensor.data.len()],
            tensor.data.clone(),
        )?;
        let values = batch_from_tensors(&[flat])?.column(0).clone();
        if width == 1 && tensor.shape.len() <= 2 {
            fields.push(Field::new(&tensor.name, values.data_type().clone(), false));
            columns.push(values);
        } else {
            let item = Arc::new(Field::new("item", values.data_type().clone(), false));
            let list = FixedSizeListArray::try_new(item, width as i32, values, None).map_err(|e| e.to_string())?;
            fields.push(Field::new(&tensor.name, list.data_type().clone(), false));
            columns.push(Arc::new(list));
        }
    }
    RecordBatch::try_new(Arc::new(arrow_schema::Schema::new(fields)), columns).map_err(|e| e.to_string())
}

/// The worker's predictions as tensors: fixed-size-list columns become `[rows, k]` tensors.
fn response_tensors(batch: &RecordBatch) -> Result<Vec<Tensor>, String> {
    let rows = batch.num_rows();
    let mut tensors = Vec::new();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if let ArrowType::FixedSizeList(_, width) = column.data_type() {
            let values = column.as_fixed_size_list().values().clone();
            let inner = RecordBatch::try_from_iter([(field.name().as_str(), values)]).map_err(|e| e.to_string())?;
            let flat = tensors_from_batch(&inner)?.remove(0);
            tensors.push(Tensor::new(
                field.name().clone(),
                flat.datatype,
                vec![rows, *width as usize],
                flat.data,
            )?);
        } else {
            let single =
                RecordBatch::try_from_iter([(field.name().as_str(), column.clone())]).map_err(|e| e.to_string())?;
            tensors.extend(tensors_from_batch(&single)?);
        }
    }
    Ok(tensors)
}

fn encode(batch: &RecordBatch) -> Result<Vec<u8>, String> {
    let mut buffer = Vec::new();
    let mut writer =
        arrow_ipc::writer::StreamWriter::try_new(&mut buffer, &batch.schema()).map_err(|e| e.to_string())?;
    writer.write(batch).map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())?;
    drop(writer);
    Ok(buffer)
}

fn decode(bytes: &[u8]) -> Result<RecordBatch, String> {
    let mut reader = arrow_ipc::reader::StreamReader::try_new(bytes, None).map_err(|e| e.to_string())?;
    reader
        .next()
        .ok_or_else(|| "the worker returned no predictions".to_string())?
        .map_err(|e| e.to_string())
}

impl Model for PythonModel {
    fn metadata(&self) -> &ModelMetadata {
        &self.metadata
    }

    fn limit_call_time(&self, limit: Option<std::time::Duration>) {
        let ms = limit.map_or(0, |l| u64::try_from(l.as_millis()).unwrap_or(u64::MAX).max(1));
        self.inner.call_limit_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    fn predict(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, PredictError> {
        let request = request_batch(inputs)
            .and_then(|batch| encode(&batch))
            .map_err(PredictError::Input)?;
        let mut slot = self
            .inner
            .worker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(Worker::start(&self.inner.directory).map_err(PredictError::Unavailable)?);
        }
        let worker = slot.as_mut().expect("started above");
        let limit_ms = self.inner.call_limit_ms.load(std::sync::atomic::Ordering::Relaxed);
        let limit = (limit_ms > 0).then(|| std::time::Duration::from_millis(limit_ms));
        if let Err(error) = worker.stream.set_read_timeout(limit) {
            return Err(PredictError::Internal(format!(
                "cannot time the Python model worker: {error}"
            )));
        }
        match worker.exchange(&request) {
            Ok((0, payload)) => {
                drop(slot);
                decode(&payload)
                    .and_then(|batch| response_tensors(&batch))
                    .map_err(PredictError::Internal)
            }
            Ok((1, message)) => Err(PredictError::Input(String::from_utf8_lossy(&message).into_owned())),
            Ok((_, message)) => Err(PredictError::Internal(format!(
                "the model failed: {}",
                String::from_utf8_lossy(&message)
            ))),
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                // Stopping the worker (dropping it kills the process) is the only way to stop the call.
                *slot = None;
                drop(slot);
                let limit = limit.unwrap_or_default();
                tracing::error!(model = %self.inner.directory.display(), ?limit, "a Python model call ran over its limit; stopping its worker");
                self.inner.restart_in_background();
                Err(PredictError::Unavailable(format!(
                    "the model took longer than the {limit:?} limit (--timeout); its Python worker was stopped and is being restarted"
                )))
            }
            Err(_) => {
                let exit = worker.exit_description();
                let log = tail(&worker.stderr);
                *slot = None;
                drop(slot);
                tracing::error!(model = %self.inner.directory.display(), %exit, log, "Python model worker died");
                self.inner.restart_in_background();
                Err(PredictError::Unavailable(format!(
                    "the Python model worker stopped ({exit}) while predicting; it is being restarted, retry the request"
                )))
            }
        }
    }
}
