//! Counting repeated and distinct cell values without an allocation per row: numbers by their bits, text by
//! borrowed lookups (a string is copied only the first time it is seen), hashed with a fast multiplicative hash
//! (the data are the user's own files, so hash flooding is not a concern here).

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasherDefault;

use loopline_tabular::rows::FastHasher;

use serde_json::Value;

use crate::cells::Cell;

/// Hash-map state for [`FastHasher`].
pub type FastState = BuildHasherDefault<FastHasher>;
type Fast = FastState;

/// A number's identity: its bits, with −0 read as 0.
fn number_key(value: f64) -> u64 {
    if value == 0.0 { 0 } else { value.to_bits() }
}

/// Where a value was seen: how often, the first row, and the next rows up to a limit.
#[derive(Default)]
struct Seen {
    count: u64,
    first: u64,
    more: Vec<u64>,
}

impl Seen {
    fn add(&mut self, row: u64, keep: usize) {
        if self.count == 0 {
            self.first = row;
        } else if self.more.len() + 1 < keep {
            self.more.push(row);
        }
        self.count += 1;
    }
}

/// Occurrences of every value, to find the repeated ones. Numbers are kept as `(bits, row)` pairs and sorted at
/// the end (sequential writes beat a hash table of a million random probes); text goes through a hash map.
#[derive(Default)]
pub struct ValueCounter {
    numbers: Vec<(u64, u64)>,
    texts: HashMap<String, Seen, Fast>,
    booleans: [Seen; 2],
    integer: bool,
}

impl ValueCounter {
    /// Records `cell` at `row`, keeping at most `keep` rows per value.
    pub fn add(&mut self, cell: Cell<'_>, row: u64, integer: bool, keep: usize) {
        self.integer = integer;
        match cell {
            Cell::Number(n) => self.numbers.push((number_key(n), row)),
            Cell::Text(text) => match self.texts.get_mut(text) {
                Some(seen) => seen.add(row, keep),
                None => {
                    let mut seen = Seen::default();
                    seen.add(row, keep);
                    self.texts.insert(text.to_string(), seen);
                }
            },
            Cell::Bool(b) => self.booleans[usize::from(b)].add(row, keep),
        }
    }

    /// Cells holding a value that occurs more than once, and the first `limit` of them as `(row, value)` in row
    /// order.
    pub fn repeated(&mut self, limit: usize) -> (u64, Vec<(u64, Value)>) {
        let mut count = 0;
        let mut listed = Vec::new();
        let mut collect = |seen: &Seen, value: &dyn Fn() -> Value| {
            if seen.count > 1 {
                count += seen.count;
                for row in std::iter::once(seen.first).chain(seen.more.iter().copied()) {
                    listed.push((row, value()));
                }
            }
        };
        self.numbers.sort_unstable();
        let integer = self.integer;
        for run in self.numbers.chunk_by(|a, b| a.0 == b.0) {
            let mut seen = Seen::default();
            for (_, row) in run {
                seen.add(*row, limit);
            }
            collect(&seen, &|| Cell::Number(f64::from_bits(run[0].0)).to_json(integer));
        }
        for (text, seen) in &self.texts {
            collect(seen, &|| Value::from(text.as_str()));
        }
        for (index, seen) in self.booleans.iter().enumerate() {
            collect(seen, &|| Value::from(index == 1));
        }
        listed.sort_by_key(|(row, _)| *row);
        listed.truncate(limit);
        (count, listed)
    }
}

/// The distinct values seen.
#[derive(Default)]
pub struct DistinctSet {
    numbers: HashSet<u64, Fast>,
    texts: HashSet<String, Fast>,
    booleans: [bool; 2],
}

impl DistinctSet {
    /// Records `cell`.
    pub fn add(&mut self, cell: Cell<'_>) {
        match cell {
            Cell::Number(n) => {
                self.numbers.insert(number_key(n));
            }
            Cell::Text(text) => {
                if !self.texts.contains(text) {
                    self.texts.insert(text.to_string());
                }
            }
            Cell::Bool(b) => self.booleans[usize::from(b)] = true,
        }
    }

    /// Distinct values seen.
    pub fn len(&self) -> usize {
        self.numbers.len() + self.texts.len() + self.booleans.iter().filter(|b| **b).count()
    }

    /// True before any value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_values_are_listed_in_row_order() {
        let mut counter = ValueCounter::default();
        for (row, value) in [1.0, 2.0, 1.0, 3.0, 2.0, -0.0, 0.0].into_iter().enumerate() {
            counter.add(Cell::Number(value), row as u64, true, 20);
        }
        let (count, listed) = counter.repeated(20);
        assert_eq!(count, 6);
        let rows: Vec<u64> = listed.iter().map(|(r, _)| *r).collect();
        assert_eq!(rows, vec![0, 1, 2, 4, 5, 6]);
        assert_eq!(listed[0].1, Value::from(1));
        let mut distinct = DistinctSet::default();
        for text in ["a", "b", "a"] {
            distinct.add(Cell::Text(text));
        }
        distinct.add(Cell::Bool(true));
        assert_eq!(distinct.len(), 3);
    }
}
