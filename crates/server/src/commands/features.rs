//! `loopline features`: feature definitions and point-in-time correct training sets.
//!
//! - `loopline features check [-d features.yaml]` reads and checks the definitions and lists them;
//! - `loopline features historical --entities E --features view:feature,... | --service NAME -o train.parquet`
//!   joins each entity row with the latest feature values at or before its time (Feast's rules), out of core;
//! - `loopline features apply` stores the definitions on a server (the changes are shown first);
//! - `loopline features materialize START END` / `materialize-incremental END` fill the server's online store;
//! - `loopline features views` lists the server's views and how far each is materialised.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;

use clap::{Args, Subcommand};
use indicatif::ProgressBar;
use loopline_features::refs::Wanted;
use loopline_features::{Definitions, HistoricalRequest, Progress, build_training_set};

use reqwest::Method;
use serde_json::{Value, json};

use super::progress::rows_bar;
use super::rollout::{Client, ServerArgs, runtime_block};
use super::{OK, input_error};

/// Arguments of `loopline features`.
#[derive(Debug, Args)]
pub struct FeaturesArgs {
    #[command(subcommand)]
    pub command: FeaturesCommand,
}

/// The `features` subcommands.
#[derive(Debug, Subcommand)]
pub enum FeaturesCommand {
    /// Read and check a definitions file, then list its entities, sources, views and services.
    Check(CheckArgs),
    /// Build a training set: every entity row with the feature values valid at its time, as Parquet.
    Historical(HistoricalArgs),
    /// Store the definitions on a server as the project's next version; the changes are printed first.
    Apply(ApplyArgs),
    /// Fill the server's online store with each view's latest values with event times in START..=END.
    Materialize(MaterializeArgs),
    /// Fill the server's online store from where each view's last materialisation ended up to END.
    MaterializeIncremental(IncrementalArgs),
    /// List the server's feature views and how far each is materialised.
    Views(ViewsArgs),
}

/// Arguments of `loopline features apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The definitions file (source paths in it are resolved from its directory, which the server must see at
    /// the same path).
    #[arg(short, long, default_value = "features.yaml")]
    pub definitions: PathBuf,
    /// Show the changes and apply nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Arguments of `loopline features materialize`.
#[derive(Debug, Args)]
pub struct MaterializeArgs {
    /// Start of the window (`2024-05-01T00:00:00`, RFC 3339; naive is UTC).
    pub start: String,
    /// End of the window.
    pub end: String,
    #[command(flatten)]
    pub scope: Scope,
}

/// Arguments of `loopline features materialize-incremental`.
#[derive(Debug, Args)]
pub struct IncrementalArgs {
    /// End of the window.
    pub end: String,
    #[command(flatten)]
    pub scope: Scope,
}

/// Which views of which project on which server a materialisation fills.
#[derive(Debug, Args)]
pub struct Scope {
    /// Only these views (comma-separated; default: every online view).
    #[arg(long, value_delimiter = ',')]
    pub views: Vec<String>,
    /// The project (needed when the server holds several).
    #[arg(long)]
    pub project: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Arguments of `loopline features views`.
#[derive(Debug, Args)]
pub struct ViewsArgs {
    /// The project (default: the server's only project).
    #[arg(long)]
    pub project: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Arguments of `loopline features check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The definitions file.
    #[arg(short, long, default_value = "features.yaml")]
    pub definitions: PathBuf,
}

/// Arguments of `loopline features historical`.
#[derive(Debug, Args)]
pub struct HistoricalArgs {
    /// The definitions file.
    #[arg(short, long, default_value = "features.yaml")]
    pub definitions: PathBuf,
    /// The entity frame (Parquet, CSV or Arrow): join-key columns and an `event_timestamp` column (or a single
    /// time column); every column is kept in the output.
    #[arg(long)]
    pub entities: PathBuf,
    /// Features as `view:feature`, comma-separated (or give --service).
    #[arg(
        long,
        value_delimiter = ',',
        conflicts_with = "service",
        required_unless_present = "service"
    )]
    pub features: Vec<String>,
    /// A feature service's name (or give --features).
    #[arg(long)]
    pub service: Option<String>,
    /// Name feature columns `view__feature` (needed when two views share a feature name).
    #[arg(long)]
    pub full_feature_names: bool,
    /// Where to write the training set (Parquet).
    #[arg(short, long)]
    pub output: PathBuf,
    /// About how much memory the join may use (`512MiB`, `4GiB`, bytes); larger inputs are spilled to disk.
    #[arg(long, default_value = "2GiB", value_parser = parse_size)]
    pub memory_limit: u64,
    /// Where spill files go (default: the output's directory).
    #[arg(long)]
    pub spill_dir: Option<PathBuf>,
    /// Also upload the training set to the server and register it as a version of this dataset, with its
    /// lineage (the definitions, the entity frame and each source, by content hash).
    #[arg(long, value_name = "DATASET")]
    pub log_dataset: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Runs `loopline features`.
pub fn run(args: FeaturesArgs) -> ExitCode {
    match args.command {
        FeaturesCommand::Check(args) => check(args),
        FeaturesCommand::Historical(args) => historical(args),
        FeaturesCommand::Apply(args) => finish(apply(args)),
        FeaturesCommand::Materialize(args) => {
            let body = json!({"start_ts": args.start, "end_ts": args.end, "feature_views": views(&args.scope.views)});
            finish(
                materialize(&args.scope, "/materialize", body)
                    .and_then(|()| list_views(&args.scope.server, args.scope.project.clone())),
            )
        }
        FeaturesCommand::MaterializeIncremental(args) => {
            let body = json!({"end_ts": args.end, "feature_views": views(&args.scope.views)});
            finish(
                materialize(&args.scope, "/materialize-incremental", body)
                    .and_then(|()| list_views(&args.scope.server, args.scope.project.clone())),
            )
        }
        FeaturesCommand::Views(args) => finish(list_views(&args.server, args.project)),
    }
}

fn finish(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::from(OK),
        Err(error) => input_error(error),
    }
}

fn views(names: &[String]) -> Value {
    if names.is_empty() { Value::Null } else { json!(names) }
}

fn apply(args: ApplyArgs) -> Result<(), String> {
    let remote = loopline_feature_api::remote_sources::is_remote(&args.definitions);
    let (definitions, remote_bytes) = if remote {
        let (bytes, definitions) = super::features_remote::remote_registry(&args.definitions)?;
        (definitions, Some(bytes))
    } else {
        (
            Definitions::from_file(&args.definitions).map_err(|e| e.to_string())?,
            None,
        )
    };
    let absolute =
        std::path::absolute(&args.definitions).map_err(|e| format!("{}: {e}", args.definitions.display()))?;
    // A Feast repository is sent as its registry, read again on the server; a YAML file as its text.
    let (field, content, base) = if let Some(bytes) = remote_bytes {
        // Its sources are absolute or on S3: the base directory is not used.
        use base64::Engine;
        let here = std::env::current_dir().map_err(|e| e.to_string())?;
        (
            "feast_registry",
            base64::engine::general_purpose::STANDARD.encode(bytes),
            here,
        )
    } else if loopline_features::feast_registry::is_feast(&args.definitions) {
        use base64::Engine;
        let absolute = if absolute.file_name().is_some_and(|n| n == "feature_store.yaml") {
            absolute
                .parent()
                .map(std::path::Path::to_path_buf)
                .unwrap_or(absolute.clone())
        } else {
            absolute.clone()
        };
        let (registry, repo) = if absolute.is_dir() {
            let registry = loopline_features::feast_registry::registry_path(&absolute).map_err(|e| e.to_string())?;
            (registry, absolute.clone())
        } else {
            let repo = absolute
                .ancestors()
                .skip(1)
                .take(3)
                .find(|dir| dir.join("feature_store.yaml").is_file())
                .or_else(|| absolute.parent())
                .unwrap_or(&absolute)
                .to_path_buf();
            (absolute.clone(), repo)
        };
        let bytes = std::fs::read(&registry).map_err(|e| format!("{}: {e}", registry.display()))?;
        (
            "feast_registry",
            base64::engine::general_purpose::STANDARD.encode(bytes),
            repo,
        )
    } else {
        let text =
            std::fs::read_to_string(&args.definitions).map_err(|e| format!("{}: {e}", args.definitions.display()))?;
        let base = absolute
            .parent()
            .map(std::path::Path::to_path_buf)
            .ok_or_else(|| format!("{} has no directory", args.definitions.display()))?;
        ("yaml", text, base)
    };
    let base = base.canonicalize().map_err(|e| format!("{}: {e}", base.display()))?;
    let client = Client::new(&args.server)?;
    let path = format!("/api/loopline/v1/features/projects/{}/apply", definitions.project);
    runtime_block(async {
        let body = |dry: bool, expected: Option<i64>| json!({field: content, "base_dir": base, "dry_run": dry, "expected_version": expected});
        let plan = client.ok(Method::POST, &path, Some(body(true, None))).await?;
        let changes: Vec<&str> = plan["changes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let version = plan["version"].as_i64().unwrap_or(0);
        if changes.is_empty() && version > 0 {
            println!("project {} is up to date at version {version}", definitions.project);
            return Ok(());
        }
        for change in &changes {
            println!("{change}");
        }
        if args.dry_run {
            println!(
                "dry run: nothing applied (project {} stays at version {version})",
                definitions.project
            );
            return Ok(());
        }
        let applied = client.ok(Method::POST, &path, Some(body(false, Some(version)))).await?;
        println!(
            "applied: project {} is now at version {}",
            definitions.project,
            applied["version"].as_i64().unwrap_or(0)
        );
        Ok(())
    })
}

fn materialize(scope: &Scope, route: &str, body: Value) -> Result<(), String> {
    let client = Client::new(&scope.server)?;
    let path = match &scope.project {
        Some(project) => format!("{route}?project={project}"),
        None => route.to_string(),
    };
    runtime_block(async {
        let (status, answer) = client.call(Method::POST, &path, Some(body)).await?;
        if (200..300).contains(&status) {
            println!("materialised; the views now:");
            return Ok(());
        }
        // Feast's error shape: a JSON string holding {"module", "class", "message"}.
        let message = answer
            .as_str()
            .and_then(|text| serde_json::from_str::<Value>(text).ok())
            .and_then(|detail| detail["message"].as_str().map(str::to_string))
            .or_else(|| answer["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| answer.to_string());
        Err(format!("the server refused ({status}): {message}"))
    })
}

fn list_views(server: &ServerArgs, project: Option<String>) -> Result<(), String> {
    let client = Client::new(server)?;
    let project = match project {
        Some(project) => project,
        None => {
            let listed =
                runtime_block(async { client.ok(Method::GET, "/api/loopline/v1/features/projects", None).await })?;
            let names: Vec<String> = listed["projects"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p["name"].as_str().map(str::to_string))
                .collect();
            match names.as_slice() {
                [only] => only.clone(),
                [] => return Err("the server holds no feature definitions; run `loopline features apply`".into()),
                many => {
                    return Err(format!(
                        "the server holds several projects {many:?}; name one with --project"
                    ));
                }
            }
        }
    };
    let path = format!("/api/loopline/v1/features/projects/{project}/views");
    let answer = runtime_block(async { client.ok(Method::GET, &path, None).await })?;
    println!("project {project} version {}", answer["version"]);
    println!("{:<28} {:<8} {:<28} features", "view", "online", "materialised until");
    for view in answer["views"].as_array().into_iter().flatten() {
        let features: Vec<&str> = view["features"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f["name"].as_str())
            .collect();
        println!(
            "{:<28} {:<8} {:<28} {}",
            view["name"].as_str().unwrap_or_default(),
            view["online"].as_bool().unwrap_or_default(),
            view["materialized_until"].as_str().unwrap_or("never"),
            features.join(", ")
        );
    }
    Ok(())
}

fn check(args: CheckArgs) -> ExitCode {
    let definitions = match super::features_remote::read_definitions(&args.definitions) {
        Ok(definitions) => definitions,
        Err(error) => return input_error(error),
    };
    println!("project {}", definitions.project);
    for entity in definitions.entities.values() {
        println!("entity   {:<28} join keys {}", entity.name, entity.join_keys.join(", "));
    }
    for source in definitions.sources.values() {
        println!(
            "source   {:<28} {} (time: {})",
            source.name,
            source.path.display(),
            source.timestamp_field
        );
    }
    for view in definitions.views.values() {
        let ttl = view
            .ttl_seconds
            .map(|s| format!("{s} s"))
            .unwrap_or_else(|| "none".to_string());
        let features: Vec<String> = view
            .features
            .iter()
            .map(|f| format!("{}:{}", f.name, f.dtype.name()))
            .collect();
        println!(
            "view     {:<28} ttl {ttl}; keys [{}]; {}",
            view.name,
            view.join_keys.join(", "),
            features.join(", ")
        );
    }
    for request in definitions.request_sources.values() {
        let fields: Vec<String> = request
            .schema
            .iter()
            .map(|f| format!("{}:{}", f.name, f.dtype.name()))
            .collect();
        println!("request  {:<28} {}", request.name, fields.join(", "));
    }
    for view in definitions.on_demand_views.values() {
        for feature in &view.features {
            println!(
                "computed {:<28} {}:{} = {}",
                view.name,
                feature.name,
                feature.dtype.name(),
                feature.expression
            );
        }
    }
    for service in definitions.services.values() {
        let count: usize = service.features.iter().map(|(_, f)| f.len()).sum();
        let views = service.features.len();
        println!(
            "service  {:<28} {count} feature{} from {views} view{}",
            service.name,
            if count == 1 { "" } else { "s" },
            if views == 1 { "" } else { "s" }
        );
    }
    // The sources themselves: columns, types and key types against the definitions.
    let local = match super::features_remote::local_sources(definitions, &std::env::temp_dir()) {
        Ok(local) => local,
        Err(error) => return input_error(error),
    };
    let mut broken = 0;
    for (view, checked) in loopline_features::check_sources(&local.definitions) {
        match checked {
            Ok(rows) => println!(
                "ok       {view:<28} source readable{}",
                rows.map(|r| format!(", {r} rows")).unwrap_or_default()
            ),
            Err(error) => {
                broken += 1;
                eprintln!("error    {view:<28} {error}");
            }
        }
    }
    if broken > 0 {
        return ExitCode::from(super::INPUT_ERROR);
    }
    ExitCode::from(OK)
}

fn historical(args: HistoricalArgs) -> ExitCode {
    let definitions = match super::features_remote::read_definitions(&args.definitions) {
        Ok(definitions) => definitions,
        Err(error) => return input_error(error),
    };
    // Sources on S3 are copied beside the spill files (or the output) for the length of the run.
    let near = args.spill_dir.clone().unwrap_or_else(|| {
        args.output
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    });
    // The last pass reads every spilled partition of every view at once.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    watch_for_interruption();
    let local = match super::features_remote::local_sources(definitions.clone(), &near) {
        Ok(local) => local,
        Err(error) => return input_error(error),
    };
    let wanted = match args.service {
        Some(service) => Wanted::Service(service),
        None => Wanted::References(args.features),
    };
    if let Some(dataset) = &args.log_dataset
        && let Err(message) = loopline_pipelines::data::pointer::check_name(dataset)
    {
        eprintln!("error: --log-dataset: {message}");
        return ExitCode::from(super::INPUT_ERROR);
    }
    let request = HistoricalRequest {
        definitions: local.definitions.clone(),
        wanted,
        full_feature_names: args.full_feature_names,
        entities: args.entities.clone(),
        output: args.output.clone(),
        memory_limit: usize::try_from(args.memory_limit).unwrap_or(usize::MAX),
        spill_dir: args.spill_dir,
    };
    let progress = Bars(Mutex::new(None));
    let result = build_training_set(&request, &progress);
    if let Some(bar) = progress.0.lock().expect("not poisoned").take() {
        bar.finish_and_clear();
    }
    match result {
        Ok(summary) => {
            println!("wrote {} rows to {}", summary.rows, args.output.display());
            for (view, partitions, matched) in &summary.views {
                println!(
                    "  {view}: {matched} of {} rows found a value{}",
                    summary.rows,
                    if *partitions > 1 {
                        format!(" ({partitions} partitions spilled to disk)")
                    } else {
                        String::new()
                    }
                );
            }
            println!("  columns: {}", summary.columns.join(", "));
            let Some(dataset) = &args.log_dataset else {
                return ExitCode::from(OK);
            };
            let built = super::features_lineage::Built {
                definitions: &definitions,
                local: &request.definitions,
                definitions_path: &args.definitions,
                wanted: &request.wanted,
                full_feature_names: request.full_feature_names,
                entities: &args.entities,
                output: &args.output,
            };
            match super::features_lineage::log_training_set(&args.server, dataset, &built) {
                Ok(()) => ExitCode::from(OK),
                Err(message) => {
                    eprintln!(
                        "error: the training set is written to {}, but logging it failed: {message}",
                        args.output.display()
                    );
                    ExitCode::from(super::INPUT_ERROR)
                }
            }
        }
        Err(error) => input_error(error),
    }
}

/// On Ctrl-C or SIGTERM, removes the partial output and spill files before exiting (130 or 143).
fn watch_for_interruption() {
    std::thread::spawn(|| {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
            return;
        };
        let code = runtime.block_on(async {
            let Ok(mut terminate) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
                return None;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => Some(130),
                _ = terminate.recv() => Some(143),
            }
        });
        if let Some(code) = code {
            loopline_features::scratch::remove_all();
            eprintln!("\ninterrupted: the partial training set and its spill files were removed");
            std::process::exit(code);
        }
    });
}

/// One bar per stage, on standard error.
struct Bars(Mutex<Option<ProgressBar>>);

impl Progress for Bars {
    fn stage(&self, label: &str, total_rows: Option<u64>) {
        let mut current = self.0.lock().expect("not poisoned");
        if let Some(bar) = current.take() {
            bar.finish_and_clear();
        }
        *current = Some(rows_bar(label, total_rows));
    }

    fn advance(&self, rows: u64) {
        if let Some(bar) = self.0.lock().expect("not poisoned").as_ref() {
            bar.inc(rows);
        }
    }
}

/// A size in bytes: a number with an optional unit (`K`, `M`, `G`, `KiB`, `MiB`, `GiB`; powers of 1024).
fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let count: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as 512MiB or 4GiB"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => return Err(format!("unknown unit {other:?}; use KiB, MiB or GiB")),
    };
    let size = count
        .checked_mul(scale)
        .ok_or_else(|| format!("{text:?} is too large"))?;
    if size < 1 << 20 {
        return Err(format!("{text:?} is less than 1 MiB; the join needs at least that"));
    }
    Ok(size)
}
