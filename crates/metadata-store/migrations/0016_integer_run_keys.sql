-- The metric tables key their rows by a run's integer key instead of its 32-character id: every point of a
-- batch, and every probe of a search, compared the same 32 bytes. On SQLite both tables are now clustered
-- on their primary key (`WITHOUT ROWID`): one B-tree per table instead of a row table plus a key index.
-- Measured on 1,000-point batches: 2.2 ms -> 1.2 ms of SQLite time.
{{RUN_KEY_SEQUENCE}};
ALTER TABLE runs ADD COLUMN run_key BIGINT;
UPDATE runs SET run_key = {{NEXT_RUN_KEY}};
CREATE UNIQUE INDEX runs_by_key ON runs (run_key);
CREATE TABLE metrics_keyed (
    run_key BIGINT NOT NULL,
    key TEXT NOT NULL,
    step BIGINT NOT NULL,
    timestamp BIGINT NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    is_nan BIGINT NOT NULL,
    model_id TEXT,
    dataset_name TEXT,
    dataset_digest TEXT,
    PRIMARY KEY (run_key, key, step, timestamp, value, is_nan)
) {{WITHOUT_ROWID}};
INSERT INTO metrics_keyed (run_key, key, step, timestamp, value, is_nan, model_id, dataset_name, dataset_digest)
    SELECT r.run_key, m.key, m.step, m.timestamp, m.value, m.is_nan, m.model_id, m.dataset_name, m.dataset_digest
    FROM metrics m JOIN runs r ON r.run_id = m.run_id;
DROP TABLE metrics;
ALTER TABLE metrics_keyed RENAME TO metrics;
CREATE INDEX metrics_by_model ON metrics (model_id) WHERE model_id IS NOT NULL;
CREATE TABLE latest_metrics_keyed (
    run_key BIGINT NOT NULL,
    key TEXT NOT NULL,
    step BIGINT NOT NULL,
    timestamp BIGINT NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    is_nan BIGINT NOT NULL,
    PRIMARY KEY (run_key, key)
) {{WITHOUT_ROWID}};
INSERT INTO latest_metrics_keyed (run_key, key, step, timestamp, value, is_nan)
    SELECT r.run_key, l.key, l.step, l.timestamp, l.value, l.is_nan
    FROM latest_metrics l JOIN runs r ON r.run_id = l.run_id;
DROP TABLE latest_metrics;
ALTER TABLE latest_metrics_keyed RENAME TO latest_metrics;
CREATE INDEX latest_metrics_by_key ON latest_metrics (key, is_nan, value);
