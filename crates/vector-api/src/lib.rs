//! Qdrant's REST API (the part `qdrant-client` uses; see `shared/protocols/qdrant-rest.md`) over
//! Loopline's vector index: collections, points, payloads, payload indexes, scroll, count, query with
//! prefetch and fusion, and the legacy search. Answers use Qdrant's envelope (`result`, `status`, `time`)
//! and its error shape (`{"status": {"error": ...}}`) with its status codes.
//!
//! Every collection operation runs on a blocking thread: searches and graph linking are CPU work.

mod collections;
mod envelope;
mod points;
mod query;
mod select;
mod snapshots;

pub use envelope::QdrantError;

use axum::Router;
use axum::routing::{delete, get, post, put};
use loopline_vector_index::VectorStore;
use std::sync::Arc;

/// Largest request body (Qdrant's default `max_request_size_mb` is 32).
pub const MAX_BODY_BYTES: usize = 32 << 20;

/// The version reported at `GET /`: qdrant-client warns unless the major version matches and the minor is
/// within one of its own.
pub const QDRANT_VERSION: &str = "1.20.0";

/// Shared by the handlers.
#[derive(Clone)]
pub struct VectorApi {
    /// The collections.
    pub store: Arc<VectorStore>,
    /// Where snapshots are kept (none: the snapshot routes say so).
    pub artifacts: Option<Arc<dyn loopline_artifact_store::ArtifactStore>>,
}

/// The routes, at Qdrant's paths (`/collections/...`).
pub fn routes(api: VectorApi) -> Router {
    Router::new()
        .route("/collections", get(collections::list))
        .route(
            "/collections/{name}",
            get(collections::info)
                .put(collections::create)
                .delete(collections::remove)
                .patch(collections::update),
        )
        .route("/collections/{name}/exists", get(collections::exists))
        .route("/collections/{name}/index", put(collections::create_index))
        .route("/collections/{name}/index/{field}", delete(collections::delete_index))
        .route("/collections/{name}/points", put(points::upsert).post(points::retrieve))
        .route("/collections/{name}/points/{id}", get(points::get_one))
        .route("/collections/{name}/points/delete", post(points::delete))
        .route(
            "/collections/{name}/points/payload",
            post(points::set_payload).put(points::overwrite_payload),
        )
        .route(
            "/collections/{name}/points/payload/delete",
            post(points::delete_payload),
        )
        .route("/collections/{name}/points/payload/clear", post(points::clear_payload))
        .route("/collections/{name}/points/scroll", post(points::scroll))
        .route("/collections/{name}/points/count", post(points::count))
        .route("/collections/{name}/points/query", post(query::query))
        .route("/collections/{name}/points/query/batch", post(query::query_batch))
        .route("/collections/{name}/points/search", post(query::search))
        .route("/collections/{name}/points/search/batch", post(query::search_batch))
        .route("/collections/{name}/points/recommend", post(unsupported))
        .route("/collections/{name}/points/recommend/batch", post(unsupported))
        .route("/collections/{name}/points/recommend/groups", post(unsupported))
        .route("/collections/{name}/points/discover", post(unsupported))
        .route("/collections/{name}/points/discover/batch", post(unsupported))
        .route("/collections/{name}/points/search/groups", post(unsupported))
        .route("/collections/{name}/points/query/groups", post(unsupported))
        .route("/collections/{name}/facet", post(unsupported))
        .route(
            "/collections/{name}/snapshots",
            get(snapshots::list).post(snapshots::create),
        )
        .route("/collections/{name}/snapshots/recover", put(snapshots::recover))
        .route(
            "/collections/{name}/snapshots/{snapshot}",
            get(snapshots::download).delete(snapshots::remove),
        )
        .route("/collections/{name}/aliases", get(unsupported))
        .route("/aliases", get(unsupported))
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(api)
}

/// Qdrant routes Loopline does not offer: a clear refusal in Qdrant's shape, not a 404 page.
async fn unsupported(uri: axum::http::Uri) -> QdrantError {
    QdrantError::new(
        axum::http::StatusCode::BAD_REQUEST,
        format!(
            "Bad request: {} is not supported by Loopline's vector index (see docs/vectors.md)",
            uri.path()
        ),
    )
}

/// A route called with a method it does not take, answered in Qdrant's shape.
async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> QdrantError {
    QdrantError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        format!("Method not allowed: {method} {}", uri.path()),
    )
}

/// What a route needs on the collection it names (for the route permission table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Any signed-in caller (no collection named).
    Signed,
    /// Any signed-in caller; the list shows only the collections the caller may read.
    List,
    /// READ on the collection.
    Read,
    /// EDIT on the collection (its points, payloads, indexes, snapshots made).
    Edit,
    /// MANAGE on the collection (deleting it, replacing it from a snapshot, deleting its snapshots).
    Manage,
    /// EDIT on collections as a whole; the creator then gets MANAGE on the new one.
    Create,
}

/// Every route with its method and what it needs.
pub const ROUTES: &[(&str, &str, Access)] = &[
    ("GET", "/collections", Access::List),
    ("GET", "/collections/{name}", Access::Read),
    ("PUT", "/collections/{name}", Access::Create),
    ("DELETE", "/collections/{name}", Access::Manage),
    ("PATCH", "/collections/{name}", Access::Edit),
    ("GET", "/collections/{name}/exists", Access::Read),
    ("PUT", "/collections/{name}/index", Access::Edit),
    ("DELETE", "/collections/{name}/index/{field}", Access::Edit),
    ("PUT", "/collections/{name}/points", Access::Edit),
    ("POST", "/collections/{name}/points", Access::Read),
    ("GET", "/collections/{name}/points/{id}", Access::Read),
    ("POST", "/collections/{name}/points/delete", Access::Edit),
    ("POST", "/collections/{name}/points/payload", Access::Edit),
    ("PUT", "/collections/{name}/points/payload", Access::Edit),
    ("POST", "/collections/{name}/points/payload/delete", Access::Edit),
    ("POST", "/collections/{name}/points/payload/clear", Access::Edit),
    ("POST", "/collections/{name}/points/scroll", Access::Read),
    ("POST", "/collections/{name}/points/count", Access::Read),
    ("POST", "/collections/{name}/points/query", Access::Read),
    ("POST", "/collections/{name}/points/query/batch", Access::Read),
    ("POST", "/collections/{name}/points/search", Access::Read),
    ("POST", "/collections/{name}/points/search/batch", Access::Read),
    // Refused with a message (not offered).
    ("POST", "/collections/{name}/points/recommend", Access::Read),
    ("POST", "/collections/{name}/points/recommend/batch", Access::Read),
    ("POST", "/collections/{name}/points/recommend/groups", Access::Read),
    ("POST", "/collections/{name}/points/discover", Access::Read),
    ("POST", "/collections/{name}/points/discover/batch", Access::Read),
    ("POST", "/collections/{name}/points/search/groups", Access::Read),
    ("POST", "/collections/{name}/points/query/groups", Access::Read),
    ("POST", "/collections/{name}/facet", Access::Read),
    ("GET", "/collections/{name}/snapshots", Access::Read),
    ("POST", "/collections/{name}/snapshots", Access::Edit),
    ("PUT", "/collections/{name}/snapshots/recover", Access::Manage),
    ("GET", "/collections/{name}/snapshots/{snapshot}", Access::Read),
    ("DELETE", "/collections/{name}/snapshots/{snapshot}", Access::Manage),
    ("GET", "/collections/{name}/aliases", Access::Read),
    ("GET", "/aliases", Access::Signed),
];

/// The collection a route names (its `{name}`), with the API state.
pub(crate) struct Target {
    pub(crate) api: VectorApi,
    pub(crate) name: String,
}

impl axum::extract::FromRequestParts<VectorApi> for Target {
    type Rejection = QdrantError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &VectorApi,
    ) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(name) = axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| QdrantError::format(rejection.body_text()))?;
        Ok(Target {
            api: state.clone(),
            name,
        })
    }
}

/// Qdrant's answer to `GET /` (what qdrant-client reads to check versions).
pub fn version_info() -> serde_json::Value {
    serde_json::json!({
        "title": "qdrant - vector search engine (Loopline)",
        "version": QDRANT_VERSION,
        "commit": env!("CARGO_PKG_VERSION"),
    })
}
