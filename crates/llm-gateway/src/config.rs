//! The gateway's configuration: providers (where requests go and with which key) and models (the names callers
//! use, each a group of provider deployments with weights, retries, a timeout and fallbacks to other groups).
//! Read from YAML, checked whole before the server starts: every mistake names its field. Provider URLs and
//! keys come only from here, never from a request; keys are read from the environment or a file, never written
//! in the file itself, and never printed.

use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

/// The largest number of providers, models, deployments per model or fallbacks per model.
const MAX_ENTRIES: usize = 1_000;
/// The largest weight of one deployment.
const MAX_WEIGHT: u32 = 1_000_000;
/// The most retries of one deployment.
const MAX_RETRIES: u32 = 10;
/// The longest timeout, in seconds.
const MAX_TIMEOUT_SECONDS: u64 = 3_600;
/// The largest key file read.
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// A provider's key: held, sent upstream, never shown.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A key held as given.
    pub fn new(key: String) -> Secret {
        Secret(key)
    }

    /// The key itself, to put in an upstream request's header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Secret([redacted])")
    }
}

/// The wire format a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    /// OpenAI itself.
    Openai,
    /// Any server speaking OpenAI's API: vLLM, TGI, llama.cpp, Ollama, LM Studio.
    OpenaiCompatible,
    /// Anthropic's Messages API (chat requests are translated both ways, streams and tools included).
    Anthropic,
    /// Azure OpenAI: a deployment's `model` is the Azure deployment name, in the URL
    /// (`{base_url}/openai/deployments/{model}/chat/completions?api-version=...`), the key in `api-key`.
    Azure,
    /// The server itself (its local embedding model); never written in a configuration file.
    #[serde(skip)]
    Local,
}

/// The Azure OpenAI API version sent when the configuration names none.
pub const AZURE_API_VERSION: &str = "2024-10-21";

/// Where requests for a provider go.
#[derive(Debug, Clone)]
pub struct Provider {
    /// The name models refer to it by.
    pub name: String,
    /// Its wire format.
    pub kind: ProviderKind,
    /// Base URL up to and including `/v1` (requests go to `{base_url}/chat/completions`, or `/messages`).
    pub base_url: String,
    /// The key sent as `Authorization: Bearer` (`x-api-key` to Anthropic, `api-key` to Azure), if needed.
    pub api_key: Option<Secret>,
    /// Azure's `api-version`.
    pub api_version: Option<String>,
    /// Reached only at public addresses, whatever its name resolves to when called (an MLflow catalog
    /// provider on a server that does not allow private ones; the configuration file's are the operator's).
    pub guarded: bool,
}

/// What a deployment's tokens cost, in US dollars per million.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    /// Prompt tokens.
    pub input: f64,
    /// Completion tokens.
    pub output: f64,
    /// Prompt tokens the provider read from its prompt cache.
    pub cached_input: f64,
}

/// What one call cost, in US dollars (MLflow's `mlflow.llm.cost` attribute).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cost {
    /// Of the prompt.
    pub input: f64,
    /// Of the completion.
    pub output: f64,
}

impl Cost {
    /// Prompt and completion together.
    pub fn total(&self) -> f64 {
        self.input + self.output
    }
}

impl Price {
    /// The cost of a call that used these tokens (`cached` of the `prompt` ones read from the provider's cache).
    pub fn cost(&self, prompt: u64, completion: u64, cached: u64) -> Cost {
        let cached = cached.min(prompt);
        let million = 1_000_000.0;
        Cost {
            input: ((prompt - cached) as f64 * self.input + cached as f64 * self.cached_input) / million,
            output: completion as f64 * self.output / million,
        }
    }
}

/// One place a model's requests may go.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// Index into [`GatewayConfig::providers`].
    pub provider: usize,
    /// The model name the provider knows.
    pub model: String,
    /// Share of the group's traffic (relative to the other deployments' weights).
    pub weight: u32,
    /// What its tokens cost, when configured.
    pub price: Option<Price>,
}

/// A model name callers use: a group of deployments.
#[derive(Debug, Clone)]
pub struct ModelGroup {
    /// The name in a request's `model` field.
    pub name: String,
    /// Where its requests go, picked by weight.
    pub deployments: Vec<Deployment>,
    /// Other groups tried, in order, when every deployment of this one failed.
    pub fallbacks: Vec<usize>,
    /// Longest wait for an upstream answer (for a stream: for its first event, then between events).
    pub timeout: Duration,
    /// Further tries of a deployment after a retryable failure (429, 5xx, no connection), before the next.
    pub retries: u32,
    /// How long the exact cache keeps an answer (zero: not cached).
    pub cache_ttl: Duration,
    /// The guardrails its calls pass, in order.
    pub guards: crate::guardrails::Guards,
    /// How its deployments are ordered.
    pub strategy: crate::routing::Strategy,
    /// The semantic cache, when it has one.
    pub semantic: Option<crate::semantic::SemanticSettings>,
    /// A group callers cannot name: one of an MLflow endpoint's fallback models.
    pub hidden: bool,
    /// The experiment its calls are traced in, when not the gateway's own (an MLflow endpoint's).
    pub trace_experiment_id: Option<String>,
    /// The MLflow endpoint it serves, by id (none for the configuration file's models).
    pub endpoint_id: Option<String>,
}

/// Consecutive failures after which a deployment rests, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct Cooldown {
    /// Failures in a row that send a deployment to rest.
    pub failures: u32,
    /// How long it rests (while another deployment or fallback can answer).
    pub duration: Duration,
}

/// The whole configuration, checked.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Providers, in file order.
    pub providers: Vec<Provider>,
    /// Models, in file order.
    pub models: Vec<ModelGroup>,
    /// When a failing deployment is rested.
    pub cooldown: Cooldown,
    /// First wait between retries (doubled each time, capped at 8 s) when the provider names none.
    pub retry_backoff: Duration,
    /// Longest `Retry-After` honoured; a provider asking for longer is treated as failed at once.
    pub max_retry_after: Duration,
    /// The experiment calls are traced in.
    pub trace_experiment: String,
    /// How long the gateway keeps the traces it writes in its own experiment (zero: for ever).
    pub trace_retention: Duration,
    /// Whether calls are traced: `None` leaves it to the server (on without auth; with auth only when asked,
    /// since traces hold every caller's prompts where the experiment's readers can see them).
    pub traces: Option<bool>,
    /// Answers the exact cache holds at most.
    pub cache_max_entries: usize,
    /// Bytes of answers the exact cache holds at most.
    pub cache_max_bytes: usize,
    /// Prices of provider models made through MLflow's gateway API (whose definitions carry none).
    pub catalog_prices: Vec<CatalogPrice>,
    /// MLflow's budget policies (from the catalog), enforced on every call by the server.
    pub budget_policies: Vec<crate::catalog::BudgetPolicy>,
}

/// The price of a provider's model, for MLflow catalog models that name it.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogPrice {
    /// MLflow's provider name (`openai`, `anthropic`, ...).
    pub provider: String,
    /// The provider's model name.
    pub model: String,
    /// What its tokens cost.
    pub price: Price,
}

impl GatewayConfig {
    /// The price configured for a provider's model, if any.
    pub fn catalog_price(&self, provider: &str, model: &str) -> Option<Price> {
        self.catalog_prices
            .iter()
            .find(|entry| entry.provider == provider && entry.model == model)
            .map(|entry| entry.price)
    }
}

impl GatewayConfig {
    /// A configuration without models (the gateway answers that none is configured).
    pub fn empty() -> GatewayConfig {
        GatewayConfig {
            providers: Vec::new(),
            models: Vec::new(),
            cooldown: Cooldown {
                failures: 3,
                duration: Duration::from_secs(30),
            },
            retry_backoff: Duration::from_millis(500),
            max_retry_after: Duration::from_secs(60),
            trace_experiment: default_trace_experiment(),
            trace_retention: Duration::from_secs(default_trace_retention()),
            traces: None,
            cache_max_entries: 10_000,
            cache_max_bytes: 256 << 20,
            catalog_prices: Vec::new(),
            budget_policies: Vec::new(),
        }
    }

    /// The group a caller's model name refers to.
    pub fn model(&self, name: &str) -> Option<usize> {
        self.models.iter().position(|model| model.name == name && !model.hidden)
    }

    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<GatewayConfig, String> {
        Self::load_with_local(path, &[])
    }

    /// Reads and checks a configuration file on a server that runs the local models named `local` (which a
    /// model's semantic cache may embed with).
    pub fn load_with_local(path: &Path, local: &[String]) -> Result<GatewayConfig, String> {
        let limit = loopline_model_runtime_api::yaml_bounds::MAX_DOCUMENT_BYTES;
        let file = std::fs::File::open(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::Read::take(file, limit as u64 + 1), &mut text)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        if text.len() > limit {
            return Err(format!("{} is larger than {limit} bytes", path.display()));
        }
        Self::parse_with_local(&text, &|name| std::env::var(name).ok(), local)
            .map_err(|error| format!("gateway configuration {}: {error}", path.display()))
    }

    /// Checks a configuration's text; `env` reads environment variables (keys named by `api_key_env`).
    pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<GatewayConfig, String> {
        Self::parse_with_local(text, env, &[])
    }

    /// [`GatewayConfig::parse`] on a server that runs the local models named `local`.
    pub fn parse_with_local(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
        local: &[String],
    ) -> Result<GatewayConfig, String> {
        let document = loopline_model_runtime_api::yaml_bounds::load_json(text)?;
        let file: File = serde_json::from_value(document).map_err(|error| error.to_string())?;
        file.check(env, local)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    providers: Vec<ProviderEntry>,
    #[serde(default)]
    models: Vec<ModelEntry>,
    #[serde(default)]
    settings: Settings,
    #[serde(default)]
    guardrails: Vec<serde_json::Value>,
    #[serde(default)]
    prices: Vec<PricedModel>,
}

/// `prices:` entries: a provider's model and its price, for models made through MLflow's gateway API.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PricedModel {
    provider: String,
    model: String,
    input_per_million: f64,
    output_per_million: f64,
    #[serde(default)]
    cached_input_per_million: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderEntry {
    name: String,
    kind: ProviderKind,
    base_url: String,
    #[serde(default)]
    api_key_env: Option<String>,
    #[serde(default)]
    api_key_file: Option<String>,
    /// Refused with a message: keys are not written in the file.
    #[serde(default)]
    api_key: Option<serde_json::Value>,
    #[serde(default)]
    api_version: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelEntry {
    name: String,
    deployments: Vec<DeploymentEntry>,
    #[serde(default)]
    fallbacks: Vec<String>,
    #[serde(default = "default_timeout")]
    timeout_seconds: u64,
    #[serde(default = "default_retries")]
    retries: u32,
    #[serde(default)]
    cache_ttl_seconds: u64,
    #[serde(default)]
    guardrails: Vec<String>,
    #[serde(default)]
    strategy: crate::routing::Strategy,
    #[serde(default)]
    semantic_cache: Option<SemanticEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SemanticEntry {
    embedding_model: String,
    #[serde(default = "default_threshold")]
    threshold: f32,
}

fn default_threshold() -> f32 {
    0.95
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeploymentEntry {
    provider: String,
    model: String,
    #[serde(default = "default_weight")]
    weight: u32,
    #[serde(default)]
    price: Option<PriceEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceEntry {
    input_per_million: f64,
    output_per_million: f64,
    #[serde(default)]
    cached_input_per_million: Option<f64>,
}

impl PriceEntry {
    fn check(self, field: &str) -> Result<Price, String> {
        let cached = self.cached_input_per_million.unwrap_or(self.input_per_million);
        for (name, value) in [
            ("input_per_million", self.input_per_million),
            ("output_per_million", self.output_per_million),
            ("cached_input_per_million", cached),
        ] {
            if !value.is_finite() || !(0.0..=1_000_000.0).contains(&value) {
                return Err(format!(
                    "{field}.price.{name}: US dollars per million tokens, from 0 to 1000000"
                ));
            }
        }
        Ok(Price {
            input: self.input_per_million,
            output: self.output_per_million,
            cached_input: cached,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default = "default_cooldown_failures")]
    cooldown_failures: u32,
    #[serde(default = "default_cooldown_seconds")]
    cooldown_seconds: u64,
    #[serde(default = "default_backoff_ms")]
    retry_backoff_ms: u64,
    #[serde(default = "default_max_retry_after")]
    max_retry_after_seconds: u64,
    #[serde(default)]
    traces: Option<bool>,
    #[serde(default = "default_trace_experiment")]
    trace_experiment: String,
    #[serde(default = "default_trace_retention")]
    trace_retention_seconds: u64,
    #[serde(default = "default_cache_entries")]
    cache_max_entries: usize,
    #[serde(default = "default_cache_mb")]
    cache_max_mb: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            cooldown_failures: default_cooldown_failures(),
            cooldown_seconds: default_cooldown_seconds(),
            retry_backoff_ms: default_backoff_ms(),
            max_retry_after_seconds: default_max_retry_after(),
            traces: None,
            trace_experiment: default_trace_experiment(),
            trace_retention_seconds: default_trace_retention(),
            cache_max_entries: default_cache_entries(),
            cache_max_mb: default_cache_mb(),
        }
    }
}

pub(crate) fn default_timeout() -> u64 {
    600
}
fn default_retries() -> u32 {
    2
}
fn default_weight() -> u32 {
    1
}
fn default_cooldown_failures() -> u32 {
    3
}
fn default_cooldown_seconds() -> u64 {
    30
}
fn default_backoff_ms() -> u64 {
    500
}
fn default_max_retry_after() -> u64 {
    60
}
fn default_cache_entries() -> usize {
    10_000
}
fn default_cache_mb() -> usize {
    256
}
/// Seven days.
fn default_trace_retention() -> u64 {
    7 * 86_400
}
fn default_trace_experiment() -> String {
    "loopline-gateway".to_string()
}

impl File {
    fn check(self, env: &dyn Fn(&str) -> Option<String>, local: &[String]) -> Result<GatewayConfig, String> {
        if self.providers.len() > MAX_ENTRIES || self.models.len() > MAX_ENTRIES {
            return Err(format!("at most {MAX_ENTRIES} providers and {MAX_ENTRIES} models"));
        }
        let mut providers = Vec::with_capacity(self.providers.len());
        let mut provider_index = HashMap::new();
        for (index, entry) in self.providers.into_iter().enumerate() {
            let field = format!("providers[{index}]");
            check_name(&entry.name, &format!("{field}.name"))?;
            if provider_index.insert(entry.name.clone(), index).is_some() {
                return Err(format!("{field}.name: provider '{}' is named twice", entry.name));
            }
            providers.push(entry.check(&field, env)?);
        }
        let names: HashMap<String, usize> = self
            .models
            .iter()
            .enumerate()
            .map(|(index, model)| (model.name.clone(), index))
            .collect();
        if names.len() != self.models.len() {
            let mut seen = HashSet::new();
            let twice = self
                .models
                .iter()
                .find(|model| !seen.insert(&model.name))
                .map(|m| m.name.clone());
            return Err(format!("models: '{}' is named twice", twice.unwrap_or_default()));
        }
        let guardrails: Vec<std::sync::Arc<crate::guardrails::Guardrail>> =
            crate::guardrails::check_entries(self.guardrails)?
                .into_iter()
                .map(std::sync::Arc::new)
                .collect();
        let mut models = Vec::with_capacity(self.models.len());
        for (index, entry) in self.models.into_iter().enumerate() {
            let field = format!("models[{index}]");
            let mut guards = Vec::with_capacity(entry.guardrails.len());
            for (position, name) in entry.guardrails.iter().enumerate() {
                let guardrail = guardrails
                    .iter()
                    .find(|guardrail| &guardrail.name == name)
                    .ok_or_else(|| format!("{field}.guardrails[{position}]: no guardrail is named '{name}'"))?;
                guards.push(guardrail.clone());
            }
            let mut model = entry.check(&field, &provider_index, &names, local)?;
            model.guards = crate::guardrails::Guards::new(guards);
            models.push(model);
        }
        if self.prices.len() > MAX_ENTRIES {
            return Err(format!("prices: at most {MAX_ENTRIES} entries"));
        }
        let mut catalog_prices: Vec<CatalogPrice> = Vec::with_capacity(self.prices.len());
        for (index, entry) in self.prices.into_iter().enumerate() {
            let field = format!("prices[{index}]");
            check_name(&entry.provider, &format!("{field}.provider"))?;
            check_name(&entry.model, &format!("{field}.model"))?;
            if catalog_prices
                .iter()
                .any(|other| other.provider == entry.provider && other.model == entry.model)
            {
                return Err(format!("{field}: {}/{} is priced twice", entry.provider, entry.model));
            }
            let price = PriceEntry {
                input_per_million: entry.input_per_million,
                output_per_million: entry.output_per_million,
                cached_input_per_million: entry.cached_input_per_million,
            }
            .check(&field)?;
            catalog_prices.push(CatalogPrice {
                provider: entry.provider,
                model: entry.model,
                price,
            });
        }
        let settings = self.settings;
        if settings.cooldown_failures == 0 {
            return Err("settings.cooldown_failures: must be at least 1".into());
        }
        if settings.cooldown_seconds > MAX_TIMEOUT_SECONDS || settings.max_retry_after_seconds > MAX_TIMEOUT_SECONDS {
            return Err(format!("settings: durations are at most {MAX_TIMEOUT_SECONDS} seconds"));
        }
        check_name(&settings.trace_experiment, "settings.trace_experiment")?;
        if settings.cache_max_entries > 10_000_000 || settings.cache_max_mb > 1 << 20 {
            return Err("settings: cache_max_entries at most 10000000, cache_max_mb at most 1048576".into());
        }
        if settings.retry_backoff_ms > MAX_TIMEOUT_SECONDS * 1000 {
            return Err(format!(
                "settings.retry_backoff_ms: at most {} ms",
                MAX_TIMEOUT_SECONDS * 1000
            ));
        }
        Ok(GatewayConfig {
            providers,
            models,
            cooldown: Cooldown {
                failures: settings.cooldown_failures,
                duration: Duration::from_secs(settings.cooldown_seconds),
            },
            retry_backoff: Duration::from_millis(settings.retry_backoff_ms),
            max_retry_after: Duration::from_secs(settings.max_retry_after_seconds),
            trace_experiment: settings.trace_experiment,
            trace_retention: Duration::from_secs(settings.trace_retention_seconds),
            traces: settings.traces,
            cache_max_entries: settings.cache_max_entries,
            cache_max_bytes: settings.cache_max_mb << 20,
            catalog_prices,
            budget_policies: Vec::new(),
        })
    }
}

impl ProviderEntry {
    fn check(self, field: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Provider, String> {
        if self.api_key.is_some() {
            return Err(format!(
                "{field}.api_key: keys are not written in the configuration; use api_key_env (an environment \
                 variable's name) or api_key_file (a file holding the key)"
            ));
        }
        let base_url = check_base_url(&self.base_url).map_err(|problem| format!("{field}.base_url: {problem}"))?;
        let api_key = match (self.api_key_env, self.api_key_file) {
            (Some(_), Some(_)) => {
                return Err(format!("{field}: give api_key_env or api_key_file, not both"));
            }
            (Some(variable), None) => {
                let key = env(&variable).filter(|key| !key.trim().is_empty()).ok_or_else(|| {
                    format!("{field}.api_key_env: the environment variable {variable} is not set or empty")
                })?;
                Some(Secret(key.trim().to_string()))
            }
            (None, Some(path)) => Some(Secret(read_key_file(Path::new(&path), field)?)),
            (None, None) => None,
        };
        if let Some(key) = &api_key
            && (key.0.len() > 4096 || key.0.chars().any(|c| c.is_control()))
        {
            return Err(format!(
                "{field}: the key has control characters or is longer than 4096 bytes"
            ));
        }
        let api_version = match (self.kind, self.api_version) {
            (ProviderKind::Azure, version) => {
                let version = version.unwrap_or_else(|| AZURE_API_VERSION.to_string());
                if version.is_empty()
                    || version.len() > 64
                    || !version.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                {
                    return Err(format!(
                        "{field}.api_version: letters, digits and '-', like {AZURE_API_VERSION}"
                    ));
                }
                Some(version)
            }
            (_, Some(_)) => return Err(format!("{field}.api_version: only for kind azure")),
            (_, None) => None,
        };
        Ok(Provider {
            name: self.name,
            kind: self.kind,
            base_url,
            api_key,
            api_version,
            guarded: false,
        })
    }
}

fn read_key_file(path: &Path, field: &str) -> Result<String, String> {
    let size = std::fs::metadata(path)
        .map_err(|e| format!("{field}.api_key_file: {}: {e}", path.display()))?
        .len();
    if size > MAX_KEY_FILE_BYTES {
        return Err(format!("{field}.api_key_file: {} is larger than a key", path.display()));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{field}.api_key_file: {}: {e}", path.display()))?;
    let key = text.trim();
    if key.is_empty() {
        return Err(format!("{field}.api_key_file: {} is empty", path.display()));
    }
    Ok(key.to_string())
}

impl ModelEntry {
    fn check(
        self,
        field: &str,
        providers: &HashMap<String, usize>,
        names: &HashMap<String, usize>,
        local: &[String],
    ) -> Result<ModelGroup, String> {
        check_name(&self.name, &format!("{field}.name"))?;
        if self.deployments.is_empty() {
            return Err(format!("{field}.deployments: a model needs at least one deployment"));
        }
        if self.deployments.len() > MAX_ENTRIES || self.fallbacks.len() > MAX_ENTRIES {
            return Err(format!("{field}: at most {MAX_ENTRIES} deployments and fallbacks"));
        }
        let mut deployments = Vec::with_capacity(self.deployments.len());
        for (index, entry) in self.deployments.into_iter().enumerate() {
            let at = format!("{field}.deployments[{index}]");
            let provider = *providers
                .get(&entry.provider)
                .ok_or_else(|| format!("{at}.provider: no provider is named '{}'", entry.provider))?;
            if entry.model.is_empty() || entry.model.len() > 256 || entry.model.chars().any(char::is_control) {
                return Err(format!("{at}.model: 1 to 256 characters, no control characters"));
            }
            if entry.weight == 0 || entry.weight > MAX_WEIGHT {
                return Err(format!("{at}.weight: from 1 to {MAX_WEIGHT}"));
            }
            let price = entry.price.map(|price| price.check(&at)).transpose()?;
            deployments.push(Deployment {
                provider,
                model: entry.model,
                weight: entry.weight,
                price,
            });
        }
        let mut fallbacks = Vec::with_capacity(self.fallbacks.len());
        for (index, name) in self.fallbacks.iter().enumerate() {
            let target = *names
                .get(name)
                .ok_or_else(|| format!("{field}.fallbacks[{index}]: no model is named '{name}'"))?;
            if name == &self.name {
                return Err(format!(
                    "{field}.fallbacks[{index}]: a model cannot fall back to itself"
                ));
            }
            if !fallbacks.contains(&target) {
                fallbacks.push(target);
            }
        }
        if self.timeout_seconds == 0 || self.timeout_seconds > MAX_TIMEOUT_SECONDS {
            return Err(format!("{field}.timeout_seconds: from 1 to {MAX_TIMEOUT_SECONDS}"));
        }
        if self.retries > MAX_RETRIES {
            return Err(format!("{field}.retries: at most {MAX_RETRIES}"));
        }
        if self.cache_ttl_seconds > 30 * 24 * 3600 {
            return Err(format!("{field}.cache_ttl_seconds: at most 30 days"));
        }
        let semantic = match self.semantic_cache {
            None => None,
            Some(entry) => {
                let at = format!("{field}.semantic_cache");
                if self.cache_ttl_seconds == 0 {
                    return Err(format!("{at}: set cache_ttl_seconds too (how long answers are kept)"));
                }
                if !entry.threshold.is_finite() || entry.threshold <= 0.0 || entry.threshold > 1.0 {
                    return Err(format!("{at}.threshold: a cosine similarity above 0, at most 1"));
                }
                if !names.contains_key(&entry.embedding_model) && !local.contains(&entry.embedding_model) {
                    return Err(format!(
                        "{at}.embedding_model: no model is named '{}'",
                        entry.embedding_model
                    ));
                }
                if entry.embedding_model == self.name {
                    return Err(format!("{at}.embedding_model: a model cannot embed its own requests"));
                }
                Some(crate::semantic::SemanticSettings {
                    embedding_model: entry.embedding_model,
                    threshold: entry.threshold,
                })
            }
        };
        Ok(ModelGroup {
            name: self.name,
            deployments,
            fallbacks,
            timeout: Duration::from_secs(self.timeout_seconds),
            retries: self.retries,
            cache_ttl: Duration::from_secs(self.cache_ttl_seconds),
            guards: crate::guardrails::Guards::default(),
            strategy: self.strategy,
            semantic,
            hidden: false,
            trace_experiment_id: None,
            endpoint_id: None,
        })
    }
}

fn check_name(name: &str, field: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 256 || name.chars().any(char::is_control) {
        return Err(format!("{field}: 1 to 256 characters, no control characters"));
    }
    Ok(())
}

/// An `http` or `https` URL with a host and no credentials, query or fragment, without a trailing slash.
fn check_base_url(text: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(text).map_err(|error| format!("'{text}' is not a URL: {error}"))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!("'{text}' is not an http(s) URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("'{text}' has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("credentials in the URL are not accepted; use api_key_env or api_key_file".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("'{text}' has a query or fragment"));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
