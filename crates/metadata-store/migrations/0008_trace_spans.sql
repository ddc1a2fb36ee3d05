-- Spans received over OTLP (MLflow 3's "TRACKING_STORE" span location): each kept as the OTel span JSON it is
-- served back as, ordered by start time. Beside it, what searches (`span.name`, `span.attributes.<k>`,
-- `trace.text`) and trace metrics (latency, model, cost) read: `attributes` holds the span's attributes as
-- MLflow stores them (a JSON object of JSON-encoded values), so the same LIKE patterns match.
CREATE TABLE trace_spans (
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    start_ns BIGINT NOT NULL,
    end_ns BIGINT,
    name TEXT NOT NULL,
    span_type TEXT,
    status TEXT NOT NULL,
    model_name TEXT,
    model_provider TEXT,
    input_cost DOUBLE PRECISION,
    output_cost DOUBLE PRECISION,
    total_cost DOUBLE PRECISION,
    attributes TEXT NOT NULL,
    content TEXT NOT NULL,
    PRIMARY KEY (trace_id, span_id)
) {{WITHOUT_ROWID}};
