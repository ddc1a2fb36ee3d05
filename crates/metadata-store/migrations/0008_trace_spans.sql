-- Spans received over OTLP (MLflow 3's "TRACKING_STORE" span location): each kept as the OTel span JSON it is
-- served back as, ordered by start time.
CREATE TABLE trace_spans (
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    start_ns BIGINT NOT NULL,
    content TEXT NOT NULL,
    PRIMARY KEY (trace_id, span_id)
) {{WITHOUT_ROWID}};
