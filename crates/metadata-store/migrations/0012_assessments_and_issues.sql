-- A searchable copy of each trace's assessments (the trace info JSON stays the source): `feedback.<name>`,
-- `expectation.<name>` and `issue.id` filters, assessment metrics and issue trace counts read it. `value` is
-- the JSON-encoded value, `aggregate_value` is what averages read (numbers, and booleans and yes/no as 1 and 0),
-- `is_numeric` whether it came from a number (only those compare with < and >).
CREATE TABLE trace_assessments (
    trace_id TEXT NOT NULL,
    assessment_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT,
    aggregate_value DOUBLE PRECISION,
    is_numeric BIGINT NOT NULL,
    valid BIGINT NOT NULL,
    create_time_ms BIGINT NOT NULL,
    PRIMARY KEY (trace_id, assessment_id)
) {{WITHOUT_ROWID}};
CREATE INDEX trace_assessments_by_name ON trace_assessments (kind, name);
-- MLflow 3's issues: problems found in traces, linked to them by assessments of kind "issue" named by the id.
CREATE TABLE issues (
    issue_id TEXT PRIMARY KEY,
    experiment_id TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    status TEXT NOT NULL,
    severity TEXT,
    root_causes TEXT,
    source_run_id TEXT,
    categories TEXT,
    created_by TEXT,
    created_timestamp BIGINT NOT NULL,
    last_updated_timestamp BIGINT NOT NULL
);
CREATE INDEX issues_by_experiment ON issues (experiment_id, created_timestamp);
