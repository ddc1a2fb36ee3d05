-- MLflow 3's registered scorers: versions of a serialized scorer per experiment and name (stored, never run).
CREATE TABLE scorers (
    experiment_id TEXT NOT NULL,
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    scorer_id TEXT NOT NULL,
    serialized TEXT NOT NULL,
    creation_time BIGINT NOT NULL,
    PRIMARY KEY (experiment_id, name, version)
);
