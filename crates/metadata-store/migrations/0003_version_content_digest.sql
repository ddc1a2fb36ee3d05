-- The digest of a model version's files taken when it was registered, and the artifact path (below the
-- proxy's root) it was taken of: serving refuses files that differ, and the proxy refuses writes there.
-- Kept apart from the version's tags, which belong to its users.
ALTER TABLE model_versions ADD COLUMN content_digest TEXT;
ALTER TABLE model_versions ADD COLUMN sealed_path TEXT;
CREATE INDEX model_versions_sealed_path ON model_versions (sealed_path)
