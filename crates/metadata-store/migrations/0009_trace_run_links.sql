-- Traces linked to runs after the fact (`mlflow.genai.evaluate`, `link_traces_to_run`): found by a run_id
-- search as if they had been made in the run.
CREATE TABLE trace_run_links (
    trace_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    PRIMARY KEY (trace_id, run_id)
) {{WITHOUT_ROWID}};
CREATE INDEX trace_run_links_by_run ON trace_run_links (run_id);
