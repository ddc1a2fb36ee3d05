//! Pipelines: `loopline.yaml` read into a checked DAG, steps fingerprinted and cached as `dvc repro` does,
//! run on local processes or Ray, with built-in steps for the loop.

pub mod builtin;
pub mod executor;
pub mod fingerprint;
pub mod runner;
pub mod schedule;
pub mod spec;

pub use runner::{LoopHooks, Observer, RunContext, RunOptions, RunRecord, Runner, StepState, Unobserved};
pub use spec::{Input, Pipeline, Step, StepKind, Trigger};
