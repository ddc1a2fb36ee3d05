-- Span searches read the whole span as MLflow stores it (`Span.to_dict()` written by Python's json.dumps: name,
-- ids, times, events, status and JSON-encoded attributes), because MLflow's `trace.text`, `span.content` and
-- `span.attributes.<k>` patterns are written against that text. The column held the attributes alone before,
-- and rows written then keep that text (their attributes still match, their name and events do not).
ALTER TABLE trace_spans RENAME COLUMN attributes TO mlflow_text;
