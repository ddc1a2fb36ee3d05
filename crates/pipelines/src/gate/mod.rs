//! Quality gates: metrics of a candidate and of the current champion on the same evaluation data, the
//! comparisons between them, and the policy that decides whether a protected alias may move.

pub mod api;
pub mod decide;
pub mod evaluate;
pub mod metrics;
pub mod policy;
pub mod service;
pub mod stats;
