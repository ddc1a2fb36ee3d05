//! Quality gates: metrics of a candidate and of the current champion on the same evaluation data, the
//! comparisons between them, and the policy that decides whether a protected alias may move.

pub mod metrics;
pub mod stats;
