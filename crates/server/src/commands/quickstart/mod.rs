//! `loopline quickstart`: the whole loop on this machine, with live output. It starts a server on embedded
//! defaults, versions and validates data, trains and registers a model through a pipeline, gates it, serves it
//! behind a canary deployment, sends traffic, shifts the market under it until the monitor's drift alert asks
//! for retraining, lets that alert trigger the pipeline on fresh data, gates the new model against the champion
//! and rolls it out; then prints the lineage and leaves the server running.

mod data;
mod python;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use loopline_pipelines::data::{Project, Quiet};
use reqwest::Method;
use serde_json::{Value, json};

use super::input_error;
use super::rollout::{Client, ServerArgs, runtime_block};

/// Rows per traffic request.
const ROWS_PER_REQUEST: usize = 10;
/// Predictions per monitor window.
const WINDOW: usize = 200;
/// The longest any one stage may wait.
const STAGE_LIMIT: Duration = Duration::from_secs(300);

/// `loopline quickstart`.
#[derive(Args, Debug)]
pub struct QuickstartArgs {
    /// Where the server's data, the example project and (if one is made) the venv go; the server's data and
    /// the project are made afresh.
    #[arg(long, default_value = "loopline-quickstart")]
    dir: PathBuf,
    /// A Python with scikit-learn, mlflow, pandas and pyarrow (default: LOOPLINE_PYTHON, the quickstart's own
    /// venv or ./.venv if they have them; else a venv is created).
    #[arg(long)]
    python: Option<PathBuf>,
    /// The server's port (a free one when it is taken).
    #[arg(long, default_value_t = 5000)]
    port: u16,
    /// Stop the server once the loop has run, instead of leaving it running.
    #[arg(long)]
    exit: bool,
}

/// Runs `loopline quickstart`.
pub fn run(args: QuickstartArgs) -> ExitCode {
    let mut server = None;
    let outcome = quickstart(&args, &mut server);
    match outcome {
        Ok(()) if args.exit => {
            stop(server);
            ExitCode::SUCCESS
        }
        Ok(()) => match server.as_mut().map(Child::wait) {
            Some(Ok(status)) if status.success() => ExitCode::SUCCESS,
            _ => ExitCode::FAILURE,
        },
        Err(message) => {
            stop(server);
            input_error(format!(
                "{message}\n(the server's log: {})",
                args.dir.join("server.log").display()
            ))
        }
    }
}

/// On SIGINT or SIGTERM the quickstart stops its server (it drains and flushes) and ends, so no server is left
/// behind by an interrupted quickstart.
fn stop_server_on_signal(pid: rustix::process::Pid) {
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
            return;
        };
        runtime.block_on(async {
            let Ok(mut terminate) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
                return std::future::pending::<()>().await;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        });
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        for _ in 0..200 {
            if !std::path::Path::new(&format!("/proc/{}", pid.as_raw_nonzero())).exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("\ninterrupted: the quickstart's server was stopped");
        std::process::exit(130);
    });
}

/// Waits (bounded) until no run of the quickstart's pipeline is queued or running; with `cancel`, asks them
/// to stop first.
fn settle_runs(client: &Client, cancel: bool) -> Result<(), String> {
    wait_for("pipeline runs in progress to end", || {
        let runs = call(client, Method::GET, "/api/loopline/v1/pipelines/quickstart/runs", None)?;
        let active: Vec<String> = runs["runs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| matches!(r["status"].as_str(), Some("queued" | "running")))
            .filter_map(|r| r["run_id"].as_str().map(str::to_string))
            .collect();
        if cancel {
            for run in &active {
                let _ = call(
                    client,
                    Method::POST,
                    &format!("/api/loopline/v1/pipeline-runs/{run}/cancel"),
                    None,
                );
            }
        }
        Ok(active.is_empty().then_some(()))
    })
}

/// Asks the server to stop (SIGTERM: it drains and flushes) and waits for it.
fn stop(server: Option<Child>) {
    if let Some(mut child) = server {
        let pid = rustix::process::Pid::from_child(&child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let _ = child.wait();
    }
}

struct Stage {
    started: Instant,
    total: usize,
}

impl Stage {
    fn say(&self, number: usize, text: &str) {
        println!(
            "\n[{number}/{}] {text}  ({:.0} s)",
            self.total,
            self.started.elapsed().as_secs_f64()
        );
    }
}

fn detail(text: impl std::fmt::Display) {
    println!("      {text}");
}

fn quickstart(args: &QuickstartArgs, server: &mut Option<Child>) -> Result<(), String> {
    let stage = Stage {
        started: Instant::now(),
        total: 9,
    };
    let work = std::path::absolute(&args.dir).map_err(|e| format!("{}: {e}", args.dir.display()))?;
    println!(
        "Loopline quickstart: the whole ML loop on this machine, in {}",
        work.display()
    );

    stage.say(1, "Python for training");
    std::fs::create_dir_all(&work).map_err(|e| format!("creating {}: {e}", work.display()))?;
    let (python, versions) = python::find_or_create(args.python.clone(), &work)?;
    detail(format!("{} ({versions})", python.display()));

    stage.say(2, "Server on embedded defaults (SQLite and a local directory)");
    let project_dir = work.join("project");
    for fresh in [work.join("server"), project_dir.clone()] {
        if fresh.exists() {
            std::fs::remove_dir_all(&fresh).map_err(|e| format!("clearing {}: {e}", fresh.display()))?;
        }
    }
    std::fs::create_dir_all(project_dir.join(".loopline"))
        .map_err(|e| format!("creating {}: {e}", project_dir.display()))?;
    let port = free_port(args.port)?;
    let child = start_server(&work, &project_dir, &python, port)?;
    stop_server_on_signal(rustix::process::Pid::from_child(&child));
    *server = Some(child);
    let base = format!("http://127.0.0.1:{port}");
    let client = Client::new(&ServerArgs { server: base.clone() })?;
    wait_for("the server to answer", || {
        runtime_block(async {
            Ok(client
                .call(Method::GET, "/health", None)
                .await
                .ok()
                .filter(|(status, _)| *status == 200)
                .map(|_| ()))
        })
    })?;
    detail(format!("{base}  (data in {})", work.join("server").display()));

    stage.say(
        3,
        "Data versioned and pushed: customers and a holdout, with an expectation suite",
    );
    let project = Project::open(&project_dir)?;
    write_project(&project_dir, &python)?;
    let datasets = version_data(&client, &project, &project_dir, false)?;
    detail(datasets);

    stage.say(4, "Pipeline: validate -> train -> register -> gate -> deploy");
    call(
        &client,
        Method::POST,
        "/api/2.0/mlflow/registered-models/create",
        Some(json!({"name": "churn"})),
    )?;
    set_policy(&client, 1)?;
    detail("gate on 'churn' protects 'champion': accuracy >= 0.70 on churn-holdout, and no worse than the champion");
    let registered = call(
        &client,
        Method::POST,
        "/api/loopline/v1/pipelines",
        Some(json!({"directory": project_dir, "file": "loopline.yaml"})),
    )?;
    detail(format!(
        "pipeline 'quickstart' registered with the server; trigger: {}",
        registered["pipeline"]["spec"]["triggers"]
    ));
    let first = call(
        &client,
        Method::POST,
        "/api/loopline/v1/pipelines/quickstart/runs",
        Some(json!({})),
    )?;
    let run_id = first["run"]["run_id"].as_str().unwrap_or_default().to_string();
    detail(format!("run {run_id} (manual):"));
    follow_run(&client, &run_id)?;

    stage.say(
        5,
        "Serving: a canary deployment following churn@champion, watched by a drift monitor",
    );
    call(
        &client,
        Method::POST,
        "/api/loopline/v1/deployments",
        Some(json!({
            "name": "churn", "model": "models:/churn@champion",
            "policy": {"type": "canary", "steps": [20, 50, 100], "min_dwell_seconds": 2, "min_requests": 15},
        })),
    )?;
    call(
        &client,
        Method::POST,
        "/api/loopline/v1/monitors",
        Some(json!({
            "name": "churn-drift", "deployment": "churn", "window": {"predictions": WINDOW},
            "reference_window": true, "label_column": "churn",
            "drift": {"enabled": true, "method": "psi", "threshold": 0.2},
            "alerts": [{"name": "input-drift", "figure": "drift.share", "operator": ">=", "threshold": 0.5,
                        "for_windows": 1, "severity": "critical",
                        "actions": [{"kind": "retrain", "pipeline": "quickstart"}]}],
        })),
    )?;
    detail(format!(
        "deployment 'churn': POST {base}/deployments/churn/invocations; monitor 'churn-drift': windows of {WINDOW} predictions"
    ));

    stage.say(6, "Traffic like the training data");
    let mut seed = 100;
    for _ in 0..3 {
        send_window(&client, seed, false)?;
        seed += 1;
    }
    let windows = wait_windows(&client, 3)?;
    detail(format!(
        "{windows} windows evaluated; the first is the reference, drift share {}",
        drift_shares(&client)?
    ));

    stage.say(7, "The market shifts: fresh data arrives and live traffic drifts");
    let datasets = version_data(&client, &project, &project_dir, true)?;
    detail(format!("{datasets} (the evaluation data moves to churn-holdout@2)"));
    set_policy(&client, 2)?;
    let request = wait_for_alert(&client, &mut seed)?;
    detail(format!("drift shares {}", drift_shares(&client)?));
    detail(format!("alert 'input-drift' fired -> {request}"));

    stage.say(8, "Retraining, triggered by the alert, on the fresh data");
    let retraining = wait_for("the alert's pipeline run", || {
        let runs = call(&client, Method::GET, "/api/loopline/v1/pipelines/quickstart/runs", None)?;
        Ok(runs["runs"].as_array().and_then(|runs| {
            runs.iter()
                .find(|r| r["cause"]["kind"] == "alert")
                .and_then(|r| r["run_id"].as_str().map(str::to_string))
        }))
    })?;
    detail(format!("run {retraining} (cause: the alert):"));
    follow_run(&client, &retraining)?;
    let champion = call(
        &client,
        Method::GET,
        "/api/2.0/mlflow/registered-models/alias?name=churn&alias=champion",
        None,
    )?;
    let version = champion["model_version"]["version"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let gate = call(
        &client,
        Method::GET,
        &format!("/api/loopline/v1/registered-models/churn/versions/{version}/gate"),
        None,
    )?;
    detail(gate_summary(&gate, &version));

    stage.say(9, "Canary rollout of the new champion under live traffic");
    roll_out(&client, &version, &mut seed)?;

    // A retraining request made while the canary still sent old-market traffic to the old version may have
    // started another run (it finds everything cached); the lineage is printed once the runs have ended.
    settle_runs(&client, args.exit)?;
    println!("\nLineage of models:/churn/{version}:");
    let lineage = runtime_block(super::lineage::lineage_of(&client, "churn", &version))?;
    for line in super::lineage::tree(&lineage).lines() {
        println!("  {line}");
    }
    println!("\nThe loop closed in {:.0} s.", stage.started.elapsed().as_secs_f64());
    print_next_steps(&base, &work, args.exit);
    Ok(())
}

fn print_next_steps(base: &str, work: &Path, exit: bool) {
    let server = format!("--server {base}");
    if !exit {
        println!("The server keeps running (Ctrl-C stops it). Look around:");
    } else {
        println!(
            "The server was stopped (--exit); its data stays in {}.",
            work.join("server").display()
        );
    }
    for (what, how) in [
        (
            "web UI",
            format!("{base}/ (MLflow's UI, from the quickstart's mlflow package)"),
        ),
        (
            "Loopline UI",
            format!("{base}/loopline/ (the rollout, the monitor's drift, the pipeline runs, lineage)"),
        ),
        (
            "MLflow client",
            format!("MLFLOW_TRACKING_URI={base} (experiment 'quickstart', model 'churn')"),
        ),
        (
            "predict",
            format!(
                "curl -s {base}/deployments/churn/invocations -H 'Content-Type: application/json' -d '{{\"dataframe_split\": {{\"columns\": [\"tenure\", \"monthly_charges\", \"support_calls\", \"contract\"], \"data\": [[3, 110.5, 6, \"month\"]]}}}}'"
            ),
        ),
        ("rollout", format!("loopline rollout status churn {server}")),
        ("monitor", format!("loopline monitor status churn-drift {server}")),
        ("pipeline", format!("loopline pipeline runs quickstart {server}")),
        ("lineage", format!("loopline lineage models:/churn@champion {server}")),
        (
            "project",
            format!(
                "{} (loopline.yaml, train.py, data/*.loopline)",
                work.join("project").display()
            ),
        ),
        ("server log", work.join("server.log").display().to_string()),
    ] {
        if exit && !matches!(what, "project" | "server log") {
            continue;
        }
        println!("  {what:<14} {how}");
    }
}

/// `port` if it is free, else one the system picks.
fn free_port(port: u16) -> Result<u16, String> {
    if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
        return Ok(port);
    }
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(|e| format!("no free port: {e}"))?;
    let free = listener.local_addr().map_err(|e| e.to_string())?.port();
    println!("      port {port} is taken; using {free}");
    Ok(free)
}

fn start_server(work: &Path, project: &Path, python: &Path, port: u16) -> Result<Child, String> {
    let binary = std::env::current_exe().map_err(|e| format!("cannot find the loopline binary: {e}"))?;
    let log_path = work.join("server.log");
    let log = std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let errors = log.try_clone().map_err(|e| e.to_string())?;
    Command::new(binary)
        .args([
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--data-dir",
        ])
        .arg(work.join("server"))
        .arg("--pipeline-root")
        .arg(project)
        .args([
            // Models here are scikit-learn pickles this quickstart trained itself, served by the Python worker.
            "--allow-python-models",
            "--pipeline-tick-seconds",
            "1",
            "--monitor-tick-seconds",
            "1",
            "--rollout-tick-ms",
            "250",
            "--prediction-log-flush-rows",
            "50",
            "--prediction-log-flush-seconds",
            "1",
        ])
        .env("LOOPLINE_PYTHON", python)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(errors)
        .spawn()
        .map_err(|e| format!("starting the server: {e}"))
}

fn call(client: &Client, method: Method, path: &str, body: Option<Value>) -> Result<Value, String> {
    runtime_block(client.ok(method, path, body)).map_err(|e| format!("{path}: {e}"))
}

/// Polls `check` every half second until it gives a value, with a spinner; gives up after a while.
fn wait_for<T>(what: &str, mut check: impl FnMut() -> Result<Option<T>, String>) -> Result<T, String> {
    let spinner = ProgressBar::new_spinner().with_style(
        ProgressStyle::with_template("      {spinner} waiting for {msg} ({elapsed})").expect("a valid template"),
    );
    spinner.set_message(what.to_string());
    spinner.enable_steady_tick(Duration::from_millis(120));
    let started = Instant::now();
    let outcome = loop {
        match check() {
            Ok(Some(value)) => break Ok(value),
            Ok(None) if started.elapsed() > STAGE_LIMIT => {
                break Err(format!("gave up waiting for {what} after {} s", STAGE_LIMIT.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(500)),
            Err(error) => break Err(error),
        }
    };
    spinner.finish_and_clear();
    outcome
}

/// The example project: the training script, the expectation suite and `loopline.yaml`.
fn write_project(directory: &Path, python: &Path) -> Result<(), String> {
    let write =
        |name: &str, text: &str| std::fs::write(directory.join(name), text).map_err(|e| format!("writing {name}: {e}"));
    write("train.py", include_str!("train.py"))?;
    let suite = json!({"name": "churn-data", "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "tenure"}},
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "monthly_charges", "min_value": 0, "max_value": 1000}},
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "contract", "value_set": ["month", "year", "two_year"]}},
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "churn", "value_set": [0, 1]}},
    ]});
    write(
        "expectations.json",
        &serde_json::to_string_pretty(&suite).unwrap_or_default(),
    )?;
    let python = serde_json::to_string(&python.display().to_string()).unwrap_or_default();
    write(
        "loopline.yaml",
        &format!(
            r#"# The quickstart's pipeline: Loopline's own steps around a stock scikit-learn + mlflow script.
pipeline: quickstart
steps:
  validate:
    kind: validate
    with: {{data: "dataset:churn-train", suite: expectations.json}}
  train:
    kind: train
    run: [{python}, train.py]
    inputs: [train.py, {{dataset: churn-train}}]
    after: [validate]
    with: {{experiment: quickstart}}
  register:
    kind: register
    with: {{model: churn, from: "step:train"}}
  gate:
    kind: gate
    with: {{model: churn, candidate: "step:register"}}
  deploy:
    kind: deploy
    with: {{model: churn, alias: champion, version: "step:register"}}
    after: [gate]
triggers:
  - alert: churn-drift
"#
        ),
    )
}

/// Writes this market's training data and holdout, versions and pushes them; says what was registered.
fn version_data(client: &Client, project: &Project, directory: &Path, shifted: bool) -> Result<String, String> {
    let data = directory.join("data");
    std::fs::create_dir_all(&data).map_err(|e| format!("creating {}: {e}", data.display()))?;
    let seed = if shifted { 3 } else { 1 };
    let tables = [
        ("train.csv", "churn-train", data::customers(4_000, seed, shifted)),
        (
            "holdout.csv",
            "churn-holdout",
            data::customers(2_000, seed + 1, shifted),
        ),
    ];
    let mut pointers = Vec::new();
    for (file, name, customers) in &tables {
        let path = data.join(file);
        std::fs::write(&path, data::csv(customers)).map_err(|e| format!("writing {}: {e}", path.display()))?;
        pointers.push(project.add(&path, Some(name), &Quiet)?.pointer_path);
    }
    super::data_remote::push(
        &ServerArgs {
            server: client.base.clone(),
        },
        project,
        &pointers,
    )?;
    let mut shown = Vec::new();
    for (_, name, customers) in &tables {
        let found = call(
            client,
            Method::GET,
            &format!("/api/loopline/v1/datasets/{name}/versions/latest"),
            None,
        )?;
        shown.push(format!(
            "{name}@{} ({} rows)",
            found["version"]["version"],
            customers.len()
        ));
    }
    Ok(shown.join(", "))
}

fn set_policy(client: &Client, holdout_version: i64) -> Result<(), String> {
    call(
        client,
        Method::PUT,
        "/api/loopline/v1/registered-models/churn/gate-policy",
        Some(json!({
            "dataset": format!("churn-holdout@{holdout_version}"), "target": "churn",
            "checks": [{"metric": "accuracy", "min": 0.7}],
            "no_regression": [{"metric": "accuracy", "margin": 0.02}],
        })),
    )
    .map(|_| ())
}

/// Prints a server run's steps as they change; fails when the run does not succeed.
fn follow_run(client: &Client, run_id: &str) -> Result<(), String> {
    let code = runtime_block(super::pipeline_remote::follow(client, run_id))?;
    if code == super::OK {
        Ok(())
    } else {
        Err(format!(
            "pipeline run {run_id} did not succeed; see `loopline pipeline logs {run_id} STEP`"
        ))
    }
}

/// Sends one window of predictions (market before or after the shift).
fn send_window(client: &Client, seed: u64, shifted: bool) -> Result<(), String> {
    send(client, WINDOW, seed, shifted)
}

/// Sends `rows` predictions, `ROWS_PER_REQUEST` a request.
fn send(client: &Client, rows: usize, seed: u64, shifted: bool) -> Result<(), String> {
    let customers = data::customers(rows, seed, shifted);
    for chunk in customers.chunks(ROWS_PER_REQUEST) {
        call(
            client,
            Method::POST,
            "/deployments/churn/invocations",
            Some(data::scoring_request(chunk)),
        )?;
    }
    Ok(())
}

fn windows(client: &Client) -> Result<Vec<Value>, String> {
    let answer = call(
        client,
        Method::GET,
        "/api/loopline/v1/monitors/churn-drift/windows",
        None,
    )?;
    Ok(answer["windows"].as_array().cloned().unwrap_or_default())
}

fn wait_windows(client: &Client, at_least: usize) -> Result<usize, String> {
    wait_for(&format!("{at_least} monitor windows"), || {
        let count = windows(client)?.len();
        Ok((count >= at_least).then_some(count))
    })
}

fn drift_shares(client: &Client) -> Result<String, String> {
    let mut windows = windows(client)?;
    windows.sort_by_key(|w| w["window_key"].as_i64().unwrap_or_default());
    Ok(windows
        .iter()
        .map(|w| match w["figures"]["drift.share"].as_f64() {
            Some(share) => format!("{share:.2}"),
            None => "-".to_string(),
        })
        .collect::<Vec<_>>()
        .join(", "))
}

/// Sends drifted windows until the monitor asks for retraining; returns what it said.
fn wait_for_alert(client: &Client, seed: &mut u64) -> Result<String, String> {
    let started = Instant::now();
    loop {
        let events = call(
            client,
            Method::GET,
            "/api/loopline/v1/monitors/churn-drift/events?kind=retraining_requested",
            None,
        )?;
        if let Some(event) = events["events"].as_array().and_then(|e| e.first()) {
            return Ok(event["message"].as_str().unwrap_or("retraining requested").to_string());
        }
        if started.elapsed() > STAGE_LIMIT {
            return Err("the monitor did not ask for retraining; see `loopline monitor status churn-drift`".into());
        }
        let before = windows(client)?.len();
        send_window(client, *seed, true)?;
        *seed += 1;
        wait_windows(client, before + 1)?;
    }
}

fn gate_summary(gate: &Value, version: &str) -> String {
    let evaluation = gate["evaluations"]
        .as_array()
        .and_then(|e| e.first())
        .cloned()
        .unwrap_or(Value::Null);
    let evidence = &evaluation["evidence"];
    let figure = |who: &str| {
        evidence[who]["accuracy"]
            .as_f64()
            .map_or("-".to_string(), |a| format!("{a:.3}"))
    };
    format!(
        "churn/{version} passed its gate on {}: accuracy {} against the champion's {}; it is the champion now",
        evidence["dataset"].as_str().unwrap_or("the holdout"),
        figure("candidate"),
        figure("champion"),
    )
}

/// Keeps traffic (after the shift) flowing while the canary moves through its steps; done when the new version
/// is the deployment's stable one.
fn roll_out(client: &Client, version: &str, seed: &mut u64) -> Result<(), String> {
    let started = Instant::now();
    let mut last = String::new();
    loop {
        let deployment = call(client, Method::GET, "/api/loopline/v1/deployments/churn", None)?;
        let deployment = &deployment["deployment"];
        let stable = deployment["stable_version"].as_str().unwrap_or_default();
        let rollout = &deployment["rollout"];
        let now = if rollout.is_null() {
            format!("stable version {stable}")
        } else {
            format!(
                "canary: version {} at step {} of {} ({}% of traffic)",
                rollout["candidates"][0].as_str().unwrap_or_default(),
                rollout["step"].as_u64().unwrap_or_default() + 1,
                rollout["steps"].as_array().map_or(0, Vec::len),
                rollout["steps"][rollout["step"].as_u64().unwrap_or_default() as usize]
            )
        };
        if now != last {
            detail(&now);
            last = now;
        }
        if rollout.is_null() && stable == version {
            detail(format!("promoted: churn/{version} serves all traffic"));
            return Ok(());
        }
        if rollout.is_null() && deployment["rollbacks"].as_u64().unwrap_or(0) > 0 {
            return Err(format!(
                "the rollout of churn/{version} was rolled back; see `loopline rollout status churn`"
            ));
        }
        if started.elapsed() > STAGE_LIMIT {
            return Err("the rollout did not finish; see `loopline rollout status churn`".into());
        }
        send(client, ROWS_PER_REQUEST * 5, *seed, true)?;
        *seed += 1;
    }
}
