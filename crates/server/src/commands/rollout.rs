//! `loopline deploy` and `loopline rollout ...`: deployments managed from the command line through a
//! server's `/api/loopline/v1/deployments` API (the server in `--server`, else `MLFLOW_TRACKING_URI`, as the
//! mlflow CLI finds it). `deploy` creates a deployment or, when it exists, updates it; `rollout status --watch`
//! follows a rollout step by step until it completes or rolls back.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::input_error;

/// Where the server is.
#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// The Loopline server (default: MLFLOW_TRACKING_URI, else http://127.0.0.1:5000).
    #[arg(long, env = "MLFLOW_TRACKING_URI", default_value = "http://127.0.0.1:5000")]
    pub server: String,
}

/// `loopline deploy`.
#[derive(Args, Debug)]
pub struct DeployArgs {
    /// Deployment name (letters, digits, '.', '_', '-').
    pub name: String,
    /// The model: models:/<name>@<alias> to follow an alias, or models:/<name>/<version>.
    #[arg(short = 'm', long = "model-uri")]
    pub model: String,
    /// Rollout policy: canary, blue-green, shadow, ab or bandit.
    #[arg(long, default_value = "canary")]
    pub policy: String,
    /// Canary steps, percent of traffic to the new version (e.g. 5,25,50,100).
    #[arg(long, value_delimiter = ',')]
    pub steps: Vec<f64>,
    /// Least seconds on a canary step (or watched after a blue-green switch).
    #[arg(long)]
    pub min_dwell_seconds: Option<u64>,
    /// Least requests to the new version on a step.
    #[arg(long)]
    pub min_requests: Option<u64>,
    /// Blue-green: seconds the old version stays loaded for an instant switch back.
    #[arg(long)]
    pub keep_old_seconds: Option<u64>,
    /// Shadow: percent of requests mirrored.
    #[arg(long)]
    pub mirror_percent: Option<f64>,
    /// A/B on an alias: percent of traffic for a new version.
    #[arg(long)]
    pub candidate_percent: Option<f64>,
    /// A/B with fixed versions: VERSION=WEIGHT pairs (e.g. 3=50,4=50).
    #[arg(long, value_delimiter = ',')]
    pub weights: Vec<String>,
    /// Bandit: the competing versions (e.g. 3,4).
    #[arg(long, value_delimiter = ',')]
    pub versions: Vec<String>,
    /// Keep each caller on one version by this request header.
    #[arg(long, conflicts_with = "sticky_column")]
    pub sticky_header: Option<String>,
    /// Keep each caller on one version by this input column.
    #[arg(long)]
    pub sticky_column: Option<String>,
    /// Guardrail: highest failed share (0 to 1) before rolling back.
    #[arg(long)]
    pub max_error_rate: Option<f64>,
    /// Guardrail: highest p99 latency, ms.
    #[arg(long)]
    pub max_p99_ms: Option<f64>,
    /// Guardrail: highest ratio of the new version's p99 to the stable version's.
    #[arg(long)]
    pub max_p99_ratio: Option<f64>,
    /// Guardrail: highest Kolmogorov-Smirnov distance between the versions' predictions.
    #[arg(long)]
    pub max_divergence: Option<f64>,
    /// Requests a version needs on a step before the guardrails judge it.
    #[arg(long)]
    pub guardrail_min_requests: Option<u64>,
    /// Largest batch, rows.
    #[arg(long)]
    pub max_batch_rows: Option<usize>,
    /// Longest wait for a batch to fill, ms.
    #[arg(long)]
    pub max_batch_wait_ms: Option<u64>,
    /// Batches running at once.
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Seconds a request waits for its prediction before it is answered 504.
    #[arg(long)]
    pub timeout_seconds: Option<u64>,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// `loopline rollout`.
#[derive(Args, Debug)]
pub struct RolloutArgs {
    #[command(subcommand)]
    pub command: RolloutCommand,
}

/// Rollout commands.
#[derive(Subcommand, Debug)]
pub enum RolloutCommand {
    /// Show a deployment: versions, traffic, the current step and recent events; --watch follows it.
    Status {
        /// Deployment name.
        name: String,
        /// Keep printing new events and traffic until a rollout (the one under way, or the next one) ends.
        #[arg(long)]
        watch: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Finish the rollout now with the new version (or --version) as stable.
    Promote {
        /// Deployment name.
        name: String,
        /// The version to promote (needed when several compete).
        #[arg(long)]
        version: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Roll back: end the rollout, or return to the previous version; a followed alias moves back too.
    Rollback {
        /// Deployment name.
        name: String,
        /// Why (kept in the audit trail).
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List deployments.
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// A client of the `/api/loopline/v1` API (shared by the deployment and monitor commands).
pub(crate) struct Client {
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
    user: String,
    pub(crate) credentials: super::credentials::ClientCredentials,
}

impl Client {
    pub(crate) fn new(server: &ServerArgs) -> Result<Client, String> {
        Client::with_credentials(server, &super::credentials::ClientCredentials::from_env())
    }

    /// A client presenting `credentials`.
    pub(crate) fn with_credentials(
        server: &ServerArgs,
        credentials: &super::credentials::ClientCredentials,
    ) -> Result<Client, String> {
        if !server.server.starts_with("http://") && !server.server.starts_with("https://") {
            return Err(format!(
                "--server '{}' is not a URL; give the Loopline server, e.g. http://127.0.0.1:5000",
                server.server
            ));
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .default_headers(credentials.headers())
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| format!("cannot create an HTTP client: {e}"))?;
        let user = std::env::var("USER").unwrap_or_else(|_| "cli".to_string());
        Ok(Client {
            base: server.server.trim_end_matches('/').to_string(),
            http,
            user,
            credentials: credentials.clone(),
        })
    }

    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("x-loopline-user", &self.user);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("cannot reach the Loopline server at {}: {e}", self.base))?;
        let status = response.status().as_u16();
        let value = response.json().await.unwrap_or(Value::Null);
        Ok((status, value))
    }

    pub(crate) async fn ok(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let (status, value) = self.call(method, path, body).await?;
        if (200..300).contains(&status) {
            Ok(value)
        } else {
            Err(format!(
                "the server refused ({status}): {}",
                value["message"].as_str().unwrap_or("no message")
            ))
        }
    }
}

pub(crate) fn runtime_block<T>(work: impl std::future::Future<Output = Result<T, String>>) -> Result<T, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the I/O runtime: {e}"))?
        .block_on(work)
}

/// The spec a `deploy` command describes.
fn spec(args: &DeployArgs) -> Result<Value, String> {
    let mut policy = json!({"type": args.policy.replace('-', "_")});
    let mut set = |key: &str, value: Value| {
        policy[key] = value;
    };
    if !args.steps.is_empty() {
        set("steps", json!(args.steps));
    }
    if let Some(v) = args.min_dwell_seconds {
        set("min_dwell_seconds", json!(v));
    }
    if let Some(v) = args.min_requests {
        set("min_requests", json!(v));
    }
    if let Some(v) = args.keep_old_seconds {
        set("keep_old_seconds", json!(v));
    }
    if let Some(v) = args.mirror_percent {
        set("mirror_percent", json!(v));
    }
    if let Some(v) = args.candidate_percent {
        set("candidate_percent", json!(v));
    }
    if !args.weights.is_empty() {
        let mut weights = serde_json::Map::new();
        for pair in &args.weights {
            let (version, weight) = pair
                .split_once('=')
                .ok_or_else(|| format!("--weights takes VERSION=WEIGHT pairs, got '{pair}'"))?;
            let weight: f64 = weight
                .parse()
                .map_err(|_| format!("--weights: '{weight}' is not a number"))?;
            weights.insert(version.to_string(), json!(weight));
        }
        set("weights", Value::Object(weights));
    }
    if !args.versions.is_empty() {
        set("versions", json!(args.versions));
    }
    let mut guardrails = serde_json::Map::new();
    for (key, value) in [
        ("max_error_rate", args.max_error_rate),
        ("max_p99_ms", args.max_p99_ms),
        ("max_p99_ratio", args.max_p99_ratio),
        ("max_divergence", args.max_divergence),
    ] {
        if let Some(value) = value {
            guardrails.insert(key.to_string(), json!(value));
        }
    }
    if let Some(v) = args.guardrail_min_requests {
        guardrails.insert("min_requests".to_string(), json!(v));
    }
    let mut runtime = serde_json::Map::new();
    if let Some(v) = args.max_batch_rows {
        runtime.insert("max_batch_rows".to_string(), json!(v));
    }
    if let Some(v) = args.max_batch_wait_ms {
        runtime.insert("max_batch_wait_ms".to_string(), json!(v));
    }
    if let Some(v) = args.concurrency {
        runtime.insert("concurrency".to_string(), json!(v));
    }
    if let Some(v) = args.timeout_seconds {
        runtime.insert("timeout_seconds".to_string(), json!(v));
    }
    let mut spec = json!({"model": args.model, "policy": policy, "guardrails": guardrails, "runtime": runtime});
    if let Some(header) = &args.sticky_header {
        spec["sticky"] = json!({"header": header});
    }
    if let Some(column) = &args.sticky_column {
        spec["sticky"] = json!({"column": column});
    }
    Ok(spec)
}

/// Runs `loopline deploy`.
pub fn deploy(args: DeployArgs) -> ExitCode {
    let result = runtime_block(async {
        let client = Client::new(&args.server)?;
        let mut body = spec(&args)?;
        let path = format!("/api/loopline/v1/deployments/{}", args.name);
        let (status, _) = client.call(reqwest::Method::GET, &path, None).await?;
        let (verb, answer) = if status == 404 {
            body["name"] = json!(args.name);
            let created = client
                .ok(reqwest::Method::POST, "/api/loopline/v1/deployments", Some(body))
                .await?;
            ("created", created)
        } else {
            ("updated", client.ok(reqwest::Method::PUT, &path, Some(body)).await?)
        };
        Ok((verb, answer))
    });
    match result {
        Ok((verb, answer)) => {
            println!("deployment '{}' {verb}", args.name);
            print!("{}", describe(&answer["deployment"]));
            println!(
                "requests: POST {}/deployments/{}/invocations (MLflow scoring) or {}/v2/models/{}/infer",
                args.server.server.trim_end_matches('/'),
                args.name,
                args.server.server.trim_end_matches('/'),
                args.name
            );
            ExitCode::SUCCESS
        }
        Err(message) => input_error(message),
    }
}

/// Runs `loopline rollout ...`.
pub fn rollout(args: RolloutArgs) -> ExitCode {
    let result = match args.command {
        RolloutCommand::Status { name, watch, server } => runtime_block(status(&server, &name, watch)),
        RolloutCommand::Promote { name, version, server } => runtime_block(async move {
            let client = Client::new(&server)?;
            let answer = client
                .ok(
                    reqwest::Method::POST,
                    &format!("/api/loopline/v1/deployments/{name}/promote"),
                    Some(json!({"version": version})),
                )
                .await?;
            println!(
                "promoted: '{name}' now serves version {}",
                answer["deployment"]["stable_version"].as_str().unwrap_or("?")
            );
            Ok(())
        }),
        RolloutCommand::Rollback { name, reason, server } => runtime_block(async move {
            let client = Client::new(&server)?;
            let answer = client
                .ok(
                    reqwest::Method::POST,
                    &format!("/api/loopline/v1/deployments/{name}/rollback"),
                    Some(json!({"reason": reason})),
                )
                .await?;
            println!(
                "rolled back: '{name}' now serves version {}",
                answer["deployment"]["stable_version"].as_str().unwrap_or("?")
            );
            Ok(())
        }),
        RolloutCommand::List { server } => runtime_block(async move {
            let client = Client::new(&server)?;
            let answer = client
                .ok(reqwest::Method::GET, "/api/loopline/v1/deployments", None)
                .await?;
            let listed = answer["deployments"].as_array().cloned().unwrap_or_default();
            if listed.is_empty() {
                println!("no deployments");
            }
            for deployment in listed {
                println!(
                    "{:<24} {:<32} stable {:<4} {}",
                    deployment["name"].as_str().unwrap_or(""),
                    deployment["spec"]["model"].as_str().unwrap_or(""),
                    deployment["stable_version"].as_str().unwrap_or(""),
                    rollout_line(&deployment)
                );
            }
            Ok(())
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => input_error(message),
    }
}

fn rollout_line(deployment: &Value) -> String {
    let rollout = &deployment["rollout"];
    if rollout.is_null() {
        return "no rollout under way".to_string();
    }
    let candidates: Vec<&str> = rollout["candidates"]
        .as_array()
        .map(|c| c.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let step = match rollout["steps"].as_array() {
        Some(steps) => format!(
            ", step {}/{} ({}%)",
            rollout["step"].as_u64().unwrap_or(0) + 1,
            steps.len(),
            steps
                .get(rollout["step"].as_u64().unwrap_or(0) as usize)
                .and_then(Value::as_f64)
                .unwrap_or(0.0)
        ),
        None => String::new(),
    };
    format!(
        "rolling out version {} ({}{step})",
        candidates.join(", "),
        rollout["phase"].as_str().unwrap_or("")
    )
}

/// A deployment for people.
fn describe(deployment: &Value) -> String {
    let mut text = String::new();
    let policy = &deployment["spec"]["policy"];
    let steps = policy["steps"]
        .as_array()
        .map(|s| {
            let shown: Vec<String> = s.iter().map(|v| format!("{}%", v.as_f64().unwrap_or(0.0))).collect();
            format!(" ({})", shown.join(" -> "))
        })
        .unwrap_or_default();
    text.push_str(&format!(
        "  model {}  policy {}{steps}\n  stable version {}  rollbacks {}{}\n  {}\n",
        deployment["spec"]["model"].as_str().unwrap_or(""),
        policy["type"].as_str().unwrap_or(""),
        deployment["stable_version"].as_str().unwrap_or(""),
        deployment["rollbacks"],
        if deployment["ready"] == json!(false) {
            format!("  NOT READY: {}", deployment["not_ready_reason"].as_str().unwrap_or(""))
        } else {
            String::new()
        },
        rollout_line(deployment)
    ));
    let shares: Vec<String> = deployment["shares"]
        .as_object()
        .map(|s| {
            s.iter()
                .map(|(v, share)| format!("version {v} {:.0}%", share.as_f64().unwrap_or(0.0) * 100.0))
                .collect()
        })
        .unwrap_or_default();
    text.push_str(&format!("  traffic: {}", shares.join(", ")));
    if let Some(shadow) = deployment["shadow"].as_object() {
        text.push_str(&format!(
            "; {:.0}% mirrored to version {}",
            shadow["share"].as_f64().unwrap_or(0.0) * 100.0,
            shadow["version"].as_str().unwrap_or("")
        ));
    }
    text.push('\n');
    if let Some(versions) = deployment["current_step"]["versions"].as_object() {
        let mut seen: Vec<String> = versions
            .iter()
            .map(|(v, f)| {
                format!(
                    "version {v}: {} requests, {} failed, p99 {}",
                    f["requests"],
                    f["failures"],
                    f["p99_ms"].as_f64().map_or("-".to_string(), |p| format!("{p:.2} ms"))
                )
            })
            .collect();
        seen.sort();
        if !seen.is_empty() {
            text.push_str(&format!("  this step: {}\n", seen.join(" | ")));
        }
    }
    if let Some(shadow) = deployment["current_step"]["shadow"].as_object() {
        text.push_str(&format!(
            "  shadow: {} mirrored, {} failed, agreement {}, divergence {}\n",
            shadow["mirrored"],
            shadow["failures"],
            shadow["agreement"]
                .as_f64()
                .map_or("-".to_string(), |a| format!("{:.1}%", a * 100.0)),
            shadow["divergence"]
                .as_f64()
                .map_or("-".to_string(), |d| format!("{d:.3}"))
        ));
    }
    text
}

fn clock(timestamp_ms: i64) -> String {
    let seconds = timestamp_ms.div_euclid(1000);
    let of_day = seconds.rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", of_day / 3600, of_day % 3600 / 60, of_day % 60)
}

fn print_event(event: &Value) {
    println!(
        "  {} UTC  {:<18} {:<14} {}",
        clock(event["timestamp_ms"].as_i64().unwrap_or(0)),
        event["kind"].as_str().unwrap_or(""),
        event["actor"].as_str().unwrap_or(""),
        event["message"].as_str().unwrap_or("")
    );
}

async fn status(server: &ServerArgs, name: &str, watch: bool) -> Result<(), String> {
    let client = Client::new(server)?;
    let path = format!("/api/loopline/v1/deployments/{name}");
    let deployment = client.ok(reqwest::Method::GET, &path, None).await?;
    println!("deployment '{name}'");
    print!("{}", describe(&deployment["deployment"]));
    let events = client.ok(reqwest::Method::GET, &format!("{path}/events"), None).await?;
    let events = events["events"].as_array().cloned().unwrap_or_default();
    println!("events:");
    let shown = if watch {
        events.len().min(5)
    } else {
        events.len().min(10)
    };
    for event in &events[events.len() - shown..] {
        print_event(event);
    }
    if !watch {
        return Ok(());
    }
    let mut last = events.last().and_then(|e| e["id"].as_i64()).unwrap_or(0);
    let mut was_rolling = !deployment["deployment"]["rollout"].is_null();
    let mut figures = Figures::new();
    let mut ended = false;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let fresh = client
            .ok(reqwest::Method::GET, &format!("{path}/events?after={last}"), None)
            .await?;
        for event in fresh["events"].as_array().cloned().unwrap_or_default() {
            figures.above(|| print_event(&event));
            last = event["id"].as_i64().unwrap_or(last);
            // A rollout may start and end between two looks; its last event says it ended.
            if matches!(
                event["kind"].as_str(),
                Some("promoted" | "rolled_back" | "rollout_cancelled")
            ) {
                ended = true;
            }
        }
        let current = client.ok(reqwest::Method::GET, &path, None).await?;
        let deployment = &current["deployment"];
        let line = describe(deployment)
            .lines()
            .filter(|l| l.trim_start().starts_with("this step") || l.trim_start().starts_with("shadow"))
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(" ");
        figures.show(line);
        let rolling = !deployment["rollout"].is_null();
        if (was_rolling || ended) && !rolling {
            figures.finish();
            println!(
                "rollout finished: '{name}' serves version {} (rollbacks {})",
                deployment["stable_version"].as_str().unwrap_or("?"),
                deployment["rollbacks"]
            );
            return Ok(());
        }
        was_rolling = rolling;
    }
}

/// The current step's figures while watching: redrawn in place under the events at a terminal; elsewhere (a log,
/// a pipe) printed as a line when they change, at most every ten seconds, so a long step does not flood the log.
struct Figures {
    line: indicatif::ProgressBar,
    printed: Option<std::time::Instant>,
    shown: String,
}

impl Figures {
    const QUIET: Duration = Duration::from_secs(10);

    fn new() -> Figures {
        let line = indicatif::ProgressBar::new_spinner()
            .with_style(indicatif::ProgressStyle::with_template("  {spinner} {msg}").expect("a valid template"));
        if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            line.set_draw_target(indicatif::ProgressDrawTarget::stdout());
            line.enable_steady_tick(Duration::from_millis(250));
        } else {
            line.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        Figures {
            line,
            printed: None,
            shown: String::new(),
        }
    }

    /// Prints above the live line without tearing it.
    fn above(&self, print: impl FnOnce()) {
        self.line.suspend(print);
    }

    fn show(&mut self, figures: String) {
        if figures.is_empty() || figures == self.shown {
            return;
        }
        if self.line.is_hidden() {
            if self.printed.is_some_and(|at| at.elapsed() < Self::QUIET) {
                return;
            }
            println!("  {figures}");
            self.printed = Some(std::time::Instant::now());
        } else {
            self.line.set_message(figures.clone());
            self.line.tick();
        }
        self.shown = figures;
    }

    fn finish(&self) {
        self.line.finish_and_clear();
    }
}
