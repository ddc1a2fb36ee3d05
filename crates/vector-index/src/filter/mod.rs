//! Qdrant's filter grammar: parsed from JSON with bounds, then evaluated against a point's id and payload.
//!
//! `must` (all), `should` (at least one; an empty list is no constraint), `must_not` (none), `min_should`
//! (at least `min_count` of its conditions); each clause one condition or a list; filters nest. Conditions:
//! field conditions (`match` value/any/except/text/text_any/phrase/prefix, `range` over numbers or
//! date-times, `values_count`, `is_empty`, `is_null`), `has_id`, `has_vector`, `is_empty`/`is_null` by
//! key, and `nested` (a filter applied to each object of an array). An array payload field matches a
//! condition when any of its elements does.

mod datetime;
mod eval;
mod parse;
pub mod path;

pub use datetime::parse_datetime;
pub use eval::PointView;
pub use path::KeyPath;

use crate::point_id::PointId;
use std::collections::HashSet;

/// Deepest nesting of filters accepted.
pub const MAX_DEPTH: usize = 32;
/// Most conditions (and listed values) one filter may hold.
pub const MAX_CONDITIONS: usize = 10_000;

/// A filter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// All must match.
    pub must: Vec<Condition>,
    /// At least one must match, when there are any.
    pub should: Vec<Condition>,
    /// None may match.
    pub must_not: Vec<Condition>,
    /// At least `min_count` of these must match.
    pub min_should: Option<(Vec<Condition>, usize)>,
}

/// One condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// A test of a payload field's values.
    Field {
        /// The field.
        key: KeyPath,
        /// The test.
        test: FieldTest,
    },
    /// The point's id is one of these.
    HasId(HashSet<PointId>),
    /// The point has this named vector ("" for the unnamed one).
    HasVector(String),
    /// A filter applied to each object of an array field; true when one object matches it.
    Nested {
        /// The array field.
        key: KeyPath,
        /// The filter for each object.
        filter: Box<Filter>,
    },
    /// A nested filter.
    Filter(Box<Filter>),
}

/// A test of a field's values.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldTest {
    /// Equal to the value.
    Value(MatchValue),
    /// Equal to one of the values.
    Any(HashSet<MatchValue>),
    /// A value (not null) equal to none of these.
    Except(HashSet<MatchValue>),
    /// A string containing every word of the text (words: runs of letters and digits, lower-cased).
    Text(Vec<String>),
    /// A string containing one of the words.
    TextAny(Vec<String>),
    /// A string containing the words in this order, next to each other.
    Phrase(Vec<String>),
    /// A string starting with this (bytewise, case-sensitive).
    Prefix(String),
    /// A number within the bounds.
    Range(Bounds<f64>),
    /// A date-time (RFC 3339 string) within the bounds, in nanoseconds since the epoch.
    DatetimeRange(Bounds<i128>),
    /// A number of values within the bounds.
    ValuesCount(Bounds<u64>),
    /// The field is (or is not) empty: missing, null or an empty array.
    IsEmpty(bool),
    /// The field is (or is not) null.
    IsNull(bool),
}

/// A value a field is matched against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MatchValue {
    /// A string, matched exactly.
    Keyword(String),
    /// An integer (a float payload value never matches one).
    Integer(i64),
    /// A boolean.
    Bool(bool),
}

/// Bounds of a range, each optional.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Bounds<T> {
    /// Greater than.
    pub gt: Option<T>,
    /// Greater than or equal.
    pub gte: Option<T>,
    /// Less than.
    pub lt: Option<T>,
    /// Less than or equal.
    pub lte: Option<T>,
}

impl<T: PartialOrd + Copy> Bounds<T> {
    /// Whether `value` is within every bound given.
    pub fn contains(&self, value: T) -> bool {
        self.gt.is_none_or(|bound| value > bound)
            && self.gte.is_none_or(|bound| value >= bound)
            && self.lt.is_none_or(|bound| value < bound)
            && self.lte.is_none_or(|bound| value <= bound)
    }
}

/// A filter that could not be read: where in it, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct FilterError {
    /// Where in the filter, e.g. `filter.must[0].match`.
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

impl Filter {
    /// Reads a filter from its JSON; `at` names where it sits in the request (e.g. `filter`).
    pub fn from_json(value: &serde_json::Value, at: &str) -> Result<Self, FilterError> {
        parse::Parser::default().filter(value, at, 0)
    }

    /// Whether the filter places no constraint at all.
    pub fn is_empty(&self) -> bool {
        self.must.is_empty() && self.should.is_empty() && self.must_not.is_empty() && self.min_should.is_none()
    }
}

/// The words of a text as text conditions see them: runs of letters and digits, lower-cased.
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|character: char| !character.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
}
