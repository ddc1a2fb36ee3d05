//! Access control on the wire: which permission each route needs, the guard that checks it before any
//! handler runs, and the MLflow-compatible and Loopline access APIs.

pub mod audit;
pub mod browser_login;
mod connection;
pub mod context;
pub mod credentials;
pub mod fields;
pub mod gateway_keys;
pub mod guard;
pub mod inventory;
mod layer;
mod locate;
pub mod mlflow_api;
pub mod own_api;
pub mod params;
mod quick;
pub mod refusal;
pub mod rules;
pub mod visibility;

pub use connection::PeerAddress;
pub use guard::{BearerVerifier, Guard, Modes};
pub use layer::GuardLayer;
pub use rules::{Created, Need, RouteTable, Source, Via};
