//! Requests addressed to a deployment instead of a version. The deployments crate decides which version
//! answers (weights, stickiness, bandits) and learns from every answer; this module runs the request through
//! the chosen version, retries a failed candidate on the stable version so callers do not see the
//! candidate's failures, and mirrors requests to a shadow version whose answers are compared and logged but
//! never returned.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use loopline_model_runtime_api::{Tensor, TensorData};

use crate::catalog::{CatalogError, Served};
use crate::conform::conform;
use crate::routes::ServingState;
use crate::runner::InferError;

/// Where a deployment finds the key that keeps a caller on one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StickyKey {
    /// A request header (case-insensitive).
    Header(String),
    /// An input column or tensor; its first element is the key.
    Column(String),
}

/// The versions chosen for one request.
#[derive(Clone, Debug)]
pub struct Route {
    /// Answers the request.
    pub primary: Served,
    /// Answers instead when the primary (a candidate) fails: the stable version.
    pub fallback: Option<Served>,
    /// Receives a copy of the request; its answer is compared, never returned.
    pub shadow: Option<Served>,
}

/// How one version did on one request.
#[derive(Debug)]
pub struct Observation<'a> {
    /// The request.
    pub request_id: &'a str,
    /// The version.
    pub version: &'a str,
    /// The model failed or was unavailable (bad input is not counted).
    pub failed: bool,
    /// Time in the model, queue included.
    pub latency: Duration,
    /// Its outputs, when it answered.
    pub outputs: Option<&'a [Tensor]>,
}

/// One deployment, as the request path sees it.
pub trait Deployment: Send + Sync {
    /// The registered model it serves.
    fn model(&self) -> &str;
    /// The version counted for requests refused before a version was chosen.
    fn stable_version(&self) -> String;
    /// What keeps callers sticky, if anything.
    fn sticky(&self) -> Option<StickyKey>;
    /// Chooses versions for a request (`key`: the caller's sticky key, if any).
    fn route(&self, key: Option<&str>) -> Result<Route, CatalogError>;
    /// Learns how a version answered.
    fn observe(&self, observation: &Observation<'_>);
    /// Learns how the shadow answered next to the primary's outputs (`None`: the shadow failed).
    fn observe_shadow(&self, version: &str, primary: &[Tensor], shadow: Option<&[Tensor]>, latency: Duration);
}

/// The deployments a server has.
pub trait Deployments: Send + Sync {
    /// The deployment called `name`, if any.
    fn find(&self, name: &str) -> Option<Arc<dyn Deployment>>;
    /// A reward in [0, 1] for an earlier request (fed to bandits); false when no deployment knows it.
    fn reward(&self, request_id: &str, reward: f64) -> bool;
    /// Appends the deployments' metrics in the Prometheus text format.
    fn render_metrics(&self, out: &mut String);
}

/// Why a routed request was not answered.
#[derive(Debug)]
pub enum RoutedError {
    /// No version can take it (404/503).
    Catalog(CatalogError),
    /// The input does not fit the chosen version (400).
    Input(String),
    /// The model failed (status from the error).
    Infer(InferError),
}

/// The sticky key of a request: a header's value or the first element of an input column.
pub fn sticky_value(key: &StickyKey, headers: &HeaderMap, inputs: &[Tensor]) -> Option<String> {
    match key {
        StickyKey::Header(name) => headers
            .get(name.as_str())
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        StickyKey::Column(name) => {
            let tensor = inputs.iter().find(|t| t.name == *name)?;
            match &tensor.data {
                TensorData::Bytes(values) => values.first().map(|v| String::from_utf8_lossy(v).into_owned()),
                data if !data.is_empty() => data.number(0).map(|n| n.to_string()),
                _ => None,
            }
        }
    }
}

fn is_failure(error: &InferError) -> bool {
    matches!(
        error,
        InferError::Unavailable(_) | InferError::Internal(_) | InferError::Timeout(_)
    )
}

async fn run_one(
    state: &ServingState,
    deployment: &dyn Deployment,
    served: &Served,
    request_id: &str,
    inputs: Vec<Tensor>,
) -> Result<Vec<Tensor>, RoutedError> {
    let inputs = conform(served.descriptor.signature(), inputs).map_err(RoutedError::Input)?;
    let started = Instant::now();
    let result = state.infer_logged(served, request_id, inputs).await;
    let failed = result.as_ref().err().is_some_and(is_failure);
    deployment.observe(&Observation {
        request_id,
        version: served.runner.version(),
        failed,
        latency: started.elapsed(),
        outputs: result.as_ref().ok().map(Vec::as_slice),
    });
    result.map_err(RoutedError::Infer)
}

/// Runs a request through deployment `deployment`; returns the version that answered and its outputs.
pub async fn infer_routed(
    state: &ServingState,
    deployment: &Arc<dyn Deployment>,
    headers: &HeaderMap,
    request_id: &str,
    inputs: Vec<Tensor>,
) -> Result<(Served, Vec<Tensor>), RoutedError> {
    let key = deployment.sticky().and_then(|key| sticky_value(&key, headers, &inputs));
    let route = deployment.route(key.as_deref()).map_err(RoutedError::Catalog)?;
    let keep = route.fallback.is_some() || route.shadow.is_some();
    let copy = keep.then(|| inputs.clone());
    let primary = run_one(state, deployment.as_ref(), &route.primary, request_id, inputs).await;
    let (served, outputs) = match (primary, &route.fallback, copy.as_ref()) {
        (Ok(outputs), _, _) => (route.primary.clone(), outputs),
        (Err(RoutedError::Infer(error)), Some(fallback), Some(copy)) if is_failure(&error) => {
            tracing::warn!(
                model = deployment.model(),
                version = route.primary.runner.version(),
                %error,
                "candidate failed; answered by the stable version"
            );
            let outputs = run_one(state, deployment.as_ref(), fallback, request_id, copy.clone()).await?;
            (fallback.clone(), outputs)
        }
        (Err(error), _, _) => return Err(error),
    };
    if let (Some(shadow), Some(copy)) = (route.shadow, copy) {
        let deployment = deployment.clone();
        let primary_outputs = outputs.clone();
        let state = state.clone();
        let request_id = request_id.to_string();
        tokio::spawn(async move {
            let Ok(inputs) = conform(shadow.descriptor.signature(), copy) else {
                deployment.observe_shadow(shadow.runner.version(), &primary_outputs, None, Duration::ZERO);
                return;
            };
            let started = Instant::now();
            let result = shadow.runner.infer(inputs.clone()).await;
            let latency = started.elapsed();
            if let Ok(outputs) = &result {
                state.log_shadow(&shadow, &request_id, inputs, outputs);
            }
            deployment.observe_shadow(
                shadow.runner.version(),
                &primary_outputs,
                result.as_ref().ok().map(Vec::as_slice),
                latency,
            );
        });
    }
    Ok((served, outputs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use loopline_model_runtime_api::DataType;

    fn tensor(name: &str, data: TensorData) -> Tensor {
        let rows = data.len();
        let datatype = match &data {
            TensorData::Bytes(_) => DataType::Bytes,
            _ => DataType::Fp64,
        };
        Tensor {
            name: name.to_string(),
            datatype,
            shape: vec![rows],
            data,
        }
    }

    #[test]
    fn sticky_keys_come_from_a_header_or_the_first_value_of_a_column() {
        let mut headers = HeaderMap::new();
        headers.insert("x-user", "u-17".parse().unwrap());
        let inputs = vec![
            tensor("user_id", TensorData::Bytes(vec![b"alice".to_vec(), b"bob".to_vec()])),
            tensor("account", TensorData::F64(vec![42.0, 7.0])),
        ];
        let header = StickyKey::Header("x-user".into());
        assert_eq!(sticky_value(&header, &headers, &inputs).as_deref(), Some("u-17"));
        let text = StickyKey::Column("user_id".into());
        assert_eq!(sticky_value(&text, &headers, &inputs).as_deref(), Some("alice"));
        let number = StickyKey::Column("account".into());
        assert_eq!(sticky_value(&number, &headers, &inputs).as_deref(), Some("42"));
        assert_eq!(sticky_value(&StickyKey::Column("none".into()), &headers, &inputs), None);
        assert_eq!(
            sticky_value(&StickyKey::Header("x-other".into()), &headers, &inputs),
            None
        );
    }
}
