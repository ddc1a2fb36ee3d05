"""`@mlflow.trace` logs without errors and the trace can be read back and tagged."""

import mlflow


def test_traced_function_is_recorded(experiment, client):
    @mlflow.trace
    def add(a, b):
        return a + b

    assert add(2, 3) == 5
    trace_id = mlflow.get_last_active_trace_id()
    assert trace_id
    # Traces are exported in the background; wait for the export as a reader would.
    mlflow.flush_trace_async_logging()
    trace = mlflow.get_trace(trace_id)
    assert trace.info.trace_id == trace_id
    assert trace.info.experiment_id == experiment
    client.set_trace_tag(trace_id, "reviewed", "yes")
    assert mlflow.get_trace(trace_id).info.tags["reviewed"] == "yes"
    feedback = mlflow.log_feedback(trace_id=trace_id, name="good", value=True)
    assert feedback.assessment_id.startswith("a-")
    assessments = mlflow.get_trace(trace_id).info.assessments
    assert [(item.name, item.value) for item in assessments] == [("good", True)]
    tagged = mlflow.search_traces(locations=[experiment], filter_string="tag.reviewed = 'yes'", return_type="list")
    assert [item.info.trace_id for item in tagged] == [trace_id]
    client.delete_trace_tag(trace_id, "reviewed")
    assert "reviewed" not in mlflow.get_trace(trace_id).info.tags
    found = mlflow.search_traces(locations=[experiment], return_type="list")
    assert [item.info.trace_id for item in found] == [trace_id]
    assert client.delete_traces(experiment, trace_ids=[trace_id]) == 1


def test_traces_inside_a_run_are_found_by_run_id(experiment):
    @mlflow.trace
    def double(value):
        return value * 2

    with mlflow.start_run() as run:
        double(21)
    outside = double(1)
    mlflow.flush_trace_async_logging()
    assert outside == 2
    found = mlflow.search_traces(run_id=run.info.run_id, return_type="list")
    assert len(found) == 1
    assert found[0].info.request_metadata["mlflow.sourceRun"] == run.info.run_id
