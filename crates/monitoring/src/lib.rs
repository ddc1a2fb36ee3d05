//! Monitoring on live traffic: monitors read windows of the prediction log, compare them with the
//! reference profile of the model version that served (drift and data quality), join feedback labels for
//! live performance, and raise alerts that notify (webhook, Slack, PagerDuty, Alertmanager) and act (roll a
//! deployment back, move an alias, request retraining).

pub mod alerts;
pub mod api;
mod background;
pub mod estimation;
pub mod evaluate;
pub mod expectations;
pub mod figures;
pub mod metrics;
pub mod notify;
mod outbox;
pub mod performance;
pub mod review;
pub mod rollup;
mod runner;
pub mod service;
pub mod sketches;
pub mod slices;
pub mod span_sketch;
pub mod spec;
pub mod state;
pub mod window_data;
pub mod window_rows;
mod window_sink;

pub use service::{MonitorError, Monitoring, MonitoringConfig};
pub use spec::MonitorSpec;
