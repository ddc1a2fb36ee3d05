//! `loopline validate DATA --suite SUITE.json`: checks a table against a Great Expectations suite in one pass.
//! Exit code 0: every expectation met; 1: some failed; 2: bad input or suite.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use loopline_data_validation::{ExpectationSuite, Validator};
use loopline_tabular::TableSource;
use serde_json::{Map, Value};

use super::progress::rows_bar;
use super::{FINDING, OK, input_error, write_output};

/// Arguments of `loopline validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The table to check (Parquet, CSV or Arrow IPC).
    pub data: PathBuf,
    /// The expectation suite (Great Expectations JSON).
    #[arg(long)]
    pub suite: PathBuf,
    /// Write the result as JSON (GX's validation result shape) to this file (`-` for standard output).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the result as a self-contained HTML page to this file.
    #[arg(long)]
    pub html: Option<PathBuf>,
}

/// Runs `loopline validate`.
pub fn run(args: ValidateArgs) -> ExitCode {
    let suite = match ExpectationSuite::load(&args.suite) {
        Ok(suite) => suite,
        Err(error) => return input_error(error),
    };
    let source = match TableSource::open(&args.data) {
        Ok(source) => source,
        Err(error) => return input_error(error),
    };
    let mut validator = match Validator::new(&suite, source.schema()) {
        Ok(validator) => validator,
        Err(error) => return input_error(format!("{}: {error}", args.suite.display())),
    };
    let columns = validator.columns();
    let bar = rows_bar("validating", source.rows());
    let batches = match source.batches_with(Some(&columns), true) {
        Ok(batches) => batches,
        Err(error) => return input_error(error),
    };
    // Decode on one thread while the expectations run on the others.
    let outcome = std::thread::scope(|scope| {
        let (sender, receiver) = std::sync::mpsc::sync_channel(4);
        scope.spawn(move || {
            for batch in batches {
                if sender.send(batch).is_err() {
                    break;
                }
            }
        });
        for batch in receiver {
            let batch = batch.map_err(|error| error.to_string())?;
            validator
                .push(&batch)
                .map_err(|error| format!("{}: {error}", args.data.display()))?;
            bar.inc(batch.num_rows() as u64);
        }
        Ok::<(), String>(())
    });
    if let Err(message) = outcome {
        return input_error(message);
    }
    bar.finish_and_clear();
    let data = args.data.display().to_string();
    let mut meta = Map::new();
    meta.insert("data".into(), Value::from(data.clone()));
    meta.insert(
        "validated_by".into(),
        Value::from(format!("loopline {}", env!("CARGO_PKG_VERSION"))),
    );
    let result = validator.finish(meta);
    for (index, item) in result.results.iter().enumerate() {
        let mark = if item.success { "ok  " } else { "FAIL" };
        let column = item.expectation_config.kwargs.get("column").and_then(Value::as_str);
        let target = column.map(|c| format!(" [{c}]")).unwrap_or_default();
        println!(
            "{mark} {:>3}. {}{target}: {}",
            index + 1,
            item.expectation_config.kind,
            loopline_data_validation::html::observation(item)
        );
    }
    println!(
        "{} of {} expectations met on {data}",
        result.statistics.successful_expectations, result.statistics.evaluated_expectations
    );
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&result).expect("results serialise");
        if let Err(message) = write_output(path, &text) {
            return input_error(message);
        }
    }
    if let Some(path) = &args.html {
        if let Err(message) = write_output(path, &loopline_data_validation::html::render(&result, &data)) {
            return input_error(message);
        }
        eprintln!("HTML report written to {}", path.display());
    }
    ExitCode::from(if result.success { OK } else { FINDING })
}
