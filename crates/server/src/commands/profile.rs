//! `loopline profile DATA -o OUT.profile.json`: profiles a table once so later drift checks never re-read it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use loopline_tabular::collect::collect_columns;
use loopline_tabular::{DatasetProfile, TableSource};

use super::progress::rows_bar;
use super::{OK, input_error};

/// Arguments of `loopline profile`.
#[derive(Debug, Args)]
pub struct ProfileArgs {
    /// The table to profile (Parquet, CSV or Arrow IPC).
    pub data: PathBuf,
    /// Where to write the profile (JSON). Defaults to DATA with `.profile.json` in place of its extension.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Profile only these columns (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub columns: Option<Vec<String>>,
}

/// Runs `loopline profile`.
pub fn run(args: ProfileArgs) -> ExitCode {
    let source = match TableSource::open(&args.data) {
        Ok(source) => source,
        Err(error) => return input_error(error),
    };
    let bar = rows_bar("profiling", source.rows());
    let columns = match collect_columns(&source, args.columns.as_deref(), |rows| bar.inc(rows)) {
        Ok(columns) => columns,
        Err(error) => return input_error(error),
    };
    bar.finish_and_clear();
    let rows = columns.first().map(|(_, v)| v.rows()).unwrap_or(0);
    let profile = DatasetProfile::of(&args.data.display().to_string(), rows, &columns);
    let output = args.output.unwrap_or_else(|| args.data.with_extension("profile.json"));
    if let Err(error) = profile.save(&output) {
        return input_error(error);
    }
    println!(
        "{:<24} {:<12} {:>10} {:>8}  summary",
        "column", "kind", "values", "missing"
    );
    for column in &profile.columns {
        let summary = match (&column.numeric, &column.categorical) {
            (Some(n), _) => format!(
                "min {} max {} mean {} distinct {}",
                show(n.min),
                show(n.max),
                show(n.mean),
                n.distinct
            ),
            (_, Some(c)) => {
                let top: Vec<String> = c.counts.iter().take(3).map(|(l, n)| format!("{l} ({n})")).collect();
                format!("{} distinct; top {}", c.distinct, top.join(", "))
            }
            _ => String::new(),
        };
        println!(
            "{:<24} {:<12} {:>10} {:>8}  {summary}",
            column.name,
            column.kind.label(),
            column.count,
            column.nulls
        );
    }
    println!(
        "{} rows, {} columns profiled into {}",
        profile.rows,
        profile.columns.len(),
        output.display()
    );
    ExitCode::from(OK)
}

fn show(value: Option<f64>) -> String {
    value
        .map(loopline_core::html::format_number)
        .unwrap_or_else(|| "–".to_string())
}
