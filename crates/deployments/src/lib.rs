//! Deployments: a name bound to a registry model (an alias it follows, or versions), with a rollout policy —
//! canary, blue-green, shadow, A/B or bandit — routed at the server, readiness-gated, watched by guardrails
//! that roll back on their own, and recorded step by step in an audit trail. `spec` and `state` hold the
//! stored documents and the pure rules; `live` and `routing` serve requests; `manager` runs commands and the
//! controller; `api` is the REST surface.

pub mod api;
mod controller;
pub mod live;
pub mod manager;
pub mod metrics;
pub mod routing;
pub mod spec;
pub mod state;
pub mod window;

pub use manager::{CommandError, Manager, ManagerConfig};
pub use spec::DeploymentSpec;
