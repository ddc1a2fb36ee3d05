-- LLM gateway keys and the usage they are limited by. A key is an access token (its `token_id`) with limits,
-- a team's limits apply to every key of the team. `budget_micros` is in millionths of a US dollar.
CREATE TABLE gateway_keys (
    token_id TEXT PRIMARY KEY,
    team TEXT,
    models TEXT NOT NULL,
    rpm BIGINT,
    tpm BIGINT,
    max_parallel BIGINT,
    budget_micros BIGINT,
    budget_period TEXT NOT NULL,
    created_time BIGINT NOT NULL,
    updated_time BIGINT NOT NULL
);
CREATE TABLE gateway_teams (
    team TEXT PRIMARY KEY,
    rpm BIGINT,
    tpm BIGINT,
    max_parallel BIGINT,
    budget_micros BIGINT,
    budget_period TEXT NOT NULL,
    created_time BIGINT NOT NULL,
    updated_time BIGINT NOT NULL
);
-- What each subject (`key:<token_id>`, `team:<name>`, `model:<name>`) used and holds reserved in one window:
-- `requests` and `tokens` per minute, `spend` (micro-dollars) per budget period.
CREATE TABLE gateway_usage (
    subject TEXT NOT NULL,
    kind TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    used BIGINT NOT NULL,
    reserved BIGINT NOT NULL,
    PRIMARY KEY (subject, kind, window_start)
);
-- Calls in flight, each a lease that lapses if its server dies before it ends.
CREATE TABLE gateway_leases (
    lease_id TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    expires_time BIGINT NOT NULL
);
CREATE INDEX gateway_leases_by_subject ON gateway_leases (subject, expires_time);
