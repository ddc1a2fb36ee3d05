-- Monitors over the prediction log, their window results, their alert history, and reference profiles of
-- model versions.
CREATE TABLE monitors (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    state TEXT NOT NULL,
    revision BIGINT NOT NULL,
    creation_time BIGINT NOT NULL,
    last_update_time BIGINT NOT NULL
);
CREATE TABLE monitor_windows (
    monitor TEXT NOT NULL,
    window_key BIGINT NOT NULL,
    window_start BIGINT NOT NULL,
    window_end BIGINT NOT NULL,
    status TEXT NOT NULL,
    rows_seen BIGINT NOT NULL,
    labels_seen BIGINT NOT NULL,
    figures TEXT NOT NULL,
    report_path TEXT,
    evaluated_time BIGINT NOT NULL,
    PRIMARY KEY (monitor, window_key)
);
CREATE TABLE monitor_events (
    event_id {{AUTO_ID}},
    monitor TEXT NOT NULL,
    timestamp_ms BIGINT NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    message TEXT NOT NULL,
    details TEXT NOT NULL
);
CREATE INDEX monitor_events_by_monitor ON monitor_events (monitor, event_id);
CREATE TABLE model_version_references (
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    profile TEXT NOT NULL,
    source TEXT NOT NULL,
    set_time BIGINT NOT NULL,
    PRIMARY KEY (name, version)
);
