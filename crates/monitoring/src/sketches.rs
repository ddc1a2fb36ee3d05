//! Mergeable summaries of a window's columns, so a day can be the merge of its hours without reading the
//! log again: per numeric column a quantile digest (merging t-digest, arcsine scale), exact value counts while
//! there are few distinct values, sums for mean and spread, non-finite and null counts; per categorical
//! column its category counts; per column a HyperLogLog of distinct values. Every count is weighted by the
//! window's sampling (1 / rate, a power of two), so merging windows sampled at different rates stays
//! unbiased. Sketches are stored beside each window's report (`sketch.json`) and checked when read back.

use std::collections::BTreeMap;

use arrow_schema::DataType;
use loopline_drift_report::CurrentData;
use loopline_tabular::collect::{CategoricalValues, ColumnValues, NumericValues};
use serde::{Deserialize, Serialize};

use crate::span_sketch::{EstimateSketch, HealthSketch, PerformanceSketch};

/// Compression of the quantile digest: about this many centroids, rank error about 1 / (2 × this) at worst
/// and far less in the tails.
const COMPRESSION: f64 = 200.0;
/// Most centroids a stored digest may hold.
const MAX_CENTROIDS: usize = 1_000;
/// Numeric columns keep exact value counts while they have at most this many distinct values.
const EXACT_VALUES: usize = 64;
/// Categories kept per column; rarer ones are pooled.
pub const MAX_CATEGORIES: usize = 1_000;
/// Columns a stored sketch may hold.
const MAX_COLUMNS: usize = 4_000;
/// The most rows any count may claim.
const MAX_COUNT: f64 = 1e15;
/// HyperLogLog registers (2^10: about 3% standard error).
const REGISTERS: usize = 1 << 10;

/// A quantile digest: centroids `(mean, weight)` ascending, and the exact extremes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Digest {
    /// Centroids, ascending by mean.
    pub centroids: Vec<(f64, f64)>,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
}

fn scale(q: f64) -> f64 {
    COMPRESSION / (2.0 * std::f64::consts::PI) * (2.0 * q.clamp(0.0, 1.0) - 1.0).asin()
}

fn scale_inverse(k: f64) -> f64 {
    let turned =
        (k * 2.0 * std::f64::consts::PI / COMPRESSION).clamp(-std::f64::consts::FRAC_PI_2, std::f64::consts::FRAC_PI_2);
    (turned.sin() + 1.0) / 2.0
}

/// Greedy one-pass compression of weighted points sorted by value: a centroid grows while its quantile span
/// stays within one unit of the scale function.
fn compress(points: impl Iterator<Item = (f64, f64)>, total: f64) -> Vec<(f64, f64)> {
    let mut centroids: Vec<(f64, f64)> = Vec::new();
    // A centroid's mean is its weighted sum over its weight while the sum stays finite; past that (values near
    // the largest float) a running mean, as a convex combination, takes over.
    let (mut sum, mut mean, mut weight, mut before) = (0.0f64, 0.0, 0.0, 0.0);
    let mut limit = total * scale_inverse(scale(0.0) + 1.0);
    let close = |sum: f64, mean: f64, weight: f64| if sum.is_finite() { sum / weight } else { mean };
    for (value, w) in points {
        if weight > 0.0 && before + weight + w > limit {
            centroids.push((close(sum, mean, weight), weight));
            before += weight;
            (sum, weight) = (0.0, 0.0);
            limit = total * scale_inverse(scale(before / total) + 1.0);
        }
        if sum.is_finite() {
            sum += value * w;
            if !sum.is_finite() {
                // Overflowed just now: go on from the mean so far.
                mean = if weight > 0.0 {
                    (sum - value * w) / weight
                } else {
                    value
                };
                mean = blend(mean, value, w / (weight + w));
            }
        } else {
            mean = blend(mean, value, w / (weight + w));
        }
        weight += w;
    }
    if weight > 0.0 {
        centroids.push((close(sum, mean, weight), weight));
    }
    centroids
}

/// `low` moved `share` of the way to `high`, without overflow for values near the largest float.
fn blend(low: f64, high: f64, share: f64) -> f64 {
    if share >= 1.0 {
        return high;
    }
    let blended = low * (1.0 - share) + high * share;
    match (blended.is_finite(), share < 0.5) {
        (true, _) => blended,
        (false, true) => low,
        (false, false) => high,
    }
}

impl Digest {
    /// The digest of ascending finite values, each of weight `weight`.
    pub fn of_sorted(values: &[f64], weight: f64) -> Option<Digest> {
        let (first, last) = (*values.first()?, *values.last()?);
        let total = values.len() as f64 * weight;
        Some(Digest {
            centroids: compress(values.iter().map(|v| (*v, weight)), total),
            min: first,
            max: last,
        })
    }

    /// Total weight.
    pub fn total(&self) -> f64 {
        self.centroids.iter().map(|c| c.1).sum()
    }

    /// The digest of both.
    pub fn merge(&self, other: &Digest) -> Digest {
        let mut points: Vec<(f64, f64)> = self.centroids.iter().chain(&other.centroids).copied().collect();
        points.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        let total = points.iter().map(|p| p.1).sum();
        Digest {
            centroids: compress(points.into_iter(), total),
            min: self.min.min(other.min),
            max: self.max.max(other.max),
        }
    }

    /// Where the digest's distribution is pinned: `(rank, value)` from `(0, min)` through each centroid's centre
    /// to `(total, max)`.
    fn knots(&self) -> Vec<(f64, f64)> {
        let mut knots = Vec::with_capacity(self.centroids.len() + 2);
        knots.push((0.0, self.min));
        let mut before = 0.0;
        for (mean, weight) in &self.centroids {
            knots.push((before + weight / 2.0, *mean));
            before += weight;
        }
        knots.push((before, self.max));
        knots
    }

    /// The value at quantile `q` of `knots`: linear between centroid centres, and to the extremes at the ends.
    fn interpolate(knots: &[(f64, f64)], q: f64) -> f64 {
        let total = knots[knots.len() - 1].0;
        let target = q.clamp(0.0, 1.0) * total;
        let inner = &knots[1..knots.len() - 1];
        let next = 1 + inner.partition_point(|(centre, _)| *centre < target);
        let ((low_rank, low_value), (high_rank, high_value)) = (knots[next - 1], knots[next]);
        let span = high_rank - low_rank;
        let share = if span > 0.0 { (target - low_rank) / span } else { 1.0 };
        blend(low_value, high_value, share)
    }

    /// The value at quantile `q`: linear between centroid centres, and to the extremes at the ends.
    pub fn quantile(&self, q: f64) -> f64 {
        Digest::interpolate(&self.knots(), q)
    }

    /// `count` values at evenly spaced quantiles (ascending): a stand-in sample with the digest's distribution.
    pub fn representatives(&self, count: usize) -> Vec<f64> {
        let knots = self.knots();
        (0..count)
            .map(|i| Digest::interpolate(&knots, (i as f64 + 0.5) / count as f64))
            .collect()
    }

    fn check(&self) -> Result<(), String> {
        if self.centroids.len() > MAX_CENTROIDS {
            return Err(format!(
                "a digest holds {} centroids, more than {MAX_CENTROIDS}",
                self.centroids.len()
            ));
        }
        let finite = self.centroids.iter().all(|(m, w)| {
            m.is_finite() && w.is_finite() && *w > 0.0 && *w <= MAX_COUNT && *m >= self.min && *m <= self.max
        });
        let ordered = self.centroids.windows(2).all(|pair| pair[0].0 <= pair[1].0);
        if !finite || !ordered || !self.min.is_finite() || !self.max.is_finite() || self.min > self.max {
            return Err("a digest holds values that are not finite, out of order or outside its extremes".into());
        }
        Ok(())
    }
}

/// A HyperLogLog of distinct values.
#[derive(Debug, Clone, PartialEq)]
pub struct Distinct(Vec<u8>);

impl Default for Distinct {
    fn default() -> Self {
        Distinct(vec![0; REGISTERS])
    }
}

impl Serialize for Distinct {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text: String = self.0.iter().map(|r| format!("{r:02x}")).collect();
        serializer.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for Distinct {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.len() != REGISTERS * 2 {
            return Err(serde::de::Error::custom(format!(
                "distinct counts hold {} hex digits, not {}",
                text.len(),
                REGISTERS * 2
            )));
        }
        let registers = (0..REGISTERS)
            .map(|i| u8::from_str_radix(text.get(i * 2..i * 2 + 2).unwrap_or("zz"), 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(serde::de::Error::custom)?;
        Ok(Distinct(registers))
    }
}

/// A well-mixed 64-bit hash (SplitMix64's finaliser over FNV-1a).
fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(hash)
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Distinct {
    fn insert_hash(&mut self, hash: u64) {
        let bits = REGISTERS.trailing_zeros();
        let index = (hash >> (64 - bits)) as usize;
        let rank = ((hash << bits) | (1 << (bits - 1))).leading_zeros() as u8 + 1;
        self.0[index] = self.0[index].max(rank);
    }

    fn insert_number(&mut self, value: f64) {
        let value = if value == 0.0 { 0.0 } else { value };
        self.insert_hash(mix(value.to_bits()));
    }

    fn insert_text(&mut self, text: &str) {
        self.insert_hash(hash_bytes(text.as_bytes()));
    }

    /// Both sets' distinct values.
    pub fn merge(&self, other: &Distinct) -> Distinct {
        Distinct(self.0.iter().zip(&other.0).map(|(a, b)| *a.max(b)).collect())
    }

    /// The estimated number of distinct values (linear counting while many registers are empty).
    pub fn estimate(&self) -> f64 {
        let m = REGISTERS as f64;
        let zeros = self.0.iter().filter(|r| **r == 0).count();
        let harmonic: f64 = self.0.iter().map(|r| 2f64.powi(-i32::from(*r))).sum();
        let raw = 0.7213 / (1.0 + 1.079 / m) * m * m / harmonic;
        if raw <= 2.5 * m && zeros > 0 {
            m * (m / zeros as f64).ln()
        } else {
            raw
        }
    }
}

/// A numeric (or datetime) column's summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NumericSketch {
    /// Finite values (weighted).
    pub finite: f64,
    /// NaN, +∞ and −∞ cells (weighted).
    pub nan: f64,
    /// +∞ cells.
    pub positive_infinity: f64,
    /// −∞ cells.
    pub negative_infinity: f64,
    /// Sum of the finite values (weighted); `None` when it overflows.
    #[serde(default)]
    pub sum: Option<f64>,
    /// Sum of their squares; `None` when it overflows.
    #[serde(default)]
    pub sum_of_squares: Option<f64>,
    /// The quantile digest, when there are finite values.
    pub digest: Option<Digest>,
    /// `(value, weighted count)` while there are few distinct values.
    pub values: Option<Vec<(f64, f64)>>,
}

/// A categorical column's summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoricalSketch {
    /// `(label, weighted count)`, most frequent first, at most [`MAX_CATEGORIES`].
    pub counts: Vec<(String, f64)>,
    /// Cells whose category was pooled.
    pub other: f64,
}

/// One column's summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnSketch {
    /// Column name.
    pub name: String,
    /// Arrow type.
    pub data_type: DataType,
    /// Cells (weighted).
    pub cells: f64,
    /// Null cells (weighted).
    pub nulls: f64,
    /// Numbers (numeric columns), times (datetime columns).
    pub numeric: Option<NumericSketch>,
    /// Whether the numbers are times (microseconds).
    #[serde(default)]
    pub datetime: bool,
    /// Categories.
    pub categorical: Option<CategoricalSketch>,
    /// Distinct non-null values among the rows summarised (sampled rows only, unweighted).
    pub distinct: Distinct,
}

/// The summaries of a window (or a merged span): its compared columns, health, realised performance and
/// CBPE's expected accuracy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowSketch {
    /// Weight of each kept row (1 / sampling rate).
    pub weight: f64,
    /// Columns (none when the window compared no columns with a reference).
    pub columns: Vec<ColumnSketch>,
    /// Serving health.
    #[serde(default)]
    pub health: HealthSketch,
    /// Realised performance, when labels were joined.
    #[serde(default)]
    pub performance: Option<PerformanceSketch>,
    /// CBPE's expected accuracy, when estimated.
    #[serde(default)]
    pub estimated: Option<EstimateSketch>,
    /// Columns left out of a merge (their type changed): they stay out of every later merge.
    #[serde(default)]
    pub dropped: Vec<String>,
}

fn numeric_sketch(values: &NumericValues, weight: f64) -> (NumericSketch, Distinct) {
    let mut distinct = Distinct::default();
    // Exact counts while there are few distinct values; past that only the distinct count goes on.
    let mut runs: Vec<(f64, f64)> = Vec::new();
    let mut previous: Option<f64> = None;
    let (mut sum, mut squares) = (0.0, 0.0);
    for &value in &values.values {
        sum += value;
        squares += value * value;
        if previous == Some(value) {
            if runs.len() <= EXACT_VALUES
                && let Some(last) = runs.last_mut()
            {
                last.1 += weight;
            }
            continue;
        }
        previous = Some(value);
        distinct.insert_number(value);
        if runs.len() <= EXACT_VALUES {
            runs.push((value, weight));
        }
    }
    let sketch = NumericSketch {
        finite: values.values.len() as f64 * weight,
        nan: values.nan as f64 * weight,
        positive_infinity: values.positive_infinity as f64 * weight,
        negative_infinity: values.negative_infinity as f64 * weight,
        sum: Some(sum * weight).filter(|v| v.is_finite()),
        sum_of_squares: Some(squares * weight).filter(|v| v.is_finite()),
        digest: Digest::of_sorted(&values.values, weight),
        values: (runs.len() <= EXACT_VALUES).then_some(runs),
    };
    (sketch, distinct)
}

fn categorical_sketch(values: &CategoricalValues, weight: f64) -> (CategoricalSketch, Distinct) {
    let mut distinct = Distinct::default();
    for (label, _) in &values.counts {
        distinct.insert_text(label);
    }
    let counts: Vec<(String, f64)> = values
        .counts
        .iter()
        .map(|(label, count)| (label.clone(), *count as f64 * weight))
        .collect();
    (pool(counts, 0.0), distinct)
}

/// Keeps the most frequent categories, pooling the rest.
fn pool(mut counts: Vec<(String, f64)>, mut other: f64) -> CategoricalSketch {
    counts.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    if counts.len() > MAX_CATEGORIES {
        other += counts.drain(MAX_CATEGORIES..).map(|(_, c)| c).sum::<f64>();
    }
    CategoricalSketch { counts, other }
}

impl WindowSketch {
    /// The sketch of a window's compared columns, whose kept rows each stand for `weight` rows.
    pub fn of_current(current: &CurrentData, weight: f64) -> WindowSketch {
        let columns = current
            .columns
            .iter()
            .map(|(name, data_type, values)| {
                let mut column = ColumnSketch {
                    name: name.clone(),
                    data_type: data_type.clone(),
                    cells: 0.0,
                    nulls: 0.0,
                    numeric: None,
                    datetime: false,
                    categorical: None,
                    distinct: Distinct::default(),
                };
                let cells = |n: u64| n as f64 * weight;
                match values {
                    ColumnValues::Numeric(numbers) | ColumnValues::Datetime(numbers) => {
                        let (sketch, distinct) = numeric_sketch(numbers, weight);
                        column.nulls = cells(numbers.nulls);
                        column.cells = sketch.finite
                            + sketch.nan
                            + sketch.positive_infinity
                            + sketch.negative_infinity
                            + column.nulls;
                        column.datetime = matches!(values, ColumnValues::Datetime(_));
                        (column.numeric, column.distinct) = (Some(sketch), distinct);
                    }
                    ColumnValues::Categorical(labels) => {
                        let (sketch, distinct) = categorical_sketch(labels, weight);
                        column.nulls = cells(labels.nulls);
                        column.cells = cells(labels.total()) + column.nulls;
                        (column.categorical, column.distinct) = (Some(sketch), distinct);
                    }
                    ColumnValues::Other { rows, nulls } => {
                        (column.cells, column.nulls) = (cells(*rows), cells(*nulls));
                    }
                }
                column
            })
            .collect();
        WindowSketch {
            weight,
            columns,
            ..WindowSketch::empty(weight)
        }
    }

    /// A sketch with no columns (yet), whose kept rows each stand for `weight` rows.
    pub fn empty(weight: f64) -> WindowSketch {
        WindowSketch {
            weight,
            columns: Vec::new(),
            health: HealthSketch::default(),
            performance: None,
            estimated: None,
            dropped: Vec::new(),
        }
    }

    /// The sketch of both spans. What cannot merge (a column whose type changed, performance of another task) is
    /// left out and said in `notes`.
    pub fn merge(&self, other: &WindowSketch, notes: &mut Vec<String>) -> WindowSketch {
        let mut dropped: Vec<String> = self.dropped.clone();
        for name in &other.dropped {
            if !dropped.contains(name) {
                dropped.push(name.clone());
            }
        }
        let mut columns = Vec::new();
        let theirs: BTreeMap<&str, &ColumnSketch> = other.columns.iter().map(|c| (c.name.as_str(), c)).collect();
        let kept: Vec<&ColumnSketch> = self.columns.iter().filter(|c| !dropped.contains(&c.name)).collect();
        for mine in kept {
            match theirs.get(mine.name.as_str()) {
                None => columns.push(mine.clone()),
                Some(them) => match merge_columns(mine, them) {
                    Some(merged) => columns.push(merged),
                    None => {
                        notes.push(format!(
                            "column '{}' changed type within the span and is left out",
                            mine.name
                        ));
                        dropped.push(mine.name.clone());
                    }
                },
            }
        }
        let known: Vec<&str> = self.columns.iter().map(|c| c.name.as_str()).collect();
        columns.extend(
            other
                .columns
                .iter()
                .filter(|c| !known.contains(&c.name.as_str()) && !dropped.contains(&c.name))
                .cloned(),
        );
        let performance = match (&self.performance, &other.performance) {
            (Some(a), Some(b)) => {
                let merged = a.merge(b);
                if merged.is_none() {
                    notes.push(
                        "realised performance is left out: its task or positive class changed within the span, \
                         or its classes outgrew the table"
                            .into(),
                    );
                }
                merged
            }
            (a, b) => a.clone().or_else(|| b.clone()),
        };
        WindowSketch {
            weight: self.weight.max(other.weight),
            columns,
            health: self.health.merge(&other.health),
            performance,
            estimated: match (&self.estimated, &other.estimated) {
                (Some(a), Some(b)) => Some(a.merge(b)),
                (a, b) => a.or(*b),
            },
            dropped,
        }
    }
}

fn merge_columns(a: &ColumnSketch, b: &ColumnSketch) -> Option<ColumnSketch> {
    if a.data_type != b.data_type || a.datetime != b.datetime {
        return None;
    }
    let numeric = match (&a.numeric, &b.numeric) {
        (Some(x), Some(y)) => Some(merge_numeric(x, y)),
        (None, None) => None,
        _ => return None,
    };
    let categorical = match (&a.categorical, &b.categorical) {
        (Some(x), Some(y)) => {
            let mut counts: BTreeMap<&str, f64> = BTreeMap::new();
            for (label, count) in x.counts.iter().chain(&y.counts) {
                *counts.entry(label).or_default() += count;
            }
            let counts = counts.into_iter().map(|(l, c)| (l.to_string(), c)).collect();
            Some(pool(counts, x.other + y.other))
        }
        (None, None) => None,
        _ => return None,
    };
    Some(ColumnSketch {
        name: a.name.clone(),
        data_type: a.data_type.clone(),
        cells: a.cells + b.cells,
        nulls: a.nulls + b.nulls,
        numeric,
        datetime: a.datetime,
        categorical,
        distinct: a.distinct.merge(&b.distinct),
    })
}

fn merge_numeric(a: &NumericSketch, b: &NumericSketch) -> NumericSketch {
    let digest = match (&a.digest, &b.digest) {
        (Some(x), Some(y)) => Some(x.merge(y)),
        (x, y) => x.clone().or_else(|| y.clone()),
    };
    let values = match (&a.values, &b.values) {
        (Some(x), Some(y)) => {
            let mut counts: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
            for (value, count) in x.iter().chain(y) {
                counts.entry(value.to_bits()).or_insert((*value, 0.0)).1 += count;
            }
            let mut runs: Vec<(f64, f64)> = counts.into_values().collect();
            runs.sort_by(|p, q| p.0.total_cmp(&q.0));
            (runs.len() <= EXACT_VALUES).then_some(runs)
        }
        _ => None,
    };
    NumericSketch {
        finite: a.finite + b.finite,
        nan: a.nan + b.nan,
        positive_infinity: a.positive_infinity + b.positive_infinity,
        negative_infinity: a.negative_infinity + b.negative_infinity,
        sum: a.sum.zip(b.sum).map(|(x, y)| x + y).filter(|v| v.is_finite()),
        sum_of_squares: a
            .sum_of_squares
            .zip(b.sum_of_squares)
            .map(|(x, y)| x + y)
            .filter(|v| v.is_finite()),
        digest,
        values,
    }
}

/// Splits `total` into whole counts proportional to `shares` (largest remainders first).
fn apportion(shares: &[f64], total: usize) -> Vec<u64> {
    let sum: f64 = shares.iter().sum();
    if sum <= 0.0 {
        return vec![0; shares.len()];
    }
    let exact: Vec<f64> = shares.iter().map(|s| s / sum * total as f64).collect();
    let mut counts: Vec<u64> = exact.iter().map(|e| e.floor() as u64).collect();
    let mut order: Vec<usize> = (0..shares.len()).collect();
    order.sort_by(|&i, &j| (exact[j] - exact[j].floor()).total_cmp(&(exact[i] - exact[i].floor())));
    let missing = total.saturating_sub(counts.iter().sum::<u64>() as usize);
    for &i in order.iter().take(missing) {
        counts[i] += 1;
    }
    counts
}

/// A stand-in for the merged span's data, at most `limit` rows per column, with each column's distribution
/// and share of nulls and non-finite cells: what the drift report compares with the reference.
pub fn current_data(sketch: &WindowSketch, limit: usize, source: &str) -> CurrentData {
    let mut rows = 0u64;
    let columns = sketch
        .columns
        .iter()
        .map(|column| {
            let cells = column.cells.round().max(0.0) as usize;
            let wanted = cells.min(limit.max(1));
            let values = if let Some(numeric) = &column.numeric {
                let parts = [
                    numeric.finite,
                    column.nulls,
                    numeric.nan,
                    numeric.positive_infinity,
                    numeric.negative_infinity,
                ];
                let counts = apportion(&parts, wanted);
                let finite = counts[0] as usize;
                let values = match (&numeric.values, &numeric.digest) {
                    (Some(runs), _) => {
                        let shares: Vec<f64> = runs.iter().map(|r| r.1).collect();
                        runs.iter()
                            .zip(apportion(&shares, finite))
                            .flat_map(|((value, _), n)| std::iter::repeat_n(*value, n as usize))
                            .collect()
                    }
                    (None, Some(digest)) => digest.representatives(finite),
                    (None, None) => Vec::new(),
                };
                let numbers = NumericValues {
                    values,
                    nulls: counts[1],
                    nan: counts[2],
                    positive_infinity: counts[3],
                    negative_infinity: counts[4],
                };
                if column.datetime {
                    ColumnValues::Datetime(numbers)
                } else {
                    ColumnValues::Numeric(numbers)
                }
            } else if let Some(categorical) = &column.categorical {
                let mut shares: Vec<f64> = categorical.counts.iter().map(|c| c.1).collect();
                shares.push(column.nulls);
                let counts = apportion(&shares, wanted);
                ColumnValues::Categorical(CategoricalValues {
                    counts: categorical
                        .counts
                        .iter()
                        .zip(&counts)
                        .filter(|(_, n)| **n > 0)
                        .map(|((label, _), n)| (label.clone(), *n))
                        .collect(),
                    nulls: counts.last().copied().unwrap_or(0),
                })
            } else {
                let counts = apportion(&[column.cells - column.nulls, column.nulls], wanted);
                ColumnValues::Other {
                    rows: wanted as u64,
                    nulls: counts[1],
                }
            };
            rows = rows.max(wanted as u64);
            (column.name.clone(), column.data_type.clone(), values)
        })
        .collect();
    CurrentData {
        source: source.to_string(),
        rows,
        schema: sketch
            .columns
            .iter()
            .map(|c| (c.name.clone(), c.data_type.clone()))
            .collect(),
        columns,
        duplicate_rows: None,
    }
}

/// A column's summary for people: counts, mean and spread, quantiles, distinct values, top categories.
pub fn describe(column: &ColumnSketch) -> serde_json::Value {
    use serde_json::json;
    let mut described = json!({
        "name": column.name,
        "type": column.data_type.to_string(),
        "cells": column.cells,
        "nulls": column.nulls,
        "distinct_estimate": column.distinct.estimate().round().min((column.cells - column.nulls).max(0.0).round()),
    });
    if let Some(numeric) = &column.numeric {
        let n = numeric.finite;
        let mean = numeric.sum.filter(|_| n > 0.0).map(|sum| sum / n);
        let std = mean
            .zip(numeric.sum_of_squares)
            .map(|(m, squares)| (squares / n - m * m).max(0.0).sqrt());
        // Quantiles of exact values where they were kept (a 0/1 column's median is 0 or 1), else of the digest.
        let quantile = |q: f64| -> Option<f64> {
            match (&numeric.values, &numeric.digest) {
                (Some(runs), _) => {
                    let total: f64 = runs.iter().map(|r| r.1).sum();
                    let mut seen = 0.0;
                    runs.iter()
                        .find(|(_, count)| {
                            seen += count;
                            seen >= q * total
                        })
                        .map(|(value, _)| *value)
                }
                (None, Some(digest)) => Some(digest.quantile(q)),
                (None, None) => None,
            }
        };
        described["numeric"] = json!({
            "finite": n, "nan": numeric.nan,
            "positive_infinity": numeric.positive_infinity, "negative_infinity": numeric.negative_infinity,
            "mean": mean, "std": std,
            "min": numeric.digest.as_ref().map(|d| d.min), "max": numeric.digest.as_ref().map(|d| d.max),
            "quantiles": numeric.digest.as_ref().map(|_| {
                [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99]
                    .iter()
                    .filter_map(|q| Some((format!("p{}", (q * 100.0) as u32), quantile(*q)?)))
                    .collect::<BTreeMap<String, f64>>()
            }),
        });
    }
    if let Some(categorical) = &column.categorical {
        described["categorical"] = json!({
            "top": categorical.counts.iter().take(20).collect::<Vec<_>>(),
            "categories": categorical.counts.len(),
            "other": categorical.other,
        });
    }
    described
}

mod check;
#[cfg(test)]
mod tests;
