//! Checking a sketch read back from storage before it is merged: sizes bounded, counts finite, non-negative
//! and agreeing with each other, digests ordered within their extremes.

use super::{ColumnSketch, EXACT_VALUES, MAX_CATEGORIES, MAX_COLUMNS, MAX_COUNT, NumericSketch, WindowSketch};

impl WindowSketch {
    /// Checks a sketch read back from storage: bounded sizes, unique columns, finite non-negative counts that
    /// agree with each other, digests ordered within their extremes.
    pub fn check(&self) -> Result<(), String> {
        if self.columns.len() > MAX_COLUMNS || self.dropped.len() > MAX_COLUMNS {
            return Err(format!("a sketch holds more than {MAX_COLUMNS} columns"));
        }
        if !(self.weight.is_finite() && (1.0..=MAX_COUNT).contains(&self.weight)) {
            return Err("the sketch's row weight is not a number of rows".into());
        }
        let mut names = std::collections::BTreeSet::new();
        for column in &self.columns {
            if !names.insert(column.name.as_str()) {
                return Err(format!("column '{}' appears twice", column.name));
            }
            check_column(column).map_err(|why| format!("column '{}': {why}", column.name))?;
        }
        if let Some(performance) = &self.performance {
            performance.check()?;
        }
        let health = &self.health;
        let sums = [
            health.requests,
            health.failures,
            health.bad_inputs,
            health.rejected,
            health.other_failures,
        ];
        let estimates_fine = self.estimated.is_none_or(|e| {
            is_count(e.rows) && is_count(e.expected_correct) && e.expected_correct <= e.rows * (1.0 + 1e-9)
        });
        if !sums.iter().all(|v| is_count(*v)) || !estimates_fine {
            return Err("health or estimate sums are not counts".into());
        }
        if let Some(latency) = &health.latency_ms {
            latency.check()?;
        }
        Ok(())
    }
}

fn is_count(value: f64) -> bool {
    value.is_finite() && (0.0..=MAX_COUNT).contains(&value)
}

/// Whether two sums of counts agree (up to rounding).
fn agree(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs()) + 1e-6
}

fn check_column(column: &ColumnSketch) -> Result<(), String> {
    if !is_count(column.cells) || !is_count(column.nulls) || column.nulls > column.cells * (1.0 + 1e-9) {
        return Err("its cell counts are not counts".into());
    }
    if column.numeric.is_some() && column.categorical.is_some() {
        return Err("it is both numeric and categorical".into());
    }
    if let Some(numeric) = &column.numeric {
        check_numeric(numeric, column)?;
    }
    if let Some(categorical) = &column.categorical {
        if categorical.counts.len() > MAX_CATEGORIES
            || !categorical.counts.iter().all(|c| is_count(c.1))
            || !is_count(categorical.other)
        {
            return Err("its category counts are not counts".into());
        }
        let total: f64 = categorical.counts.iter().map(|c| c.1).sum::<f64>() + categorical.other + column.nulls;
        if !agree(total, column.cells) {
            return Err("its category counts do not add up to its cells".into());
        }
    }
    Ok(())
}

fn check_numeric(numeric: &NumericSketch, column: &ColumnSketch) -> Result<(), String> {
    let parts = [
        numeric.finite,
        numeric.nan,
        numeric.positive_infinity,
        numeric.negative_infinity,
    ];
    if !parts.iter().all(|v| is_count(*v)) || !agree(parts.iter().sum::<f64>() + column.nulls, column.cells) {
        return Err("its numeric counts do not add up to its cells".into());
    }
    let Some(digest) = &numeric.digest else {
        if numeric.finite > 0.0 || numeric.values.is_some() {
            return Err("it counts finite values but has no digest".into());
        }
        return Ok(());
    };
    digest.check()?;
    if !agree(digest.total(), numeric.finite) {
        return Err("its digest does not weigh its finite values".into());
    }
    // The sums, when kept, must fit the values: |sum| ≤ n·max|v|, the mean within [min, max], and the mean
    // square at least the squared mean (Cauchy–Schwarz) and at most max v².
    let largest = digest.min.abs().max(digest.max.abs());
    let n = numeric.finite;
    let tolerance = |bound: f64| bound * 1e-9 + 1e-9;
    if let Some(sum) = numeric.sum {
        let mean = sum / n;
        if !(mean >= digest.min - tolerance(largest) && mean <= digest.max + tolerance(largest)) {
            return Err("its sum puts the mean outside its values' range".into());
        }
        if let Some(squares) = numeric.sum_of_squares
            && !(squares >= 0.0
                && squares / n <= largest * largest * (1.0 + 1e-9) + 1e-9
                && mean * mean <= squares / n + tolerance(mean * mean))
        {
            return Err("its sum of squares does not fit its values".into());
        }
    } else if numeric
        .sum_of_squares
        .is_some_and(|squares| squares.is_nan() || squares < 0.0)
    {
        return Err("its sum of squares is negative".into());
    }
    if let Some(values) = &numeric.values {
        let inside = values
            .iter()
            .all(|(v, n)| is_count(*n) && *v >= digest.min && *v <= digest.max);
        if values.len() > EXACT_VALUES || !inside || !agree(values.iter().map(|v| v.1).sum(), numeric.finite) {
            return Err("its exact values do not agree with its digest".into());
        }
    }
    Ok(())
}
