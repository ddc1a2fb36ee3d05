//! Composition: configuration, choice of implementations, and `serve`. `main` only parses the command
//! line and calls into here, so tests can start the same server in-process.

pub mod auth_options;
pub mod browser_origins;
pub mod commands;
pub mod config;
pub mod embeddings;
pub mod feature_join;
pub mod gates;
pub mod model_fetch;
pub mod network;
pub mod pipelines;
pub mod route_permissions;
pub mod secrets_key;
mod ui_location;

use anyhow::Context;
use config::ServerConfig;
use loopline_artifact_store::ObjectArtifactStore;
use loopline_http_api::{AppState, HttpLimits};
use loopline_metadata_store::{MetadataStore, SqlStore};
use loopline_model_registry::RegistryService;
use loopline_tracking::TrackingService;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Artifact URIs handed to clients are served by our own artifact proxy.
const PROXIED_ARTIFACT_ROOT: &str = "mlflow-artifacts:";

/// Opens storage as configured and builds the HTTP application.
pub async fn build_application(config: &ServerConfig) -> anyhow::Result<Application> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let store = Arc::new(
        SqlStore::connect(&config.backend_store_uri, PROXIED_ARTIFACT_ROOT)
            .await
            .with_context(|| {
                format!(
                    "opening the backend store '{}'",
                    config::redact_uri(&config.backend_store_uri)
                )
            })?,
    );
    let artifacts = ObjectArtifactStore::open(&config.artifacts_destination)
        .with_context(|| format!("opening the artifact destination '{}'", config.artifacts_destination))?;
    tracing::info!(artifacts = artifacts.description(), "artifact store ready");
    let metadata: Arc<dyn MetadataStore> = store.clone();
    let artifacts: Arc<dyn loopline_artifact_store::ArtifactStore> = Arc::new(artifacts);
    let repository: Arc<dyn model_fetch::ModelRepository> = Arc::new(model_fetch::local::LocalRepository::new(
        metadata.clone(),
        artifacts.clone(),
    ));
    let (mut serving, source) = serving_state(config, repository.clone(), artifacts.clone())?;
    let gate_service = loopline_pipelines::gate::service::GateService::new(
        metadata.clone(),
        artifacts.clone(),
        Arc::new(gates::ServedModels {
            source: source.clone(),
            python_models: if config.serving.allow_python_models {
                loopline_model_runtimes::PythonModels::Allowed
            } else {
                loopline_model_runtimes::PythonModels::Refused
            },
        }),
        config.data_dir.join("gate-data"),
    );
    let deployments = loopline_deployments::Manager::new(
        metadata.clone(),
        source,
        serving.metrics.clone(),
        loopline_deployments::ManagerConfig {
            runner: config
                .serving
                .runner()
                .map_err(|e| anyhow::anyhow!("serving settings: {e}"))?,
            tick: std::time::Duration::from_millis(config.serving.rollout_tick_ms.max(10)),
        },
    );
    deployments.start().await;
    serving.deployments = Some(deployments.clone());
    let monitoring = loopline_monitoring::Monitoring::new(
        metadata.clone(),
        artifacts.clone(),
        Some(deployments.clone()),
        serving.log.clone(),
        loopline_monitoring::MonitoringConfig {
            tick: std::time::Duration::from_secs(config.serving.monitor_tick_seconds.max(1)),
            ..Default::default()
        },
    );
    monitoring.set_alias_gate(Arc::new(gates::RegistryGate(gate_service.clone())));
    monitoring.start();
    serving.extra_metrics.push(monitoring.clone());
    let feature_definitions: Arc<dyn loopline_metadata_store::FeatureDefinitionStore> = store.clone();
    let features = open_features(config, feature_definitions).await?;
    serving.features = Some(Arc::new(feature_join::FeatureJoiner::new(
        metadata.clone(),
        features.clone(),
    )));
    let api_base_schemes: Vec<String> = match config.gateway.api_base_allowed_schemes.as_slice() {
        [] => vec!["https".to_string()],
        schemes => schemes
            .iter()
            .map(|scheme| scheme.trim().to_ascii_lowercase())
            .collect(),
    };
    let live = Arc::new(loopline_llm_gateway::live::LiveGateway::new(
        config.gateway.gateway().await?,
        loopline_llm_gateway::catalog::build::Reach {
            allowed_schemes: api_base_schemes.clone(),
            allow_private: config.gateway.api_base_allow_private_addresses,
        },
    ));
    let gateway = live.current();
    serving
        .extra_metrics
        .push(Arc::new(GatewayMetricsSource(gateway.clone())));
    let served_deployments = deployments.clone();
    let deployment_served: loopline_http_api::access::guard::DeploymentServed =
        Arc::new(move |name| loopline_serving::dispatch::Deployments::find(&*served_deployments, name).is_some());
    let deployment_api = loopline_deployments::api::routes(loopline_deployments::api::ApiState {
        manager: deployments,
        store: metadata.clone(),
    });
    let (data_metadata, data_artifacts) = (metadata.clone(), artifacts.clone());
    let own_api = Arc::new(pipelines::OwnApi::default());
    let lineage_store = metadata.clone();
    let pipeline_service = loopline_pipelines::pipeline::service::PipelineService::new(
        metadata.clone(),
        loopline_pipelines::pipeline::service::PipelineSettings {
            roots: config.pipelines.roots.clone(),
            max_concurrent_runs: config.pipelines.concurrency.max(1),
            tick: std::time::Duration::from_secs(config.pipelines.tick_seconds.max(1)),
            replica: pipelines::replica_id(&config.data_dir)?,
            stale_after: std::time::Duration::from_secs(120),
            ray: config.pipelines.ray.settings(),
            // The binary validate and profile steps run: this one (LOOPLINE_BIN names it when the server runs
            // inside another program, as in tests).
            loopline: match std::env::var_os("LOOPLINE_BIN") {
                Some(path) => path.into(),
                None => std::env::current_exe().context("finding the loopline binary for pipeline steps")?,
            },
        },
        own_api.clone(),
        Arc::new(loopline_pipelines::pipeline::service::SystemClock),
    );
    let webhooks = loopline_http_api::webhooks::Webhooks::new(
        loopline_http_api::webhooks::address::DestinationPolicy {
            allowed_schemes: config.network.webhook_allowed_schemes.clone(),
            allow_private_addresses: config.network.webhook_allow_private_addresses,
            own_addresses: Arc::default(),
        },
        loopline_http_api::webhooks::DeliverySettings::default(),
        &secrets_key::secrets_key(&config.data_dir)?,
    );
    let access_metadata = metadata.clone();
    let gateway_metadata = metadata.clone();
    let catalog_sync = Arc::new(loopline_http_api::ai_gateway::CatalogSync::new(
        metadata.clone(),
        live.clone(),
        webhooks.sealer(),
        loopline_http_api::webhooks::address::DestinationPolicy {
            allowed_schemes: api_base_schemes,
            allow_private_addresses: config.gateway.api_base_allow_private_addresses,
            own_addresses: Arc::default(),
        },
    ));
    let auth_on = config.auth.enabled();
    let trace_models = match gateway.config().traces {
        Some(flag) => flag,
        None if !auth_on => true,
        None => {
            tracing::info!(
                "calls of the gateway configuration's models are not traced: with auth on, traces would hold every \
                 caller's prompts where the experiment's readers see them; set `settings: {{traces: true}}` and \
                 restrict the experiment to trace"
            );
            false
        }
    };
    // MLflow endpoints with usage tracking are traced in their own experiments whatever the setting.
    trace_gateway(&gateway, &metadata, trace_models);
    // The MLflow catalog's endpoints are served from the start (after the trace writer is set, which the
    // gateways a catalog installs share).
    if let Err(error) = catalog_sync.refresh().await {
        tracing::warn!(error = %error.message, "the MLflow gateway catalog could not be read; its endpoints are not served until it can be");
    }
    let state = AppState {
        tracking: TrackingService::new(metadata.clone()),
        registry: RegistryService::new(metadata)
            .with_source_pattern(config.registry.source_pattern().map_err(anyhow::Error::msg)?)
            .with_sealer(Arc::new(model_fetch::content_digest::RegistrySealer::new(repository)))
            .with_alias_gate(Arc::new(gates::RegistryGate(gate_service.clone()))),
        artifacts,
        limits: HttpLimits::default(),
        webhooks: webhooks.clone(),
    };
    let vectors = open_vectors(&config.data_dir).await?;
    let prediction_log = serving.log.clone();
    let log_browse = loopline_serving::log_browse::routes(state.artifacts.clone());
    let snapshot_store = state.artifacts.clone();
    let router = loopline_http_api::router(state)
        .merge(loopline_serving::routes::v2_routes(serving.clone()))
        .merge(loopline_serving::routes::feedback_routes(serving.clone()))
        .merge(loopline_serving::routes::registry_scoring_routes(serving))
        .merge(deployment_api)
        .merge(loopline_monitoring::api::routes(monitoring))
        .merge(loopline_pipelines::gate::api::routes(gate_service))
        .merge(loopline_pipelines::pipeline::api::routes(pipeline_service.clone()))
        .merge(loopline_pipelines::lineage::routes(lineage_store))
        .merge(loopline_pipelines::api::routes(
            loopline_pipelines::datasets::DataService::new(data_metadata, data_artifacts),
        ))
        .merge(log_browse)
        .merge(gateway_routes(live, gateway_metadata, catalog_sync, webhooks.clone()))
        .merge(loopline_vector_api::routes(loopline_vector_api::VectorApi {
            store: vectors.clone(),
            artifacts: Some(snapshot_store),
        }))
        .merge(loopline_feature_api::routes(features))
        .merge(loopline_http_api::ui::routes(
            ui_location::find(config.ui.mlflow_ui.as_deref()).await?,
        ));
    let (router, routes, audit) = guarded(config, router, access_metadata, &own_api, deployment_served).await?;
    // Every MLflow route also answers under /ajax-api, where the web UI calls it (as MLflow registers each
    // twice): the prefix is rewritten before routing.
    let router = axum::Router::new()
        .fallback_service(router)
        .layer(axum::middleware::map_request(ajax_api_as_api))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panic_response))
        .layer(axum::middleware::from_fn(log_failed_requests))
        .layer(axum::middleware::from_fn(qdrant_root))
        .layer(axum::middleware::map_response(name_the_server));
    Ok(Application {
        vectors,
        routes,
        webhooks,
        router,
        store,
        prediction_log,
        pipelines: pipeline_service,
        own_api,
        audit,
    })
}

/// Adds Loopline's pages, and with auth on the access APIs and the guard on every route: the pages call the
/// guarded API in-process with the caller's credentials, so they can do no more than the caller.
async fn guarded(
    config: &ServerConfig,
    router: axum::Router,
    metadata: Arc<dyn MetadataStore>,
    own_api: &pipelines::OwnApi,
    deployment_served: loopline_http_api::access::guard::DeploymentServed,
) -> anyhow::Result<Guarded> {
    use loopline_http_api::access::{self as wire, inventory};
    if !config.auth.enabled() {
        let pages = loopline_web_pages::routes(router.clone());
        let mut routes = inventory::routes(&router);
        routes.extend(inventory::routes(&pages));
        return Ok((router.merge(pages), routes, None));
    }
    let settings = loopline_access::AccessSettings {
        default_level: config.auth.default_level().map_err(anyhow::Error::msg)?,
        ..Default::default()
    };
    let access_store: Arc<dyn loopline_metadata_store::AccessStore> = metadata.clone();
    let access = loopline_access::Access::new(access_store.clone(), settings);
    access
        .ensure_builtin_roles()
        .await
        .context("creating the built-in roles")?;
    let bootstrap_code = match access
        .bootstrap(Some(&config.auth.admin_username), config.auth.admin_password.as_deref())
        .await
        .context("creating the first admin from LOOPLINE_ADMIN_PASSWORD")?
    {
        loopline_access::admin::Bootstrap::Done => None,
        loopline_access::admin::Bootstrap::Created(username) => {
            tracing::info!(%username, "first admin created from LOOPLINE_ADMIN_PASSWORD");
            None
        }
        loopline_access::admin::Bootstrap::Pending(code) => {
            // Printed, never logged: whoever reads the terminal creates the first admin with it.
            eprintln!(
                "\nNo admin exists yet. Create the first one with this one-time code (or restart with \
                 LOOPLINE_ADMIN_PASSWORD set):\n  curl -X POST http://{host}:{port}/api/loopline/v1/access/bootstrap \
                 -H 'Content-Type: application/json' -d '{{\"code\": \"{code}\", \"username\": \"admin\", \
                 \"password\": \"<12 or more characters>\"}}'\n",
                host = config.host,
                port = config.port,
            );
            Some(code)
        }
    };
    // The server's own pipelines act as a service account with the editor role.
    let replica = pipelines::replica_id(&config.data_dir)?;
    let pipeline_token = access
        .service_token("loopline-pipelines", "editor", &format!("pipelines on {replica}"))
        .await
        .context("issuing the pipelines' service token")?;
    own_api.set_credentials(commands::credentials::ClientCredentials::Bearer(pipeline_token));
    let audit = wire::audit::AuditSink::start(access_store);
    let api_state = Arc::new(wire::context::AccessApi {
        access: access.clone(),
        store: metadata,
        bootstrap_code: std::sync::Mutex::new(bootstrap_code),
        audit: audit.clone(),
    });
    let router = router
        .merge(wire::mlflow_api::routes(api_state.clone()))
        .merge(wire::own_api::routes(api_state.clone()))
        .merge(wire::gateway_keys::routes(api_state));
    let page_key = {
        let mut candidate = [0u8; 32];
        rand::fill(&mut candidate);
        let hex: String = candidate.iter().map(|byte| format!("{byte:02x}")).collect();
        let stored = access
            .store()
            .shared_page_key(&hex)
            .await
            .context("reading the shared page-token key")?;
        let mut key = [0u8; 32];
        for (index, byte) in key.iter_mut().enumerate() {
            *byte = stored
                .get(index * 2..index * 2 + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| anyhow::anyhow!("the stored page-token key is damaged"))?;
        }
        wire::visibility::PageKey::new(&key)
    };
    let oidc = if config.auth.has(auth_options::AuthMode::Oidc) {
        let settings = config.auth.oidc_settings().map_err(anyhow::Error::msg)?;
        Some(loopline_access::oidc::OidcVerifier::new(settings, access.clone()).map_err(anyhow::Error::msg)?)
    } else {
        None
    };
    let browser = match (&oidc, config.auth.browser_login_settings().map_err(anyhow::Error::msg)?) {
        (Some(verifier), Some(settings)) => Some(wire::browser_login::BrowserLogin::new(
            verifier.clone(),
            access.clone(),
            page_key.clone(),
            settings,
            audit.clone(),
        )),
        _ => None,
    };
    let router = router.merge(wire::browser_login::routes(browser.clone()));
    let guard = Arc::new(wire::Guard {
        access: access.clone(),
        table: Arc::new(route_permissions::table()),
        audit: audit.clone(),
        modes: wire::Modes {
            basic: config.auth.has(auth_options::AuthMode::Basic),
            token: config.auth.has(auth_options::AuthMode::Token),
            oidc: config.auth.has(auth_options::AuthMode::Oidc),
        },
        oidc: oidc.map(|verifier| -> Arc<dyn wire::BearerVerifier> { verifier }),
        deployment_served: Some(deployment_served),
        browser,
        max_body_bytes: HttpLimits::default().max_json_body_bytes,
        owners: wire::guard::Owners::default(),
        page_key,
    });
    let mut routes = inventory::routes(&router);
    let api = router.route_layer(wire::GuardLayer::new(guard.clone()));
    let pages = loopline_web_pages::routes(api.clone());
    routes.extend(inventory::routes(&pages));
    let pages = pages.route_layer(wire::GuardLayer::new(guard));
    Ok((api.merge(pages), routes, Some(audit)))
}

/// Every gateway call an MLflow trace in the configured experiment.
fn trace_gateway(
    gateway: &loopline_llm_gateway::Gateway,
    metadata: &Arc<dyn loopline_metadata_store::MetadataStore>,
    models: bool,
) {
    gateway.set_observer(Arc::new(loopline_http_api::openai::traces::GatewayTraces::start(
        metadata.clone(),
        gateway.config().trace_experiment.clone(),
        models,
        gateway.config().trace_retention,
    )));
}

/// OpenAI's and Anthropic's APIs over one gateway, and MLflow's AI-gateway API that adds endpoints to it.
fn gateway_routes(
    live: Arc<loopline_llm_gateway::live::LiveGateway>,
    store: Arc<dyn loopline_metadata_store::MetadataStore>,
    sync: Arc<loopline_http_api::ai_gateway::CatalogSync>,
    webhooks: loopline_http_api::webhooks::Webhooks,
) -> axum::Router {
    use loopline_http_api::ai_gateway::{budgets, discovery, guardrails, invoke, management};
    let api = Arc::new(loopline_http_api::openai::GatewayApi {
        live,
        sync: Some(sync.clone()),
        store,
        webhooks: Some(webhooks),
    });
    loopline_http_api::openai::routes(api.clone())
        .merge(loopline_http_api::anthropic::routes(api.clone()))
        .merge(invoke::routes(api))
        .merge(management::routes(sync.clone()))
        .merge(budgets::routes(sync.clone()))
        .merge(guardrails::routes(sync.clone()))
        .merge(discovery::routes(sync))
}

/// The gateway's families on `/metrics`.
struct GatewayMetricsSource(Arc<loopline_llm_gateway::Gateway>);

impl loopline_serving::routes::MetricsSource for GatewayMetricsSource {
    fn render_metrics(&self, out: &mut String) {
        self.0.metrics().render(out);
    }
}

/// The router with its guard, every (method, path) it answers, and the audit trail's writer (with auth on).
type Guarded = (
    axum::Router,
    std::collections::BTreeSet<(String, String)>,
    Option<loopline_http_api::access::audit::AuditSink>,
);

/// The assembled server.
pub struct Application {
    /// Every (method, path) the router answers (`*`: any method).
    pub routes: std::collections::BTreeSet<(String, String)>,
    /// Registry webhooks (told where this server listens, so no webhook points back at it).
    pub webhooks: loopline_http_api::webhooks::Webhooks,
    /// Every route.
    pub router: axum::Router,
    /// The metadata store, closed on shutdown.
    pub store: Arc<SqlStore>,
    /// The prediction log, flushed on shutdown.
    pub prediction_log: Option<Arc<loopline_serving::PredictionLog>>,
    /// Pipelines, started once the server listens.
    pub pipelines: Arc<loopline_pipelines::pipeline::service::PipelineService>,
    /// Where pipelines reach the server's API.
    pub own_api: Arc<pipelines::OwnApi>,
    /// The audit trail's writer, with auth on (flushed before the store closes).
    pub audit: Option<loopline_http_api::access::audit::AuditSink>,
    /// The vector collections (checkpointed on shutdown).
    pub vectors: Arc<loopline_vector_index::VectorStore>,
}

/// Opens the vector collections under the data directory (replaying their logs).
/// The feature store: definitions in the metadata store; online values in Redis when the server has one
/// (`--redis-url`, shared by replicas), otherwise in `features/online.db` under the data directory.
async fn open_features(
    config: &ServerConfig,
    definitions: Arc<dyn loopline_metadata_store::FeatureDefinitionStore>,
) -> anyhow::Result<loopline_feature_api::FeatureApi> {
    use loopline_features::online::{EmbeddedOnlineStore, OnlineStore, RedisOnlineStore};
    let online: Arc<dyn OnlineStore> = match config.gateway.redis_url.as_deref().filter(|u| !u.trim().is_empty()) {
        Some(url) => Arc::new(
            RedisOnlineStore::connect(url)
                .await
                .map_err(|error| anyhow::anyhow!("--redis-url: {error}"))?,
        ),
        None => {
            let path = config.data_dir.join("features").join("online.db");
            Arc::new(tokio::task::spawn_blocking(move || EmbeddedOnlineStore::open(&path)).await??)
        }
    };
    tracing::info!(store = %online.describe(), "feature store ready");
    let registry = Arc::new(loopline_feature_api::FeatureRegistry::new(definitions));
    Ok(loopline_feature_api::FeatureApi::new(registry, online)
        .with_remote_cache(config.data_dir.join("features").join("remote-sources")))
}

async fn open_vectors(data_dir: &std::path::Path) -> anyhow::Result<Arc<loopline_vector_index::VectorStore>> {
    let root = data_dir.join("vectors");
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let shown = root.display().to_string();
    let store = tokio::task::spawn_blocking(move || loopline_vector_index::VectorStore::open(&root, threads))
        .await
        .context("opening the vector collections")?
        .with_context(|| format!("opening the vector collections in {shown}"))?;
    Ok(Arc::new(store))
}

/// `GET /` from anything but a browser answers what Qdrant's root answers (its name and version), which
/// `qdrant-client` reads to check compatibility; browsers (asking for HTML) get the web UI.
async fn qdrant_root(request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let wants_html = request
        .headers()
        .get_all(axum::http::header::ACCEPT)
        .iter()
        .any(|value| value.to_str().is_ok_and(|value| value.contains("text/html")));
    if request.method() == axum::http::Method::GET && request.uri().path() == "/" && !wants_html {
        return axum::response::IntoResponse::into_response(axum::Json(loopline_vector_api::version_info()));
    }
    next.run(request).await
}

/// Says at startup whether ONNX models can be served (the server runs without ONNX Runtime). The library
/// itself is loaded with the first ONNX model; a library that is found but cannot load says why then.
pub(crate) fn report_onnx_runtime() {
    match loopline_model_runtimes::onnx::locate() {
        Ok(library) => tracing::info!(
            library = %library.display(),
            "ONNX Runtime found: loaded when the first ONNX model is served"
        ),
        Err(reason) => tracing::warn!(%reason, "ONNX models cannot be served"),
    }
}

/// Writes what the prediction log still buffers (at shutdown).
pub async fn flush_prediction_log(log: Option<&Arc<loopline_serving::PredictionLog>>) {
    if let Some(log) = log {
        match log.flush().await {
            Ok(()) => tracing::info!(rows = log.written(), dropped = log.dropped(), "prediction log flushed"),
            Err(error) => tracing::error!(%error, "prediction log not flushed"),
        }
    }
}

/// Registered versions served at `/v2/models/{name}/versions/{version-or-alias}/infer` and
/// `/models/{name}/versions/{version-or-alias}/invocations`, loaded from the registry on first use.
fn serving_state(
    config: &ServerConfig,
    repository: Arc<dyn model_fetch::ModelRepository>,
    artifacts: Arc<dyn loopline_artifact_store::ArtifactStore>,
) -> anyhow::Result<(loopline_serving::ServingState, Arc<dyn loopline_serving::ModelSource>)> {
    let runner = config
        .serving
        .runner()
        .map_err(|e| anyhow::anyhow!("serving settings: {e}"))?;
    report_onnx_runtime();
    let log = config
        .serving
        .prediction_log()
        .map_err(|e| anyhow::anyhow!("serving settings: {e}"))?
        .map(|log| loopline_serving::PredictionLog::start(log, artifacts.clone()));
    let source: Arc<dyn loopline_serving::ModelSource> =
        Arc::new(model_fetch::source::RegistrySource::new(repository).context("creating the model cache directory")?);
    let metrics = Arc::new(loopline_serving::Metrics::default());
    let catalog = loopline_serving::LoadingCatalog::new(
        source.clone(),
        runner,
        metrics.clone(),
        std::time::Duration::from_secs(10),
    );
    Ok((
        loopline_serving::ServingState {
            catalog: Arc::new(catalog),
            metrics,
            max_body_bytes: config.serving.max_body_bytes(),
            body_budget: loopline_serving::body_budget::BodyBudget::for_max_body(config.serving.max_body_bytes()),
            log,
            deployments: None,
            extra_metrics: Vec::new(),
            features: None,
        },
        source,
    ))
}

pub(crate) fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    tracing::error!("a request handler panicked; this is a bug");
    let body =
        serde_json::json!({"error_code": "INTERNAL_ERROR", "message": "the server hit an internal error; see its log"});
    axum::response::IntoResponse::into_response((axum::http::StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)))
}

/// Serves until `shutdown` resolves, then drains in-flight requests and closes the store.
pub async fn serve(
    config: ServerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    config
        .network
        .validate()
        .map_err(|message| anyhow::anyhow!("network settings: {message}"))?;
    config
        .auth
        .validate(&config.host)
        .map_err(|message| anyhow::anyhow!("auth settings: {message}"))?;
    // Checked before anything is written to the data directory.
    config.registry.source_pattern().map_err(anyhow::Error::msg)?;
    let application = build_application(&config).await?;
    application.own_api.set_address(listener.local_addr()?);
    application.webhooks.policy.add_own_address(listener.local_addr()?);
    application.pipelines.start().await;
    tracing::info!(address = %listener.local_addr()?, "loopline server listening");
    let policy = browser_origins::OriginPolicy::new(
        &config.host,
        &config.network.allowed_hosts,
        &config.network.cors_allowed_origins,
    );
    let router = browser_origins::protect(application.router, policy);
    network::serve_connections(listener, router, &config.network, shutdown)
        .await
        .context("serving HTTP")?;
    flush_prediction_log(application.prediction_log.as_ref()).await;
    // A checkpoint now spares the next start replaying the vector logs.
    let vectors = application.vectors.clone();
    if let Ok(failures) = tokio::task::spawn_blocking(move || vectors.checkpoint_all()).await {
        for failure in failures {
            tracing::warn!(error = %failure, "a vector collection could not be checkpointed; its log is replayed at the next start");
        }
    }
    // Requests answered before the shutdown are in the trail.
    if let Some(audit) = &application.audit {
        audit.flush().await;
    }
    application.store.close().await;
    tracing::info!("loopline server stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested; draining in-flight requests");
}

/// Every answer names the server and its version (`/version` answers with the MLflow API version instead, as
/// clients compare it with MLflow's).
/// `/ajax-api/...` becomes `/api/...`, and leading slashes become one (`//model-versions/...`, as MLflow's
/// server takes it), the query kept. Slashes inside a path are left alone: an artifact path that begins with
/// one is absolute and stays refused.
async fn ajax_api_as_api(mut request: axum::extract::Request) -> axum::extract::Request {
    let path = request.uri().path();
    let merged = path
        .starts_with("//")
        .then(|| format!("/{}", path.trim_start_matches('/')));
    let path = merged.as_deref().unwrap_or(path);
    let rewritten_path = match path.strip_prefix("/ajax-api/") {
        Some(rest) => Some(format!("/api/{rest}")),
        None => merged.clone(),
    };
    if let Some(new_path) = rewritten_path {
        let rewritten = match request.uri().query() {
            Some(query) => format!("{new_path}?{query}"),
            None => new_path,
        };
        if let Ok(uri) = rewritten.parse() {
            *request.uri_mut() = uri;
        }
    }
    request
}

/// Logs every request answered with an error: method, path (never the query, which may carry secrets), status,
/// and the message the client got, so an operator can see why a client failed without watching the client.
async fn log_failed_requests(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let method = request.method().clone();
    let mut path = request.uri().path().to_string();
    if path.len() > 512 {
        let mut end = 512;
        while !path.is_char_boundary(end) {
            end -= 1;
        }
        path.truncate(end);
        path.push_str("...");
    }
    let response = next.run(request).await;
    let status = response.status();
    if status.is_client_error() || status.is_server_error() {
        let refusal = response.extensions().get::<loopline_http_api::error::Refusal>();
        let code = refusal.map(|refusal| refusal.code).unwrap_or_default();
        let message = refusal.map(|refusal| refusal.message.as_str()).unwrap_or_default();
        if status.is_server_error() {
            tracing::warn!(%method, %path, status = status.as_u16(), code, reason = message, "request failed");
        } else {
            tracing::info!(%method, %path, status = status.as_u16(), code, reason = message, "request refused");
        }
    }
    response
}

async fn name_the_server(mut response: axum::response::Response) -> axum::response::Response {
    let headers = response.headers_mut();
    headers.insert(
        "x-loopline-version",
        axum::http::HeaderValue::from_static(env!("CARGO_PKG_VERSION")),
    );
    // No answer is ever taken for another type than the one it declares: a stored file served as
    // application/octet-stream must not run as a script in a page of this origin.
    headers.insert(
        axum::http::header::X_CONTENT_TYPE_OPTIONS,
        axum::http::HeaderValue::from_static("nosniff"),
    );
    response
}
