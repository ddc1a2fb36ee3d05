//! `loopline predictions export --model NAME -o out.parquet`: the prediction log of one model, over an hour
//! range, as one Parquet file, with the ground-truth label posted to the feedback endpoint joined by request
//! id (the newest label wins; `label` is null where none came).

use std::process::ExitCode;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray, new_null_array};
use arrow_schema::{Field, Schema};
use clap::{Args, Subcommand};
use loopline_artifact_store::{ArtifactStore, ObjectArtifactStore};
use loopline_serving::log_reader;

use super::progress::rows_bar;
use super::{OK, input_error};

/// `loopline predictions ...`.
#[derive(Debug, Args)]
pub struct PredictionsArgs {
    #[command(subcommand)]
    command: PredictionsCommand,
}

#[derive(Debug, Subcommand)]
enum PredictionsCommand {
    /// Write a model's logged predictions (with feedback labels) to one Parquet file.
    Export(ExportArgs),
}

/// Arguments of `loopline predictions export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Registered model name.
    #[arg(long)]
    model: String,
    /// Output Parquet file.
    #[arg(short = 'o', long = "output-path")]
    output: std::path::PathBuf,
    /// First hour to include, `YYYY-MM-DDTHH` (UTC).
    #[arg(long)]
    since: Option<String>,
    /// Last hour to include, `YYYY-MM-DDTHH` (UTC).
    #[arg(long)]
    until: Option<String>,
    /// The server's artifact store (a directory or `s3://bucket/prefix`); defaults to the server's default.
    #[arg(long, env = "LOOPLINE_ARTIFACTS_DESTINATION")]
    artifacts_destination: Option<String>,
    /// The server's data directory (used when --artifacts-destination is not given).
    #[arg(long, env = "LOOPLINE_DATA_DIR", default_value = "loopline-data")]
    data_dir: std::path::PathBuf,
}

/// Runs `loopline predictions`.
pub fn run(args: PredictionsArgs) -> ExitCode {
    let PredictionsCommand::Export(args) = args.command;
    for hour in [&args.since, &args.until].into_iter().flatten() {
        if !is_hour(hour) {
            return input_error(format!(
                "'{hour}' is not an hour; write YYYY-MM-DDTHH, e.g. 2026-11-22T09"
            ));
        }
    }
    let destination = args
        .artifacts_destination
        .clone()
        .unwrap_or_else(|| args.data_dir.join("artifacts").display().to_string());
    let store = match ObjectArtifactStore::open(&destination) {
        Ok(store) => Arc::new(store),
        Err(error) => return input_error(format!("cannot open the artifact store {destination}: {error}")),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => return input_error(format!("cannot start the I/O runtime: {error}")),
    };
    match runtime.block_on(export(store.as_ref(), &args)) {
        Ok(rows) => {
            println!(
                "{rows} logged predictions of '{}' written to {}",
                args.model,
                args.output.display()
            );
            ExitCode::from(OK)
        }
        Err(message) if message.starts_with("no logged predictions") => input_error(format!(
            "{message}; looked in the artifact store {destination}: the command reads the store itself, so give it \
             the server's --data-dir or --artifacts-destination"
        )),
        Err(message) => input_error(message),
    }
}

fn is_hour(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 13
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes[10] == b'T'
        && bytes
            .iter()
            .enumerate()
            .all(|(i, b)| [4, 7, 10].contains(&i) || b.is_ascii_digit())
}

/// Brings batches to one schema: columns in order of first appearance, nulls where a batch lacks one.
fn unify(batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>, String> {
    let mut fields: Vec<Field> = Vec::new();
    for batch in &batches {
        for field in batch.schema().fields() {
            match fields.iter().find(|f| f.name() == field.name()) {
                Some(known) if known.data_type() != field.data_type() => {
                    return Err(format!(
                        "column '{}' is logged as {} in one file and {} in another",
                        field.name(),
                        known.data_type(),
                        field.data_type()
                    ));
                }
                Some(_) => {}
                None => fields.push(Field::new(field.name(), field.data_type().clone(), true)),
            }
        }
    }
    let schema = Arc::new(Schema::new(fields));
    batches
        .into_iter()
        .map(|batch| {
            let columns: Vec<ArrayRef> = schema
                .fields()
                .iter()
                .map(|field| {
                    batch
                        .column_by_name(field.name())
                        .cloned()
                        .unwrap_or_else(|| new_null_array(field.data_type(), batch.num_rows()))
                })
                .collect();
            RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())
        })
        .collect()
}

async fn export(store: &dyn ArtifactStore, args: &ExportArgs) -> Result<u64, String> {
    let prefix = log_reader::predictions_prefix(&args.model);
    let files = log_reader::log_files(store, &prefix, args.since.as_deref(), args.until.as_deref()).await?;
    if files.is_empty() {
        return Err(format!(
            "no logged predictions for model '{}'{} (is the prediction log on, and has the server flushed it?)",
            args.model,
            match (&args.since, &args.until) {
                (None, None) => String::new(),
                (since, until) => format!(
                    " between {} and {}",
                    since.as_deref().unwrap_or("the start"),
                    until.as_deref().unwrap_or("now")
                ),
            }
        ));
    }
    let labels = log_reader::posted_labels(store, (args.since.as_deref(), None), None).await?;
    let bar = rows_bar("reading", Some(files.len() as u64));
    let mut batches = Vec::new();
    for file in &files {
        batches.extend(log_reader::read_log_file(store, &file.path).await?);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let mut rows = 0u64;
    let mut writer: Option<parquet::arrow::ArrowWriter<std::fs::File>> = None;
    for batch in unify(batches)? {
        let ids = batch
            .column_by_name("request_id")
            .ok_or("a prediction log file has no request_id column")?
            .as_string::<i32>()
            .clone();
        let label: StringArray = (0..batch.num_rows())
            .map(|row| {
                ids.is_valid(row)
                    .then(|| labels.get(ids.value(row)).map(|posted| posted.label.as_str()))
                    .flatten()
            })
            .collect();
        let mut columns: Vec<(String, ArrayRef)> = batch
            .schema()
            .fields()
            .iter()
            .zip(batch.columns())
            // The request key is the log's sampling index, not data.
            .filter(|(f, _)| f.name() != log_reader::REQUEST_KEY)
            .map(|(f, c)| (f.name().clone(), c.clone()))
            .collect();
        columns.push(("label".to_string(), Arc::new(label)));
        let joined = RecordBatch::try_from_iter_with_nullable(columns.into_iter().map(|(n, c)| (n, c, true)))
            .map_err(|e| e.to_string())?;
        if writer.is_none() {
            let file = std::fs::File::create(&args.output)
                .map_err(|e| format!("cannot write {}: {e}", args.output.display()))?;
            writer =
                Some(parquet::arrow::ArrowWriter::try_new(file, joined.schema(), None).map_err(|e| e.to_string())?);
        }
        writer
            .as_mut()
            .expect("created above")
            .write(&joined)
            .map_err(|e| e.to_string())?;
        rows += joined.num_rows() as u64;
    }
    if let Some(writer) = writer {
        writer.close().map_err(|e| e.to_string())?;
    }
    Ok(rows)
}
