//! `loopline drift --reference REF --current CUR`: compares two tables (or a saved profile and a table) column by
//! column and says whether the data drifted. Exit code 0: no dataset drift; 1: dataset drift; 2: bad input.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use arrow_schema::DataType;
use clap::Args;
use loopline_drift_report::{CurrentData, DriftOptions, DriftReport, NamedColumns, ReferenceData, build_report};
use loopline_drift_statistics::method_choice::{ALL_METHODS, DEFAULT_DRIFT_SHARE, DriftMethod};
use loopline_tabular::collect::collect_table;
use loopline_tabular::{DatasetProfile, TableSource, TabularError};

use super::progress::rows_bar;
use super::{FINDING, OK, input_error, write_output};

/// Arguments of `loopline drift`.
#[derive(Debug, Args)]
pub struct DriftArgs {
    /// Reference data (Parquet, CSV, Arrow IPC) or its profile from `loopline profile` (a .json file).
    #[arg(long)]
    pub reference: PathBuf,
    /// Current data (Parquet, CSV, Arrow IPC).
    #[arg(long)]
    pub current: PathBuf,
    /// Compare only these columns (comma-separated); default: every reference column.
    #[arg(long, value_delimiter = ',')]
    pub columns: Option<Vec<String>>,
    /// Method for every column (`NAME`) or one column (`COLUMN=NAME`): ks, chisquare, z, wasserstein,
    /// jensenshannon, psi, kl_div, hellinger, anderson. Repeatable. Default: Evidently's choice per column.
    #[arg(long = "method", value_name = "[COLUMN=]NAME")]
    pub methods: Vec<String>,
    /// Threshold for every column (`VALUE`) or one column (`COLUMN=VALUE`): a p-value below which, or a distance
    /// from which, the column drifted. Repeatable. Default: 0.05 for tests, 0.1 for distances.
    #[arg(long = "threshold", value_name = "[COLUMN=]VALUE")]
    pub thresholds: Vec<String>,
    /// Share of drifted columns at which the dataset drifted.
    #[arg(long, default_value_t = DEFAULT_DRIFT_SHARE)]
    pub drift_share: f64,
    /// Write the report as JSON to this file (`-` for standard output).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the report as a self-contained HTML page to this file.
    #[arg(long)]
    pub html: Option<PathBuf>,
}

fn split_setting(text: &str) -> (Option<&str>, &str) {
    match text.rsplit_once('=') {
        Some((column, value)) => (Some(column), value),
        None => (None, text),
    }
}

/// The options the flags describe, or what is wrong with them.
pub fn options(args: &DriftArgs) -> Result<DriftOptions, String> {
    if !(args.drift_share > 0.0 && args.drift_share <= 1.0) {
        return Err(format!("--drift-share must lie in (0, 1], not {}", args.drift_share));
    }
    let mut options = DriftOptions {
        drift_share: args.drift_share,
        ..DriftOptions::default()
    };
    for text in &args.methods {
        let (column, name) = split_setting(text);
        let method = DriftMethod::from_name(name).ok_or_else(|| {
            let known: Vec<&str> = ALL_METHODS.iter().map(|m| m.name()).collect();
            format!(
                "--method {text}: unknown method '{name}'; use one of {}",
                known.join(", ")
            )
        })?;
        match column {
            Some(column) => options.column_choices.entry(column.to_string()).or_default().method = Some(method),
            None => options.default_choice.method = Some(method),
        }
    }
    for text in &args.thresholds {
        let (column, value) = split_setting(text);
        let threshold: f64 = value
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| format!("--threshold {text}: '{value}' is not a non-negative number"))?;
        match column {
            Some(column) => options.column_choices.entry(column.to_string()).or_default().threshold = Some(threshold),
            None => options.default_choice.threshold = Some(threshold),
        }
    }
    Ok(options)
}

fn schema_of(source: &TableSource) -> Vec<(String, DataType)> {
    source
        .schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect()
}

/// Columns read from a table, with its row count and (when counted) its duplicate rows.
struct Read {
    rows: u64,
    columns: NamedColumns,
    duplicate_rows: Option<u64>,
}

fn read_table(
    source: &TableSource,
    columns: &[String],
    label: &str,
    count_duplicates: bool,
) -> Result<Read, TabularError> {
    let bar = rows_bar(label, source.rows());
    let mut rows = 0;
    let (collected, duplicate_rows) = collect_table(source, Some(columns), count_duplicates, |n| {
        rows += n;
        bar.inc(n);
    })?;
    bar.finish_and_clear();
    Ok(Read {
        rows: source.rows().unwrap_or(rows),
        columns: collected
            .into_iter()
            .map(|(f, v)| (f.name().clone(), f.data_type().clone(), v))
            .collect(),
        duplicate_rows,
    })
}

enum Reference {
    Profile(DatasetProfile),
    Table(TableSource),
}

fn open_reference(path: &Path) -> Result<Reference, TabularError> {
    if DatasetProfile::is_profile_path(path) {
        DatasetProfile::load(path).map(Reference::Profile)
    } else {
        TableSource::open(path).map(Reference::Table)
    }
}

/// Runs `loopline drift`.
pub fn run(args: DriftArgs) -> ExitCode {
    let options = match options(&args) {
        Ok(options) => options,
        Err(message) => return input_error(message),
    };
    let reference = match open_reference(&args.reference) {
        Ok(reference) => reference,
        Err(error) => return input_error(error),
    };
    let current_source = match TableSource::open(&args.current) {
        Ok(source) => source,
        Err(error) => return input_error(error),
    };
    let reference_names: Vec<String> = match &reference {
        Reference::Profile(profile) => profile.columns.iter().map(|c| c.name.clone()).collect(),
        Reference::Table(source) => source.column_names(),
    };
    let selected = match &args.columns {
        Some(columns) => {
            let unknown: Vec<&String> = columns.iter().filter(|c| !reference_names.contains(c)).collect();
            if !unknown.is_empty() {
                return input_error(format!(
                    "--columns names {unknown:?}, which the reference does not have; it has {reference_names:?}"
                ));
            }
            columns.clone()
        }
        None => reference_names,
    };
    let current_names = current_source.column_names();
    let current_columns: Vec<String> = selected.iter().filter(|c| current_names.contains(c)).cloned().collect();
    // Read both sides at once: the reference on a second thread.
    let (reference_data, current_read) = std::thread::scope(|scope| {
        let reference_task = scope.spawn(|| match &reference {
            Reference::Profile(profile) => Ok(ReferenceData::of_profile(profile, Some(&selected))),
            Reference::Table(source) => read_table(source, &selected, "reference", false).map(|read| {
                ReferenceData::of_values(
                    &source.path().display().to_string(),
                    read.rows,
                    schema_of(source),
                    read.columns,
                )
            }),
        });
        let current_read = read_table(&current_source, &current_columns, "current", true);
        (reference_task.join().expect("reading does not panic"), current_read)
    });
    let reference_data = match reference_data {
        Ok(data) => data,
        Err(error) => return input_error(error),
    };
    let read = match current_read {
        Ok(read) => read,
        Err(error) => return input_error(error),
    };
    let current = CurrentData {
        source: args.current.display().to_string(),
        rows: read.rows,
        schema: schema_of(&current_source),
        columns: read.columns,
        duplicate_rows: read.duplicate_rows,
    };
    let report = match build_report(&reference_data, &current, &options) {
        Ok(report) => report,
        Err(problems) => {
            for problem in &problems.problems {
                eprintln!("error: {problem}");
            }
            return ExitCode::from(super::INPUT_ERROR);
        }
    };
    print_summary(&report);
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).expect("reports serialise");
        if let Err(message) = write_output(path, &text) {
            return input_error(message);
        }
    }
    if let Some(path) = &args.html {
        if let Err(message) = write_output(path, &loopline_drift_report::html::render(&report)) {
            return input_error(message);
        }
        eprintln!("HTML report written to {}", path.display());
    }
    ExitCode::from(if report.dataset_drift { FINDING } else { OK })
}

fn print_summary(report: &DriftReport) {
    use loopline_core::html::format_number;
    let verdict = if report.dataset_drift {
        "DRIFT DETECTED"
    } else {
        "no drift"
    };
    println!(
        "Dataset: {verdict} — {} of {} columns drifted ({:.1}%; dataset threshold {:.1}%)",
        report.drifted_columns,
        report.tested_columns,
        100.0 * report.share_of_drifted_columns,
        100.0 * report.drift_share
    );
    println!(
        "{:<24} {:<12} {:<14} {:>12} {:>10}  verdict",
        "column", "kind", "method", "value", "threshold"
    );
    for column in &report.columns {
        let verdict = match (column.method, column.drifted) {
            (None, _) => column.not_tested.clone().unwrap_or_default(),
            (Some(_), true) => "DRIFT".to_string(),
            (Some(_), false) => "ok".to_string(),
        };
        println!(
            "{:<24} {:<12} {:<14} {:>12} {:>10}  {verdict}",
            column.name,
            column.kind.label(),
            column.method.unwrap_or("-"),
            column.score.map(format_number).unwrap_or_default(),
            column.threshold.map(format_number).unwrap_or_default(),
        );
    }
    for line in report.schema.describe() {
        println!("schema: {line}");
    }
    for finding in &report.findings {
        match &finding.column {
            Some(column) => println!("finding: {column}: {}", finding.message),
            None => println!("finding: {}", finding.message),
        }
    }
}
