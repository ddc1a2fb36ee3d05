//! Validation results in Great Expectations' shape (the `SUMMARY` result format).

use serde::Serialize;
use serde_json::{Map, Value};

use crate::suite::ExpectationConfig;

/// Unexpected values listed per expectation, as GX's default `partial_unexpected_count`.
pub const PARTIAL_UNEXPECTED_COUNT: usize = 20;

/// Whether evaluating an expectation failed (GX reports such an expectation as unsuccessful).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ExceptionInfo {
    /// True when the expectation could not be evaluated.
    pub raised_exception: bool,
    /// Why.
    pub exception_message: Option<String>,
    /// Where (always empty here; kept for the shape).
    pub exception_traceback: Option<String>,
}

/// The result of one expectation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExpectationResult {
    /// Whether the expectation was met.
    pub success: bool,
    /// The expectation as configured.
    pub expectation_config: ExpectationConfig,
    /// GX's result object: `observed_value` for aggregates; counts, percentages and partial unexpected lists for
    /// value expectations.
    pub result: Map<String, Value>,
    /// Evaluation errors.
    pub exception_info: ExceptionInfo,
}

impl ExpectationResult {
    /// A result for an expectation that could not be evaluated.
    pub fn exception(config: &ExpectationConfig, message: String) -> ExpectationResult {
        ExpectationResult {
            success: false,
            expectation_config: config.clone(),
            result: Map::new(),
            exception_info: ExceptionInfo {
                raised_exception: true,
                exception_message: Some(message),
                exception_traceback: None,
            },
        }
    }
}

/// Counts over a suite's results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Statistics {
    /// Expectations evaluated.
    pub evaluated_expectations: usize,
    /// Met.
    pub successful_expectations: usize,
    /// Not met (including those that could not be evaluated).
    pub unsuccessful_expectations: usize,
    /// Share met, in percent.
    pub success_percent: Option<f64>,
}

/// The result of a suite on a table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValidationResult {
    /// Every expectation met.
    pub success: bool,
    /// Per expectation, in suite order.
    pub results: Vec<ExpectationResult>,
    /// The suite's name.
    pub suite_name: String,
    /// Counts.
    pub statistics: Statistics,
    /// What was validated.
    pub meta: Map<String, Value>,
}

impl ValidationResult {
    /// Assembles the result of a suite from its expectations' results.
    pub fn new(suite_name: &str, results: Vec<ExpectationResult>, meta: Map<String, Value>) -> ValidationResult {
        let successful = results.iter().filter(|r| r.success).count();
        let evaluated = results.len();
        ValidationResult {
            success: successful == evaluated,
            statistics: Statistics {
                evaluated_expectations: evaluated,
                successful_expectations: successful,
                unsuccessful_expectations: evaluated - successful,
                success_percent: (evaluated > 0).then(|| 100.0 * successful as f64 / evaluated as f64),
            },
            results,
            suite_name: suite_name.to_string(),
            meta,
        }
    }
}
