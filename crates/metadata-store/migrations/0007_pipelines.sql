-- Pipelines registered on the server (where their project is, their triggers' cursors, with a revision so
-- two replicas never both fire one trigger) and their runs (status, steps, which replica runs them).
CREATE TABLE pipelines (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    state TEXT NOT NULL,
    revision BIGINT NOT NULL,
    creation_time BIGINT NOT NULL,
    last_update_time BIGINT NOT NULL
);
CREATE TABLE pipeline_runs (
    run_id TEXT PRIMARY KEY,
    pipeline TEXT NOT NULL,
    cause TEXT NOT NULL,
    status TEXT NOT NULL,
    record TEXT NOT NULL,
    owner TEXT NOT NULL,
    cancel_requested BIGINT NOT NULL,
    creation_time BIGINT NOT NULL,
    last_update_time BIGINT NOT NULL,
    end_time BIGINT
);
CREATE INDEX pipeline_runs_by_pipeline ON pipeline_runs (pipeline, creation_time);
CREATE INDEX pipeline_runs_by_status ON pipeline_runs (status);
