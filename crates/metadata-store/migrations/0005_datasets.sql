-- Versions of datasets: content-addressed snapshots in the artifact store (`loopline data`), numbered per
-- name. The same content under the same name is one version.
CREATE TABLE dataset_versions (
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    content_hash TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    file_count BIGINT NOT NULL,
    row_count BIGINT,
    table_schema TEXT,
    profile TEXT,
    source TEXT NOT NULL,
    description TEXT NOT NULL,
    created_by TEXT NOT NULL,
    creation_time BIGINT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE UNIQUE INDEX dataset_versions_by_content ON dataset_versions (name, content_hash);
CREATE INDEX dataset_versions_by_hash ON dataset_versions (content_hash);
