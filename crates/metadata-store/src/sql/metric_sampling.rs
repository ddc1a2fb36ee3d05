//! Metric history sampled by step for charts (MLflow's `get-history-bulk-interval`): at most `max_results`
//! steps spread evenly over the range, always with the first and last step of each run, then every point
//! of each run at those steps. The steps are counted and picked in the database, so memory stays bounded by
//! the sample whatever the history's length.

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
        bounds.push(" AND run_id IN ");
        bounds.push_text_list(run_ids);
        bounds.push(" GROUP BY run_id");
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
                "SELECT DISTINCT step FROM metrics WHERE key = {bound_key} AND run_id IN "
            ));
            builder.push_text_list(run_ids);
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
                    SqlBuilder::new("SELECT key, value, is_nan, timestamp, step FROM metrics WHERE run_id = ");
                let bound_run = select.bind_text(run_id);
                select.push(&bound_run);
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
            points.extend(of_run);
        }
        Ok(points)
    }
}

#[cfg(test)]
mod tests {
    use super::sample_positions;

    #[test]
    fn positions_are_sampled_as_mlflow_samples_them() {
        assert_eq!(sample_positions(10, 5), [0, 2, 4, 6, 8, 9]);
        assert_eq!(sample_positions(5, 5), [0, 1, 2, 3, 4]);
        assert_eq!(sample_positions(10, 2), [0, 5, 9]);
        assert!(sample_positions(0, 5).is_empty());
        assert_eq!(sample_positions(usize::MAX / 2, 3).len(), 4);
    }
}
