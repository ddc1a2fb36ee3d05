//! Metric history sampled by step for charts (MLflow's `get-history-bulk-interval`): at most `max_results`
//! steps spread evenly over the range, always with the first and last step of each run, then every point
//! of each run at those steps. Only the distinct steps are read into memory, never the whole history.

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

/// The steps to read: `max_results` spread evenly over the steps in `[start, end]`, the last of them, and
/// each run's first and last step in the range (as MLflow samples them).
pub(super) fn sample_steps(
    all_steps: &[i64],
    run_bounds: &[i64],
    max_results: usize,
    start: i64,
    end: i64,
) -> Vec<i64> {
    let first = all_steps.partition_point(|step| *step < start);
    let last = all_steps.partition_point(|step| *step <= end);
    let mut sampled: BTreeSet<i64> = BTreeSet::new();
    if last > first {
        let count = last - first;
        if count <= max_results {
            sampled.extend(&all_steps[first..last]);
        } else {
            let interval = count as f64 / max_results as f64;
            for index in 0..max_results {
                let at = first + (index as f64 * interval) as usize;
                if at < last {
                    sampled.insert(all_steps[at]);
                }
            }
            sampled.insert(all_steps[last - 1]);
        }
    }
    sampled.extend(run_bounds.iter().filter(|step| (start..=end).contains(*step)));
    sampled.into_iter().collect()
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
        let mut distinct = SqlBuilder::new("SELECT DISTINCT step FROM metrics WHERE key = ");
        let bound_key = distinct.bind_text(key);
        distinct.push(&bound_key);
        distinct.push(" AND run_id IN ");
        distinct.push_text_list(run_ids);
        distinct.push(" ORDER BY step");
        let all_steps = built_query(&distinct, self.dialect)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| integer(row, "step"))
            .collect::<StoreResult<Vec<i64>>>()?;
        let Some(&last_step) = all_steps.last() else {
            return Ok(Vec::new());
        };
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
        let (start, end) = range.unwrap_or((0, last_step));
        let steps = sample_steps(&all_steps, &run_bounds, max_results, start, end);
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
    use super::sample_steps;

    #[test]
    fn steps_are_sampled_as_mlflow_samples_them() {
        let steps: Vec<i64> = (0..10).collect();
        assert_eq!(sample_steps(&steps, &[0, 9], 5, 0, 9), [0, 2, 4, 6, 8, 9]);
        assert_eq!(sample_steps(&steps, &[0, 9], 5, 0, 4), [0, 1, 2, 3, 4]);
        // A run's own first and last steps are kept even between the sampled ones.
        assert_eq!(sample_steps(&steps, &[0, 9, 3, 7], 2, 0, 9), [0, 3, 5, 7, 9]);
        assert!(sample_steps(&steps, &[], 5, 20, 30).is_empty());
    }
}
