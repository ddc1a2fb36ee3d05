-- Quality gates: a policy per registered model, the evidence of each evaluation of a version against it,
-- and alias moves made over a failed or missing gate with the reason given.
CREATE TABLE gate_policies (
    name TEXT PRIMARY KEY,
    policy TEXT NOT NULL,
    revision BIGINT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_time BIGINT NOT NULL
);
CREATE TABLE gate_evaluations (
    evaluation_id {{AUTO_ID}},
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    policy_revision BIGINT NOT NULL,
    passed BIGINT NOT NULL,
    evidence TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_time BIGINT NOT NULL
);
CREATE INDEX gate_evaluations_by_version ON gate_evaluations (name, version, evaluation_id);
CREATE TABLE gate_overrides (
    override_id {{AUTO_ID}},
    name TEXT NOT NULL,
    alias TEXT NOT NULL,
    version BIGINT NOT NULL,
    reason TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_time BIGINT NOT NULL
);
CREATE INDEX gate_overrides_by_model ON gate_overrides (name, override_id);
