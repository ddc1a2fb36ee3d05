//! `loopline predict -m MODEL -i INPUT -o OUTPUT`: batch inference with `mlflow models predict`'s flags. Input
//! record batches stream through the model on every core and the predictions are written, in input order, to a
//! Parquet file (one `prediction` column, or `prediction_0` … for one value per class); memory stays bounded by
//! a few batches in flight whatever the input size.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};

use arrow_array::RecordBatch;
use clap::Args;
use loopline_model_runtime_api::Model;
use loopline_model_runtime_api::tensor::{batch_from_tensors, tensors_from_batch};
use loopline_tabular::TableSource;

use super::progress::rows_bar;
use super::{OK, input_error};

/// Arguments of `loopline predict`.
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// The model: a local MLflow model directory (a path or `file://` URI), or `models:/name/version`,
    /// `models:/name@alias`, `models:/m-<id>`, `runs:/<run-id>/<path>` from the tracking server in
    /// `MLFLOW_TRACKING_URI`.
    #[arg(short = 'm', long = "model-uri")]
    pub model_uri: String,
    /// Input table (Parquet, CSV or Arrow IPC).
    #[arg(short = 'i', long = "input-path")]
    pub input: PathBuf,
    /// Output Parquet file.
    #[arg(short = 'o', long = "output-path")]
    pub output: PathBuf,
    /// Input format when the file name does not tell it (`parquet`, `csv`); accepted for `mlflow models predict`
    /// compatibility.
    #[arg(short = 't', long = "content-type")]
    pub content_type: Option<String>,
    /// `mlflow models predict`'s environment flags.
    #[command(flatten)]
    pub python_env: super::PythonEnvArgs,
}

/// Runs `loopline predict`.
pub fn run(args: PredictArgs) -> ExitCode {
    args.python_env.print_notes();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => return input_error(format!("cannot start the I/O runtime: {error}")),
    };
    let fetched = match runtime.block_on(crate::model_fetch::fetch_for_cli(&args.model_uri)) {
        Ok(fetched) => fetched,
        Err(message) => return input_error(message),
    };
    let model = match loopline_model_runtimes::load_model(&fetched.directory) {
        Ok(loaded) => loaded.model,
        Err(error) => return input_error(error),
    };
    if let Some(kind) = &args.content_type
        && !["parquet", "csv", "json"].contains(&kind.as_str())
    {
        return input_error(format!("--content-type {kind}: use parquet or csv"));
    }
    let source = match TableSource::open(&args.input) {
        Ok(source) => source,
        Err(error) => return input_error(error),
    };
    let batches = match source.batches(None) {
        Ok(batches) => batches,
        Err(error) => return input_error(error),
    };
    let bar = rows_bar("predicting", source.rows());
    let outcome = run_pipeline(model.as_ref(), batches, &args.output, |rows| bar.inc(rows));
    bar.finish_and_clear();
    match outcome {
        Ok(rows) => {
            println!("{rows} predictions written to {}", args.output.display());
            ExitCode::from(OK)
        }
        Err(message) => {
            let _ = std::fs::remove_file(&args.output);
            input_error(message)
        }
    }
}

/// Reader → workers (one per core) → writer, with bounded queues; output in input order.
fn run_pipeline(
    model: &dyn Model,
    batches: loopline_tabular::read::Batches,
    output: &std::path::Path,
    mut progress: impl FnMut(u64),
) -> Result<u64, String> {
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    std::thread::scope(|scope| {
        let (input_sender, input_receiver) = sync_channel::<(usize, RecordBatch)>(workers * 2);
        let input_receiver = Arc::new(std::sync::Mutex::new(input_receiver));
        let (output_sender, output_receiver) = sync_channel::<(usize, Result<RecordBatch, String>)>(workers * 2);
        let reader = scope.spawn(move || -> Result<(), String> {
            for (index, batch) in batches.enumerate() {
                let batch = batch.map_err(|e| e.to_string())?;
                if input_sender.send((index, batch)).is_err() {
                    break;
                }
            }
            Ok(())
        });
        for _ in 0..workers {
            let receiver = Arc::clone(&input_receiver);
            let sender = output_sender.clone();
            scope.spawn(move || {
                loop {
                    let next = receiver.lock().expect("the queue lock is not poisoned").recv();
                    let Ok((index, batch)) = next else { break };
                    let result = tensors_from_batch(&batch)
                        .and_then(|inputs| model.predict(&inputs).map_err(|e| e.to_string()))
                        .and_then(|outputs| batch_from_tensors(&outputs));
                    if sender.send((index, result)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(output_sender);
        let written = write_in_order(output_receiver, output, &mut progress);
        let read = reader.join().expect("the reader does not panic");
        read?;
        written
    })
}

fn write_in_order(
    results: Receiver<(usize, Result<RecordBatch, String>)>,
    output: &std::path::Path,
    progress: &mut impl FnMut(u64),
) -> Result<u64, String> {
    let mut pending = std::collections::BTreeMap::new();
    let mut next = 0usize;
    let mut writer: Option<parquet::arrow::ArrowWriter<std::fs::File>> = None;
    let mut rows = 0u64;
    for (index, result) in results {
        pending.insert(index, result?);
        while let Some(batch) = pending.remove(&next) {
            if writer.is_none() {
                let file =
                    std::fs::File::create(output).map_err(|e| format!("cannot write {}: {e}", output.display()))?;
                // Predictions rarely repeat: plain encoding writes them faster than dictionaries would.
                let properties = parquet::file::properties::WriterProperties::builder()
                    .set_dictionary_enabled(false)
                    .build();
                writer = Some(
                    parquet::arrow::ArrowWriter::try_new(file, batch.schema(), Some(properties))
                        .map_err(|e| e.to_string())?,
                );
            }
            writer
                .as_mut()
                .expect("created above")
                .write(&batch)
                .map_err(|e| e.to_string())?;
            rows += batch.num_rows() as u64;
            progress(batch.num_rows() as u64);
            next += 1;
        }
    }
    match writer {
        Some(writer) => {
            writer.close().map_err(|e| e.to_string())?;
        }
        None => return Err("the input has no rows".to_string()),
    }
    Ok(rows)
}
