//! Closing the loop: versioned datasets (content-addressed, with pointer files in git as DVC has them), and
//! the pipelines, triggers and quality gates built on them.

pub mod api;
pub mod data;
pub mod datasets;
pub mod gate;
pub mod lineage;
pub mod pipeline;
