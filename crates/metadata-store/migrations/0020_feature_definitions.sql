-- Feature store definitions (entities, sources, feature views, services) of each project, every applied
-- version kept. Replicas learn of a change by reading the newest version number alone.
CREATE TABLE feature_definitions (
    project TEXT NOT NULL,
    version BIGINT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (project, version)
);
