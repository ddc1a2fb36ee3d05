"""Behaviours MLflow's own server tests expect, each found different once and fixed (issue 14): checked here
with the stock client so CI guards them without MLflow's sources."""

import json
import time
import uuid

import mlflow
import pytest
import requests
from mlflow.exceptions import MlflowException


def test_logged_models_without_a_name_get_names_of_their_own(experiment, client):
    first = client.create_logged_model(experiment_id=experiment)
    second = client.create_logged_model(experiment_id=experiment)
    assert first.name and second.name and first.name != second.name
    assert "model" not in (first.name, second.name)
    # The source run is recorded as given, even one this server does not know (it may live elsewhere).
    elsewhere = uuid.uuid4().hex
    stored = client.create_logged_model(experiment_id=experiment, name="m1", source_run_id=elsewhere)
    assert client.get_logged_model(stored.model_id).source_run_id == elsewhere
    with pytest.raises(MlflowException, match="Invalid model name"):
        client.create_logged_model(experiment_id=experiment, name="a/b")


def test_assessments_are_valid_and_timestamped(experiment):
    @mlflow.trace
    def answer(question):
        return question.upper()

    answer("why")
    trace_id = mlflow.get_last_active_trace_id()
    mlflow.flush_trace_async_logging()
    mlflow.log_feedback(trace_id=trace_id, name="helpful", value=True)
    (assessment,) = mlflow.get_trace(trace_id).info.assessments
    assert assessment.valid is True
    assert assessment.create_time_ms and assessment.last_update_time_ms


def test_metrics_without_a_timestamp_are_refused_naming_it(experiment, server_url):
    run_id = mlflow.start_run().info.run_id
    mlflow.end_run()
    answer = requests.post(f"{server_url}/api/2.0/mlflow/runs/log-metric",
                           json={"run_id": run_id, "key": "loss", "value": 0.5})
    assert answer.status_code == 400
    assert "Missing value for required parameter 'timestamp'" in answer.json()["message"]
    wrong = requests.post(f"{server_url}/api/2.0/mlflow/runs/log-metric",
                          json={"run_id": run_id, "key": "loss", "value": 0.5, "timestamp": "foo"})
    assert "Invalid value \"foo\" for parameter 'timestamp' supplied" in wrong.json()["message"]
    named = requests.post(f"{server_url}/api/2.0/mlflow/experiments/create", json={"name": 123})
    assert "Invalid value 123 for parameter 'name' supplied" in named.json()["message"]


def test_refused_requests_are_logged_with_the_reason_and_without_the_query(server_url, server_log):
    missing = f"{uuid.uuid4().hex}"
    answer = requests.get(f"{server_url}/api/2.0/mlflow/runs/get",
                          params={"run_id": missing, "token": "do-not-log-me"})
    assert answer.status_code == 404
    line = next(line for line in server_log().splitlines() if missing in line)
    assert "request refused" in line and "path=/api/2.0/mlflow/runs/get" in line and "status=404" in line
    assert "RESOURCE_DOES_NOT_EXIST" in line
    assert "do-not-log-me" not in server_log()


def test_registry_timestamps_tags_and_copies(experiment, client, tmp_path):
    name = f"parity-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    with mlflow.start_run() as run:
        (tmp_path / "model.txt").write_text("weights")
        mlflow.log_artifact(str(tmp_path / "model.txt"), "model")
    source = f"{run.info.artifact_uri}/model"
    client.create_model_version(name, source, run.info.run_id, tags={"team": "fraud"})
    client.create_model_version(name, source, run.info.run_id)

    # A stage transition and a deleted version both count as updates of the registered model.
    before = client.get_registered_model(name).last_updated_timestamp
    time.sleep(0.01)
    client.transition_model_version_stage(name, "1", "Staging")
    after_transition = client.get_registered_model(name).last_updated_timestamp
    assert after_transition > before
    # Latest versions carry their tags.
    (staging,) = [v for v in client.get_registered_model(name).latest_versions if v.current_stage == "Staging"]
    assert staging.tags == {"team": "fraud"}
    assert client.get_latest_versions(name, ["Staging"])[0].tags == {"team": "fraud"}
    time.sleep(0.01)
    client.delete_model_version(name, "2")
    assert client.get_registered_model(name).last_updated_timestamp > after_transition

    # A copied version downloads from where the original's files are, not from a models:/ URI.
    copy_name = f"{name}-copy"
    copied = client.copy_model_version(f"models:/{name}/1", copy_name)
    assert client.get_model_version_download_uri(copy_name, copied.version) == \
        client.get_model_version_download_uri(name, "1")
    with pytest.raises(MlflowException, match="Unable to fetch model"):
        client.create_model_version(copy_name, f"models:/{name}/99")


def test_versions_of_a_logged_model_are_listed_on_it_as_mlflow_writes_them(experiment, client):
    name = f"lm-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    model = client.create_logged_model(experiment_id=experiment)
    for _ in range(2):
        client.create_model_version(name=name, source=model.artifact_location, model_id=model.model_id)
    assert client.get_logged_model(model.model_id).tags["mlflow.modelVersions"] == \
        f'[{{"name": "{name}", "version": 1}}, {{"name": "{name}", "version": 2}}]'


@pytest.mark.parametrize(("file_name", "content_type"), [
    ("a.txt", "text/plain"), ("b.pkl", "application/octet-stream"), ("c.png", "image/png"),
    ("d.pdf", "application/pdf"), ("MLmodel", "text/plain"), ("conda.yaml", "text/plain"),
    ("e.json", "text/plain"),
])
def test_artifacts_are_served_with_mlflows_content_types(experiment, server_url, tmp_path, file_name, content_type):
    (tmp_path / file_name).write_bytes(b"x")
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(tmp_path / file_name))
    answer = requests.get(f"{server_url}/get-artifact", params={"run_id": run.info.run_id, "path": file_name})
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].split(";")[0] == content_type
    assert answer.headers["X-Content-Type-Options"] == "nosniff"


def test_traces_travel_over_otlp_and_read_back_with_the_stock_client(experiment, server_url):
    # The client itself: the server says it speaks MLflow 3.17.2, so spans go to /v1/traces.
    assert requests.get(f"{server_url}/version").text == "3.17.2"

    @mlflow.trace
    def outer(x):
        return inner(x) + 1

    @mlflow.trace(span_type="LLM")
    def inner(x):
        return x * 2

    assert outer(3) == 7
    trace_id = mlflow.get_last_active_trace_id()
    mlflow.flush_trace_async_logging()
    trace = mlflow.get_trace(trace_id)
    assert trace.info.tags["mlflow.trace.spansLocation"] == "TRACKING_STORE"
    assert [(s.name, s.span_type, s.inputs, s.outputs) for s in trace.data.spans] == [
        ("outer", "UNKNOWN", {"x": 3}, 7), ("inner", "LLM", {"x": 3}, 6)]

    # Any OpenTelemetry exporter: raw OTLP protobuf, gzipped, with the experiment in a header.
    import gzip

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add()
    root = spans.spans.add()
    root.trace_id = bytes.fromhex("12" * 16)
    root.span_id = bytes.fromhex("34" * 8)
    root.name = "external-app"
    root.start_time_unix_nano = 1_700_000_000_000_000_000
    root.end_time_unix_nano = 1_700_000_000_500_000_000
    attribute = root.attributes.add()
    attribute.key = "gen_ai.request.model"
    attribute.value.string_value = "gpt-4o"
    # OpenInference's names, read as MLflow's (span type, inputs, outputs, token usage).
    for key, value in [("openinference.span.kind", "LLM"), ("input.value", "Hello, world!"), ("output.value", "Bye!")]:
        attribute = root.attributes.add()
        attribute.key = key
        attribute.value.string_value = value
    for key, value in [("llm.token_count.prompt", 100), ("llm.token_count.completion", 50)]:
        attribute = root.attributes.add()
        attribute.key = key
        attribute.value.int_value = value
    answer = requests.post(f"{server_url}/v1/traces", data=gzip.compress(request.SerializeToString()),
                           headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip",
                                    "x-mlflow-experiment-id": experiment})
    assert answer.status_code == 200, answer.text
    external = mlflow.get_trace("tr-" + "12" * 16)
    assert external.info.execution_time_ms == 500
    assert external.info.state.value == "OK"
    (only,) = external.data.spans
    assert only.name == "external-app"
    assert only.attributes["gen_ai.request.model"] == "gpt-4o"
    assert (only.span_type, only.inputs, only.outputs) == ("LLM", "Hello, world!", "Bye!")
    assert external.info.request_preview == '"Hello, world!"'
    assert external.info.token_usage == {"input_tokens": 100, "output_tokens": 50, "total_tokens": 150}
    found = mlflow.search_traces(locations=[experiment], return_type="list")
    assert sorted(len(t.data.spans) for t in found) == [1, 2]


def _answered_trace():
    """A one-span trace, exported: its id."""
    @mlflow.trace
    def reply(question):
        return "42"

    reply("meaning")
    trace_id = mlflow.get_last_active_trace_id()
    mlflow.flush_trace_async_logging()
    return trace_id


def test_assessments_are_read_updated_overridden_and_deleted(experiment):
    from mlflow.entities import Feedback

    trace_id = _answered_trace()
    first = mlflow.log_feedback(trace_id=trace_id, name="correct", value=False, rationale="guess")
    assert mlflow.get_assessment(trace_id, first.assessment_id).rationale == "guess"

    updated = mlflow.update_assessment(trace_id, first.assessment_id,
                                       Feedback(name="correct", value=True, rationale="checked"))
    assert (updated.value, updated.rationale) == (True, "checked")
    assert updated.last_update_time_ms >= updated.create_time_ms

    # An override makes the old one invalid; deleting the override brings it back.
    override = mlflow.override_feedback(trace_id=trace_id, assessment_id=first.assessment_id, value=False,
                                        rationale="actually wrong")
    assert override.overrides == first.assessment_id
    assert mlflow.get_assessment(trace_id, first.assessment_id).valid is False
    mlflow.delete_assessment(trace_id, override.assessment_id)
    assert mlflow.get_assessment(trace_id, first.assessment_id).valid is True
    assert [a.assessment_id for a in mlflow.get_trace(trace_id).info.assessments] == [first.assessment_id]
    with pytest.raises(MlflowException, match="not found"):
        mlflow.get_assessment(trace_id, "a-missing")


def test_expectations_with_structured_values_are_kept_as_json_text(experiment, server_url):
    trace_id = _answered_trace()
    expected = {"threshold_ms": 1000, "passed": True, "tags": ["a", "b"]}
    logged = mlflow.log_expectation(trace_id=trace_id, name="limits", value=expected)
    assert mlflow.get_assessment(trace_id, logged.assessment_id).value == expected

    # Sent as a plain value over REST, answered as MLflow answers: JSON text, with Python's spacing.
    answer = requests.post(f"{server_url}/api/3.0/mlflow/traces/{trace_id}/assessments", json={
        "assessment": {"assessment_name": "shape", "expectation": {"value": {"rows": 3}},
                       "source": {"source_type": "CODE", "source_id": "check"}}}).json()["assessment"]
    assert answer["expectation"] == {
        "serialized_value": {"serialization_format": "JSON_FORMAT", "value": '{"rows": 3}'}}
    # A scalar stays a value; an unknown format is the client's mistake.
    scalar = requests.post(f"{server_url}/api/3.0/mlflow/traces/{trace_id}/assessments", json={
        "assessment": {"assessment_name": "n", "expectation": {"value": 3}}}).json()["assessment"]
    assert scalar["expectation"] == {"value": 3}
    refused = requests.post(f"{server_url}/api/3.0/mlflow/traces/{trace_id}/assessments", json={
        "assessment": {"assessment_name": "n", "expectation": {
            "serialized_value": {"serialization_format": "PICKLE", "value": "x"}}}})
    assert refused.status_code == 400 and "JSON_FORMAT" in refused.json()["message"]

    # Fields of the wrong type are refused before they are stored: stored, they would break every reader.
    url = f"{server_url}/api/3.0/mlflow/traces/{trace_id}/assessments"
    for hostile in [{"rationale": 5}, {"metadata": {"a": 1}}, {"source": {"source_type": "ROBOT"}},
                    {"valid": "yes"}, {"create_time": "yesterday"}, {"expectation": {"value": 1}}]:
        body = {"assessment_name": "n", "feedback": {"value": True}, **hostile}
        assert requests.post(url, json={"assessment": body}).status_code == 400, hostile
    assert requests.post(url, json={"assessment": {"assessment_name": "n", "expectation": {}}}).status_code == 400
    wiped = requests.patch(f"{url}/{logged.assessment_id}",
                           json={"assessment": {"assessment_name": "limits"}, "update_mask": "expectation"})
    assert wiped.status_code == 400
    assert mlflow.get_trace(trace_id).info.assessments  # the trace still reads back


def test_the_prompt_registry_works_through_the_stock_client(mlflow_tracking, server_url):
    name = f"greeting-{uuid.uuid4().hex[:8]}"
    mlflow.genai.register_prompt(name=name, template="Hello {{name}}!", commit_message="first")
    mlflow.genai.register_prompt(name=name, template="Hi {{name}}, welcome!")
    assert mlflow.genai.load_prompt(f"prompts:/{name}/1").format(name="Ada") == "Hello Ada!"
    mlflow.genai.set_prompt_alias(name, alias="production", version=2)
    assert mlflow.genai.load_prompt(f"prompts:/{name}@production").template == "Hi {{name}}, welcome!"
    # No version: the latest, as MLflow resolves the reserved alias `latest`.
    assert mlflow.genai.load_prompt(name).version == 2
    assert mlflow.genai.load_prompt(f"prompts:/{name}@latest").version == 2
    assert name in [prompt.name for prompt in mlflow.genai.search_prompts()]
    # A prompt's source is one of MLflow's placeholders and nothing else (it would otherwise be fetched).
    refused = requests.post(f"{server_url}/api/2.0/mlflow/model-versions/create", json={
        "name": name, "source": "s3://bucket/anything", "tags": [{"key": "mlflow.prompt.is_prompt", "value": "true"}]})
    assert refused.status_code == 400
    assert "Invalid prompt source" in refused.json()["message"]
    # A prompt is not a model: serving says so instead of fetching its placeholder source.
    served = requests.post(f"{server_url}/models/{name}/versions/1/invocations", json={"inputs": [[1.0]]})
    assert 400 <= served.status_code < 500
    assert "is a prompt, not a model" in served.text


def test_genai_evaluate_scores_traces_and_links_them_to_its_run(experiment):
    from mlflow.genai.scorers import scorer

    @scorer
    def exact_match(outputs, expectations):
        return outputs == expectations["expected"]

    data = [{"inputs": {"question": "hi"}, "expectations": {"expected": "HI"}},
            {"inputs": {"question": "hello there"}, "expectations": {"expected": "nope"}}]
    result = mlflow.genai.evaluate(data=data, predict_fn=lambda question: question.upper(), scorers=[exact_match])
    assert result.metrics["exact_match/mean"] == 0.5
    traces = mlflow.search_traces(run_id=result.run_id, return_type="list")
    assert sorted(a.value for t in traces for a in t.info.assessments if a.name == "exact_match") == [False, True]

    # A trace made outside the run, linked to it afterwards, is found with the run's traces.
    @mlflow.trace
    def later(x):
        return x

    later(1)
    outside = mlflow.get_last_active_trace_id()
    mlflow.flush_trace_async_logging()
    mlflow.MlflowClient().link_traces_to_run([outside, "tr-does-not-exist"], result.run_id)
    assert outside in [t.info.trace_id for t in mlflow.search_traces(run_id=result.run_id, return_type="list")]
    with pytest.raises(MlflowException, match="not found|does not exist"):
        mlflow.MlflowClient().link_traces_to_run([outside], "0" * 32)
    # Linked at once, before the background export has written it: still found with the run's traces.
    with mlflow.start_span(name="unexported") as span:
        span.set_attributes({"k": "v"})
    mlflow.MlflowClient().link_traces_to_run([span.trace_id], result.run_id)
    found = mlflow.MlflowClient().search_traces(locations=[experiment], flush=True,
                                                filter_string=f"attribute.run_id = '{result.run_id}'")
    assert span.trace_id in [t.info.trace_id for t in found]


def test_traces_that_load_prompts_are_linked_to_them(experiment):
    name = f"qa-{uuid.uuid4().hex[:8]}"
    mlflow.genai.register_prompt(name=name, template="Answer: {{question}}")

    @mlflow.trace
    def answer(question):
        return mlflow.genai.load_prompt(f"prompts:/{name}/1").format(question=question)

    answer("why")
    trace_id = mlflow.get_last_active_trace_id()
    mlflow.flush_trace_async_logging()
    mlflow.MlflowClient().link_prompt_versions_to_trace(
        trace_id=trace_id, prompt_versions=[mlflow.genai.load_prompt(f"prompts:/{name}/1")])
    linked = json.loads(mlflow.get_trace(trace_id).info.tags["mlflow.linkedPrompts"])
    assert {"name": name, "version": "1"} in linked


def test_the_legacy_v2_trace_api_still_works(experiment, server_url):
    api = f"{server_url}/api/2.0/mlflow/traces"
    started = requests.post(api, json={
        "experiment_id": experiment, "timestamp_ms": 1_000,
        "request_metadata": [{"key": "mlflow.traceInputs", "value": "{}"}], "tags": [{"key": "team", "value": "a"}]})
    assert started.status_code == 200, started.text
    info = started.json()["trace_info"]
    request_id = info["request_id"]
    assert (info["status"], info["experiment_id"], info["timestamp_ms"]) == ("IN_PROGRESS", experiment, "1000")
    ended = requests.patch(f"{api}/{request_id}", json={"timestamp_ms": 3_500, "status": "OK",
                                                        "tags": [{"key": "reviewed", "value": "yes"}]})
    assert ended.status_code == 200, ended.text
    fetched = requests.get(f"{api}/{request_id}/info").json()["trace_info"]
    assert (fetched["status"], fetched["execution_time_ms"]) == ("OK", "2500")
    assert {"key": "reviewed", "value": "yes"} in fetched["tags"]
    found = requests.get(api, params={"experiment_ids": experiment}).json()["traces"]
    assert request_id in [t["request_id"] for t in found]
    # The same trace through the v3 API.
    assert requests.get(f"{server_url}/api/3.0/mlflow/traces/{request_id}").json()["trace"]["trace_info"]["state"] == "OK"
    bad = requests.patch(f"{api}/{request_id}", json={"timestamp_ms": 1, "status": "DONE"})
    assert bad.status_code == 400


def test_evaluation_datasets_through_the_stock_client(experiment, server_url):
    from mlflow.genai import datasets

    name = f"qa-{uuid.uuid4().hex[:8]}"
    dataset = datasets.create_dataset(name=name, experiment_id=[experiment], tags={"team": "ml"})
    dataset.merge_records([{"inputs": {"q": "2+2"}, "expectations": {"answer": "4"}},
                           {"inputs": {"q": "capital of France"}, "expectations": {"answer": "Paris"}}])
    # The same inputs again update their record: expectations merge.
    dataset.merge_records([{"inputs": {"q": "2+2"}, "expectations": {"explanation": "sum"}}])
    fetched = datasets.get_dataset(dataset_id=dataset.dataset_id)
    assert fetched.to_df()[["inputs", "expectations"]].to_dict("records") == [
        {"inputs": {"q": "2+2"}, "expectations": {"answer": "4", "explanation": "sum"}},
        {"inputs": {"q": "capital of France"}, "expectations": {"answer": "Paris"}}]
    assert json.loads(fetched.profile) == {"num_records": 2}
    assert json.loads(fetched.schema)["inputs"] == {"q": "string"}
    assert [d.name for d in datasets.search_datasets(experiment_ids=[experiment])] == [name]
    assert name in [d.name for d in datasets.search_datasets(filter_string=f"name = '{name}'")]
    assert [d.name for d in datasets.search_datasets(
        experiment_ids=[experiment], filter_string="tags.team = 'ml'")] == [name]
    # The author is the client's mlflow.user tag, as MLflow reads it; empty datasets have digests of their own.
    user = fetched.tags.get("mlflow.user")
    assert user and fetched.created_by == user
    empty = [datasets.create_dataset(name=f"{name}-{n}", experiment_id=[experiment]) for n in range(2)]
    assert empty[0].digest != empty[1].digest
    datasets.set_dataset_tags(dataset_id=dataset.dataset_id, tags={"stage": "gold"})
    datasets.delete_dataset_tag(dataset_id=dataset.dataset_id, key="team")
    tags = datasets.get_dataset(dataset_id=dataset.dataset_id).tags
    assert tags["stage"] == "gold" and "team" not in tags

    result = mlflow.genai.evaluate(data=fetched, predict_fn=lambda q: "4", scorers=[])
    assert result.run_id

    # Records of another shape are refused, whole.
    bad = requests.post(f"{server_url}/api/3.0/mlflow/datasets/{dataset.dataset_id}/records",
                        json={"records": json.dumps([{"inputs": {"q": "x"}}, {"inputs": "not an object"}])})
    assert bad.status_code == 400
    assert json.loads(datasets.get_dataset(dataset_id=dataset.dataset_id).profile) == {"num_records": 2}
    datasets.delete_dataset(dataset_id=dataset.dataset_id)
    with pytest.raises(MlflowException, match="not found"):
        datasets.get_dataset(dataset_id=dataset.dataset_id)


def test_trace_infos_come_in_batches_without_spans(experiment, server_url):
    @mlflow.trace
    def step(x):
        return x

    step(1)
    trace_id = mlflow.get_last_active_trace_id()
    mlflow.flush_trace_async_logging()
    answer = requests.post(f"{server_url}/api/3.0/mlflow/traces/batchGetInfos",
                           json={"trace_ids": [trace_id, "tr-" + "0" * 32]})
    assert answer.status_code == 200, answer.text
    assert [info["trace_id"] for info in answer.json()["trace_infos"]] == [trace_id]
    other = requests.post(f"{server_url}/api/3.0/mlflow/traces/batchGetInfos",
                          json={"trace_ids": [trace_id], "experiment_ids": ["999999"]})
    assert other.json().get("trace_infos", []) == []


def test_where_a_traces_spans_are_cannot_be_changed_by_a_client(experiment, server_url):
    @mlflow.trace
    def f(x):
        return x

    f(1)
    trace_id = mlflow.get_last_active_trace_id()
    mlflow.flush_trace_async_logging()
    # The stock client drops such calls itself; a raw request is refused by the server.
    tags = f"{server_url}/api/2.0/mlflow/traces/{trace_id}/tags"
    changed = requests.patch(tags, json={"key": "mlflow.trace.spansLocation", "value": "ARTIFACT_REPO"})
    assert changed.status_code == 400 and "immutable" in changed.json()["message"]
    removed = requests.delete(tags, json={"key": "mlflow.trace.spansLocation"})
    assert removed.status_code == 400
    assert len(mlflow.get_trace(trace_id).data.spans) == 1


def test_registered_scorers_are_versioned_and_code_is_refused(experiment):
    from mlflow.genai.scorers import Guidelines, ScorerSamplingConfig, delete_scorer, get_scorer, list_scorers, scorer

    Guidelines(name="polite", guidelines=["Be polite"]).register(name="polite")
    Guidelines(name="polite", guidelines=["Be very polite"]).register(name="polite")
    assert [s.name for s in list_scorers()] == ["polite"]
    assert get_scorer(name="polite").guidelines == ["Be very polite"]
    assert get_scorer(name="polite", version=1).guidelines == ["Be polite"]
    # Not running on live traces: stopping it is what is already true, starting it is refused saying why.
    get_scorer(name="polite").stop()
    with pytest.raises(MlflowException, match="does not run scorers on live traces"):
        get_scorer(name="polite").start(sampling_config=ScorerSamplingConfig(sample_rate=0.5))

    @scorer
    def custom(outputs):
        return True

    # A scorer carrying code would run on every machine that loads it: refused, as MLflow does by default.
    with pytest.raises(MlflowException, match="Custom scorer registration"):
        custom.register(name="custom")
    delete_scorer(name="polite", version="all")
    with pytest.raises(MlflowException, match="not found"):
        get_scorer(name="polite")


def test_traces_are_searched_by_spans_and_feedback_and_measured(experiment, client):
    from mlflow.entities import AssessmentSource, Feedback
    from mlflow.entities.trace_metrics import AggregationType, MetricAggregation, MetricViewType

    @mlflow.trace(span_type="CHAIN")
    def agent(question):
        mlflow.update_current_trace(metadata={"mlflow.trace.session": "s-1"})
        return llm(question)

    @mlflow.trace(span_type="LLM")
    def llm(question):
        span = mlflow.get_current_active_span()
        span.set_attribute("mlflow.chat.tokenUsage", {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5})
        return f"answer to {question}"

    trace_ids = []
    for question in ["refund policy", "shipping time", "opening hours"]:
        agent(question)
        trace_ids.append(mlflow.get_last_active_trace_id())
    mlflow.flush_trace_async_logging()
    source = AssessmentSource(source_type="HUMAN", source_id="reviewer")
    for trace_id, verdict in zip(trace_ids, ["yes", "no", "yes"]):
        mlflow.log_assessment(trace_id, Feedback(name="correct", value=verdict, source=source))

    def found(filter_string):
        return sorted(t.info.trace_id for t in mlflow.search_traces(
            locations=[experiment], filter_string=filter_string, return_type="list"))

    assert found("span.type = 'LLM'") == sorted(trace_ids)
    assert found("span.type = 'LLM' AND span.name = 'agent'") == []
    assert found("trace.text ILIKE '%REFUND%'") == [trace_ids[0]]
    # The text searched is the span as MLflow writes it: its name is in it, the OTLP wrapping is not.
    assert found("trace.text LIKE '%\"name\": \"llm\"%'") == sorted(trace_ids)
    assert found("trace.text LIKE '%string_value%'") == []
    assert found("feedback.correct = 'yes'") == sorted([trace_ids[0], trace_ids[2]])
    assert found("feedback.correct = 'no' AND span.name = 'llm'") == [trace_ids[1]]
    with pytest.raises(mlflow.exceptions.MlflowException, match="span attribute"):
        found("span.colour = 'red'")

    # Token usage summed from the spans (the client's own summary agrees).
    info = mlflow.get_trace(trace_ids[0]).info
    assert info.token_usage == {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}

    store = client._tracking_client.store
    counts = store.query_trace_metrics(
        experiment_ids=[experiment], view_type=MetricViewType.TRACES, metric_name="trace_count",
        aggregations=[MetricAggregation(aggregation_type=AggregationType.COUNT)], dimensions=["trace_name"])
    assert [(p.dimensions, p.values) for p in counts] == [({"trace_name": "agent"}, {"COUNT": 3.0})]
    tokens = store.query_trace_metrics(
        experiment_ids=[experiment], view_type=MetricViewType.TRACES, metric_name="input_tokens",
        aggregations=[MetricAggregation(aggregation_type=AggregationType.SUM),
                      MetricAggregation(aggregation_type=AggregationType.PERCENTILE, percentile_value=50)])
    assert [p.values for p in tokens] == [{"SUM": 9.0, "P50.0": 3.0}]
    spans = store.query_trace_metrics(
        experiment_ids=[experiment], view_type=MetricViewType.SPANS, metric_name="span_count",
        aggregations=[MetricAggregation(aggregation_type=AggregationType.COUNT)], dimensions=["span_type"],
        filters=["span.name = 'llm'"])
    assert [(p.dimensions, p.values) for p in spans] == [({"span_type": "LLM"}, {"COUNT": 3.0})]
    verdicts = store.query_trace_metrics(
        experiment_ids=[experiment], view_type=MetricViewType.ASSESSMENTS, metric_name="assessment_count",
        aggregations=[MetricAggregation(aggregation_type=AggregationType.COUNT)], dimensions=["assessment_value"])
    assert sorted((p.dimensions["assessment_value"], p.values["COUNT"]) for p in verdicts) == [
        ('"no"', 1.0), ('"yes"', 2.0)]
    with pytest.raises(mlflow.exceptions.MlflowException, match="invalid aggregation_type"):
        store.query_trace_metrics(
            experiment_ids=[experiment], view_type=MetricViewType.TRACES, metric_name="trace_count",
            aggregations=[MetricAggregation(aggregation_type=AggregationType.AVG)])

    correlation = store.calculate_trace_filter_correlation(
        experiment_ids=[experiment], filter_string1="feedback.correct = 'yes'",
        filter_string2="trace.text ILIKE '%refund%'")
    assert (correlation.filter1_count, correlation.filter2_count, correlation.joint_count,
            correlation.total_count) == (2, 1, 1, 3)
    assert 0 < correlation.npmi <= 1


def test_issues_are_created_found_and_counted(experiment, client):
    store = client._tracking_client.store
    slow = store.create_issue(experiment_id=experiment, name="slow answers", description="p95 above 2 s",
                              severity="high", root_causes=["cold cache"], categories=["latency"])
    assert slow.issue_id.startswith("iss-") and slow.status.value == "pending"
    wrong = store.create_issue(experiment_id=experiment, name="wrong refunds", description="policy misquoted",
                               severity="low")
    assert store.get_issue(slow.issue_id).root_causes == ["cold cache"]
    resolved = store.update_issue(wrong.issue_id, status="resolved")
    assert resolved.status.value == "resolved" and resolved.last_updated_timestamp >= wrong.created_timestamp
    found = store.search_issues(experiment_id=experiment, include_trace_count=True)
    assert [(i.issue_id, i.trace_count) for i in found] == [(slow.issue_id, 0), (wrong.issue_id, 0)]
    pending = store.search_issues(experiment_id=experiment, filter_string="status = 'pending'")
    assert [i.issue_id for i in pending] == [slow.issue_id]
    last_page = requests.post(f"{mlflow.get_tracking_uri()}/api/3.0/mlflow/issues/search",
                              json={"experiment_id": experiment})
    assert last_page.json()["next_page_token"] == ""  # present and empty, as MLflow answers
    with pytest.raises(mlflow.exceptions.MlflowException, match="not found"):
        store.get_issue("iss-" + "0" * 32)
    with pytest.raises(mlflow.exceptions.MlflowException, match="Supported fields"):
        store.search_issues(experiment_id=experiment, filter_string="name = 'x'")


def test_webhooks_deliver_signed_registry_events(client, as_admin):
    with as_admin():
        import base64
        import hashlib
        import hmac
        import queue
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        received = queue.Queue()
        answers = ["503", "200"]  # the first delivery fails once and is retried

        class Receiver(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.put((self.headers, body))
                status = int(answers.pop(0)) if answers else 200
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"thanks")

            def log_message(self, *args):
                pass

        receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
        threading.Thread(target=receiver.serve_forever, daemon=True).start()
        try:
            url = f"http://127.0.0.1:{receiver.server_port}/hook"
            hook = client.create_webhook(name="registry-hook", url=url, secret="s3cret",
                                         events=["registered_model.created", "model_version_alias.created"])
            assert hook.status.value == "ACTIVE"
            assert sorted(str(e) for e in client.get_webhook(hook.webhook_id).events) == [
                "model_version_alias.created", "registered_model.created"]
            assert hook.webhook_id in [w.webhook_id for w in client.list_webhooks()]

            name = f"hooked-{uuid.uuid4().hex[:8]}"
            client.create_registered_model(name, description="watched")
            first_headers, first_body = received.get(timeout=60)
            retry_headers, retry_body = received.get(timeout=60)
            assert retry_body == first_body
            assert retry_headers["X-MLflow-Delivery-Id"] == first_headers["X-MLflow-Delivery-Id"]
            payload = json.loads(retry_body)
            assert (payload["entity"], payload["action"]) == ("registered_model", "created")
            assert payload["data"] == {"name": name, "tags": {}, "description": "watched"}
            # Verified as MLflow's documentation tells receivers to verify.
            signed = f"{retry_headers['X-MLflow-Delivery-Id']}.{retry_headers['X-MLflow-Timestamp']}.{retry_body.decode()}"
            expected = base64.b64encode(hmac.new(b"s3cret", signed.encode(), hashlib.sha256).digest()).decode()
            assert retry_headers["X-MLflow-Signature"] == f"v1,{expected}"

            result = client.test_webhook(hook.webhook_id)
            assert result.success and result.response_status == 200 and result.response_body == "thanks"
            _, example = received.get(timeout=60)
            assert json.loads(example)["data"]["name"] == "example_model"

            updated = client.update_webhook(hook.webhook_id, status="DISABLED", description="paused")
            assert (updated.status.value, updated.description) == ("DISABLED", "paused")
            client.create_registered_model(f"{name}-quiet")
            client.delete_webhook(hook.webhook_id)
            with pytest.raises(MlflowException, match="not found"):
                client.get_webhook(hook.webhook_id)
            assert received.empty(), "a disabled webhook gets nothing"

            with pytest.raises(MlflowException, match="Invalid action"):
                client.create_webhook(name="bad", url=url, events=["registered_model.deleted"])
            with pytest.raises(MlflowException, match="scheme"):
                client.create_webhook(name="bad", url="ftp://example.com/x", events=["model_version.created"])
            with pytest.raises(MlflowException, match="this server itself"):
                client.create_webhook(name="loop", url=f"{mlflow.get_tracking_uri()}/api/2.0/mlflow/experiments/create",
                                      events=["model_version.created"])
        finally:
            receiver.shutdown()


def test_the_ui_downloads_a_traces_spans_as_mlflow_writes_them(experiment, server_url):
    from mlflow.entities import Span

    @mlflow.trace(span_type="RETRIEVER")
    def lookup(query):
        return ["doc-1"]

    lookup("refund")
    trace_id = mlflow.get_last_active_trace_id()
    mlflow.flush_trace_async_logging()
    answer = requests.get(f"{server_url}/ajax-api/2.0/mlflow/get-trace-artifact", params={"request_id": trace_id})
    assert answer.status_code == 200
    assert answer.headers["Content-Disposition"] == "attachment; filename=traces.json"
    (span,) = [Span.from_dict(d) for d in answer.json()["spans"]]
    assert (span.name, span.span_type, span.inputs, span.outputs) == ("lookup", "RETRIEVER", {"query": "refund"},
                                                                   ["doc-1"])
    assert span.trace_id == trace_id
    missing = requests.get(f"{server_url}/ajax-api/2.0/mlflow/get-trace-artifact")
    assert missing.status_code == 400 and "request_id" in missing.json()["message"]
    escape = requests.get(f"{server_url}/ajax-api/2.0/mlflow/get-trace-artifact",
                          params={"request_id": trace_id, "path": "../../../../etc/passwd"})
    assert 400 <= escape.status_code < 500


def test_the_web_ui_lists_and_downloads_run_and_version_artifacts(experiment, client, server_url, tmp_path):
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "my.file").write_text("Hello, World!")
    (tmp_path / "top.txt").write_text("top")
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(tmp_path / "top.txt"))
        mlflow.log_artifacts(str(tmp_path / "dir"), "dir")
    run_id = run.info.run_id
    for prefix in ("/api", "/ajax-api"):
        root = requests.get(f"{server_url}{prefix}/2.0/mlflow/artifacts/list", params={"run_id": run_id}).json()
        assert root["root_uri"] == run.info.artifact_uri
        assert {(f["path"], f["is_dir"]) for f in root["files"]} == {("dir", True), ("top.txt", False)}
    inner = requests.get(f"{server_url}/ajax-api/2.0/mlflow/artifacts/list",
                         params={"run_uuid": run_id, "path": "dir"}).json()
    assert inner["files"] == [{"path": "dir/my.file", "is_dir": False, "file_size": 13}]
    got = requests.get(f"{server_url}/get-artifact", params={"run_uuid": run_id, "path": "dir/my.file"})
    assert got.text == "Hello, World!"
    for hostile in ["../../../etc/passwd", "dir/../../x", "%2e%2e/%2e%2e/secret"]:
        refused = requests.get(f"{server_url}/get-artifact", params={"run_id": run_id, "path": hostile})
        assert 400 <= refused.status_code < 500, hostile
    name = f"ui-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    client.create_model_version(name, f"{run.info.artifact_uri}/dir", run_id)
    version_file = requests.get(f"{server_url}/model-versions/get-artifact",
                                params={"name": name, "version": "1", "path": "my.file"})
    assert version_file.status_code == 200 and version_file.text == "Hello, World!"


def test_the_web_ui_finds_the_datasets_an_experiments_runs_used(experiment, client, server_url):
    from mlflow.entities import Dataset, DatasetInput, InputTag

    run_id = client.create_run(experiment).info.run_id
    dataset = Dataset(name="name1", digest="digest1", source_type="local", source="source1")
    client.log_inputs(run_id, [DatasetInput(dataset, [InputTag("mlflow.data.context", "training")])])
    answer = requests.post(f"{server_url}/ajax-api/2.0/mlflow/experiments/search-datasets",
                           json={"experiment_ids": [experiment]})
    assert answer.json()["dataset_summaries"] == [
        {"experiment_id": experiment, "name": "name1", "digest": "digest1", "context": "training"}]
    for body, message in [({}, "must specify at least one experiment_id"),
                          ({"experiment_ids": [f"id_{i}" for i in range(1000)]}, "cannot specify more than")]:
        refused = requests.post(f"{server_url}/ajax-api/2.0/mlflow/experiments/search-datasets", json=body)
        assert refused.status_code == 400 and message in refused.json()["message"]


def test_the_web_ui_lists_and_reads_a_logged_models_files(experiment, server_url):
    class Echo(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input):
            return model_input

    info = mlflow.pyfunc.log_model(name="model", python_model=Echo())
    base = f"{server_url}/ajax-api/2.0/mlflow/logged-models/{info.model_id}/artifacts"
    listed = requests.get(f"{base}/directories").json()
    assert "MLmodel" in [f["path"] for f in listed["files"]]
    mlmodel = requests.get(f"{base}/files", params={"artifact_file_path": "MLmodel"})
    assert mlmodel.status_code == 200 and info.model_id in mlmodel.text
    escaped = requests.get(f"{base}/files", params={"artifact_file_path": "../../../../etc/passwd"})
    assert 400 <= escaped.status_code < 500


GET_RUN = """query GetRun($data: MlflowGetRunInput!) @component(name: "MLflow.ExperimentRunTracking") {
  mlflowGetRun(input: $data) { apiError { code message __typename }
    run { info { runUuid startTime status __typename } experiment { experimentId name tags { key value } __typename }
          data { metrics { key value step timestamp __typename } params { key value } tags { key value } }
          inputs { datasetInputs { dataset { name } } modelInputs { modelId } } __typename }
    __typename } }"""


def test_the_web_uis_graphql_queries_are_answered_as_mlflow_answers_them(experiment, server_url):
    with mlflow.start_run() as run:
        mlflow.log_param("lr", "0.1")
        mlflow.log_metric("loss", 0.5, step=3)
        mlflow.log_metric("broken", float("nan"))
    body = {"query": GET_RUN, "operationName": "GetRun", "variables": {"data": {"runId": run.info.run_id}}}
    answer = requests.post(f"{server_url}/graphql", json=body).json()
    assert answer["errors"] is None
    got = answer["data"]["mlflowGetRun"]
    assert got["__typename"] == "MlflowGetRunResponse" and got["apiError"] is None
    assert got["run"]["info"]["runUuid"] == run.info.run_id
    assert isinstance(got["run"]["info"]["startTime"], str)  # 64-bit integers as strings
    assert got["run"]["experiment"]["experimentId"] == experiment
    metrics = {m["key"]: m for m in got["run"]["data"]["metrics"]}
    assert metrics["loss"]["step"] == "3" and metrics["loss"]["value"] == 0.5
    assert metrics["broken"]["value"] is None
    assert got["run"]["inputs"]["datasetInputs"] == []
    missing = requests.post(f"{server_url}/graphql", json={
        "query": GET_RUN, "operationName": "GetRun", "variables": {"data": {"runId": "0" * 32}}}).json()
    assert missing["data"]["mlflowGetRun"]["apiError"]["code"] == "RESOURCE_DOES_NOT_EXIST"
    # MLflow's limits, and errors in GraphQL's own shape (never a 500).
    roots = " ".join(f'k{i}: test(inputString: "abc") {{ output }}' for i in range(12))
    limited = requests.post(f"{server_url}/graphql", json={"query": f"query q {{ {roots} }}"})
    assert limited.status_code == 200 and "at most 10" in limited.json()["errors"][0]
    for bad in ["{", "query { a { ...F } }", "{ unknownField }"]:
        refused = requests.post(f"{server_url}/graphql", json={"query": bad})
        assert refused.status_code == 200 and refused.json()["errors"], bad
    assert requests.post(f"{server_url}/graphql", json={
        "query": 'query t { test(inputString: "abc") { output } }'}).json()["data"]["test"]["output"] == "abc"
    charted = requests.post(f"{server_url}/graphql", json={"query": (
        f'query c {{ mlflowGetMetricHistoryBulkInterval(input: {{runIds: ["{run.info.run_id}"], metricKey: "loss"}})'
        ' { metrics { key step value runId __typename } } }')}).json()
    assert charted["data"]["mlflowGetMetricHistoryBulkInterval"]["metrics"] == [
        {"key": "loss", "step": "3", "value": 0.5, "runId": run.info.run_id, "__typename": "MlflowMetricWithRunId"}]
    listed = requests.post(f"{server_url}/graphql", json={"query": (
        f'{{ mlflowListArtifacts(input: {{runId: "{run.info.run_id}"}}) {{ files {{ path isDir fileSize }} }} }}')})
    assert listed.json()["data"]["mlflowListArtifacts"]["files"] == []
    summaries = requests.post(f"{server_url}/graphql", json={"query": (
        f'mutation m {{ mlflowSearchDatasets(input: {{experimentIds: ["{experiment}"]}}) '
        '{ datasetSummaries { name context } } }')}).json()
    assert summaries["errors"] is None
    assert summaries["data"]["mlflowSearchDatasets"]["datasetSummaries"] == []


def test_charts_get_metric_history_sampled_by_step(experiment, client, server_url):
    run_id = client.create_run(experiment).info.run_id
    for step in range(10):
        client.log_metric(run_id, "metricA", 10.0, timestamp=1, step=step)
    url = f"{server_url}/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval"
    sampled = requests.get(url, params={"run_ids": [run_id], "metric_key": "metricA", "max_results": 5}).json()
    assert [m["step"] for m in sampled["metrics"]] == [0, 2, 4, 6, 8, 9]
    assert all(m["run_id"] == run_id and m["value"] == 10.0 for m in sampled["metrics"])
    ranged = requests.get(url, params={"run_ids": [run_id], "metric_key": "metricA", "start_step": 0,
                                       "end_step": 4, "max_results": 5}).json()
    assert [m["step"] for m in ranged["metrics"]] == [0, 1, 2, 3, 4]
    for params, message in [
        ({"metric_key": "k"}, "Missing value for required parameter 'run_ids'."),
        ({"run_ids": [f"id_{i}" for i in range(1000)], "metric_key": "k"}, "at most 100 run_ids"),
        ({"run_ids": ["1"], "metric_key": "k", "max_results": 0}, "max_results must be between 1 and 2500"),
        ({"run_ids": ["1"], "max_results": 5}, "Missing value for required parameter 'metric_key'"),
        ({"run_ids": ["1"], "metric_key": "k", "start_step": 1, "end_step": 0}, "end_step must be greater"),
        ({"run_ids": ["1"], "metric_key": "k", "start_step": 1}, "both must be specified"),
    ]:
        refused = requests.get(url, params=params)
        assert refused.status_code == 400 and message in refused.json()["message"], params


def test_the_web_ui_uploads_a_file_into_a_run(experiment, client, server_url):
    run_id = client.create_run(experiment).info.run_id
    url = f"{server_url}/ajax-api/2.0/mlflow/upload-artifact"
    assert requests.post(url, params={"run_uuid": run_id, "path": "notes/a.txt"}, data="hello world").status_code == 200
    got = requests.get(f"{server_url}/get-artifact", params={"run_uuid": run_id, "path": "notes/a.txt"})
    assert got.text == "hello world"
    for params, data, message in [
        ({}, "x", "Request must specify run_uuid."),
        ({"run_uuid": run_id}, "x", "Request must specify path."),
        ({"run_uuid": run_id, "path": "../escape.txt"}, "x", "Invalid path"),
        ({"run_uuid": run_id, "path": "empty.txt"}, None, "Request must specify data."),
    ]:
        refused = requests.post(url, params=params, data=data)
        assert refused.status_code == 400 and message in refused.json()["message"], params


def test_bulk_metric_history_and_path_checks_as_the_ui_calls_them(experiment, client, server_url):
    run_ids = sorted(client.create_run(experiment).info.run_id for _ in range(2))
    for offset, run_id in enumerate(run_ids):
        for step in range(3):
            client.log_metric(run_id, "m", step + offset, timestamp=1, step=step)
    url = f"{server_url}//ajax-api/2.0/mlflow/metrics/get-history-bulk"  # slashes merged, as MLflow does
    both = requests.get(url, params={"run_id": run_ids[::-1], "metric_key": "m"}).json()["metrics"]
    assert [(m["run_id"], m["step"]) for m in both] == [(r, s) for r in run_ids for s in range(3)]
    limited = requests.get(url, params={"run_id": run_ids, "metric_key": "m", "max_results": 2}).json()
    assert len(limited["metrics"]) == 2
    assert "at least one run_id" in requests.get(url, params={"metric_key": "m"}).json()["message"]
    for path in ["/api/2.0/mlflow/artifacts/list", "/get-artifact"]:
        refused = requests.get(f"{server_url}{path}", params={"run_id": run_ids[0], "path": "../path"})
        assert refused.status_code == 400 and refused.json()["message"] == "Invalid path"
    refused = requests.get(f"{server_url}/model-versions/get-artifact",
                           params={"name": "nothing", "version": 1, "path": "../path"})
    assert refused.status_code == 400 and refused.json()["message"] == "Invalid path"


def test_the_prompt_lab_records_a_finished_run_with_its_results_table(experiment, client, server_url):
    url = f"{server_url}/ajax-api/2.0/mlflow/runs/create-promptlab-run"
    full = {
        "experiment_id": experiment, "run_name": "prompt-1", "prompt_template": "Say {{ thing }}",
        "prompt_parameters": [{"key": "thing", "value": "hello"}], "model_route": "chat",
        "model_parameters": [{"key": "temperature", "value": "0.1"}], "model_input": "Say hello",
        "model_output": "hello", "model_output_parameters": [{"key": "latency", "value": "100"}],
        "mlflow_version": "3.17.2", "user_id": "ana", "start_time": 456,
    }
    required = ["experiment_id", "prompt_template", "prompt_parameters", "model_route", "model_input",
                "mlflow_version"]
    for index, field in enumerate(required):
        partial = {key: full[key] for key in required[:index]}
        refused = requests.post(url, json=partial)
        assert refused.status_code == 400, field
        assert refused.json()["message"] == f"CreatePromptlabRun request must specify {field}.", field
    run = requests.post(url, json=full).json()["run"]
    assert (run["info"]["run_name"], run["info"]["status"], run["info"]["user_id"]) == ("prompt-1", "FINISHED", "ana")
    assert run["info"]["start_time"] == 456
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert params == {"temperature": "0.1", "model_route": "chat", "prompt_template": "Say {{ thing }}"}
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert tags["mlflow.runSourceType"] == "PROMPT_ENGINEERING"
    assert json.loads(tags["mlflow.loggedArtifacts"]) == [{"path": "eval_results_table.json", "type": "table"}]
    with open(client.download_artifacts(run["info"]["run_id"], "eval_results_table.json")) as saved:
        table = json.load(saved)
    assert table == {"columns": ["thing", "prompt", "output", "latency"], "data": [["hello", "Say hello", "hello", "100"]]}
