-- Deployments (rollouts bound to the registry), their audit trail, and the history of registry aliases.
CREATE TABLE deployments (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    state TEXT NOT NULL,
    revision BIGINT NOT NULL,
    creation_time BIGINT NOT NULL,
    last_update_time BIGINT NOT NULL
);
CREATE TABLE deployment_events (
    event_id {{AUTO_ID}},
    deployment TEXT NOT NULL,
    timestamp_ms BIGINT NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    message TEXT NOT NULL,
    details TEXT NOT NULL
);
CREATE INDEX deployment_events_by_deployment ON deployment_events (deployment, event_id);
CREATE TABLE registered_model_alias_history (
    change_id {{AUTO_ID}},
    name TEXT NOT NULL,
    alias TEXT NOT NULL,
    version BIGINT,
    set_time BIGINT NOT NULL
);
CREATE INDEX alias_history_by_name ON registered_model_alias_history (name, alias, change_id);
