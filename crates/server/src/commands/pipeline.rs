//! `loopline pipeline run|status|show`: a `loopline.yaml` run here with a live view of its DAG (a line per
//! step: waiting, running with its last output line, cached, done, failed) and its steps' logs kept under
//! `.loopline/pipeline-runs/RUN/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use clap::{Args, Subcommand};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use loopline_pipelines::data::Project;
use loopline_pipelines::pipeline::executor::LocalExecutor;
use loopline_pipelines::pipeline::{Input, Observer, Pipeline, RunOptions, RunRecord, Runner, StepState};
use tokio_util::sync::CancellationToken;

use super::pipeline_remote;
use super::rollout::ServerArgs;
use super::{FINDING, OK, input_error};

/// The pipeline file read when none is named.
const DEFAULT_FILE: &str = "loopline.yaml";

/// `loopline pipeline`.
#[derive(Args, Debug)]
pub struct PipelineArgs {
    #[command(subcommand)]
    command: PipelineCommand,
}

#[derive(Subcommand, Debug)]
enum PipelineCommand {
    /// Run a pipeline here: unchanged steps are skipped and their outputs restored from the cache.
    Run {
        /// The pipeline file.
        #[arg(default_value = DEFAULT_FILE)]
        file: PathBuf,
        /// Run this step even if cached (repeatable).
        #[arg(long)]
        force: Vec<String>,
        /// Run every step even if cached.
        #[arg(long)]
        force_all: bool,
        /// Steps run at once (default: the number of cores).
        #[arg(long)]
        jobs: Option<usize>,
        /// A parameter's value for this run, KEY=VALUE (VALUE read as YAML: numbers stay numbers).
        #[arg(long = "param", value_name = "KEY=VALUE")]
        params: Vec<String>,
        /// The Loopline server for train steps' MLflow runs, dataset and model inputs and the evaluate, gate,
        /// register and deploy steps (default: MLFLOW_TRACKING_URI; a pipeline that needs none runs offline).
        #[arg(long, env = "MLFLOW_TRACKING_URI")]
        server: Option<String>,
        #[command(flatten)]
        ray: crate::config::RayOptions,
    },
    /// The steps of a run (the newest when none is named) with their states.
    Status {
        /// The run's id.
        run: Option<String>,
    },
    /// Check a pipeline file and print its steps in run order with what each depends on.
    Show {
        /// The pipeline file.
        #[arg(default_value = DEFAULT_FILE)]
        file: PathBuf,
    },
    /// Register a pipeline with a server that runs pipelines (`loopline server --pipeline-root DIR`), on the
    /// same host: its triggers then start runs there. Registering again picks up a changed file.
    Register {
        /// The pipeline file.
        #[arg(default_value = DEFAULT_FILE)]
        file: PathBuf,
        /// Its name on the server (default: the file's `pipeline:` name).
        #[arg(long)]
        name: Option<String>,
        /// A parameter's value for every run, KEY=VALUE.
        #[arg(long = "param", value_name = "KEY=VALUE")]
        params: Vec<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Start a run of a registered pipeline on the server (a task: prints its status URL).
    Start {
        /// The pipeline's name.
        name: String,
        /// A parameter's value for this run, KEY=VALUE.
        #[arg(long = "param", value_name = "KEY=VALUE")]
        params: Vec<String>,
        /// Run this step even if cached (repeatable).
        #[arg(long)]
        force: Vec<String>,
        /// Run every step even if cached.
        #[arg(long)]
        force_all: bool,
        /// Follow the run until it ends (exit 0 when it succeeded).
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Runs of a registered pipeline, newest first, with what caused each.
    Runs {
        /// The pipeline's name.
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// A step's output in a server run.
    Logs {
        /// The run's id.
        run: String,
        /// The step.
        step: String,
        /// Keep printing until the run ends.
        #[arg(long)]
        follow: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Stop a server run (a queued run never starts).
    Cancel {
        /// The run's id.
        run: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// Runs `loopline pipeline`.
pub fn run(args: PipelineArgs) -> ExitCode {
    let outcome = match args.command {
        PipelineCommand::Run {
            file,
            force,
            force_all,
            jobs,
            params,
            server,
            ray,
        } => run_pipeline(&file, (force, force_all), jobs, &params, (server, ray)),
        PipelineCommand::Status { run } => status(run.as_deref()),
        PipelineCommand::Show { file } => show(&file),
        PipelineCommand::Register {
            file,
            name,
            params,
            server,
        } => pipeline_remote::register(&server, &file, name, &params),
        PipelineCommand::Start {
            name,
            params,
            force,
            force_all,
            wait,
            server,
        } => pipeline_remote::start(&server, &name, &params, (force, force_all), wait),
        PipelineCommand::Runs { name, server } => pipeline_remote::runs(&server, &name),
        PipelineCommand::Logs {
            run,
            step,
            follow,
            server,
        } => pipeline_remote::logs(&server, &run, &step, follow),
        PipelineCommand::Cancel { run, server } => pipeline_remote::cancel(&server, &run),
    };
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(error) => input_error(error),
    }
}

fn read_pipeline(file: &Path, params: &[String]) -> Result<Pipeline, String> {
    let text = loopline_pipelines::pipeline::spec::read_pipeline_file(file)?;
    let overrides = pipeline_remote::parse_params(params)?;
    let default_name = file.file_stem().and_then(|s| s.to_str()).unwrap_or("pipeline");
    let default_name = if default_name == "loopline" {
        std::env::current_dir()
            .ok()
            .and_then(|d| {
                d.file_name()
                    .and_then(|n| n.to_str())
                    .map(loopline_pipelines::data::pointer::name_from_text)
            })
            .unwrap_or_else(|| "pipeline".into())
    } else {
        default_name.to_string()
    };
    Pipeline::parse_with_params(&text, &default_name, &overrides).map_err(|e| format!("{}: {e}", file.display()))
}

fn show(file: &Path) -> Result<u8, String> {
    let pipeline = read_pipeline(file, &[])?;
    println!("pipeline {} ({} steps)", pipeline.name, pipeline.steps.len());
    for step in &pipeline.steps {
        let needs: Vec<&str> = pipeline.dependencies[&step.name].iter().map(String::as_str).collect();
        let after = if needs.is_empty() {
            String::new()
        } else {
            format!(" <- {}", needs.join(", "))
        };
        println!(
            "  {:<24} {:<9}{after}",
            step.name,
            format!("{:?}", step.kind).to_lowercase()
        );
    }
    for trigger in &pipeline.triggers {
        println!("  trigger: {}", serde_json::to_string(trigger).unwrap_or_default());
    }
    Ok(OK)
}

/// A line per step, kept up to date.
struct LiveView {
    bars: BTreeMap<String, ProgressBar>,
    failures: Mutex<Vec<(String, String)>>,
    /// Not at a terminal: each change is a line of its own (for logs and CI).
    plain: bool,
}

impl LiveView {
    fn new(pipeline: &Pipeline) -> LiveView {
        let multi = MultiProgress::new();
        let width = pipeline.steps.iter().map(|s| s.name.len()).max().unwrap_or(8);
        let style = ProgressStyle::with_template(&format!("{{prefix:>2}} {{spinner}} {{msg:<{}}}", width + 40))
            .expect("a valid template");
        let bars = pipeline
            .steps
            .iter()
            .map(|step| {
                let bar = multi.add(ProgressBar::new_spinner().with_style(style.clone()));
                bar.set_prefix("·");
                bar.set_message(format!("{:<width$}  waiting", step.name));
                (step.name.clone(), bar)
            })
            .collect();
        LiveView {
            bars,
            failures: Mutex::new(Vec::new()),
            plain: !std::io::IsTerminal::is_terminal(&std::io::stderr()),
        }
    }
}

impl Observer for LiveView {
    fn state(&self, step: &str, state: &StepState) {
        let Some(bar) = self.bars.get(step) else { return };
        let (mark, text) = match state {
            StepState::Pending => ("·", "waiting".to_string()),
            StepState::Running(1) => ("▸", "running".to_string()),
            StepState::Running(attempt) => ("▸", format!("running (attempt {attempt})")),
            StepState::Cached => ("=", "cached: unchanged, outputs restored".to_string()),
            StepState::Succeeded => ("✓", "done".to_string()),
            StepState::Failed(why) => {
                if let Ok(mut failures) = self.failures.lock() {
                    failures.push((step.to_string(), why.clone()));
                }
                ("✗", format!("failed: {why}"))
            }
            StepState::Skipped(why) => ("-", format!("skipped: {why}")),
        };
        if self.plain {
            println!("{mark} {step:<24} {text}");
        }
        bar.set_prefix(mark);
        let name = step.to_string();
        bar.set_message(format!("{name:<24}  {text}"));
        if matches!(state, StepState::Running(_)) {
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
        } else if state != &StepState::Pending {
            bar.finish();
        }
    }

    fn line(&self, step: &str, text: &str) {
        if let Some(bar) = self.bars.get(step).filter(|b| !b.is_finished()) {
            let shown: String = text.chars().take(60).collect();
            bar.set_message(format!("{step:<24}  running: {shown}"));
        }
    }
}

/// Whether a pipeline cannot run without a server.
fn needs_server(pipeline: &Pipeline) -> bool {
    pipeline.steps.iter().any(|step| {
        step.kind.on_server()
            || step
                .inputs
                .iter()
                .any(|input| matches!(input, Input::Dataset(_) | Input::Model(_)))
    })
}

fn run_pipeline(
    file: &Path,
    (force, force_all): (Vec<String>, bool),
    jobs: Option<usize>,
    params: &[String],
    (server, ray): (Option<String>, crate::config::RayOptions),
) -> Result<u8, String> {
    let pipeline = read_pipeline(file, params)?;
    for step in &force {
        if pipeline.step(step).is_none() {
            return Err(format!("--force {step}: the pipeline has no such step"));
        }
    }
    let start = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let project = Arc::new(Project::find(start)?);
    let loopline = std::env::current_exe().map_err(|e| format!("cannot find the loopline binary: {e}"))?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut runner = loopline_pipelines::pipeline::service::with_ray(
        Runner::new(project.clone(), Arc::new(LocalExecutor), loopline),
        ray.settings().as_ref(),
    )?;
    let server = server.or_else(|| needs_server(&pipeline).then(|| "http://127.0.0.1:5000".to_string()));
    if let Some(server) = &server {
        runner = runner.with_hooks(Arc::new(super::loop_hooks::ServerHooks::new(server, project.clone())?));
    }
    let run_id = loopline_pipelines::pipeline::runner::new_run_id();
    let options = RunOptions {
        force: force.into_iter().collect(),
        force_all,
        jobs: jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
        run_id: run_id.clone(),
        cause: "manual (loopline pipeline run)".into(),
    };
    let view = LiveView::new(&pipeline);
    let cancel = CancellationToken::new();
    let record = super::rollout::runtime_block(async {
        let stop = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.cancel();
            }
        });
        runner.run(&pipeline, &options, &cancel, &view).await
    })?;
    print_summary(&runner, &record, &view);
    Ok(if record.status == "succeeded" { OK } else { FINDING })
}

fn print_summary(runner: &Runner, record: &RunRecord, view: &LiveView) {
    let directory = runner.run_directory(&record.run_id);
    let failures = view.failures.lock().map(|f| f.clone()).unwrap_or_default();
    for (step, why) in failures {
        eprintln!("\nstep '{step}' failed: {why}");
        let log = directory.join(format!("{step}.log"));
        if let Ok(text) = std::fs::read_to_string(&log) {
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(20)..];
            for line in tail {
                eprintln!("  | {line}");
            }
            eprintln!("  (whole log: {})", log.display());
        }
    }
    let count = |wanted: fn(&StepState) -> bool| record.steps.iter().filter(|s| wanted(&s.state)).count();
    println!(
        "run {} {}: {} ran, {} cached, {} failed, {} skipped (logs in {})",
        record.run_id,
        record.status,
        count(|s| *s == StepState::Succeeded),
        count(|s| *s == StepState::Cached),
        count(|s| matches!(s, StepState::Failed(_))),
        count(|s| matches!(s, StepState::Skipped(_))),
        directory.display()
    );
}

fn status(run: Option<&str>) -> Result<u8, String> {
    let project = Project::find(Path::new("."))?;
    let runs = project.root().join(".loopline/pipeline-runs");
    let run_id = match run {
        Some(run) => run.to_string(),
        None => {
            let mut ids: Vec<String> = std::fs::read_dir(&runs)
                .map_err(|_| format!("no pipeline has run in {}", project.root().display()))?
                .flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .collect();
            ids.sort();
            ids.pop()
                .ok_or_else(|| format!("no pipeline has run in {}", project.root().display()))?
        }
    };
    if run_id.contains('/') || run_id.contains("..") {
        return Err(format!("'{run_id}' is not a run id"));
    }
    let path = runs.join(&run_id).join("status.json");
    let record: RunRecord =
        serde_json::from_slice(&std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    println!(
        "run {} of {} ({}): {}",
        record.run_id, record.pipeline, record.cause, record.status
    );
    for step in &record.steps {
        let state = serde_json::to_value(&step.state).unwrap_or_default();
        let reason = state["reason"].as_str().map(|r| format!(": {r}")).unwrap_or_default();
        println!(
            "  {:<24} {}{reason} ({:.1} s)",
            step.name,
            state["state"].as_str().unwrap_or_default(),
            step.seconds
        );
    }
    Ok(if record.status == "succeeded" { OK } else { FINDING })
}
