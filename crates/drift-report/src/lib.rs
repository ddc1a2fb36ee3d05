//! Drift reports: every column of a current table compared with a reference (its data or its saved profile)
//! using the statistics of `loopline-drift-statistics`, Evidently's default method choice, data-quality
//! findings, and the report as JSON or as one self-contained HTML page.

pub mod compare;
pub mod html;
pub mod plot;
pub mod quality;
pub mod reference;
pub mod report;

pub use report::{CurrentData, DriftOptions, DriftReport, InputProblems, NamedColumns, ReferenceData, build_report};
