//! Expectation suites as Great Expectations writes them: GX 1.x (`name`, `expectations[].type`) and the older 0.x
//! layout (`expectation_suite_name`, `expectations[].expectation_type`) are both read; 1.x is written.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::SuiteError;

/// One expectation as configured in a suite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExpectationConfig {
    /// The expectation type, such as `expect_column_values_to_not_be_null`.
    #[serde(rename = "type", alias = "expectation_type")]
    pub kind: String,
    /// Its arguments.
    #[serde(default)]
    pub kwargs: Map<String, Value>,
    /// Free-form notes.
    #[serde(default)]
    pub meta: Map<String, Value>,
    /// GX's identifier, kept when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// A suite: a named list of expectations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExpectationSuite {
    /// Suite name.
    #[serde(alias = "expectation_suite_name")]
    pub name: String,
    /// GX's identifier, kept when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The expectations, evaluated in this order.
    pub expectations: Vec<ExpectationConfig>,
    /// Free-form notes.
    #[serde(default)]
    pub meta: Map<String, Value>,
    /// Notes for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<Value>,
}

impl ExpectationSuite {
    /// Parses a suite from JSON text.
    pub fn from_json(text: &str) -> Result<ExpectationSuite, SuiteError> {
        serde_json::from_str(text).map_err(|e| SuiteError::Malformed(e.to_string()))
    }

    /// Reads a suite file.
    pub fn load(path: &Path) -> Result<ExpectationSuite, SuiteError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| SuiteError::Malformed(format!("cannot read {}: {e}", path.display())))?;
        ExpectationSuite::from_json(&text).map_err(|e| match e {
            SuiteError::Malformed(message) => SuiteError::Malformed(format!("{}: {message}", path.display())),
            other => other,
        })
    }

    /// The suite as GX 1.x JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("suites serialise")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_layouts_and_writes_the_current_one() {
        let modern = r#"{"name": "s", "expectations": [{"type": "expect_column_to_exist", "kwargs": {"column": "a"}}],
                         "meta": {"great_expectations_version": "1.24.1"}}"#;
        let legacy = r#"{"expectation_suite_name": "s", "expectations": [{"expectation_type": "expect_column_to_exist",
                         "kwargs": {"column": "a"}, "meta": {}}], "meta": {"great_expectations_version": "1.24.1"}}"#;
        let (modern, legacy) = (
            ExpectationSuite::from_json(modern).unwrap(),
            ExpectationSuite::from_json(legacy).unwrap(),
        );
        assert_eq!(modern, legacy);
        let written: Value = serde_json::from_str(&modern.to_json()).unwrap();
        assert_eq!(written["expectations"][0]["type"], "expect_column_to_exist");
        assert_eq!(written["name"], "s");
        assert!(
            ExpectationSuite::from_json("{}")
                .unwrap_err()
                .to_string()
                .contains("missing field")
        );
    }
}
