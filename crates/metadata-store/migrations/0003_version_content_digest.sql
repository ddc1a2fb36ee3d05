-- The digest of a model version's files taken when it was registered: serving refuses files that differ.
-- Kept apart from the version's tags, which belong to its users.
ALTER TABLE model_versions ADD COLUMN content_digest TEXT
