-- MLflow 3's registry webhooks. `events` is a JSON list of {"entity", "action"}, and `secret` is sealed by the
-- server (never stored or returned in the clear), and a deleted webhook keeps its row with `deleted_timestamp`.
CREATE TABLE webhooks (
    webhook_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT,
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    status TEXT NOT NULL,
    secret TEXT,
    creation_timestamp BIGINT NOT NULL,
    last_updated_timestamp BIGINT NOT NULL,
    deleted_timestamp BIGINT
);
CREATE INDEX webhooks_by_creation ON webhooks (creation_timestamp);
