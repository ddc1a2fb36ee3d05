-- Where a dataset version came from, as JSON: for a training set built by the feature store, the definitions,
-- the sources and the entity frame it was computed from, each with its content hash.
ALTER TABLE dataset_versions ADD COLUMN lineage TEXT;
