//! The LLM gateway: callers name a model, the gateway sends the request to one of its provider deployments
//! (weighted), retries and falls back, and streams the answer back. Provider URLs and keys live only in the
//! server's configuration. The wire layer (`http-api`'s `openai` module) speaks OpenAI's API over it.

pub mod answers;
pub mod anthropic;
pub mod cache;
mod call;
pub mod catalog;
pub mod config;
pub mod gateway;
pub mod guardrails;
pub mod live;
pub mod local;
pub mod metrics;
pub mod observe;
pub mod provider;
pub mod routing;
pub mod semantic;
pub mod sse;

pub use config::GatewayConfig;
pub use gateway::{Answer, Endpoint, Gateway, GatewayError, Piece, Served};
