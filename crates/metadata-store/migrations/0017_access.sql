-- Access control: users and service accounts, roles with grants (MLflow's levels plus DENY), role
-- assignments, API tokens (only a hash of the secret is kept), the audit log, a generation number that
-- every change to the above increments, so each replica knows when its cached view is out of date, and the
-- key every replica seals filtered search page tokens with.
CREATE TABLE access_users (
    user_id {{AUTO_ID}},
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT,
    is_admin BIGINT NOT NULL,
    kind TEXT NOT NULL,
    created_time BIGINT NOT NULL,
    failed_logins BIGINT NOT NULL,
    locked_until BIGINT NOT NULL
);
CREATE TABLE access_roles (
    role_id {{AUTO_ID}},
    workspace TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT,
    UNIQUE (workspace, name)
);
CREATE TABLE access_grants (
    grant_id {{AUTO_ID}},
    role_id BIGINT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_pattern TEXT NOT NULL,
    permission TEXT NOT NULL,
    UNIQUE (role_id, resource_type, resource_pattern)
);
CREATE TABLE access_assignments (
    user_id BIGINT NOT NULL,
    role_id BIGINT NOT NULL,
    PRIMARY KEY (user_id, role_id)
);
CREATE INDEX access_assignments_by_role ON access_assignments (role_id);
CREATE TABLE access_tokens (
    token_id TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL,
    name TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_time BIGINT NOT NULL,
    expires_time BIGINT,
    last_used_time BIGINT,
    revoked_time BIGINT
);
CREATE INDEX access_tokens_by_user ON access_tokens (user_id);
CREATE TABLE access_audit (
    entry_id {{AUTO_ID}},
    time BIGINT NOT NULL,
    principal TEXT,
    token_id TEXT,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    action TEXT NOT NULL,
    resource_type TEXT,
    resource_id TEXT,
    status BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    source TEXT
);
CREATE INDEX access_audit_by_time ON access_audit (time);
CREATE TABLE access_state (
    id BIGINT PRIMARY KEY,
    generation BIGINT NOT NULL,
    page_key TEXT
);
INSERT INTO access_state (id, generation) VALUES (1, 0);
