-- MLflow's AI-gateway catalog (secrets, model definitions, endpoints) as one document. Each change replaces
-- it only if its generation is still the one read, so replicas never lose each other's changes, and a
-- replica learns of a change by reading the generation alone.
CREATE TABLE gateway_catalog (
    id INTEGER PRIMARY KEY,
    generation BIGINT NOT NULL,
    body TEXT NOT NULL
);
