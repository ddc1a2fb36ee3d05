//! Drift statistics as pure functions: no IO, no allocation beyond what a statistic needs. Each function
//! documents the reference implementation it matches and its conventions (log base, binning, epsilon).
//!
//! This is the first part of issue 3: distances between samples or frequency vectors, chi-squared,
//! two-proportion and exact Kolmogorov–Smirnov tests with p-values, embedding drift (MMD), and change
//! detectors for streams. The
//! k-sample Anderson–Darling test with scipy's interpolated p-value.

pub mod anderson_darling;
pub mod change_detection;
pub mod distances;
pub mod embeddings;
pub mod error;
pub mod hypothesis_tests;
pub mod kolmogorov_distribution;
pub mod kolmogorov_smirnov;
pub mod method_choice;
pub mod special;

pub use error::StatisticError;
