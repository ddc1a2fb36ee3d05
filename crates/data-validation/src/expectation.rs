//! Expectations parsed from their configuration into typed rules, so every argument is checked before data is
//! read.

use regex::Regex;
use serde_json::{Map, Value};

use crate::error::SuiteError;
use crate::suite::ExpectationConfig;

/// Bounds of a range; either side may be open (`null` in the suite).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Bounds {
    /// Lower bound.
    pub min: Option<f64>,
    /// Upper bound.
    pub max: Option<f64>,
    /// Lower bound excluded.
    pub strict_min: bool,
    /// Upper bound excluded.
    pub strict_max: bool,
}

impl Bounds {
    /// Whether `value` lies within the bounds.
    pub fn contains(&self, value: f64) -> bool {
        let above = match self.min {
            Some(min) if self.strict_min => value > min,
            Some(min) => value >= min,
            None => true,
        };
        let below = match self.max {
            Some(max) if self.strict_max => value < max,
            Some(max) => value <= max,
            None => true,
        };
        above && below
    }
}

/// The values of a set, split by type (a column matches the members of its own type, as pandas' `isin`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ValueSet {
    /// Numbers.
    pub numbers: Vec<f64>,
    /// Strings.
    pub texts: Vec<String>,
    /// Booleans.
    pub booleans: Vec<bool>,
}

/// A per-value rule with `mostly` semantics.
#[derive(Debug, Clone)]
pub enum ValueRule {
    /// Not null (nulls are the unexpected values).
    NotNull,
    /// Within bounds.
    Between(Bounds),
    /// In a set.
    InSet(ValueSet),
    /// Not in a set.
    NotInSet(ValueSet),
    /// Matches a regular expression somewhere (Python's `re.search`).
    MatchRegex(Regex),
    /// Appears once.
    Unique,
    /// Length in characters within bounds.
    LengthBetween(Bounds),
    /// Not below (or, strictly, not at or below) the previous non-null value.
    Increasing {
        /// Equal neighbours are unexpected.
        strictly: bool,
    },
}

/// A column statistic checked against bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    /// Mean.
    Mean,
    /// Median (mean of the two middle values for an even count, as pandas).
    Median,
    /// Sample standard deviation (divisor n − 1, as pandas).
    Stdev,
    /// Minimum.
    Min,
    /// Maximum.
    Max,
    /// Sum.
    Sum,
    /// Distinct non-null values ÷ non-null values.
    ProportionUnique,
}

/// A typed expectation.
#[derive(Debug, Clone)]
pub enum Expectation {
    /// `expect_column_to_exist`.
    ColumnToExist {
        /// Column name.
        column: String,
        /// Expected position (0-based), if given.
        index: Option<usize>,
    },
    /// `expect_table_columns_to_match_ordered_list`.
    ColumnsMatchOrderedList {
        /// Expected columns, in order.
        columns: Vec<String>,
    },
    /// `expect_table_columns_to_match_set`.
    ColumnsMatchSet {
        /// Expected columns.
        columns: Vec<String>,
        /// When false, the data may have more columns.
        exact: bool,
    },
    /// `expect_table_row_count_to_be_between`.
    RowCountBetween(Bounds),
    /// Column map expectations (`expect_column_values_to_...`, `expect_column_value_lengths_to_be_between`).
    Values {
        /// Column name.
        column: String,
        /// Share of considered values that must pass.
        mostly: f64,
        /// The rule.
        rule: ValueRule,
    },
    /// `expect_column_values_to_be_of_type`.
    OfType {
        /// Column name.
        column: String,
        /// Expected type name.
        type_name: String,
    },
    /// `expect_column_{mean,median,stdev,min,max,sum}_to_be_between`,
    /// `expect_column_proportion_of_unique_values_to_be_between`.
    Aggregate {
        /// Column name.
        column: String,
        /// The statistic.
        aggregate: Aggregate,
        /// Its bounds.
        bounds: Bounds,
    },
}

/// Every expectation type evaluated.
pub const SUPPORTED: &[&str] = &[
    "expect_column_to_exist",
    "expect_table_columns_to_match_ordered_list",
    "expect_table_columns_to_match_set",
    "expect_table_row_count_to_be_between",
    "expect_column_values_to_not_be_null",
    "expect_column_values_to_be_between",
    "expect_column_values_to_be_in_set",
    "expect_column_values_to_not_be_in_set",
    "expect_column_values_to_match_regex",
    "expect_column_values_to_be_unique",
    "expect_column_value_lengths_to_be_between",
    "expect_column_values_to_be_of_type",
    "expect_column_mean_to_be_between",
    "expect_column_median_to_be_between",
    "expect_column_stdev_to_be_between",
    "expect_column_min_to_be_between",
    "expect_column_max_to_be_between",
    "expect_column_sum_to_be_between",
    "expect_column_proportion_of_unique_values_to_be_between",
    "expect_column_values_to_be_increasing",
];

struct Arguments<'a> {
    index: usize,
    kind: &'a str,
    kwargs: &'a Map<String, Value>,
}

impl Arguments<'_> {
    fn bad(&self, message: String) -> SuiteError {
        SuiteError::BadArgument {
            index: self.index,
            kind: self.kind.to_string(),
            message,
        }
    }

    fn string(&self, name: &str) -> Result<String, SuiteError> {
        match self.kwargs.get(name) {
            Some(Value::String(text)) => Ok(text.clone()),
            Some(other) => Err(self.bad(format!("'{name}' must be a string, not {other}"))),
            None => Err(self.bad(format!("'{name}' is required"))),
        }
    }

    fn column(&self) -> Result<String, SuiteError> {
        self.string("column")
    }

    fn boolean(&self, name: &str, default: bool) -> Result<bool, SuiteError> {
        match self.kwargs.get(name) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(value)) => Ok(*value),
            Some(other) => Err(self.bad(format!("'{name}' must be true or false, not {other}"))),
        }
    }

    fn number(&self, name: &str) -> Result<Option<f64>, SuiteError> {
        match self.kwargs.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(number)) => Ok(number.as_f64()),
            Some(other) => Err(self.bad(format!("'{name}' must be a number or null, not {other}"))),
        }
    }

    fn bounds(&self) -> Result<Bounds, SuiteError> {
        let bounds = Bounds {
            min: self.number("min_value")?,
            max: self.number("max_value")?,
            strict_min: self.boolean("strict_min", false)?,
            strict_max: self.boolean("strict_max", false)?,
        };
        if let (Some(min), Some(max)) = (bounds.min, bounds.max)
            && min > max
        {
            return Err(self.bad(format!("min_value {min} is above max_value {max}")));
        }
        Ok(bounds)
    }

    fn mostly(&self) -> Result<f64, SuiteError> {
        let mostly = self.number("mostly")?.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&mostly) {
            return Err(self.bad(format!("'mostly' must lie in [0, 1], not {mostly}")));
        }
        Ok(mostly)
    }

    fn names(&self, name: &str) -> Result<Vec<String>, SuiteError> {
        match self.kwargs.get(name) {
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(text) => Ok(text.clone()),
                    other => Err(self.bad(format!("'{name}' must list column names, not {other}"))),
                })
                .collect(),
            Some(other) => Err(self.bad(format!("'{name}' must be a list of column names, not {other}"))),
            None => Err(self.bad(format!("'{name}' is required"))),
        }
    }

    fn value_set(&self) -> Result<ValueSet, SuiteError> {
        let Some(Value::Array(items)) = self.kwargs.get("value_set") else {
            return Err(self.bad("'value_set' must be a list".to_string()));
        };
        let mut set = ValueSet::default();
        for item in items {
            match item {
                Value::Number(n) => set.numbers.extend(n.as_f64()),
                Value::String(s) => set.texts.push(s.clone()),
                Value::Bool(b) => set.booleans.push(*b),
                Value::Null => {}
                other => return Err(self.bad(format!("'value_set' holds {other}, which is not a plain value"))),
            }
        }
        Ok(set)
    }
}

impl Expectation {
    /// Parses the expectation at `index` of a suite.
    pub fn parse(index: usize, config: &ExpectationConfig) -> Result<Expectation, SuiteError> {
        let kind = config.kind.as_str();
        let args = Arguments {
            index,
            kind,
            kwargs: &config.kwargs,
        };
        let values = |rule: ValueRule| -> Result<Expectation, SuiteError> {
            Ok(Expectation::Values {
                column: args.column()?,
                mostly: args.mostly()?,
                rule,
            })
        };
        let aggregate = |aggregate: Aggregate| -> Result<Expectation, SuiteError> {
            Ok(Expectation::Aggregate {
                column: args.column()?,
                aggregate,
                bounds: args.bounds()?,
            })
        };
        match kind {
            "expect_column_to_exist" => Ok(Expectation::ColumnToExist {
                column: args.column()?,
                index: args.number("column_index")?.map(|i| i as usize),
            }),
            "expect_table_columns_to_match_ordered_list" => Ok(Expectation::ColumnsMatchOrderedList {
                columns: args.names("column_list")?,
            }),
            "expect_table_columns_to_match_set" => Ok(Expectation::ColumnsMatchSet {
                columns: args.names("column_set")?,
                exact: args.boolean("exact_match", true)?,
            }),
            "expect_table_row_count_to_be_between" => Ok(Expectation::RowCountBetween(args.bounds()?)),
            "expect_column_values_to_not_be_null" => values(ValueRule::NotNull),
            "expect_column_values_to_be_between" => values(ValueRule::Between(args.bounds()?)),
            "expect_column_values_to_be_in_set" => values(ValueRule::InSet(args.value_set()?)),
            "expect_column_values_to_not_be_in_set" => values(ValueRule::NotInSet(args.value_set()?)),
            "expect_column_values_to_match_regex" => {
                let pattern = args.string("regex")?;
                let regex =
                    Regex::new(&pattern).map_err(|e| args.bad(format!("regex {pattern:?} does not compile: {e}")))?;
                values(ValueRule::MatchRegex(regex))
            }
            "expect_column_values_to_be_unique" => values(ValueRule::Unique),
            "expect_column_value_lengths_to_be_between" => values(ValueRule::LengthBetween(args.bounds()?)),
            "expect_column_values_to_be_increasing" => values(ValueRule::Increasing {
                strictly: args.boolean("strictly", false)?,
            }),
            "expect_column_values_to_be_of_type" => Ok(Expectation::OfType {
                column: args.column()?,
                type_name: args.string("type_")?,
            }),
            "expect_column_mean_to_be_between" => aggregate(Aggregate::Mean),
            "expect_column_median_to_be_between" => aggregate(Aggregate::Median),
            "expect_column_stdev_to_be_between" => aggregate(Aggregate::Stdev),
            "expect_column_min_to_be_between" => aggregate(Aggregate::Min),
            "expect_column_max_to_be_between" => aggregate(Aggregate::Max),
            "expect_column_sum_to_be_between" => aggregate(Aggregate::Sum),
            "expect_column_proportion_of_unique_values_to_be_between" => aggregate(Aggregate::ProportionUnique),
            other => Err(SuiteError::UnknownExpectation {
                index,
                kind: other.to_string(),
                supported: SUPPORTED.join(", "),
            }),
        }
    }

    /// The column the expectation reads, if it reads one.
    pub fn column(&self) -> Option<&str> {
        match self {
            Expectation::Values { column, .. }
            | Expectation::OfType { column, .. }
            | Expectation::Aggregate { column, .. } => Some(column),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(kind: &str, kwargs: Value) -> ExpectationConfig {
        ExpectationConfig {
            kind: kind.to_string(),
            kwargs: kwargs.as_object().unwrap().clone(),
            meta: Map::new(),
            id: None,
        }
    }

    #[test]
    fn arguments_are_checked_up_front() {
        let unknown = Expectation::parse(3, &config("expect_column_to_be_fabulous", serde_json::json!({})));
        let message = unknown.unwrap_err().to_string();
        assert!(
            message.contains("expectation 3 has type 'expect_column_to_be_fabulous'"),
            "{message}"
        );
        let bad = Expectation::parse(
            0,
            &config(
                "expect_column_values_to_match_regex",
                serde_json::json!({"column": "a", "regex": "("}),
            ),
        );
        assert!(bad.unwrap_err().to_string().contains("does not compile"));
        let inverted = Expectation::parse(
            0,
            &config(
                "expect_column_values_to_be_between",
                serde_json::json!({"column": "a", "min_value": 5, "max_value": 1}),
            ),
        );
        assert!(inverted.unwrap_err().to_string().contains("above max_value"));
        let mostly = Expectation::parse(
            0,
            &config(
                "expect_column_values_to_not_be_null",
                serde_json::json!({"column": "a", "mostly": 1.5}),
            ),
        );
        assert!(mostly.unwrap_err().to_string().contains("'mostly'"));
        let missing = Expectation::parse(
            0,
            &config("expect_column_mean_to_be_between", serde_json::json!({"min_value": 1})),
        );
        assert!(missing.unwrap_err().to_string().contains("'column' is required"));
    }

    #[test]
    fn bounds_honour_strictness_and_open_sides() {
        let closed = Bounds {
            min: Some(1.0),
            max: Some(2.0),
            ..Default::default()
        };
        assert!(closed.contains(1.0) && closed.contains(2.0) && !closed.contains(2.5));
        let strict = Bounds {
            strict_min: true,
            strict_max: true,
            ..closed
        };
        assert!(!strict.contains(1.0) && !strict.contains(2.0) && strict.contains(1.5));
        assert!(Bounds::default().contains(f64::MAX));
    }
}
