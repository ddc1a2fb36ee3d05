//! Pipelines: `loopline.yaml` read into a checked DAG, steps fingerprinted and cached as `dvc repro` does,
//! run on local processes or Ray, with built-in steps for the loop.

pub mod api;
pub mod builtin;
pub mod executor;
pub mod fingerprint;
pub mod ray;
pub mod ray_package;
pub mod runner;
pub mod schedule;
pub mod service;
pub mod spec;
mod triggers;

pub use runner::{
    LoopHooks, Observer, ResolvedDataset, RunContext, RunOptions, RunRecord, Runner, StepState, Unobserved,
    dataset_variable,
};
pub use spec::{Input, Pipeline, Step, StepKind, Trigger};
