//! `loopline monitor ...`: monitors managed through a server's `/api/loopline/v1/monitors` API (the server in
//! `--server`, else `MLFLOW_TRACKING_URI`). `reference` profiles a training table here and sets it as a model
//! version's reference; `status` prints the newest windows and alerts; `report` writes a window's HTML report.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use loopline_monitoring::estimation::EstimationReference;
use loopline_tabular::collect::collect_columns;
use loopline_tabular::{DatasetProfile, TableSource};
use serde_json::Value;

use super::input_error;
use super::progress::rows_bar;
use super::rollout::{Client, ServerArgs, runtime_block};

/// `loopline monitor`.
#[derive(Args, Debug)]
pub struct MonitorArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(subcommand)]
    command: MonitorCommand,
}

#[derive(Subcommand, Debug)]
enum MonitorCommand {
    /// Create a monitor from a JSON specification file (see docs/monitoring.md).
    Create {
        /// Monitor name.
        name: String,
        /// The specification, JSON.
        #[arg(long)]
        spec: PathBuf,
    },
    /// List monitors with their newest window.
    List,
    /// A monitor's alerts and newest windows.
    Status {
        /// Monitor name.
        name: String,
    },
    /// Evaluate the windows that have ended and deliver waiting notifications now.
    Run {
        /// Monitor name.
        name: String,
    },
    /// Write a window's report (HTML, or JSON with --json).
    Report {
        /// Monitor name.
        name: String,
        /// The window (as `status` lists it).
        #[arg(long)]
        window: i64,
        /// Output file.
        #[arg(short = 'o', long)]
        output: PathBuf,
        /// The JSON report instead of HTML.
        #[arg(long)]
        json: bool,
    },
    /// Merge the windows within a span (a day as the merge of its hours) from their stored sketches: counts,
    /// column summaries, and drift of the whole span against the reference.
    Rollup {
        /// Monitor name.
        name: String,
        /// Start (inclusive): YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS]Z or milliseconds, UTC.
        #[arg(long)]
        from: String,
        /// End (exclusive), as --from.
        #[arg(long)]
        to: String,
        /// Write the roll-up here: the drift report as HTML for a .html name, the whole roll-up as JSON otherwise.
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
    /// The rows of a window most worth a label (unsure predictions, rows out of range in drifted columns,
    /// shadow disagreements); with --export, JSON lines to fill in and post back with `monitor label`.
    ReviewQueue {
        /// Monitor name.
        name: String,
        /// The window (default: the newest with traffic).
        #[arg(long)]
        window: Option<i64>,
        /// Rows at most.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Write JSON lines here (each with `"label": null` to fill in).
        #[arg(long)]
        export: Option<PathBuf>,
    },
    /// Post labels for reviewed rows: JSON lines with request_id, row and label (as `review-queue --export`
    /// writes them, labels filled in); they become feedback.
    Label {
        /// Monitor name.
        name: String,
        /// The JSON-lines file.
        #[arg(long)]
        file: PathBuf,
    },
    /// Delete a monitor with its windows and history.
    Delete {
        /// Monitor name.
        name: String,
    },
    /// Profile training data and set it as a model version's reference.
    Reference {
        /// Registered model.
        #[arg(long)]
        model: String,
        /// Version.
        #[arg(long)]
        version: String,
        /// The training table (Parquet, CSV, Arrow IPC) with features, labels and predictions.
        #[arg(long)]
        data: PathBuf,
        /// Column of the model's probability for the positive class: with labels, fits performance
        /// estimation before labels arrive (CBPE) for binary classifiers.
        #[arg(long)]
        probability_column: Option<String>,
        /// Column of the labels.
        #[arg(long, default_value = "label")]
        label_column: String,
        /// Column of the model's predicted classes (else a probability of 0.5 or more predicts the positive class).
        #[arg(long, default_value = "prediction")]
        prediction_column: String,
        /// The positive class.
        #[arg(long, default_value = "1")]
        positive_label: String,
    },
}

fn figure(window: &Value, name: &str) -> String {
    window["figures"][name]
        .as_f64()
        .map_or_else(|| "-".to_string(), |v| format!("{v:.4}"))
}

fn print_windows(windows: &[Value]) {
    println!(
        "{:>15} {:<24} {:<12} {:>8} {:>7} {:>11} {:>10}",
        "window", "start (UTC)", "status", "rows", "labels", "drift share", "accuracy"
    );
    for window in windows {
        let start = window["start_ms"].as_i64().unwrap_or_default();
        println!(
            "{:>15} {:<24} {:<12} {:>8} {:>7} {:>11} {:>10}",
            window["window"],
            loopline_core::time::rfc3339_millis(start),
            window["status"].as_str().unwrap_or("-"),
            window["rows"],
            window["labels"],
            figure(window, "drift.share"),
            figure(window, "performance.accuracy"),
        );
        let drifted: Vec<&str> = window["figures"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(name, value)| name.starts_with("drift.detected.") && value.as_f64() == Some(1.0))
            .map(|(name, _)| name.trim_start_matches("drift.detected."))
            .collect();
        if !drifted.is_empty() {
            println!("{:>15} drifted: {}", "", drifted.join(", "));
        }
    }
}

/// A name or value as one URL path segment or query value: every character but letters and digits encoded, so
/// `?`, `#`, `/` and `&` in a monitor's name never change which request is sent.
pub(crate) fn segment(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Writes what the server answers at `path` (a report) to `output`.
async fn save(client: &Client, path: &str, output: &std::path::Path) -> Result<(), String> {
    let url = format!("{}{path}", client.base);
    let response = client
        .http
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("cannot reach the Loopline server at {}: {e}", client.base))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        return Err(format!(
            "the server refused ({status}): {}",
            message["message"].as_str().unwrap_or("no message")
        ));
    }
    std::fs::write(output, &body).map_err(|e| format!("cannot write {}: {e}", output.display()))
}

fn print_rollup(rollup: &Value) {
    println!(
        "{} windows ({} with column sketches), {} rows, {} labels; version {}",
        rollup["windows"],
        rollup["windows_summarised"],
        rollup["rows"],
        rollup["labels"],
        rollup["version"].as_str().unwrap_or("-")
    );
    let drift = &rollup["drift"];
    if drift.is_null() {
        println!("drift not tested");
    } else {
        println!("drift share {} (dataset drift: {})", drift["share"], drift["dataset"]);
        for column in drift["columns"].as_array().into_iter().flatten() {
            println!(
                "  {:<32} {:<24} score {:<24} {}",
                column["column"].as_str().unwrap_or("?"),
                column["method"].as_str().unwrap_or("-"),
                column["score"],
                if column["drifted"] == true { "DRIFTED" } else { "" }
            );
        }
    }
    for note in rollup["notes"].as_array().into_iter().flatten() {
        println!("note: {}", note.as_str().unwrap_or_default());
    }
}

fn print_status(monitor: &Value) {
    println!(
        "monitor {} (revision {})",
        monitor["name"].as_str().unwrap_or("?"),
        monitor["revision"]
    );
    for alert in monitor["alerts"].as_array().into_iter().flatten() {
        let state = &alert["state"];
        println!(
            "  alert {:<24} {:<9} {:<8} last value {}",
            alert["rule"].as_str().unwrap_or("?"),
            state["status"].as_str().unwrap_or("inactive"),
            alert["severity"].as_str().unwrap_or(""),
            state["last_value"]
                .as_f64()
                .map_or_else(|| "-".to_string(), |v| format!("{v:.4}")),
        );
    }
    let waiting = monitor["pending_notifications"].as_array().map_or(0, Vec::len);
    if waiting > 0 {
        println!("  {waiting} notification(s) waiting for delivery");
    }
    let mut windows: Vec<Value> = monitor["windows"].as_array().cloned().unwrap_or_default();
    windows.reverse();
    print_windows(&windows);
}

fn profile(data: &PathBuf) -> Result<DatasetProfile, String> {
    let source = TableSource::open(data).map_err(|e| e.to_string())?;
    let bar = rows_bar("profiling", source.rows());
    let columns = collect_columns(&source, None, |rows| bar.inc(rows)).map_err(|e| e.to_string())?;
    bar.finish_and_clear();
    let rows = columns.first().map(|(_, v)| v.rows()).unwrap_or(0);
    Ok(DatasetProfile::of(&data.display().to_string(), rows, &columns))
}

/// The columns performance estimation is fitted from.
struct EstimationColumns<'a> {
    label: &'a str,
    probability: &'a str,
    prediction: &'a str,
    positive: &'a str,
}

/// Reads labels, probabilities and predicted classes row by row and fits CBPE on them.
fn fit_estimation(data: &PathBuf, columns: &EstimationColumns<'_>) -> Result<EstimationReference, String> {
    use loopline_monitoring::evaluate::{cell, class_of};
    let source = TableSource::open(data).map_err(|e| e.to_string())?;
    let names = source.column_names();
    for needed in [columns.label, columns.probability] {
        if !names.iter().any(|n| n == needed) {
            return Err(format!(
                "{} has no column '{needed}' (columns: {names:?})",
                data.display()
            ));
        }
    }
    let has_prediction = names.iter().any(|n| n == columns.prediction);
    let mut wanted = vec![columns.label.to_string(), columns.probability.to_string()];
    if has_prediction {
        wanted.push(columns.prediction.to_string());
    }
    let (mut probabilities, mut labels, mut predictions) = (Vec::new(), Vec::new(), Vec::new());
    for batch in source.batches(Some(&wanted)).map_err(|e| e.to_string())? {
        let batch = batch.map_err(|e| e.to_string())?;
        let (Some(label), Some(probability)) = (
            batch.column_by_name(columns.label),
            batch.column_by_name(columns.probability),
        ) else {
            continue;
        };
        let prediction = batch.column_by_name(columns.prediction);
        for row in 0..batch.num_rows() {
            let (Some(class), Some(score)) = (class_of(&cell(label, row)), cell(probability, row).as_f64()) else {
                continue;
            };
            let predicted = match prediction {
                Some(column) => class_of(&cell(column, row)).is_some_and(|c| c == columns.positive),
                None => score >= 0.5,
            };
            labels.push(f64::from(u8::from(class == columns.positive)));
            probabilities.push(score);
            predictions.push(f64::from(u8::from(predicted)));
        }
    }
    loopline_monitoring::estimation::fit(&probabilities, &labels, &predictions).ok_or_else(|| {
        format!(
            "performance estimation needs finite probabilities and labels of both classes ('{}' and others) in {}",
            columns.positive,
            data.display()
        )
    })
}

async fn execute(client: &Client, command: MonitorCommand) -> Result<(), String> {
    let api = "/api/loopline/v1/monitors";
    match command {
        MonitorCommand::Create { name, spec } => {
            let text = std::fs::read_to_string(&spec).map_err(|e| format!("cannot read {}: {e}", spec.display()))?;
            let mut body: Value =
                serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", spec.display()))?;
            let Some(fields) = body.as_object_mut() else {
                return Err(format!("{} must hold a JSON object", spec.display()));
            };
            fields.insert("name".into(), Value::String(name.clone()));
            client.ok(reqwest::Method::POST, api, Some(body)).await?;
            println!("monitor '{name}' created");
        }
        MonitorCommand::List => {
            let listed = client.ok(reqwest::Method::GET, api, None).await?;
            for monitor in listed["monitors"].as_array().into_iter().flatten() {
                let newest = &monitor["windows"][0];
                println!(
                    "{:<32} newest window {:<15} {:<12} drift share {}",
                    monitor["name"].as_str().unwrap_or("?"),
                    if newest.is_null() {
                        "-".to_string()
                    } else {
                        newest["window"].to_string()
                    },
                    newest["status"].as_str().unwrap_or("-"),
                    figure(newest, "drift.share")
                );
            }
        }
        MonitorCommand::Status { name } => {
            let status = client
                .ok(reqwest::Method::GET, &format!("{api}/{}", segment(&name)), None)
                .await?;
            print_status(&status["monitor"]);
        }
        MonitorCommand::Run { name } => {
            let ran = client
                .ok(
                    reqwest::Method::POST,
                    &format!("{api}/{}/run", segment(&name)),
                    Some(serde_json::json!({})),
                )
                .await?;
            let evaluated = ran["evaluated"].as_array().map_or(0, Vec::len);
            println!(
                "{evaluated} window(s) evaluated; {} notification(s) delivered, {} waiting",
                ran["notifications_delivered"], ran["notifications_waiting"]
            );
            let status = client
                .ok(reqwest::Method::GET, &format!("{api}/{}", segment(&name)), None)
                .await?;
            print_status(&status["monitor"]);
        }
        MonitorCommand::Report {
            name,
            window,
            output,
            json,
        } => {
            let format = if json { "json" } else { "html" };
            save(
                client,
                &format!("{api}/{}/windows/{window}/report?format={format}", segment(&name)),
                &output,
            )
            .await?;
            println!("report of window {window} written to {}", output.display());
        }
        MonitorCommand::Rollup { name, from, to, output } => {
            let html = output
                .as_ref()
                .is_some_and(|o| o.extension().is_some_and(|e| e.eq_ignore_ascii_case("html")));
            let (monitor, since, until) = (segment(&name), segment(&from), segment(&to));
            let query = |format: &str| format!("{api}/{monitor}/rollup?from={since}&to={until}&format={format}");
            if html {
                let output = output.unwrap_or_default();
                save(client, &query("html"), &output).await?;
                println!("drift report of {from} to {to} written to {}", output.display());
                return Ok(());
            }
            let rolled = client.ok(reqwest::Method::GET, &query("json"), None).await?;
            if let Some(output) = output {
                let text = serde_json::to_string_pretty(&rolled).map_err(|e| e.to_string())?;
                std::fs::write(&output, text).map_err(|e| format!("cannot write {}: {e}", output.display()))?;
                println!("roll-up of {from} to {to} written to {}", output.display());
                return Ok(());
            }
            print_rollup(&rolled["rollup"]);
        }
        MonitorCommand::ReviewQueue {
            name,
            window,
            limit,
            export,
        } => {
            let mut path = format!("{api}/{}/review-queue?limit={limit}", segment(&name));
            if let Some(window) = window {
                path.push_str(&format!("&window={window}"));
            }
            let queue = client.ok(reqwest::Method::GET, &path, None).await?;
            let items = queue["items"].as_array().cloned().unwrap_or_default();
            match export {
                Some(file) => {
                    let lines: Vec<String> = items
                        .iter()
                        .map(|item| {
                            let mut line = item.clone();
                            line["label"] = Value::Null;
                            line.to_string()
                        })
                        .collect();
                    std::fs::write(&file, lines.join("\n") + "\n")
                        .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
                    println!(
                        "{} rows of window {} written to {}; fill in \"label\" and run `loopline monitor label {name} --file {}`",
                        items.len(),
                        queue["window"],
                        file.display(),
                        file.display()
                    );
                }
                None => {
                    println!("window {}: {} rows worth a label", queue["window"], items.len());
                    for item in &items {
                        println!(
                            "{:<34} row {:<4} score {:.3}  {}",
                            item["request_id"].as_str().unwrap_or("?"),
                            item["row"],
                            item["score"].as_f64().unwrap_or_default(),
                            item["reasons"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .filter_map(Value::as_str)
                                .collect::<Vec<_>>()
                                .join(", ")
                        );
                    }
                }
            }
        }
        MonitorCommand::Label { name, file } => {
            let text = std::fs::read_to_string(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let mut labels = Vec::new();
            for (number, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                let item: Value = serde_json::from_str(line)
                    .map_err(|e| format!("{} line {}: not JSON: {e}", file.display(), number + 1))?;
                if item["label"].is_null() {
                    continue;
                }
                labels.push(
                    serde_json::json!({"request_id": item["request_id"], "row": item["row"], "label": item["label"]}),
                );
            }
            if labels.is_empty() {
                return Err(format!("{} has no filled-in labels", file.display()));
            }
            let posted = client
                .ok(
                    reqwest::Method::POST,
                    &format!("{api}/{}/review-queue/labels", segment(&name)),
                    Some(serde_json::json!({"labels": labels})),
                )
                .await?;
            println!("{} labels recorded as feedback", posted["recorded"]);
        }
        MonitorCommand::Delete { name } => {
            client
                .ok(reqwest::Method::DELETE, &format!("{api}/{}", segment(&name)), None)
                .await?;
            println!("monitor '{name}' deleted");
        }
        MonitorCommand::Reference {
            model,
            version,
            data,
            probability_column,
            label_column,
            prediction_column,
            positive_label,
        } => {
            let profile = profile(&data)?;
            let mut body = serde_json::to_value(&profile).map_err(|e| e.to_string())?;
            if let Some(probability) = probability_column {
                let columns = EstimationColumns {
                    label: &label_column,
                    probability: &probability,
                    prediction: &prediction_column,
                    positive: &positive_label,
                };
                let fitted = fit_estimation(&data, &columns)?;
                println!(
                    "performance estimation fitted on {} labelled rows ({})",
                    fitted.rows,
                    if fitted.calibrated {
                        "probabilities calibrated"
                    } else {
                        "probabilities used as they are"
                    }
                );
                body[loopline_monitoring::service::ESTIMATION_KEY] = serde_json::json!(fitted);
            }
            let path = format!("/api/loopline/v1/registered-models/{model}/versions/{version}/reference");
            let set = client.ok(reqwest::Method::PUT, &path, Some(body)).await?;
            println!(
                "reference of '{model}' version {version} set: {} rows, {} columns",
                set["rows"], set["columns"]
            );
        }
    }
    Ok(())
}

/// Runs `loopline monitor`.
pub fn run(args: MonitorArgs) -> ExitCode {
    let client = match Client::new(&args.server) {
        Ok(client) => client,
        Err(message) => return input_error(message),
    };
    match runtime_block(execute(&client, args.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => input_error(message),
    }
}
