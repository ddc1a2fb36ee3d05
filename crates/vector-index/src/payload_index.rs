//! Payload indexes: for one top-level field, which points hold which values, so a filter's matching points
//! can be listed (or counted) without reading every payload.
//!
//! An index lists *candidates*, and every candidate is checked against the whole filter before it is used:
//! entries follow the payload (removed when it changes or the point goes), and a condition is only served
//! when the index holds every value that could pass it.

use crate::filter::{FieldTest, KeyPath, MatchValue, parse_datetime, path::Step};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// The kinds of payload index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// Exact strings.
    Keyword,
    /// Integers.
    Integer,
    /// Numbers.
    Float,
    /// Booleans.
    Bool,
    /// RFC 3339 date-times.
    Datetime,
    /// Words of a text (listed for text conditions).
    Text,
    /// UUID strings (kept as keywords).
    Uuid,
}

impl FieldType {
    /// The type named as Qdrant names it (`keyword`, `integer`, `float`, `bool`, `datetime`, `text`, `uuid`).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "keyword" => FieldType::Keyword,
            "integer" => FieldType::Integer,
            "float" => FieldType::Float,
            "bool" => FieldType::Bool,
            "datetime" => FieldType::Datetime,
            "text" => FieldType::Text,
            "uuid" => FieldType::Uuid,
            _ => return None,
        })
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            FieldType::Keyword => "keyword",
            FieldType::Integer => "integer",
            FieldType::Float => "float",
            FieldType::Bool => "bool",
            FieldType::Datetime => "datetime",
            FieldType::Text => "text",
            FieldType::Uuid => "uuid",
        }
    }
}

/// Sortable key of a number (floats by their total order, so ranges are BTreeMap ranges).
fn ordered(number: f64) -> u64 {
    // -0.0 and 0.0 are equal, so they share a key.
    let bits = if number == 0.0 {
        0f64.to_bits()
    } else {
        number.to_bits()
    };
    if bits >> 63 == 1 { !bits } else { bits | (1 << 63) }
}

/// One field's index.
#[derive(Debug, Clone)]
pub struct FieldIndex {
    field_type: FieldType,
    path: KeyPath,
    words: HashMap<String, Vec<u32>>,
    numbers: BTreeMap<u64, Vec<u32>>,
    /// Points with at least one indexed value.
    points: usize,
}

impl FieldIndex {
    /// An empty index of `key` (any key path) as `field_type`.
    pub fn new(path: KeyPath, field_type: FieldType) -> Self {
        FieldIndex {
            field_type,
            path,
            words: HashMap::new(),
            numbers: BTreeMap::new(),
            points: 0,
        }
    }

    /// The indexed type.
    pub fn field_type(&self) -> FieldType {
        self.field_type
    }

    /// Points with at least one value of the indexed type.
    pub fn points(&self) -> usize {
        self.points
    }

    /// The keys point `node`'s payload is listed under: words for keyword, uuid, text and bool indexes,
    /// sortable numbers for the others (an integer index lists every number, so a range over it misses no
    /// float).
    fn keys(&self, payload: &Value) -> (Vec<String>, Vec<u64>) {
        let mut values = Vec::new();
        self.path.values(payload, true, &mut values);
        let (mut words, mut numbers) = (Vec::new(), Vec::new());
        for value in values {
            match (self.field_type, value) {
                (FieldType::Keyword | FieldType::Uuid, Value::String(text)) => words.push(text.clone()),
                (FieldType::Text, Value::String(text)) => words.extend(crate::filter::words(text)),
                (FieldType::Bool, Value::Bool(flag)) => words.push(flag.to_string()),
                (FieldType::Integer | FieldType::Float, Value::Number(number)) => {
                    numbers.extend(number.as_f64().map(ordered))
                }
                (FieldType::Datetime, Value::String(text)) => {
                    numbers.extend(parse_datetime(text).map(|instant| ordered(instant as f64)))
                }
                _ => {}
            }
        }
        (words, numbers)
    }

    /// Records the values of point `node`'s payload.
    pub fn add(&mut self, node: u32, payload: &Value) {
        let (words, numbers) = self.keys(payload);
        if words.is_empty() && numbers.is_empty() {
            return;
        }
        for word in words {
            insert(self.words.entry(word).or_default(), node);
        }
        for number in numbers {
            insert(self.numbers.entry(number).or_default(), node);
        }
        self.points += 1;
    }

    /// Forgets point `node`'s entries for the payload it had (before the payload changes or the point goes).
    pub fn remove(&mut self, node: u32, payload: &Value) {
        let (words, numbers) = self.keys(payload);
        if words.is_empty() && numbers.is_empty() {
            return;
        }
        for word in words {
            if let Some(list) = self.words.get_mut(&word) {
                if let Ok(at) = list.binary_search(&node) {
                    list.remove(at);
                }
                if list.is_empty() {
                    self.words.remove(&word);
                }
            }
        }
        for number in numbers {
            if let Some(list) = self.numbers.get_mut(&number) {
                if let Ok(at) = list.binary_search(&node) {
                    list.remove(at);
                }
                if list.is_empty() {
                    self.numbers.remove(&number);
                }
            }
        }
        self.points = self.points.saturating_sub(1);
    }

    /// Whether this index can list the candidates of a condition on `key` with `test`.
    pub fn serves(&self, key: &KeyPath, test: &FieldTest) -> bool {
        if key.steps() != self.path.steps() {
            return false;
        }
        matches!(
            (self.field_type, test),
            (
                FieldType::Keyword | FieldType::Uuid,
                FieldTest::Value(MatchValue::Keyword(_))
            ) | (
                FieldType::Integer,
                FieldTest::Value(MatchValue::Integer(_)) | FieldTest::Range(_)
            ) | (FieldType::Float, FieldTest::Range(_))
                | (FieldType::Bool, FieldTest::Value(MatchValue::Bool(_)))
                | (FieldType::Datetime, FieldTest::DatetimeRange(_))
                | (FieldType::Text, FieldTest::Text(_))
        ) || match (self.field_type, test) {
            // A list of values only when every value is of the indexed kind.
            (FieldType::Keyword | FieldType::Uuid, FieldTest::Any(values)) => {
                values.iter().all(|value| matches!(value, MatchValue::Keyword(_)))
            }
            (FieldType::Integer, FieldTest::Any(values)) => {
                values.iter().all(|value| matches!(value, MatchValue::Integer(_)))
            }
            _ => false,
        }
    }

    /// The posting lists of a condition this index serves, or `None` when they hold more than `limit`
    /// entries.
    fn lists(&self, test: &FieldTest, limit: usize) -> Option<Vec<&Vec<u32>>> {
        let mut lists: Vec<&Vec<u32>> = Vec::new();
        match test {
            FieldTest::Value(MatchValue::Keyword(text)) => {
                self.words.get(text).into_iter().for_each(|list| lists.push(list))
            }
            FieldTest::Value(MatchValue::Bool(flag)) => self
                .words
                .get(&flag.to_string())
                .into_iter()
                .for_each(|list| lists.push(list)),
            FieldTest::Value(MatchValue::Integer(integer)) => self
                .numbers
                .get(&ordered(*integer as f64))
                .into_iter()
                .for_each(|list| lists.push(list)),
            FieldTest::Any(values) => {
                for value in values {
                    let list = match value {
                        MatchValue::Keyword(text) => self.words.get(text),
                        MatchValue::Integer(integer) => self.numbers.get(&ordered(*integer as f64)),
                        MatchValue::Bool(flag) => self.words.get(&flag.to_string()),
                    };
                    lists.extend(list);
                }
            }
            FieldTest::Text(query) => {
                // Points holding the rarest word of the query.
                let rarest = query
                    .iter()
                    .map(|word| self.words.get(word))
                    .min_by_key(|list| list.map_or(0, |list| list.len()));
                match rarest {
                    Some(Some(list)) => lists.push(list),
                    Some(None) => {}
                    None => return None,
                }
            }
            FieldTest::Range(bounds) => {
                let low = bounds.gt.into_iter().chain(bounds.gte).map(ordered).max();
                let high = bounds.lt.into_iter().chain(bounds.lte).map(ordered).min();
                if !self.ranged(low, high, limit, &mut lists) {
                    return None;
                }
            }
            FieldTest::DatetimeRange(bounds) => {
                let key = |instant: i128| ordered(instant as f64);
                let low = bounds.gt.into_iter().chain(bounds.gte).map(key).max();
                let high = bounds.lt.into_iter().chain(bounds.lte).map(key).min();
                if !self.ranged(low, high, limit, &mut lists) {
                    return None;
                }
            }
            _ => return None,
        }
        if lists.iter().map(|list| list.len()).sum::<usize>() > limit {
            return None;
        }
        Some(lists)
    }

    /// The candidates of a condition this index serves, sorted and without repeats, or `None` when it
    /// would be more than `limit` (so a broad condition costs no more than `limit` entries to look at).
    pub fn candidates(&self, test: &FieldTest, limit: usize) -> Option<Vec<u32>> {
        let lists = self.lists(test, limit)?;
        let mut merged: Vec<u32> = lists.into_iter().flatten().copied().collect();
        merged.sort_unstable();
        merged.dedup();
        Some(merged)
    }

    /// How many entries the lists of a condition hold (an upper bound on the points passing it).
    pub fn count(&self, test: &FieldTest) -> Option<usize> {
        Some(self.lists(test, usize::MAX)?.iter().map(|list| list.len()).sum())
    }

    /// Sets the bit of every candidate of a condition in `bits` (one bit per point number).
    pub fn mark(&self, test: &FieldTest, bits: &mut [u64]) {
        for list in self.lists(test, usize::MAX).unwrap_or_default() {
            for &node in list {
                if let Some(word) = bits.get_mut(node as usize / 64) {
                    *word |= 1 << (node % 64);
                }
            }
        }
    }

    /// Adds the lists of every number key between `low` and `high` (inclusive, either open), answering
    /// false once they hold more than `limit` entries.
    fn ranged<'a>(&'a self, low: Option<u64>, high: Option<u64>, limit: usize, lists: &mut Vec<&'a Vec<u32>>) -> bool {
        let (low, high) = (low.unwrap_or(0), high.unwrap_or(u64::MAX));
        if low > high {
            return true;
        }
        let mut total = 0usize;
        for (_, list) in self.numbers.range(low..=high) {
            total += list.len();
            if total > limit {
                return false;
            }
            lists.push(list);
        }
        true
    }

    /// The top-level key of the index when its path is a single key.
    pub fn top_key(&self) -> Option<&str> {
        match self.path.steps() {
            [Step::Key(key)] => Some(key),
            _ => None,
        }
    }
}

/// Puts a node in a posting list once, keeping it sorted (new points come last, so this is usually a push).
fn insert(list: &mut Vec<u32>, node: u32) {
    if list.last().is_none_or(|last| *last < node) {
        list.push(node);
    } else if let Err(at) = list.binary_search(&node) {
        list.insert(at, node);
    }
}
