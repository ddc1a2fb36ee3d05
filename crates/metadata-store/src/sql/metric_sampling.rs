//! Metric history sampled by step for charts (MLflow's `get-history-bulk-interval`): at most `max_results`
//! steps spread evenly over the range, always with the first and last step of each run, then every point
//! of each run at those steps. The steps are counted and picked in the database, so memory stays bounded by
//! the sample whatever the history's length.
//!
//! Evenly spread steps alone hide what a chart is for: a loss spike between two sampled steps vanishes. So
//! each run's history is also cut into as many equal step ranges as there are sampled steps, the lowest and
//! highest point of each range are found in the database (one pass, two rows per range at most), and each
//! is added when it lies beyond every sampled value of its interval (between consecutive sampled steps). A
//! history that holds no such point (a constant one, or one short enough to be returned whole) comes back
//! exactly as MLflow samples it.

use super::rows::{integer, metric};
use super::{SqlStore, built_query};
use crate::entities::Metric;
use crate::error::StoreResult;
use crate::search::SqlBuilder;
use std::collections::BTreeSet;

/// The most points returned per run (MLflow's `MAX_RESULTS_GET_METRIC_HISTORY`).
const MAX_POINTS_PER_RUN: usize = 25_000;
/// Steps bound per statement.
const STEPS_PER_STATEMENT: usize = 500;

/// Which of `count` distinct steps (0-based positions, in step order) to read: `max_results` spread evenly
/// over them and the last one, or all of them when they are few (as MLflow samples them).
pub(super) fn sample_positions(count: usize, max_results: usize) -> Vec<usize> {
    if count <= max_results {
        return (0..count).collect();
    }
    let interval = count as f64 / max_results as f64;
    let mut positions: Vec<usize> = (0..max_results)
        .map(|index| (index as f64 * interval) as usize)
        .filter(|position| *position < count)
        .collect();
    positions.push(count - 1);
    positions.dedup();
    positions
}

impl SqlStore {
    pub(super) async fn metric_history_sampled_sql(
        &self,
        run_ids: &[String],
        key: &str,
        max_results: usize,
        range: Option<(i64, i64)>,
    ) -> StoreResult<Vec<Metric>> {
        if run_ids.is_empty() {
            return Ok(Vec::new());
        }
        // Each run's first and last step: kept in the sample, and the last of all ends the default range.
        let mut bounds = SqlBuilder::new("SELECT MIN(step) AS low, MAX(step) AS high FROM metrics WHERE key = ");
        let bound_key = bounds.bind_text(key);
        bounds.push(&bound_key);
        bounds.push(" AND run_key IN (SELECT run_key FROM runs WHERE run_id IN ");
        bounds.push_text_list(run_ids);
        bounds.push(") GROUP BY run_key");
        let mut run_bounds = Vec::new();
        for row in built_query(&bounds, self.dialect).fetch_all(&self.pool).await? {
            run_bounds.push(integer(&row, "low")?);
            run_bounds.push(integer(&row, "high")?);
        }
        let Some(&last_step) = run_bounds.iter().max() else {
            return Ok(Vec::new());
        };
        let (start, end) = range.unwrap_or((0, last_step));
        // The distinct steps in the range are counted and picked by position in the database: however long
        // a history is, at most `max_results + 1` steps come back.
        let in_range = |builder: &mut SqlBuilder| {
            let bound_key = builder.bind_text(key);
            builder.push(&format!(
                "SELECT DISTINCT step FROM metrics WHERE key = {bound_key} AND run_key IN \
                 (SELECT run_key FROM runs WHERE run_id IN "
            ));
            builder.push_text_list(run_ids);
            builder.push(")");
            let (low, high) = (builder.bind_integer(start), builder.bind_integer(end));
            builder.push(&format!(" AND step >= {low} AND step <= {high}"));
        };
        let mut counting = SqlBuilder::new("SELECT COUNT(*) AS steps FROM (");
        in_range(&mut counting);
        counting.push(") d");
        let count = integer(
            &built_query(&counting, self.dialect).fetch_one(&self.pool).await?,
            "steps",
        )?;
        let positions = sample_positions(usize::try_from(count).unwrap_or(0), max_results);
        let mut picking =
            SqlBuilder::new("SELECT step FROM (SELECT step, ROW_NUMBER() OVER (ORDER BY step) - 1 AS position FROM (");
        in_range(&mut picking);
        picking.push(") d) n WHERE position IN (");
        for (index, position) in positions.iter().enumerate() {
            if index > 0 {
                picking.push(", ");
            }
            let bound = picking.bind_integer(*position as i64);
            picking.push(&bound);
        }
        picking.push(")");
        let mut steps: BTreeSet<i64> = BTreeSet::new();
        if !positions.is_empty() {
            for row in built_query(&picking, self.dialect).fetch_all(&self.pool).await? {
                steps.insert(integer(&row, "step")?);
            }
        }
        steps.extend(run_bounds.iter().filter(|step| (start..=end).contains(*step)));
        let steps: Vec<i64> = steps.into_iter().collect();
        let mut points = Vec::new();
        for run_id in run_ids {
            let mut of_run = Vec::new();
            for chunk in steps.chunks(STEPS_PER_STATEMENT) {
                let mut select =
                    SqlBuilder::new("SELECT key, value, is_nan, timestamp, step FROM metrics WHERE run_key = ");
                let bound_run = select.bind_text(run_id);
                select.push(&format!("(SELECT run_key FROM runs WHERE run_id = {bound_run})"));
                select.push(" AND key = ");
                let bound_key = select.bind_text(key);
                select.push(&bound_key);
                select.push(" AND step IN (");
                for (index, step) in chunk.iter().enumerate() {
                    if index > 0 {
                        select.push(", ");
                    }
                    let bound = select.bind_integer(*step);
                    select.push(&bound);
                }
                select.push(&format!(") ORDER BY step, timestamp, value LIMIT {MAX_POINTS_PER_RUN}"));
                for row in built_query(&select, self.dialect).fetch_all(&self.pool).await? {
                    let mut point = metric(&row)?;
                    point.run_id = Some(run_id.clone());
                    of_run.push(point);
                }
                if of_run.len() >= MAX_POINTS_PER_RUN {
                    break;
                }
            }
            of_run.truncate(MAX_POINTS_PER_RUN);
            if usize::try_from(count).unwrap_or(usize::MAX) > positions.len() {
                let extremes = self.interval_extremes(run_id, key, (start, end), steps.len()).await?;
                of_run = with_extremes(of_run, extremes, &steps);
                of_run.truncate(MAX_POINTS_PER_RUN);
            }
            points.extend(of_run);
        }
        Ok(points)
    }

    /// Candidate extremes of one run: the lowest and highest point (NaN left out) of each of about
    /// `buckets` equal step ranges over `start..=end`, found in the database in one pass over the run's
    /// history. Buckets are `step / width` (no arithmetic that could overflow on extreme steps). SQLite
    /// reads the row of a MIN or MAX as a bare column of the group (documented SQLite behaviour, and several
    /// times faster than ranking); PostgreSQL ranks within each bucket.
    async fn interval_extremes(
        &self,
        run_id: &str,
        key: &str,
        (start, end): (i64, i64),
        buckets: usize,
    ) -> StoreResult<Vec<Metric>> {
        let span = i128::from(end) - i128::from(start) + 1;
        let width = i64::try_from((span + buckets.max(1) as i128 - 1) / buckets.max(1) as i128)
            .unwrap_or(i64::MAX)
            .max(1);
        let mut select = SqlBuilder::new("");
        let filter = |select: &mut SqlBuilder| {
            let bound_run = select.bind_text(run_id);
            let bound_key = select.bind_text(key);
            let (low, high) = (select.bind_integer(start), select.bind_integer(end));
            format!(
                "FROM metrics WHERE run_key = (SELECT run_key FROM runs WHERE run_id = {bound_run}) AND key = {bound_key} \
                 AND step >= {low} AND step <= {high} \
                 AND is_nan = 0"
            )
        };
        match self.dialect {
            super::Dialect::Sqlite => {
                let lowest = filter(&mut select);
                let highest = filter(&mut select);
                select.push(&format!(
                    "SELECT key, MIN(value) AS value, is_nan, timestamp, step {lowest} GROUP BY step / {width} \
                     UNION ALL SELECT key, MAX(value) AS value, is_nan, timestamp, step {highest} GROUP BY step / {width}"
                ));
            }
            super::Dialect::Postgres => {
                let rows = filter(&mut select);
                select.push(&format!(
                    "SELECT key, value, is_nan, timestamp, step FROM (SELECT key, value, is_nan, timestamp, step, \
                     ROW_NUMBER() OVER (PARTITION BY step / {width} ORDER BY value, step, timestamp) AS low, \
                     ROW_NUMBER() OVER (PARTITION BY step / {width} ORDER BY value DESC, step, timestamp) AS high \
                     {rows}) ranked WHERE low = 1 OR high = 1"
                ));
            }
        }
        let mut found = Vec::new();
        for row in built_query(&select, self.dialect).fetch_all(&self.pool).await? {
            let mut point = metric(&row)?;
            point.run_id = Some(run_id.to_string());
            found.push(point);
        }
        Ok(found)
    }
}

/// The sampled points of one run with each interval's extremes added where they lie beyond every sampled
/// value of their interval (the interval of a step: the last sampled step at or before it), in step order.
fn with_extremes(sampled_points: Vec<Metric>, extremes: Vec<Metric>, sampled_steps: &[i64]) -> Vec<Metric> {
    let interval = |step: i64| sampled_steps.partition_point(|s| *s <= step).saturating_sub(1);
    let mut range: std::collections::HashMap<usize, (f64, f64)> = std::collections::HashMap::new();
    for point in sampled_points.iter().filter(|p| !p.value.is_nan()) {
        let entry = range
            .entry(interval(point.step))
            .or_insert((f64::INFINITY, f64::NEG_INFINITY));
        *entry = (entry.0.min(point.value), entry.1.max(point.value));
    }
    let mut points = sampled_points;
    for extreme in extremes {
        let (lowest, highest) = range
            .get(&interval(extreme.step))
            .copied()
            .unwrap_or((f64::INFINITY, f64::NEG_INFINITY));
        let beyond = extreme.value < lowest || extreme.value > highest;
        let known = points
            .iter()
            .any(|p| p.step == extreme.step && p.timestamp == extreme.timestamp && p.value == extreme.value);
        if beyond && !known {
            points.push(extreme);
        }
    }
    points.sort_by(|a, b| {
        (a.step, a.timestamp)
            .cmp(&(b.step, b.timestamp))
            .then(a.value.total_cmp(&b.value))
    });
    points
}

#[cfg(test)]
mod tests {
    use super::{sample_positions, with_extremes};
    use crate::entities::Metric;

    fn point(step: i64, value: f64) -> Metric {
        Metric {
            key: "loss".into(),
            value,
            timestamp: step,
            step,
            dataset_name: None,
            dataset_digest: None,
            model_id: None,
            run_id: None,
        }
    }

    #[test]
    fn extremes_are_added_only_beyond_the_sampled_values_of_their_interval() {
        let sampled = vec![point(0, 1.0), point(10, 0.5), point(20, 0.4)];
        let extremes = vec![
            point(3, 9.0),
            point(0, 1.0),
            point(12, 0.45),
            point(15, 0.1),
            point(20, 0.4),
        ];
        let steps: Vec<i64> = with_extremes(sampled, extremes, &[0, 10, 20])
            .iter()
            .map(|p| p.step)
            .collect();
        // The spike at 3 and the dips at 12 and 15 lie beyond their interval's sampled value and are kept;
        // points already sampled are not repeated.
        assert_eq!(steps, [0, 3, 10, 12, 15, 20]);
        // Within the sampled values of their interval: nothing added.
        let sampled = vec![point(0, 1.0), point(10, 0.5)];
        let within = with_extremes(sampled.clone(), vec![point(4, 1.0), point(12, 0.5)], &[0, 10]);
        assert_eq!(within, sampled);
    }

    #[test]
    fn positions_are_sampled_as_mlflow_samples_them() {
        assert_eq!(sample_positions(10, 5), [0, 2, 4, 6, 8, 9]);
        assert_eq!(sample_positions(5, 5), [0, 1, 2, 3, 4]);
        assert_eq!(sample_positions(10, 2), [0, 5, 9]);
        assert!(sample_positions(0, 5).is_empty());
        assert_eq!(sample_positions(usize::MAX / 2, 3).len(), 4);
    }
}
