-- MLflow 3's GenAI evaluation datasets: records of inputs and expectations, one record per distinct inputs
-- (`input_key` is their hash), each kept as the JSON the client reads.
CREATE TABLE eval_datasets (
    dataset_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    document TEXT NOT NULL,
    created_time BIGINT NOT NULL,
    last_update_time BIGINT NOT NULL
);
CREATE INDEX eval_datasets_by_name ON eval_datasets (name);
CREATE TABLE eval_dataset_experiments (
    dataset_id TEXT NOT NULL,
    experiment_id TEXT NOT NULL,
    PRIMARY KEY (dataset_id, experiment_id)
) {{WITHOUT_ROWID}};
CREATE TABLE eval_dataset_records (
    dataset_id TEXT NOT NULL,
    record_id TEXT NOT NULL,
    input_key TEXT NOT NULL,
    document TEXT NOT NULL,
    created_time BIGINT NOT NULL,
    PRIMARY KEY (dataset_id, record_id)
) {{WITHOUT_ROWID}};
CREATE UNIQUE INDEX eval_dataset_records_by_inputs ON eval_dataset_records (dataset_id, input_key);
