//! Drift statistics as pure functions: no IO, no allocation beyond what a statistic needs. Each function
//! documents the reference implementation it matches and its conventions (log base, binning, epsilon).
//!
//! This is the first part of issue 3: distances between samples or frequency vectors, and change
//! detectors for streams. Hypothesis tests with p-values (KS, chi-squared, Anderson–Darling, z-test) and MMD
//! follow.

pub mod change_detection;
pub mod distances;
pub mod error;

pub use error::StatisticError;
