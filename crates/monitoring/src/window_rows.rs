//! The rows a window keeps, and how they are chosen.
//!
//! Memory stays bounded whatever a window's size: rows, requests and the span are counted exactly as files
//! stream past, but at most `sample_rows` rows are kept. Requests are sampled whole by their key (the log's
//! `request_key` column, the FNV-1a hash of the request id, or that hash computed from the id in files
//! written before the column existed: the sample is the same on every machine and every run): a request is
//! kept while its key falls under the sampling rate, and the rate halves whenever the kept rows pass the
//! limit. The sample of a longer span is therefore the union of its parts' samples thinned to one rate:
//! samples merge.
//!
//! The rate is always 2^-k, and a key falls under it when its `level` (its leading zero bits) is at least k.
//! A window counts every row it sees per level, so the rate it must reach is arithmetic, exact whichever
//! rows were already dropped; held rows above the rate are dropped in one pass when those held pass the limit
//! by a quarter, and when the window is finished. A time window's batches are counted and thinned on the threads
//! that decode them ([`window_part`], at the rate the window had reached when the batch was decoded, or a
//! lower one it is expected to reach), so reading a large window keeps every core busy and only sampled rows
//! travel on.

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMillisecondType, UInt64Type};
use arrow_array::{Array, BooleanArray, RecordBatch, StringArray, TimestampMillisecondArray, UInt64Array};
use arrow_buffer::BooleanBuffer;
use loopline_serving::log_reader::{REQUEST_KEY, request_hash};

use crate::window_sink::Known;

/// Rows read for a window.
#[derive(Debug)]
pub struct WindowRows {
    /// Served rows kept (all of them, or the sample), as the log holds them.
    pub batches: Vec<RecordBatch>,
    /// Earliest and latest prediction time among all rows seen.
    pub span: Option<(i64, i64)>,
    /// Rows seen, kept or not.
    pub seen_rows: u64,
    /// Requests seen (rows at position 0 of their request).
    pub seen_requests: u64,
    /// Share of requests kept: 1 until the window outgrows the limit.
    pub rate: f64,
    /// Most rows kept; 0 keeps every row.
    pub limit: usize,
    /// Log files left out because they cannot be read (damaged, not Parquet, too large), with why.
    pub unreadable: Vec<String>,
    /// Whether a batch seen had neither request keys nor ids (its rows cannot be sampled).
    pub(crate) unkeyed: bool,
    /// Times the rate has halved (`rate` is 2^-halvings).
    halvings: usize,
    /// Rows seen per level (rows without a key are at level 0).
    seen_levels: Levels,
    /// For each held batch, the halvings of the rate its rows were kept at.
    kept_at: Vec<usize>,
}

/// Levels a key can have: 0 to 64 leading zero bits.
pub(crate) const LEVELS: usize = 65;
/// Rows per level.
pub(crate) type Levels = [u64; LEVELS];

/// How many times a rate of 2^-k can be halved from 1 before it is under every key's level (the key whose top
/// 53 bits are zero is under every rate a window can reach).
fn level(key: u64) -> u8 {
    if key >> 11 == 0 { 64 } else { key.leading_zeros() as u8 }
}

impl Default for WindowRows {
    fn default() -> Self {
        WindowRows::sampled(0)
    }
}

/// A request's place in the sampling order, in [0, 1): the top 53 bits of its key.
pub fn key_fraction(key: u64) -> f64 {
    (key >> 11) as f64 / (1u64 << 53) as f64
}

/// A request id's place in the sampling order, in [0, 1).
pub fn request_key(request_id: &str) -> f64 {
    key_fraction(request_hash(request_id))
}

/// A text column as UTF-8 strings, whichever string type the file gave it (large, view or dictionary-encoded);
/// `None` when absent or not text.
pub(crate) fn text_column(batch: &RecordBatch, name: &str) -> Option<StringArray> {
    let column = batch.column_by_name(name)?;
    if let Some(strings) = column.as_string_opt::<i32>() {
        return Some(strings.clone());
    }
    let textual = match column.data_type() {
        arrow_schema::DataType::LargeUtf8 | arrow_schema::DataType::Utf8View => true,
        arrow_schema::DataType::Dictionary(_, values) => matches!(
            values.as_ref(),
            arrow_schema::DataType::Utf8 | arrow_schema::DataType::LargeUtf8 | arrow_schema::DataType::Utf8View
        ),
        _ => false,
    };
    if !textual {
        return None;
    }
    arrow_cast::cast(column, &arrow_schema::DataType::Utf8)
        .ok()
        .and_then(|cast| cast.as_string_opt::<i32>().cloned())
}

/// Where a batch's requests fall in the sampling order: the log's keys, else the ids to hash.
enum Keys<'a> {
    Logged(&'a UInt64Array),
    Ids(&'a StringArray),
}

impl Keys<'_> {
    fn of(batch: &RecordBatch) -> Option<Keys<'_>> {
        // Keys with gaps are not the log's own: the ids tell instead.
        if let Some(keys) = batch
            .column_by_name(REQUEST_KEY)
            .and_then(|c| c.as_primitive_opt::<UInt64Type>())
            .filter(|keys| keys.null_count() == 0)
        {
            return Some(Keys::Logged(keys));
        }
        batch
            .column_by_name("request_id")
            .and_then(|c| c.as_string_opt::<i32>())
            .map(Keys::Ids)
    }

    /// The levels of the first `rows` rows.
    fn levels(&self, rows: usize) -> Vec<u8> {
        match self {
            Keys::Logged(keys) if keys.null_count() == 0 => {
                keys.values().iter().take(rows).map(|key| level(*key)).collect()
            }
            _ => (0..rows).map(|row| self.level(row)).collect(),
        }
    }

    /// The level of the request of `row`: it falls under the rate 2^-k when its level is at least k (a row
    /// without a key or id is at level 0, under no rate below 1).
    fn level(&self, row: usize) -> u8 {
        match self {
            Keys::Logged(keys) if keys.is_valid(row) => level(keys.value(row)),
            Keys::Ids(ids) if ids.is_valid(row) => level(request_hash(ids.value(row))),
            _ => 0,
        }
    }
}

/// What one decoded batch adds to a window.
#[derive(Debug)]
pub(crate) struct Part {
    /// The counted rows whose requests fall under the rate they were decoded at (`None`: none).
    pub kept: Option<RecordBatch>,
    /// Kept rows per level.
    pub levels: Levels,
    /// The halvings of the rate the rows were kept at.
    pub kept_at: usize,
    /// Rows counted: inside the span, and served unless shadows are wanted.
    pub seen_rows: u64,
    /// Of those, rows at position 0 of their request.
    pub seen_requests: u64,
    /// Earliest and latest time among them.
    pub span: Option<(i64, i64)>,
    /// The batch has neither request keys nor ids: its rows could be kept only while nothing was sampled.
    pub unkeyed: bool,
    /// The batch has no millisecond timestamps, and a span was asked for (the file is left out).
    pub no_times: bool,
}

impl Part {
    /// Rows kept.
    #[cfg(test)]
    pub fn kept_rows(&self) -> usize {
        self.kept.as_ref().map_or(0, RecordBatch::num_rows)
    }
}

/// Counts `batch` and keeps its rows under the rate 2^-halvings: with a `span`, only rows timed inside
/// `[start, end)` count; unless `with_shadows`, shadow answers do not count either.
pub(crate) fn window_part(
    batch: RecordBatch,
    span: Option<(i64, i64)>,
    with_shadows: bool,
    halvings: usize,
    known: &Known,
) -> Result<Part, String> {
    let rows = batch.num_rows();
    let times = batch
        .column_by_name("timestamp")
        .and_then(|c| c.as_primitive_opt::<TimestampMillisecondType>());
    if span.is_some() && times.is_none() && known.times.is_none() {
        return Ok(Part {
            kept: None,
            levels: [0; LEVELS],
            kept_at: halvings,
            seen_rows: 0,
            seen_requests: 0,
            span: None,
            unkeyed: false,
            no_times: true,
        });
    }
    let roles = (!with_shadows && !known.all_served)
        .then(|| text_column(&batch, "role"))
        .flatten();
    let roles = roles.as_ref();
    let inside = |row: usize| match (span, times) {
        (Some((start, end)), Some(times)) => times.is_valid(row) && (start..end).contains(&times.value(row)),
        _ => true,
    };
    // Most files lie wholly inside their hour's window and hold no shadows: nothing to test row by row.
    let wholly_inside = match (span, times) {
        (Some((start, end)), Some(times)) => {
            times.null_count() == 0 && times.values().iter().all(|time| (start..end).contains(time))
        }
        _ => true,
    };
    let served = |row: usize| roles.is_none_or(|r| !r.is_valid(row) || r.value(row) != "shadow");
    let counted = if wholly_inside && roles.is_none_or(|r| r.iter().all(|role| role != Some("shadow"))) {
        BooleanBuffer::new_set(rows)
    } else {
        BooleanBuffer::collect_bool(rows, |row| inside(row) && served(row))
    };
    let seen_rows = counted.count_set_bits() as u64;
    let seen_requests = match (
        batch
            .column_by_name("row")
            .and_then(|c| c.as_primitive_opt::<Int64Type>()),
        known.position,
    ) {
        (Some(positions), _) => counted
            .set_indices()
            .filter(|row| positions.is_valid(*row) && positions.value(*row) == 0)
            .count() as u64,
        (None, Some(position)) => {
            if position == 0 {
                seen_rows
            } else {
                0
            }
        }
        (None, None) => seen_rows,
    };
    let span = match times {
        Some(times) => time_span(times, &counted),
        // The footer told the times: every row counts (no shadows), so the span is the file's.
        None => known.times.filter(|_| seen_rows > 0),
    };
    let keys = Keys::of(&batch);
    let unkeyed = keys.is_none();
    let mut levels: Levels = [0; LEVELS];
    let keep = match keys {
        Some(keys) => {
            let of_rows = keys.levels(rows);
            if seen_rows as usize == rows {
                for level in &of_rows {
                    levels[usize::from(*level)] += 1;
                }
            } else {
                for row in counted.set_indices() {
                    levels[usize::from(of_rows[row])] += 1;
                }
            }
            if halvings == 0 {
                counted
            } else {
                BooleanBuffer::collect_bool(rows, |row| usize::from(of_rows[row]) >= halvings && counted.value(row))
            }
        }
        None => {
            levels[0] = seen_rows;
            if halvings == 0 {
                counted
            } else {
                BooleanBuffer::new_unset(rows)
            }
        }
    };
    let kept = match keep.count_set_bits() {
        0 => None,
        all if all == rows => Some(batch),
        _ => Some(
            arrow_select::filter::filter_record_batch(&batch, &BooleanArray::new(keep, None))
                .map_err(|e| e.to_string())?,
        ),
    };
    Ok(Part {
        kept,
        levels,
        kept_at: halvings,
        seen_rows,
        seen_requests,
        span,
        unkeyed,
        no_times: false,
    })
}

/// Earliest and latest valid time among the `counted` rows.
fn time_span(times: &TimestampMillisecondArray, counted: &BooleanBuffer) -> Option<(i64, i64)> {
    let widen = |span: Option<(i64, i64)>, time: i64| {
        Some(match span {
            None => (time, time),
            Some((low, high)) => (low.min(time), high.max(time)),
        })
    };
    if times.null_count() == 0 && counted.count_set_bits() == counted.len() {
        let low = times.values().iter().copied().min()?;
        let high = times.values().iter().copied().max()?;
        return Some((low, high));
    }
    counted
        .set_indices()
        .filter(|row| times.is_valid(*row))
        .fold(None, |span, row| widen(span, times.value(row)))
}

impl WindowRows {
    /// An empty window that keeps at most `limit` rows (0: all).
    pub fn sampled(limit: usize) -> WindowRows {
        WindowRows {
            batches: Vec::new(),
            span: None,
            seen_rows: 0,
            seen_requests: 0,
            rate: 1.0,
            limit,
            unreadable: Vec::new(),
            unkeyed: false,
            halvings: 0,
            seen_levels: [0; LEVELS],
            kept_at: Vec::new(),
        }
    }

    /// A window holding exactly these rows (a slice of another window).
    pub fn of(batches: Vec<RecordBatch>, span: Option<(i64, i64)>) -> WindowRows {
        let mut rows = WindowRows::sampled(0);
        rows.span = span;
        rows.seen_rows = batches.iter().map(|b| b.num_rows() as u64).sum();
        rows.seen_requests = batches.iter().map(first_rows).sum();
        rows.kept_at = vec![0; batches.len()];
        rows.batches = batches;
        rows
    }

    /// Rows held.
    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    /// The halvings of the rate reached so far.
    pub(crate) fn halvings(&self) -> usize {
        self.halvings
    }

    /// Rows seen whose requests fall under the rate 2^-halvings.
    fn under(&self, halvings: usize) -> usize {
        self.seen_levels.iter().skip(halvings).sum::<u64>() as usize
    }

    /// The request ids among the kept rows (the labels worth reading).
    pub fn request_ids(&self) -> loopline_serving::log_reader::RequestSet {
        self.batches
            .iter()
            .filter_map(|b| b.column_by_name("request_id").and_then(|c| c.as_string_opt::<i32>()))
            .flat_map(|ids| ids.iter().flatten())
            .map(str::to_string)
            .collect()
    }

    /// Kept rows per model version that answered them.
    pub fn version_counts(&self) -> std::collections::BTreeMap<String, u64> {
        let mut counts: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
        let columns: Vec<StringArray> = self
            .batches
            .iter()
            .filter_map(|b| text_column(b, "model_version"))
            .collect();
        for column in &columns {
            {
                // Versions come in long runs: count a run, then look it up once.
                let mut run: Option<(&str, u64)> = None;
                for version in column.iter().flatten() {
                    match &mut run {
                        Some((current, length)) if *current == version => *length += 1,
                        _ => {
                            if let Some((finished, length)) = run.replace((version, 1)) {
                                *counts.entry(finished).or_insert(0) += length;
                            }
                        }
                    }
                }
                if let Some((finished, length)) = run {
                    *counts.entry(finished).or_insert(0) += length;
                }
            }
        }
        counts
            .into_iter()
            .map(|(version, count)| (version.to_string(), count))
            .collect()
    }

    /// Whether rows were left out.
    pub fn is_sampled(&self) -> bool {
        self.rate < 1.0
    }

    /// Counts the rows of `batch` (already in the window; shadow answers only `with_shadows`) and keeps those
    /// under the rate.
    pub(crate) fn push(&mut self, batch: RecordBatch, with_shadows: bool) {
        if let Ok(part) = window_part(batch, None, with_shadows, self.halvings, &Known::default()) {
            self.absorb(part);
        }
    }

    /// Adds a part: its counts and kept rows (kept at the window's rate, or a higher one when the window was
    /// thinned while the part was decoded); then halves the rate until the rows seen under it are within the
    /// limit, dropping held rows above it once those held pass the limit by a quarter.
    pub(crate) fn absorb(&mut self, part: Part) {
        self.seen_rows += part.seen_rows;
        self.seen_requests += part.seen_requests;
        if let Some((low, high)) = part.span {
            self.span = Some(match self.span {
                None => (low, high),
                Some((first, last)) => (first.min(low), last.max(high)),
            });
        }
        for (seen, added) in self.seen_levels.iter_mut().zip(part.levels) {
            *seen += added;
        }
        self.unkeyed |= part.unkeyed;
        if let Some(kept) = part.kept {
            self.batches.push(kept);
            self.kept_at.push(part.kept_at);
        }
        if self.limit == 0 {
            return;
        }
        while self.under(self.halvings) > self.limit && self.halvings < LEVELS {
            self.halvings += 1;
        }
        self.rate = 0.5f64.powi(self.halvings as i32);
        if self.rows() > self.limit + self.limit / 4 {
            self.drop_thinned();
        }
    }

    /// Drops the rows held above the rate: what a window reads is complete.
    pub(crate) fn finish(mut self) -> WindowRows {
        self.drop_thinned();
        self
    }

    /// Drops the held rows above the rate (from batches kept at a higher one).
    fn drop_thinned(&mut self) {
        let halvings = self.halvings;
        if self.kept_at.iter().all(|at| *at >= halvings) {
            return;
        }
        let (batches, kept_at): (Vec<RecordBatch>, Vec<usize>) = std::mem::take(&mut self.batches)
            .into_iter()
            .zip(std::mem::take(&mut self.kept_at))
            .filter_map(|(batch, at)| {
                if at >= halvings {
                    Some((batch, at))
                } else {
                    under_rate(&batch, halvings).map(|kept| (kept, halvings))
                }
            })
            .unzip();
        self.batches = batches;
        self.kept_at = kept_at;
    }
}

/// Rows at position 0 of their request (one per request).
fn first_rows(batch: &RecordBatch) -> u64 {
    match batch
        .column_by_name("row")
        .and_then(|c| c.as_primitive_opt::<Int64Type>())
    {
        Some(positions) => positions.iter().filter(|p| *p == Some(0)).count() as u64,
        None => batch.num_rows() as u64,
    }
}

/// The rows of requests whose key falls under the rate 2^-halvings (none kept, or no keys to tell: `None`).
fn under_rate(batch: &RecordBatch, halvings: usize) -> Option<RecordBatch> {
    if halvings == 0 {
        return Some(batch.clone());
    }
    let keys = Keys::of(batch)?;
    let mask = BooleanBuffer::collect_bool(batch.num_rows(), |row| usize::from(keys.level(row)) >= halvings);
    arrow_select::filter::filter_record_batch(batch, &BooleanArray::new(mask, None))
        .ok()
        .filter(|kept| kept.num_rows() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, StringArray};
    use std::sync::Arc;

    fn batch(ids: &[String]) -> RecordBatch {
        RecordBatch::try_from_iter([
            (
                "request_id",
                Arc::new(StringArray::from(ids.to_vec())) as arrow_array::ArrayRef,
            ),
            ("row", Arc::new(Int64Array::from(vec![0i64; ids.len()]))),
        ])
        .unwrap()
    }

    /// The same requests with the log's keys instead of their ids.
    fn keyed(ids: &[String]) -> RecordBatch {
        RecordBatch::try_from_iter([
            (
                REQUEST_KEY,
                Arc::new(UInt64Array::from_iter_values(ids.iter().map(|id| request_hash(id)))) as arrow_array::ArrayRef,
            ),
            ("row", Arc::new(Int64Array::from(vec![0i64; ids.len()]))),
        ])
        .unwrap()
    }

    #[test]
    fn samples_stay_under_the_limit_and_counts_stay_exact() {
        let mut rows = WindowRows::sampled(1_000);
        for chunk in 0..50 {
            let ids: Vec<String> = (0..1_000).map(|i| format!("req-{chunk}-{i}")).collect();
            rows.push(batch(&ids), true);
        }
        let rows = rows.finish();
        assert_eq!((rows.seen_rows, rows.seen_requests), (50_000, 50_000));
        assert!(rows.rows() <= 1_000 && rows.rows() > 250, "{}", rows.rows());
        assert!(rows.is_sampled());
        // The sample is the requests under the final rate, whatever order they came in, and whether the log
        // holds keys or only ids.
        let mut again = WindowRows::sampled(1_000);
        for chunk in (0..50).rev() {
            let ids: Vec<String> = (0..1_000).map(|i| format!("req-{chunk}-{i}")).collect();
            again.push(if chunk % 2 == 0 { keyed(&ids) } else { batch(&ids) }, true);
        }
        let again = again.finish();
        assert_eq!((rows.rate, rows.rows()), (again.rate, again.rows()));
    }

    #[test]
    fn parts_decoded_at_a_higher_rate_are_thinned_to_the_window() {
        let ids: Vec<String> = (0..4_000).map(|i| format!("req-{i}")).collect();
        let mut whole = WindowRows::sampled(1_000);
        whole.push(keyed(&ids), true);
        let whole = whole.finish();
        // The same rows in two parts, the second decoded before the window learned its lower rate.
        let mut split = WindowRows::sampled(1_000);
        let first = window_part(keyed(&ids[..2_000]), None, true, 0, &Known::default()).unwrap();
        let second = window_part(keyed(&ids[2_000..]), None, true, 0, &Known::default()).unwrap();
        split.absorb(first);
        split.absorb(second);
        let split = split.finish();
        assert_eq!(
            (split.rate, split.rows(), split.seen_rows),
            (whole.rate, whole.rows(), 4_000)
        );
    }

    #[test]
    fn a_part_counts_only_served_rows_inside_its_span() {
        let times = arrow_array::TimestampMillisecondArray::from(vec![Some(5), Some(10), Some(19), Some(20), None]);
        let batch = RecordBatch::try_from_iter([
            ("timestamp", Arc::new(times) as arrow_array::ArrayRef),
            (
                "role",
                Arc::new(StringArray::from(vec![
                    "served", "shadow", "served", "served", "served",
                ])),
            ),
            ("row", Arc::new(Int64Array::from(vec![0, 0, 1, 0, 0]))),
        ])
        .unwrap();
        let part = window_part(batch.clone(), Some((10, 20)), false, 0, &Known::default()).unwrap();
        assert_eq!((part.seen_rows, part.seen_requests, part.span), (1, 0, Some((19, 19))));
        assert_eq!(part.kept_rows(), 1);
        let with_shadows = window_part(batch.clone(), Some((10, 20)), true, 0, &Known::default()).unwrap();
        assert_eq!((with_shadows.seen_rows, with_shadows.span), (2, Some((10, 19))));
        // Roles stored as large strings or a dictionary tell shadows just the same.
        for role_type in [
            arrow_schema::DataType::LargeUtf8,
            arrow_schema::DataType::Dictionary(
                Box::new(arrow_schema::DataType::Int32),
                Box::new(arrow_schema::DataType::Utf8),
            ),
        ] {
            let roles = arrow_cast::cast(batch.column_by_name("role").unwrap(), &role_type).unwrap();
            let mut columns = batch.columns().to_vec();
            columns[1] = roles;
            let fields: Vec<arrow_schema::Field> = ["timestamp", "role", "row"]
                .iter()
                .zip(&columns)
                .map(|(name, column)| arrow_schema::Field::new(*name, column.data_type().clone(), true))
                .collect();
            let typed = RecordBatch::try_new(Arc::new(arrow_schema::Schema::new(fields)), columns).unwrap();
            let part = window_part(typed, Some((10, 20)), false, 0, &Known::default()).unwrap();
            assert_eq!((part.seen_rows, part.span), (1, Some((19, 19))), "{role_type}");
        }
        // Without keys or ids nothing can be sampled.
        let sampled = window_part(batch, Some((0, 100)), false, 1, &Known::default()).unwrap();
        assert!(sampled.unkeyed && sampled.kept.is_none() && sampled.seen_rows == 3);
    }

    proptest::proptest! {
        /// Whatever a batch holds (times missing or outside, shadows, keys missing), a part counts only served
        /// rows inside its span, keeps a subset of them, and its span lies inside the window.
        #[test]
        fn parts_keep_what_they_count(
            rows in proptest::collection::vec(
                (proptest::option::of(-5i64..25), proptest::bool::ANY, 0i64..3, proptest::option::of(proptest::num::u64::ANY)),
                0..200,
            ),
            with_shadows in proptest::bool::ANY,
            halvings in 0u32..6,
            key in proptest::num::u64::ANY,
            shift in 0u32..64,
        ) {
            // A key's level says which rates it falls under, as its fraction does.
            let key = key >> shift;
            for k in 0..=53 {
                proptest::prop_assert_eq!(usize::from(level(key)) >= k, key_fraction(key) < 0.5f64.powi(k as i32));
            }
            let times = arrow_array::TimestampMillisecondArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>());
            let roles = StringArray::from(rows.iter().map(|r| if r.1 { "shadow" } else { "served" }).collect::<Vec<_>>());
            let positions = Int64Array::from(rows.iter().map(|r| r.2).collect::<Vec<_>>());
            let keys = UInt64Array::from(rows.iter().map(|r| r.3).collect::<Vec<_>>());
            let batch = RecordBatch::try_from_iter([
                ("timestamp", Arc::new(times) as arrow_array::ArrayRef),
                ("role", Arc::new(roles)),
                ("row", Arc::new(positions)),
                (REQUEST_KEY, Arc::new(keys)),
            ])
            .unwrap();
            let rate = 0.5f64.powi(halvings as i32);
            let part = window_part(batch, Some((0, 20)), with_shadows, halvings as usize, &Known::default()).unwrap();
            let counted: Vec<_> = rows
                .iter()
                .filter(|r| r.0.is_some_and(|t| (0..20).contains(&t)) && (with_shadows || !r.1))
                .collect();
            proptest::prop_assert_eq!(part.seen_rows, counted.len() as u64);
            proptest::prop_assert_eq!(part.seen_requests, counted.iter().filter(|r| r.2 == 0).count() as u64);
            // Keys with gaps are not used (the ids would tell, and this batch has none).
            let keyed = rows.iter().all(|r| r.3.is_some());
            let expected_kept = counted
                .iter()
                .filter(|r| rate >= 1.0 || (keyed && r.3.is_some_and(|k| key_fraction(k) < rate)))
                .count();
            proptest::prop_assert_eq!(part.kept_rows(), expected_kept);
            proptest::prop_assert_eq!(part.levels.iter().sum::<u64>(), part.seen_rows);
            if let Some((low, high)) = part.span {
                proptest::prop_assert!(0 <= low && low <= high && high < 20);
            } else {
                proptest::prop_assert!(counted.is_empty());
            }
        }
    }

    #[test]
    fn request_keys_are_stable() {
        assert_eq!(request_key("a"), request_key("a"));
        assert!((0.0..1.0).contains(&request_key("")));
        assert_ne!(request_key("a"), request_key("b"));
        // FNV-1a of "a" (0xaf63dc4c8601ec8c, its published value) through SplitMix64's finaliser.
        assert_eq!(request_hash("a"), 0x02c0_bdbf_4814_20f8);
        // Ids that differ only at the end spread over the levels as random keys do (half at level 0, a quarter
        // at 1, ...), so a sample of them is not empty at any rate.
        let mut levels = [0usize; LEVELS];
        for i in 0..100_000 {
            levels[usize::from(level(request_hash(&format!("req-{i}"))))] += 1;
        }
        for (k, count) in levels.iter().take(6).enumerate() {
            let expected = 100_000.0 / 2f64.powi(k as i32 + 1);
            assert!((*count as f64 - expected).abs() < 0.1 * expected, "level {k}: {count}");
        }
    }
}
