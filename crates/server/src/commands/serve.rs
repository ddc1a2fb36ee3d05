//! `loopline serve -m MODEL_URI [-h HOST] [-p PORT]`: one model behind the MLflow scoring protocol
//! (`/invocations`, `/ping`, `/health`, `/version`) and the Open Inference Protocol v2, with
//! `mlflow models serve`'s flags; `models:/` and `runs:/` URIs come from the tracking server in
//! `MLFLOW_TRACKING_URI`, as with the mlflow CLI.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use loopline_serving::{FixedCatalog, Metrics, ModelRunner, Served, ServingState};

use super::input_error;
use crate::config::ServingOptions;

/// Arguments of `loopline serve`.
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct ServeArgs {
    /// The model: a local MLflow model directory, `models:/name/version`, `models:/name@alias`,
    /// `models:/m-<id>` or `runs:/<run-id>/<path>`.
    #[arg(short = 'm', long = "model-uri")]
    pub model_uri: String,
    /// Address to listen on.
    #[arg(short = 'h', long, env = "MLFLOW_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on.
    #[arg(short = 'p', long, env = "MLFLOW_PORT", default_value_t = 5000)]
    pub port: u16,
    /// Listen on a non-loopback address although `loopline serve` has no authentication of its own (anyone
    /// who can reach the port may call the model): for a proxy in front that authenticates. Models that need
    /// callers to authenticate are deployed on `loopline server --auth token`, where calling one takes the
    /// predict permission.
    #[arg(long, env = "LOOPLINE_ALLOW_UNAUTHENTICATED", default_value_t = false)]
    pub allow_unauthenticated: bool,
    /// Where to keep the prediction log and feedback (a directory or `s3://bucket/prefix`); off when not given.
    #[arg(long, env = "LOOPLINE_PREDICTION_LOG")]
    pub prediction_log: Option<String>,
    /// Model calls running at once, as `mlflow models serve --workers` (the same as `--inference-threads`;
    /// default: the number of cores).
    #[arg(short = 'w', long, env = "MLFLOW_MODELS_WORKERS")]
    pub workers: Option<usize>,
    /// `mlflow models serve`'s environment flags.
    #[command(flatten)]
    pub python_env: super::PythonEnvArgs,
    /// Batching and limits.
    #[command(flatten)]
    pub serving: ServingOptions,
    /// Connection limits and browser-origin rules.
    #[command(flatten)]
    pub network: crate::network::NetworkOptions,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

/// Runs `loopline serve`.
pub fn run(args: ServeArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => return input_error(format!("cannot start the runtime: {error}")),
    };
    runtime.block_on(serve(args))
}

async fn serve(mut args: ServeArgs) -> ExitCode {
    args.python_env.print_notes();
    if args.serving.inference_threads.is_none() {
        args.serving.inference_threads = args.workers;
    }
    if let Err(message) = args.network.validate() {
        return input_error(message);
    }
    if let Err(message) = exposure_allowed(&args.host, args.allow_unauthenticated) {
        return input_error(message);
    }
    crate::network::raise_descriptor_limit(args.network.max_connections);
    let runner_config = match args.serving.runner() {
        Ok(config) => config,
        Err(message) => return input_error(message),
    };
    let fetched = match crate::model_fetch::fetch_for_cli(&args.model_uri).await {
        Ok(fetched) => fetched,
        Err(message) => return input_error(message),
    };
    let directory = fetched.directory.clone();
    let loaded = match tokio::task::spawn_blocking(move || loopline_model_runtimes::load_model(&directory)).await {
        Ok(Ok(loaded)) => loaded,
        Ok(Err(error)) => return input_error(error),
        Err(error) => return input_error(format!("loading the model stopped: {error}")),
    };
    let log = match (&args.prediction_log, args.serving.prediction_log()) {
        (_, Err(message)) => return input_error(message),
        (None, _) | (_, Ok(None)) => None,
        (Some(destination), Ok(Some(config))) => {
            match loopline_artifact_store::ObjectArtifactStore::open(destination) {
                Ok(store) => Some(loopline_serving::PredictionLog::start(config, Arc::new(store))),
                Err(error) => return input_error(format!("--prediction-log {destination}: {error}")),
            }
        }
    };
    let metrics = Arc::new(Metrics::default());
    let served = Served {
        name: fetched.name.clone(),
        runner: ModelRunner::start(
            &fetched.name,
            &fetched.version,
            loaded.model,
            runner_config,
            metrics.clone(),
        ),
        descriptor: Arc::new(loaded.descriptor),
        files: None,
    };
    let state = ServingState {
        catalog: Arc::new(FixedCatalog::new(served)),
        metrics,
        max_body_bytes: args.serving.max_body_bytes(),
        body_budget: loopline_serving::body_budget::BodyBudget::for_max_body(args.serving.max_body_bytes()),
        log: log.clone(),
        deployments: None,
        extra_metrics: Vec::new(),
        features: None,
    };
    let address = format!("{}:{}", args.host, args.port);
    let listener = match tokio::net::TcpListener::bind(&address).await {
        Ok(listener) => listener,
        Err(error) => {
            return input_error(format!(
                "cannot listen on {address}: {error}; pick another --port or stop the process using it"
            ));
        }
    };
    tracing::info!(
        model = %fetched.name,
        version = %fetched.version,
        address = %listener.local_addr().map(|a| a.to_string()).unwrap_or(address),
        "serving: POST /invocations (MLflow scoring) and /v2/models/{}/infer (Open Inference Protocol)",
        fetched.name
    );
    let router = loopline_serving::routes::standalone_routes(state.clone())
        .merge(loopline_serving::routes::feedback_routes(state))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(crate::panic_response));
    // As `mlflow models serve`, a scoring server bound beyond loopback answers whatever name its callers use
    // (a container's service name, a load balancer's); on loopback the DNS-rebinding check stays on.
    let exposed = !crate::browser_origins::is_loopback_bind(&args.host);
    let any_host = vec!["*".to_string()];
    let allowed_hosts = if args.network.allowed_hosts.is_empty() && exposed {
        &any_host
    } else {
        &args.network.allowed_hosts
    };
    let policy =
        crate::browser_origins::OriginPolicy::new(&args.host, allowed_hosts, &args.network.cors_allowed_origins);
    let router = crate::browser_origins::protect(router, policy);
    let served = crate::network::serve_connections(listener, router, &args.network, crate::shutdown_signal()).await;
    crate::flush_prediction_log(log.as_ref()).await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: serving HTTP: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `loopline serve` has no credentials of its own: it listens beyond this machine only when told to.
fn exposure_allowed(host: &str, allow_unauthenticated: bool) -> Result<(), String> {
    if crate::auth_options::is_loopback(host) {
        return Ok(());
    }
    if !allow_unauthenticated {
        return Err(format!(
            "refusing to serve on {host} without authentication: anyone who can reach it could call the model. \
             Deploy the model on `loopline server --auth token` (callers then need the predict permission), \
             listen on 127.0.0.1, or pass --allow-unauthenticated if a proxy in front authenticates"
        ));
    }
    tracing::warn!(%host, "serving beyond this machine WITHOUT authentication (--allow-unauthenticated)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::exposure_allowed;

    #[test]
    fn serving_beyond_loopback_needs_the_operator_to_say_so() {
        assert!(exposure_allowed("127.0.0.1", false).is_ok());
        assert!(exposure_allowed("localhost", false).is_ok());
        assert!(exposure_allowed("::1", false).is_ok());
        let refused = exposure_allowed("0.0.0.0", false).unwrap_err();
        assert!(refused.contains("--allow-unauthenticated"), "{refused}");
        assert!(exposure_allowed("0.0.0.0", true).is_ok());
        assert!(exposure_allowed("10.1.2.3", false).is_err());
    }
}
