//! Evaluating a suite in one pass: every expectation keeps a small state that each record batch updates, and the
//! results are read from the states at the end.

use std::collections::{HashMap, HashSet};

use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, Schema};
use loopline_tabular::profile::compensated_sum;
use serde_json::{Map, Value, json};

use crate::cells::{Cell, Cells};
use crate::distinct::{DistinctSet, FastState, ValueCounter};
use crate::error::SuiteError;
use crate::expectation::{Aggregate, Bounds, Expectation, ValueRule, ValueSet};
use crate::result::{ExceptionInfo, ExpectationResult, PARTIAL_UNEXPECTED_COUNT, ValidationResult};
use crate::suite::{ExpectationConfig, ExpectationSuite};

struct Membership {
    numbers: HashSet<u64, FastState>,
    texts: HashSet<String, FastState>,
    booleans: Vec<bool>,
}

impl Membership {
    fn of(set: &ValueSet) -> Membership {
        Membership {
            numbers: set
                .numbers
                .iter()
                .map(|n| if *n == 0.0 { 0 } else { n.to_bits() })
                .collect(),
            texts: set.texts.iter().cloned().collect(),
            booleans: set.booleans.clone(),
        }
    }

    fn contains(&self, cell: Cell<'_>) -> bool {
        match cell {
            Cell::Number(n) => self.numbers.contains(&if n == 0.0 { 0 } else { n.to_bits() }),
            Cell::Text(t) => self.texts.contains(t),
            Cell::Bool(b) => self.booleans.contains(&b),
        }
    }
}

/// Counts of a value expectation.
#[derive(Default)]
struct Tally {
    element_count: u64,
    missing: u64,
    unexpected: u64,
    partial: Vec<(u64, Value)>,
}

struct ValuesState {
    mostly: f64,
    rule: ValueRule,
    membership: Option<Membership>,
    tally: Tally,
    previous: Option<f64>,
    counter: ValueCounter,
}

#[derive(Default)]
struct AggregateState {
    values: Vec<f64>,
    distinct: DistinctSet,
    non_null: u64,
    min: Option<f64>,
    max: Option<f64>,
}

enum State {
    Table,
    Values(Box<ValuesState>),
    Aggregate(Aggregate, Bounds, AggregateState),
    OfType(String),
}

struct Entry {
    expectation: Expectation,
    config: ExpectationConfig,
    state: State,
    exception: Option<String>,
}

/// A suite being evaluated over a stream of batches.
pub struct Validator {
    suite_name: String,
    schema: Schema,
    rows: u64,
    entries: Vec<Entry>,
}

fn rule_needs(rule: &ValueRule) -> Option<&'static str> {
    match rule {
        ValueRule::Between(_) | ValueRule::Increasing { .. } => Some("numbers"),
        ValueRule::LengthBetween(_) => Some("text"),
        _ => None,
    }
}

impl Validator {
    /// Checks every expectation of the suite (unknown types and bad arguments are refused here, naming the
    /// expectation) and prepares to read batches with `schema`.
    pub fn new(suite: &ExpectationSuite, schema: &Schema) -> Result<Validator, SuiteError> {
        let mut entries = Vec::with_capacity(suite.expectations.len());
        for (index, config) in suite.expectations.iter().enumerate() {
            let expectation = Expectation::parse(index, config)?;
            let state = match &expectation {
                Expectation::Values { mostly, rule, .. } => State::Values(Box::new(ValuesState {
                    mostly: *mostly,
                    membership: match rule {
                        ValueRule::InSet(set) | ValueRule::NotInSet(set) => Some(Membership::of(set)),
                        _ => None,
                    },
                    rule: rule.clone(),
                    tally: Tally::default(),
                    previous: None,
                    counter: ValueCounter::default(),
                })),
                Expectation::Aggregate { aggregate, bounds, .. } => {
                    State::Aggregate(*aggregate, *bounds, AggregateState::default())
                }
                Expectation::OfType { type_name, .. } => State::OfType(type_name.clone()),
                _ => State::Table,
            };
            let exception = expectation.column().and_then(|column| {
                schema.index_of(column).err().map(|_| {
                    let names: Vec<&String> = schema.fields().iter().map(|f| f.name()).collect();
                    format!("column '{column}' is not in the data; its columns are {names:?}")
                })
            });
            entries.push(Entry {
                expectation,
                config: config.clone(),
                state,
                exception,
            });
        }
        Ok(Validator {
            suite_name: suite.name.clone(),
            schema: schema.clone(),
            rows: 0,
            entries,
        })
    }

    /// The columns the suite reads (only these need to be decoded).
    pub fn columns(&self) -> Vec<String> {
        let mut columns: Vec<String> = Vec::new();
        for entry in &self.entries {
            if let Some(column) = entry.expectation.column()
                && entry.exception.is_none()
                && !columns.iter().any(|c| c == column)
            {
                columns.push(column.to_string());
            }
        }
        columns
    }

    /// Updates every expectation with one batch (which must hold [`Validator::columns`]).
    pub fn push(&mut self, batch: &RecordBatch) -> Result<(), arrow_schema::ArrowError> {
        let mut views: HashMap<String, Cells> = HashMap::new();
        for column in self.columns() {
            let array = batch
                .column_by_name(&column)
                .ok_or_else(|| arrow_schema::ArrowError::SchemaError(format!("batch has no column '{column}'")))?;
            views.insert(column, Cells::of(array)?);
        }
        let offset = self.rows;
        // Expectations are independent: share them out over the cores, each thread updating its own.
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let chunk = self.entries.len().div_ceil(threads).max(1);
        let views = &views;
        std::thread::scope(|scope| {
            for entries in self.entries.chunks_mut(chunk) {
                scope.spawn(move || entries.iter_mut().for_each(|entry| update_entry(entry, views, offset)));
            }
        });
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// The results.
    pub fn finish(self, meta: Map<String, Value>) -> ValidationResult {
        let rows = self.rows;
        let schema = self.schema;
        let results = self
            .entries
            .into_iter()
            .map(|entry| {
                if let Some(message) = entry.exception {
                    return ExpectationResult::exception(&entry.config, message);
                }
                let (success, result) = match entry.state {
                    State::Values(state) => finish_values(*state),
                    State::Aggregate(aggregate, bounds, state) => finish_aggregate(aggregate, bounds, state),
                    State::OfType(type_name) => {
                        let column = entry.expectation.column().unwrap_or_default();
                        let data_type = schema.field_with_name(column).map(|f| f.data_type().clone()).ok();
                        finish_of_type(&type_name, data_type.as_ref())
                    }
                    State::Table => finish_table(&entry.expectation, &schema, rows),
                };
                ExpectationResult {
                    success,
                    expectation_config: entry.config,
                    result,
                    exception_info: ExceptionInfo::default(),
                }
            })
            .collect();
        ValidationResult::new(&self.suite_name, results, meta)
    }
}

fn update_entry(entry: &mut Entry, views: &HashMap<String, Cells>, offset: u64) {
    if entry.exception.is_some() {
        return;
    }
    let Some(cells) = entry.expectation.column().and_then(|c| views.get(c)) else {
        return;
    };
    let outcome = match &mut entry.state {
        State::Values(state) => update_values(state, cells, offset),
        State::Aggregate(aggregate, _, state) => update_aggregate(*aggregate, state, cells),
        _ => Ok(()),
    };
    if let Err(message) = outcome {
        let column = entry.expectation.column().unwrap_or_default();
        entry.exception = Some(format!("column '{column}': {message}"));
    }
}

fn update_values(state: &mut ValuesState, cells: &Cells, offset: u64) -> Result<(), String> {
    if let Some(needed) = rule_needs(&state.rule) {
        // `needed` is spelled as `Cells::describe` names the kinds of cells.
        let holds = cells.describe();
        if holds != needed && !cells.is_empty() {
            return Err(format!("this expectation needs {needed}, but the column holds {holds}"));
        }
    }
    if let Cells::Unsupported(_, data_type) = cells {
        return Err(format!("values of type {data_type} are not supported"));
    }
    let integer = cells.is_integer();
    let ValuesState {
        rule,
        membership,
        tally,
        previous,
        counter,
        ..
    } = state;
    let rules = Rules {
        rule,
        membership: membership.as_ref(),
        previous,
        counter,
        integer,
    };
    match cells {
        Cells::Numbers { values, .. } => rules.apply(
            tally,
            values.iter().map(|v| v.filter(|x| !x.is_nan()).map(Cell::Number)),
            offset,
        ),
        Cells::Text(values) => rules.apply(tally, values.iter().map(|v| v.map(Cell::Text)), offset),
        Cells::LargeText(values) => rules.apply(tally, values.iter().map(|v| v.map(Cell::Text)), offset),
        Cells::Dictionary { keys, values } => match rules.judge_values(values) {
            // Judge each distinct value once, then read the verdict per row by key.
            Some(verdicts) => scan(
                tally,
                keys.iter().map(|k| k.map(|k| k as usize)),
                offset,
                matches!(rules.rule, ValueRule::NotNull),
                |key, _| verdicts[key],
                |key| Value::from(values.value(key)),
            ),
            None => rules.apply(
                tally,
                keys.iter().map(|k| k.map(|k| Cell::Text(values.value(k as usize)))),
                offset,
            ),
        },
        Cells::Bools(values) => rules.apply(tally, values.iter().map(|v| v.map(Cell::Bool)), offset),
        Cells::Unsupported(..) => {}
    }
    Ok(())
}

/// One value rule with what it needs, applied to a run of cells. Each rule gets its own monomorphised loop.
struct Rules<'s> {
    rule: &'s ValueRule,
    membership: Option<&'s Membership>,
    previous: &'s mut Option<f64>,
    counter: &'s mut ValueCounter,
    integer: bool,
}

impl Rules<'_> {
    /// Verdicts per distinct text value, for rules that judge a value alone (not by position or repetition).
    fn judge_values(&self, values: &arrow_array::StringArray) -> Option<Vec<bool>> {
        let judge = |check: &dyn Fn(&str) -> bool| Some(values.iter().map(|v| v.is_some_and(check)).collect());
        match self.rule {
            ValueRule::NotNull => judge(&|_| true),
            ValueRule::InSet(_) => judge(&|text| self.membership.is_some_and(|m| m.contains(Cell::Text(text)))),
            ValueRule::NotInSet(_) => judge(&|text| !self.membership.is_some_and(|m| m.contains(Cell::Text(text)))),
            ValueRule::MatchRegex(regex) => judge(&|text| regex.is_match(text)),
            ValueRule::LengthBetween(bounds) => judge(&|text| bounds.contains(text.chars().count() as f64)),
            _ => None,
        }
    }

    fn apply<'a>(self, tally: &mut Tally, cells: impl Iterator<Item = Option<Cell<'a>>>, offset: u64) {
        let integer = self.integer;
        let json = |cell: Cell<'a>| cell.to_json(integer);
        match self.rule {
            ValueRule::NotNull => scan(tally, cells, offset, true, |_, _| true, json),
            ValueRule::Between(bounds) => {
                let check = |cell: Cell<'a>, _| matches!(cell, Cell::Number(n) if bounds.contains(n));
                scan(tally, cells, offset, false, check, json)
            }
            ValueRule::InSet(_) => {
                let membership = self.membership.expect("sets have a membership");
                scan(tally, cells, offset, false, |cell, _| membership.contains(cell), json)
            }
            ValueRule::NotInSet(_) => {
                let membership = self.membership.expect("sets have a membership");
                scan(tally, cells, offset, false, |cell, _| !membership.contains(cell), json)
            }
            ValueRule::MatchRegex(regex) => {
                let check = |cell: Cell<'a>, _| match cell {
                    Cell::Text(text) => regex.is_match(text),
                    other => regex.is_match(&other.python_text(integer)),
                };
                scan(tally, cells, offset, false, check, json)
            }
            ValueRule::LengthBetween(bounds) => {
                let check = |cell: Cell<'a>, _| match cell {
                    Cell::Text(text) => bounds.contains(text.chars().count() as f64),
                    _ => false,
                };
                scan(tally, cells, offset, false, check, json)
            }
            ValueRule::Increasing { strictly } => {
                let previous = self.previous;
                let check = |cell: Cell<'a>, _| {
                    let Cell::Number(n) = cell else { return false };
                    let in_order = match *previous {
                        None => true,
                        Some(before) if *strictly => n > before,
                        Some(before) => n >= before,
                    };
                    *previous = Some(n);
                    in_order
                };
                scan(tally, cells, offset, false, check, json)
            }
            ValueRule::Unique => {
                let counter = self.counter;
                let check = |cell: Cell<'a>, row| {
                    counter.add(cell, row, integer, PARTIAL_UNEXPECTED_COUNT);
                    true
                };
                scan(tally, cells, offset, false, check, json)
            }
        }
    }
}

/// Counts cells, missing ones (or, for `nulls_unexpected`, counts them as unexpected) and those `expected`
/// rejects, listing the first unexpected values with their rows.
fn scan<T: Copy>(
    tally: &mut Tally,
    cells: impl Iterator<Item = Option<T>>,
    offset: u64,
    nulls_unexpected: bool,
    mut expected: impl FnMut(T, u64) -> bool,
    to_json: impl Fn(T) -> Value,
) {
    for (row, cell) in cells.enumerate() {
        let index = offset + row as u64;
        tally.element_count += 1;
        match cell {
            None if nulls_unexpected => {
                tally.unexpected += 1;
                if tally.partial.len() < PARTIAL_UNEXPECTED_COUNT {
                    tally.partial.push((index, Value::Null));
                }
            }
            None => tally.missing += 1,
            Some(cell) => {
                if !expected(cell, index) {
                    tally.unexpected += 1;
                    if tally.partial.len() < PARTIAL_UNEXPECTED_COUNT {
                        tally.partial.push((index, to_json(cell)));
                    }
                }
            }
        }
    }
}

fn update_aggregate(aggregate: Aggregate, state: &mut AggregateState, cells: &Cells) -> Result<(), String> {
    if aggregate != Aggregate::ProportionUnique && !matches!(cells, Cells::Numbers { .. }) && !cells.is_empty() {
        return Err(format!(
            "this statistic needs numbers, but the column holds {}",
            cells.describe()
        ));
    }
    if let Cells::Unsupported(_, data_type) = cells {
        return Err(format!("values of type {data_type} are not supported"));
    }
    if let Cells::Dictionary { keys, values } = cells {
        // Only distinct values matter here: mark the keys in use, then add each used value once.
        let mut used = vec![false; values.len()];
        for key in keys.iter().flatten() {
            used[key as usize] = true;
            state.non_null += 1;
        }
        for (index, _) in used.iter().enumerate().filter(|(_, used)| **used) {
            if values.is_valid(index) {
                state.distinct.add(Cell::Text(values.value(index)));
            }
        }
        return Ok(());
    }
    for row in 0..cells.len() {
        let Some(cell) = cells.get(row) else { continue };
        state.non_null += 1;
        match (aggregate, cell) {
            (Aggregate::ProportionUnique, cell) => {
                state.distinct.add(cell);
            }
            (Aggregate::Min, Cell::Number(n)) => state.min = Some(state.min.map_or(n, |m| m.min(n))),
            (Aggregate::Max, Cell::Number(n)) => state.max = Some(state.max.map_or(n, |m| m.max(n))),
            (_, Cell::Number(n)) => state.values.push(n),
            _ => {}
        }
    }
    Ok(())
}

fn percent(part: u64, whole: u64) -> Value {
    if whole == 0 {
        Value::Null
    } else {
        json!(part as f64 / whole as f64 * 100.0)
    }
}

/// GX's `partial_unexpected_counts`: the listed values counted, most frequent first, ties by value.
fn partial_counts(values: &[Value]) -> Value {
    let mut counts: Vec<(Value, u64)> = Vec::new();
    for value in values {
        match counts.iter_mut().find(|(v, _)| v == value) {
            Some((_, count)) => *count += 1,
            None => counts.push((value.clone(), 1)),
        }
    }
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| compare_json(&a.0, &b.0)));
    Value::Array(
        counts
            .into_iter()
            .map(|(value, count)| json!({"value": value, "count": count}))
            .collect(),
    )
}

fn compare_json(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64().unwrap_or(0.0).total_cmp(&y.as_f64().unwrap_or(0.0)),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        _ => a.to_string().cmp(&b.to_string()),
    }
}

fn finish_values(mut state: ValuesState) -> (bool, Map<String, Value>) {
    if matches!(state.rule, ValueRule::Unique) {
        let (count, listed) = state.counter.repeated(PARTIAL_UNEXPECTED_COUNT);
        state.tally.unexpected += count;
        state.tally.partial = listed;
    }
    let not_null = matches!(state.rule, ValueRule::NotNull);
    let considered = state.tally.element_count - state.tally.missing;
    let success = considered == 0 || ((considered - state.tally.unexpected) as f64 / considered as f64) >= state.mostly;
    let listed: Vec<Value> = state.tally.partial.iter().map(|(_, v)| v.clone()).collect();
    let mut result = Map::new();
    result.insert("element_count".into(), json!(state.tally.element_count));
    result.insert("unexpected_count".into(), json!(state.tally.unexpected));
    let percent_total = percent(state.tally.unexpected, state.tally.element_count);
    let percent_nonmissing = percent(state.tally.unexpected, considered);
    result.insert(
        "unexpected_percent".into(),
        if not_null {
            percent_total.clone()
        } else {
            percent_nonmissing.clone()
        },
    );
    result.insert("partial_unexpected_list".into(), Value::Array(listed.clone()));
    if !not_null {
        result.insert("missing_count".into(), json!(state.tally.missing));
        result.insert(
            "missing_percent".into(),
            percent(state.tally.missing, state.tally.element_count),
        );
        result.insert("unexpected_percent_total".into(), percent_total);
        result.insert("unexpected_percent_nonmissing".into(), percent_nonmissing);
    }
    result.insert("partial_unexpected_counts".into(), partial_counts(&listed));
    result.insert(
        "partial_unexpected_index_list".into(),
        Value::Array(state.tally.partial.iter().map(|(row, _)| json!(row)).collect()),
    );
    (success, result)
}

fn finish_aggregate(aggregate: Aggregate, bounds: Bounds, mut state: AggregateState) -> (bool, Map<String, Value>) {
    let count = state.values.len();
    let observed: Option<f64> = match aggregate {
        Aggregate::Min => state.min,
        Aggregate::Max => state.max,
        Aggregate::Sum => Some(compensated_sum(state.values.iter().copied())),
        Aggregate::Mean => (count > 0).then(|| compensated_sum(state.values.iter().copied()) / count as f64),
        Aggregate::Stdev => (count > 1).then(|| {
            let mean = compensated_sum(state.values.iter().copied()) / count as f64;
            let squares = compensated_sum(state.values.iter().map(|v| (v - mean) * (v - mean)));
            (squares / (count - 1) as f64).sqrt()
        }),
        Aggregate::Median => (count > 0).then(|| {
            let middle = count / 2;
            let (_, upper, _) = state.values.select_nth_unstable_by(middle, f64::total_cmp);
            let upper = *upper;
            if count % 2 == 1 {
                upper
            } else {
                let lower = state.values[..middle].iter().copied().fold(f64::NEG_INFINITY, f64::max);
                (lower + upper) / 2.0
            }
        }),
        Aggregate::ProportionUnique => {
            (state.non_null > 0).then(|| state.distinct.len() as f64 / state.non_null as f64)
        }
    };
    let mut result = Map::new();
    let success = match observed {
        Some(value) if value.is_finite() => bounds.contains(value),
        _ => false,
    };
    result.insert(
        "observed_value".into(),
        observed
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or(Value::Null),
    );
    (success, result)
}

/// pandas' dtype name for an Arrow type, as GX reports it for pandas data.
pub fn pandas_dtype_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Int8 => "int8".into(),
        DataType::Int16 => "int16".into(),
        DataType::Int32 => "int32".into(),
        DataType::Int64 => "int64".into(),
        DataType::UInt8 => "uint8".into(),
        DataType::UInt16 => "uint16".into(),
        DataType::UInt32 => "uint32".into(),
        DataType::UInt64 => "uint64".into(),
        DataType::Float16 => "float16".into(),
        DataType::Float32 => "float32".into(),
        DataType::Float64 => "float64".into(),
        DataType::Boolean => "bool".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "object".into(),
        DataType::Dictionary(_, value) if matches!(value.as_ref(), DataType::Utf8 | DataType::LargeUtf8) => {
            "category".into()
        }
        DataType::Timestamp(unit, None) => format!("datetime64[{}]", unit_suffix(unit)),
        DataType::Timestamp(unit, Some(zone)) => format!("datetime64[{}, {zone}]", unit_suffix(unit)),
        other => other.to_string(),
    }
}

fn unit_suffix(unit: &arrow_schema::TimeUnit) -> &'static str {
    match unit {
        arrow_schema::TimeUnit::Second => "s",
        arrow_schema::TimeUnit::Millisecond => "ms",
        arrow_schema::TimeUnit::Microsecond => "us",
        arrow_schema::TimeUnit::Nanosecond => "ns",
    }
}

fn finish_of_type(type_name: &str, data_type: Option<&DataType>) -> (bool, Map<String, Value>) {
    let mut result = Map::new();
    let Some(data_type) = data_type else {
        result.insert("observed_value".into(), Value::Null);
        return (false, result);
    };
    let observed = pandas_dtype_name(data_type);
    let wanted = type_name.to_ascii_lowercase();
    let aliases: &[&str] = match observed.as_str() {
        "object" => &["object", "str", "string", "utf8"],
        "bool" => &["bool", "boolean"],
        "int64" => &["int64", "int", "integer"],
        "float64" => &["float64", "float", "double"],
        _ => &[],
    };
    let success = wanted == observed
        || aliases.contains(&wanted.as_str())
        || wanted == data_type.to_string().to_ascii_lowercase();
    result.insert("observed_value".into(), Value::from(observed));
    (success, result)
}

fn finish_table(expectation: &Expectation, schema: &Schema, rows: u64) -> (bool, Map<String, Value>) {
    let columns: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let mut result = Map::new();
    let success = match expectation {
        Expectation::ColumnToExist { column, index } => match columns.iter().position(|c| c == column) {
            Some(position) => index.is_none_or(|i| i == position),
            None => false,
        },
        Expectation::ColumnsMatchOrderedList { columns: expected } => {
            result.insert("observed_value".into(), json!(columns));
            let success = &columns == expected;
            if !success {
                let longest = columns.len().max(expected.len());
                let mismatched: Vec<Value> = (0..longest)
                    .filter(|i| columns.get(*i) != expected.get(*i))
                    .map(|i| json!({"Expected Column Position": i, "Expected": expected.get(i), "Found": columns.get(i)}))
                    .collect();
                result.insert("details".into(), json!({"mismatched": mismatched}));
            }
            success
        }
        Expectation::ColumnsMatchSet {
            columns: expected,
            exact,
        } => {
            let mut sorted = columns.clone();
            sorted.sort();
            result.insert("observed_value".into(), json!(sorted));
            let unexpected: Vec<&String> = columns.iter().filter(|c| !expected.contains(c)).collect();
            let missing: Vec<&String> = expected.iter().filter(|c| !columns.contains(c)).collect();
            let success = missing.is_empty() && (!exact || unexpected.is_empty());
            if !unexpected.is_empty() || !missing.is_empty() {
                let mut mismatched = Map::new();
                if !unexpected.is_empty() {
                    mismatched.insert("unexpected".into(), json!(unexpected));
                }
                if !missing.is_empty() {
                    mismatched.insert("missing".into(), json!(missing));
                }
                result.insert("details".into(), json!({"mismatched": mismatched}));
            }
            success
        }
        Expectation::RowCountBetween(bounds) => {
            result.insert("observed_value".into(), json!(rows));
            bounds.contains(rows as f64)
        }
        _ => false,
    };
    (success, result)
}
