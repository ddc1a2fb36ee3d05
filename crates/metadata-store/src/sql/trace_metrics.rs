//! The rows behind MLflow 3's trace metrics (`traces/metrics`): one per trace, span or assessment in the
//! time range, with the metric's value and the dimensions asked for. Aggregation is the caller's.

use super::rows::integer;
use super::traces::{TRACE_METADATA, TRACE_TAGS};
use super::{SqlStore, built_query, invalid_filter};
use crate::error::{StoreError, StoreResult};
use crate::queries::{MetricRow, MetricView, TraceMetricsQuery};
use crate::search::compile::{key_value_predicate, string_predicate};
use crate::search::{FilterExpression, SqlBuilder, parse_filter};
use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;

/// The most rows one metric query reads.
const MAX_ROWS: usize = 1_000_000;

/// How a metric's value is read from a row.
enum ValueSource {
    /// Every row counts one.
    One,
    /// An integer column.
    Integer(&'static str),
    /// A floating-point column.
    Real(&'static str),
    /// Span latency: end minus start, in ms.
    SpanLatency,
    /// A key of the trace's token usage metadata.
    Tokens(&'static str),
    /// Distinct values of the trace's session metadata.
    Sessions,
}

fn metadata_value(key: &str) -> String {
    format!("(SELECT md.value FROM trace_metadata md WHERE md.trace_id = t.trace_id AND md.key = '{key}')")
}

fn value_source(view: MetricView, metric: &str) -> Option<ValueSource> {
    Some(match (view, metric) {
        (MetricView::Traces, "trace_count") | (MetricView::Spans, "span_count") => ValueSource::One,
        (MetricView::Assessments, "assessment_count") => ValueSource::One,
        (MetricView::Traces, "session_count") => ValueSource::Sessions,
        (MetricView::Traces, "latency") => ValueSource::Integer("t.execution_time_ms"),
        (MetricView::Traces, "input_tokens") => ValueSource::Tokens("input_tokens"),
        (MetricView::Traces, "output_tokens") => ValueSource::Tokens("output_tokens"),
        (MetricView::Traces, "total_tokens") => ValueSource::Tokens("total_tokens"),
        (MetricView::Traces, "cache_read_input_tokens") => ValueSource::Tokens("cache_read_input_tokens"),
        (MetricView::Traces, "cache_creation_input_tokens") => ValueSource::Tokens("cache_creation_input_tokens"),
        (MetricView::Spans, "latency") => ValueSource::SpanLatency,
        (MetricView::Spans, "input_cost") => ValueSource::Real("s.input_cost"),
        (MetricView::Spans, "output_cost") => ValueSource::Real("s.output_cost"),
        (MetricView::Spans, "total_cost") => ValueSource::Real("s.total_cost"),
        (MetricView::Assessments, "assessment_value") => ValueSource::Real("a.aggregate_value"),
        _ => return None,
    })
}

fn dimension_column(view: MetricView, dimension: &str) -> Option<String> {
    Some(match (view, dimension) {
        (MetricView::Traces, "trace_name") | (MetricView::Spans | MetricView::Assessments, "trace_name") => {
            "(SELECT tg.value FROM trace_tags tg WHERE tg.trace_id = t.trace_id AND tg.key = 'mlflow.traceName')".into()
        }
        (_, "trace_status") => "t.state".into(),
        (MetricView::Spans, "span_name") => "s.name".into(),
        (MetricView::Spans, "span_type") => "s.span_type".into(),
        (MetricView::Spans, "span_status") => "s.status".into(),
        (MetricView::Spans, "span_model_name") => "s.model_name".into(),
        (MetricView::Spans, "span_model_provider") => "s.model_provider".into(),
        (MetricView::Assessments, "assessment_name") => "a.name".into(),
        (MetricView::Assessments, "assessment_value") => "a.value".into(),
        _ => return None,
    })
}

/// One metric filter (`trace.status = 'OK'`, `trace.tag.k = 'v'`, `span.type = 'LLM'`, `assessment.name = 'x'`).
fn push_filter(view: MetricView, filter: &str, builder: &mut SqlBuilder) -> StoreResult<()> {
    let Some(expression) = parse_filter(filter).map_err(invalid_filter)? else {
        return Ok(());
    };
    let FilterExpression::Comparison(comparison) = expression else {
        return Err(StoreError::InvalidParameter(format!(
            "each metric filter is one comparison; give several filters instead of '{filter}'"
        )));
    };
    let refused = || {
        StoreError::InvalidParameter(format!(
            "invalid metric filter '{filter}': use trace.status, trace.tag.<key>, trace.metadata.<key>, \
             span.name|status|type (span metrics) or assessment.name|type (assessment metrics)"
        ))
    };
    builder.push(" AND ");
    let outcome = match (comparison.prefix.as_deref(), comparison.key.as_str(), view) {
        (Some("trace"), "status", _) => string_predicate("t.state", &comparison, true, builder),
        (Some("trace"), key, _) if key.starts_with("tag.") || key.starts_with("metadata.") => {
            let (table, rest) = match key.split_once('.') {
                Some(("tag", rest)) => (&TRACE_TAGS, rest),
                Some((_, rest)) => (&TRACE_METADATA, rest),
                None => return Err(refused()),
            };
            let keyed = crate::search::Comparison {
                prefix: None,
                key: rest.trim_matches('`').to_string(),
                ..comparison.clone()
            };
            key_value_predicate(table, &keyed, builder)
        }
        (Some("span"), "name", MetricView::Spans) => string_predicate("s.name", &comparison, true, builder),
        (Some("span"), "status", MetricView::Spans) => string_predicate("s.status", &comparison, true, builder),
        (Some("span"), "type", MetricView::Spans) => string_predicate("s.span_type", &comparison, true, builder),
        (Some("assessment"), "name", MetricView::Assessments) => string_predicate("a.name", &comparison, true, builder),
        (Some("assessment"), "type", MetricView::Assessments) => string_predicate("a.kind", &comparison, true, builder),
        _ => return Err(refused()),
    };
    outcome.map_err(|reason| StoreError::InvalidParameter(format!("Invalid metric filter '{filter}': {reason}")))
}

fn read_value(row: &AnyRow, source: &ValueSource) -> StoreResult<(Option<f64>, Option<String>)> {
    Ok(match source {
        ValueSource::One => (Some(1.0), None),
        ValueSource::Integer(_) => (row.try_get::<Option<i64>, _>("v")?.map(|v| v as f64), None),
        ValueSource::Real(_) => (row.try_get::<Option<f64>, _>("v")?, None),
        ValueSource::SpanLatency => {
            let start = row.try_get::<i64, _>("v_start")?;
            let end = row.try_get::<Option<i64>, _>("v_end")?;
            (end.map(|end| (end - start) as f64 / 1_000_000.0), None)
        }
        ValueSource::Tokens(key) => {
            let usage = row.try_get::<Option<String>, _>("v")?;
            let count = usage
                .and_then(|text| serde_json::from_str::<Value>(&text).ok())
                .and_then(|usage| usage.get(*key).and_then(Value::as_f64));
            (count, None)
        }
        ValueSource::Sessions => (Some(1.0), row.try_get::<Option<String>, _>("v")?),
    })
}

impl SqlStore {
    pub(super) async fn trace_metric_rows_sql(&self, query: &TraceMetricsQuery) -> StoreResult<Vec<MetricRow>> {
        let source = value_source(query.view, &query.metric_name).ok_or_else(|| {
            StoreError::InvalidParameter(format!("metric '{}' does not exist for this view", query.metric_name))
        })?;
        let (from, timestamp) = match query.view {
            MetricView::Traces => ("traces t", "t.timestamp_ms".to_string()),
            MetricView::Spans => (
                "trace_spans s JOIN traces t ON t.trace_id = s.trace_id",
                "(s.start_ns / 1000000)".to_string(),
            ),
            MetricView::Assessments => (
                "trace_assessments a JOIN traces t ON t.trace_id = a.trace_id",
                "COALESCE(NULLIF(a.create_time_ms, 0), t.timestamp_ms)".to_string(),
            ),
        };
        let mut select = vec![format!("{timestamp} AS ts")];
        for (index, dimension) in query.dimensions.iter().enumerate() {
            let column = dimension_column(query.view, dimension).ok_or_else(|| {
                StoreError::InvalidParameter(format!("dimension '{dimension}' does not exist for this view"))
            })?;
            select.push(format!("{column} AS d{index}"));
        }
        match &source {
            ValueSource::One => {}
            ValueSource::Integer(column) | ValueSource::Real(column) => select.push(format!("{column} AS v")),
            ValueSource::SpanLatency => {
                select.push("s.start_ns AS v_start".into());
                select.push("s.end_ns AS v_end".into());
            }
            ValueSource::Tokens(_) => select.push(format!("{} AS v", metadata_value("mlflow.trace.tokenUsage"))),
            ValueSource::Sessions => select.push(format!("{} AS v", metadata_value("mlflow.trace.session"))),
        }
        let mut builder = SqlBuilder::new(format!(
            "SELECT {} FROM {from} WHERE t.experiment_id IN ",
            select.join(", ")
        ));
        super::push_experiment_id_list(&mut builder, &query.experiment_ids)?;
        if query.view == MetricView::Assessments {
            builder.push(" AND a.valid = 1");
        }
        if let Some(start) = query.start_time_ms {
            let placeholder = builder.bind_integer(start);
            builder.push(&format!(" AND {timestamp} >= {placeholder}"));
        }
        if let Some(end) = query.end_time_ms {
            let placeholder = builder.bind_integer(end);
            builder.push(&format!(" AND {timestamp} < {placeholder}"));
        }
        for filter in &query.filters {
            push_filter(query.view, filter, &mut builder)?;
        }
        builder.push(&format!(" ORDER BY ts LIMIT {}", MAX_ROWS + 1));
        let rows = built_query(&builder, self.dialect).fetch_all(&self.pool).await?;
        if rows.len() > MAX_ROWS {
            return Err(StoreError::InvalidParameter(format!(
                "the metric would read more than {MAX_ROWS} rows: narrow the time range or add filters"
            )));
        }
        rows.iter()
            .map(|row| {
                let (value, distinct) = read_value(row, &source)?;
                let dimensions = (0..query.dimensions.len())
                    .map(|index| row.try_get::<Option<String>, _>(format!("d{index}").as_str()))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(MetricRow {
                    timestamp_ms: integer(row, "ts")?,
                    dimensions,
                    value,
                    distinct,
                })
            })
            .collect()
    }
}
