//! The feature store over HTTP: Feast's feature server API at its own paths (so Feast's remote online store
//! and `curl` users work unchanged) and Loopline's own API under `/api/loopline/v1/features` for definitions.

mod error;
mod feast;
mod materialize;
mod native;
pub mod registry;
pub mod remote_sources;
mod rows;
pub mod selections;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use loopline_features::online::OnlineStore;

pub use error::ApiError;
pub use registry::FeatureRegistry;

/// Largest request body.
pub const MAX_BODY_BYTES: usize = 32 << 20;

/// Shared by the handlers.
#[derive(Clone)]
pub struct FeatureApi {
    /// The definitions.
    pub registry: Arc<FeatureRegistry>,
    /// The online store.
    pub online: Arc<dyn OnlineStore>,
    /// Views materialising now.
    pub running: materialize::Running,
    /// Where sources on S3 are copied to be read.
    pub remote_cache: std::path::PathBuf,
    /// Resolved selections, per definitions object.
    pub selections: Arc<selections::Selections>,
}

impl FeatureApi {
    /// The API over a registry and an online store (sources on S3 copied under the system's temporary
    /// directory until [`FeatureApi::with_remote_cache`] names another place).
    pub fn new(registry: Arc<FeatureRegistry>, online: Arc<dyn OnlineStore>) -> FeatureApi {
        FeatureApi {
            registry,
            online,
            running: materialize::Running::default(),
            remote_cache: std::env::temp_dir().join("loopline-feature-sources"),
            selections: Arc::default(),
        }
    }

    /// Copies sources on S3 under `directory` (kept between jobs: an unchanged object is not fetched again).
    pub fn with_remote_cache(mut self, directory: std::path::PathBuf) -> FeatureApi {
        self.remote_cache = directory;
        self
    }
}

/// What a route needs of the caller when auth is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reading features or definitions.
    Read,
    /// Writing feature values (push, write, materialise).
    Edit,
    /// Changing definitions: they name files the server reads, so only admins.
    Admin,
}

/// Every route with its method and what it needs.
pub const ROUTES: &[(&str, &str, Access)] = &[
    ("POST", "/get-online-features", Access::Read),
    ("POST", "/push", Access::Edit),
    ("POST", "/write-to-online-store", Access::Edit),
    ("POST", "/materialize", Access::Edit),
    ("POST", "/materialize-incremental", Access::Edit),
    ("GET", "/api/loopline/v1/features/projects", Access::Read),
    ("GET", "/api/loopline/v1/features/projects/{project}", Access::Read),
    (
        "POST",
        "/api/loopline/v1/features/projects/{project}/apply",
        Access::Admin,
    ),
    (
        "GET",
        "/api/loopline/v1/features/projects/{project}/views",
        Access::Read,
    ),
    (
        "POST",
        "/api/loopline/v1/features/projects/{project}/online",
        Access::Read,
    ),
    ("DELETE", "/api/loopline/v1/features/projects/{project}", Access::Admin),
    (
        "POST",
        "/api/loopline/v1/features/projects/{project}/get-online-features",
        Access::Read,
    ),
    (
        "POST",
        "/api/loopline/v1/features/projects/{project}/push",
        Access::Edit,
    ),
    (
        "POST",
        "/api/loopline/v1/features/projects/{project}/write-to-online-store",
        Access::Edit,
    ),
    (
        "POST",
        "/api/loopline/v1/features/projects/{project}/materialize",
        Access::Edit,
    ),
    (
        "POST",
        "/api/loopline/v1/features/projects/{project}/materialize-incremental",
        Access::Edit,
    ),
];

/// The prefix of the project-scoped twins of Feast's routes.
const SCOPED: &str = "/api/loopline/v1/features/projects/{project}";

/// The routes.
pub fn routes(api: FeatureApi) -> Router {
    Router::new()
        .route("/get-online-features", post(feast::get_online_features))
        .route("/push", post(feast::push))
        .route("/write-to-online-store", post(feast::write_to_online_store))
        .route("/materialize", post(feast::materialize))
        .route("/materialize-incremental", post(feast::materialize_incremental))
        .route("/api/loopline/v1/features/projects", get(native::projects))
        .route(
            "/api/loopline/v1/features/projects/{project}",
            get(native::project).delete(native::delete_project),
        )
        .route(
            &format!("{SCOPED}/get-online-features"),
            post(feast::get_online_features),
        )
        .route(&format!("{SCOPED}/push"), post(feast::push))
        .route(
            &format!("{SCOPED}/write-to-online-store"),
            post(feast::write_to_online_store),
        )
        .route(&format!("{SCOPED}/materialize"), post(feast::materialize))
        .route(
            &format!("{SCOPED}/materialize-incremental"),
            post(feast::materialize_incremental),
        )
        .route(
            "/api/loopline/v1/features/projects/{project}/apply",
            post(native::apply),
        )
        .route("/api/loopline/v1/features/projects/{project}/views", get(native::views))
        .route(
            "/api/loopline/v1/features/projects/{project}/online",
            post(feast::native_online),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(api)
}
