//! Online features joined into a scoring request before the model runs: a model that declares a feature
//! service is called with entity ids, and the server adds the features (the prediction log then holds what the
//! model saw). The serving layer knows only this trait; the server implements it over the feature store.

use async_trait::async_trait;
use axum::http::StatusCode;
use loopline_model_runtime_api::tensor::Tensor;

/// Joins features into requests.
#[async_trait]
pub trait FeatureJoin: Send + Sync {
    /// The inputs of a request to the registered model `model` with its features joined, or the inputs as
    /// they are when the model declares no feature service; an error is a status and a message for the caller.
    async fn join(&self, model: &str, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, (StatusCode, String)>;
}
