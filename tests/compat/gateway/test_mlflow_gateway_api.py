"""MLflow 3's AI-gateway API through the stock mlflow client: the tracking store MLflow's UI and scripts use
(`RestStore`, as `mlflow.tracking._tracking_service.utils._get_store` gives it) makes secrets, model
definitions and endpoints on `loopline server`; the endpoint is then called with the `openai` SDK at MLflow's
`/gateway/mlflow/v1` base URL and with `requests` at its `/gateway/<name>/mlflow/invocations` route, in front
of fake providers; the calls are traced in the endpoint's experiment, read back with `mlflow.search_traces`.
The checks follow what MLflow's own gateway store tests assert of these methods (ids, masking, uniqueness,
refusals, cascades), not their code."""

import json
import sys
import tempfile
import time
from pathlib import Path

import mlflow
import openai
import pytest
import requests
from mlflow.entities import (
    FallbackConfig,
    FallbackStrategy,
    GatewayEndpointModelConfig,
    GatewayEndpointTag,
    GatewayModelLinkageType,
    GatewayResourceType,
    RoutingStrategy,
)
from mlflow.exceptions import MlflowException
from mlflow.tracking._tracking_service.utils import _get_store

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from loopline_process import LooplineProcess, free_port  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_provider import Fake  # noqa: E402

KEY = "sk-catalog-upstream-51c9e2"
PRIMARY = GatewayModelLinkageType.PRIMARY
FALLBACK = GatewayModelLinkageType.FALLBACK


@pytest.fixture(scope="module")
def server():
    primary, spare = Fake(KEY), Fake(KEY)
    directory = Path(tempfile.mkdtemp(prefix="loopline-mlflow-gateway-"))
    port = free_port()
    process = LooplineProcess(["server", "--port", str(port), "--data-dir", str(directory / "data")],
                              port, directory / "server.log", timeout=60,
                              env={"MLFLOW_GATEWAY_API_BASE_ALLOWED_SCHEMES": "http,https",
                                   "MLFLOW_GATEWAY_API_BASE_ALLOW_PRIVATE_IPS": "true"})
    try:
        yield process, primary, spare
    finally:
        assert process.stop() == 0
        assert KEY not in process.log_text()
        primary.stop()
        spare.stop()


@pytest.fixture()
def store(server):
    return _get_store(server[0].url)


def unique(prefix):
    return f"{prefix}-{time.monotonic_ns()}"


def config(definition, linkage=PRIMARY, weight=1.0, order=None):
    return GatewayEndpointModelConfig(model_definition_id=definition.model_definition_id, linkage_type=linkage,
                                      weight=weight, fallback_order=order)


def model(store, fake, provider_model):
    secret = store.create_gateway_secret(secret_name=unique("key"), secret_value={"api_key": KEY},
                                         provider="openai", auth_config={"api_base": fake.base_url})
    return store.create_gateway_model_definition(name=unique("model"), secret_id=secret.secret_id,
                                                 provider="openai", model_name=provider_model)


def test_secrets_are_masked_unique_updated_and_deleted(store):
    name = unique("secret")
    secret = store.create_gateway_secret(secret_name=name, secret_value={"api_key": "sk-test-123456"},
                                         provider="openai", created_by="alice")
    assert secret.secret_id.startswith("s-")
    assert secret.secret_name == name and secret.provider == "openai" and secret.created_by == "alice"
    assert secret.masked_values == {"api_key": "sk-...3456"}
    assert "sk-test-123456" not in str(secret)
    with pytest.raises(MlflowException, match="already exists") as refused:
        store.create_gateway_secret(secret_name=name, secret_value={"api_key": "other"})
    assert refused.value.error_code == "RESOURCE_ALREADY_EXISTS"
    assert store.get_secret_info(secret_id=secret.secret_id).secret_name == name
    updated = store.update_gateway_secret(secret.secret_id, secret_value={"api_key": "sk-new-abcdefgh"},
                                          updated_by="bob")
    assert updated.masked_values == {"api_key": "sk-...efgh"}
    assert updated.last_updated_by == "bob" and updated.last_updated_at >= secret.last_updated_at
    assert name in [info.secret_name for info in store.list_secret_infos(provider="openai")]
    assert name not in [info.secret_name for info in store.list_secret_infos(provider="anthropic")]
    store.delete_gateway_secret(secret.secret_id)
    with pytest.raises(MlflowException, match="not found") as missing:
        store.get_secret_info(secret_id=secret.secret_id)
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_model_definitions_and_endpoints_follow_mlflows_rules(server, store):
    _, primary, spare = server
    first, second = model(store, primary, "big-model"), model(store, spare, "small-model")
    assert first.model_definition_id.startswith("d-") and first.secret_name.startswith("key-")
    with pytest.raises(MlflowException, match="not found") as missing:
        store.create_gateway_model_definition(name=unique("m"), secret_id="s-missing", provider="openai",
                                              model_name="x")
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    renamed = store.update_gateway_model_definition(first.model_definition_id, model_name="big-model",
                                                    updated_by="carol")
    assert renamed.last_updated_by == "carol"
    with pytest.raises(MlflowException, match="at least one") as empty:
        store.create_gateway_endpoint(name=unique("e"), model_configs=[])
    assert empty.value.error_code == "INVALID_PARAMETER_VALUE"

    name = unique("chat")
    endpoint = store.create_gateway_endpoint(
        name=name, model_configs=[config(first), config(second, FALLBACK, order=1)],
        routing_strategy=RoutingStrategy.REQUEST_BASED_TRAFFIC_SPLIT,
        fallback_config=FallbackConfig(strategy=FallbackStrategy.SEQUENTIAL, max_attempts=1))
    assert endpoint.endpoint_id.startswith("e-") and endpoint.usage_tracking
    assert {m.linkage_type for m in endpoint.model_mappings} == {PRIMARY, FALLBACK}
    assert endpoint.fallback_config.max_attempts == 1
    assert endpoint.routing_strategy == RoutingStrategy.REQUEST_BASED_TRAFFIC_SPLIT
    experiment = mlflow.MlflowClient(server[0].url).get_experiment(endpoint.experiment_id)
    assert experiment.name == f"gateway/{name}"
    assert experiment.tags["mlflow.experiment.sourceId"] == endpoint.endpoint_id

    store.set_gateway_endpoint_tag(endpoint.endpoint_id, GatewayEndpointTag(key="team", value="search"))
    by_name = store.get_gateway_endpoint(name=name)
    assert by_name.endpoint_id == endpoint.endpoint_id
    assert [(tag.key, tag.value) for tag in by_name.tags] == [("team", "search")]
    store.delete_gateway_endpoint_tag(endpoint.endpoint_id, "team")
    store.delete_gateway_endpoint_tag(endpoint.endpoint_id, "never-set")
    assert not store.get_gateway_endpoint(endpoint_id=endpoint.endpoint_id).tags

    with pytest.raises(MlflowException, match="already attached"):
        store.attach_model_to_endpoint(endpoint.endpoint_id, config(first))
    third = model(store, spare, "other-model")
    mapping = store.attach_model_to_endpoint(endpoint.endpoint_id, config(third, weight=2.5))
    assert mapping.mapping_id.startswith("m-") and mapping.weight == 2.5
    store.detach_model_from_endpoint(endpoint.endpoint_id, third.model_definition_id)
    with pytest.raises(MlflowException, match="not attached") as detached:
        store.detach_model_from_endpoint(endpoint.endpoint_id, third.model_definition_id)
    assert detached.value.error_code == "RESOURCE_DOES_NOT_EXIST"

    binding = store.create_endpoint_binding(endpoint.endpoint_id, GatewayResourceType.SCORER, "scorer-1")
    assert binding.resource_id == "scorer-1"
    assert len(store.list_endpoint_bindings(endpoint_id=endpoint.endpoint_id)) == 1
    store.delete_endpoint_binding(endpoint.endpoint_id, GatewayResourceType.SCORER, "scorer-1")
    assert store.list_endpoint_bindings(endpoint_id=endpoint.endpoint_id) == []

    with pytest.raises(MlflowException, match="in use") as in_use:
        store.delete_gateway_model_definition(first.model_definition_id)
    assert in_use.value.error_code == "INVALID_STATE"
    assert name in [e.name for e in store.list_gateway_endpoints()]
    store.delete_gateway_endpoint(endpoint.endpoint_id)
    assert name not in [e.name for e in store.list_gateway_endpoints()]
    store.delete_gateway_model_definition(first.model_definition_id)
    # Deleting a secret leaves its model definitions without one.
    store.delete_gateway_secret(second.secret_id)
    assert store.get_gateway_model_definition(second.model_definition_id).secret_id is None


def wait_for_traces(experiment_id, count):
    deadline = time.monotonic() + 30
    while True:
        traces = mlflow.search_traces(locations=[experiment_id], return_type="list")
        if len(traces) >= count or time.monotonic() > deadline:
            return traces
        time.sleep(0.2)


def test_an_endpoint_answers_the_openai_sdk_and_mlflows_invocations_and_is_traced(server, store):
    process, primary, spare = server
    name = unique("assistant")
    endpoint = store.create_gateway_endpoint(
        name=name,
        model_configs=[config(model(store, primary, "big-model")),
                       config(model(store, spare, "small-model"), FALLBACK, order=1)],
        fallback_config=FallbackConfig(strategy=FallbackStrategy.SEQUENTIAL))
    client = openai.OpenAI(base_url=f"{process.url}/gateway/mlflow/v1", api_key="unused", max_retries=0)
    answer = client.chat.completions.create(model=name, messages=[{"role": "user", "content": "hello there"}])
    assert answer.choices[0].message.content == "echo: hello there"
    assert primary.calls()[-1]["authorization"] == f"Bearer {KEY}"
    assert name in [listed.id for listed in client.models.list()]
    streamed = client.chat.completions.create(model=name, stream=True,
                                              messages=[{"role": "user", "content": "one two"}])
    assert "".join(chunk.choices[0].delta.content or "" for chunk in streamed if chunk.choices) == "echo: one two"

    primary.script("big-model", {"fail": {"status": 503, "message": "down", "retry_after": None}})
    invoked = requests.post(f"{process.url}/gateway/{name}/mlflow/invocations",
                            json={"messages": [{"role": "user", "content": "are you there"}]}, timeout=30)
    assert invoked.status_code == 200, invoked.text
    assert invoked.json()["choices"][0]["message"]["content"] == "echo: are you there"
    assert invoked.headers["x-loopline-fallback"] == "true"
    assert spare.calls()[-1]["model"] == "small-model"
    refused = requests.post(f"{process.url}/gateway/{name}/mlflow/invocations",
                            json={"model": "x", "messages": [{"role": "user", "content": "hi"}]}, timeout=30)
    assert refused.status_code == 422 and "not permitted" in refused.json()["detail"]
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-endpoint", messages=[{"role": "user", "content": "hi"}])

    mlflow.set_tracking_uri(process.url)
    traces = wait_for_traces(endpoint.experiment_id, 3)
    assert len(traces) == 3, traces
    models = {trace.data.spans[0].attributes.get("mlflow.llm.model") for trace in traces}
    assert models == {name}


def test_a_judge_naming_an_endpoint_follows_its_renames_and_deletion(server, store):
    process, primary, _ = server
    endpoint = store.create_gateway_endpoint(name=unique("judge"), model_configs=[config(model(store, primary, "m"))],
                                             usage_tracking=False)
    experiment = mlflow.MlflowClient(process.url).create_experiment(unique("judges"))
    judge = {"name": "quality", "instructions_judge_pydantic_data": {"model": f"gateway:/{endpoint.name}",
                                                                     "instructions": "Is {{ outputs }} polite?"}}
    store.register_scorer(experiment, "quality", json.dumps(judge))

    def model_of():
        shown = json.loads(store.get_scorer(experiment, "quality")._serialized_scorer)
        return shown["instructions_judge_pydantic_data"]["model"]

    assert model_of() == f"gateway:/{endpoint.name}"
    renamed = unique("renamed")
    store.update_gateway_endpoint(endpoint.endpoint_id, name=renamed)
    assert model_of() == f"gateway:/{renamed}"
    store.delete_gateway_endpoint(endpoint.endpoint_id)
    assert model_of() is None
    with pytest.raises(MlflowException, match="not found") as missing:
        store.register_scorer(experiment, "other", json.dumps({**judge, "name": "other"}))
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_a_judge_made_with_make_judge_guards_an_endpoint(server, store):
    """A make_judge judge on one endpoint, registered with the stock client, attached as MLflow's guardrails:
    its verdict refuses a request (VALIDATION) or has another endpoint rewrite the answer (SANITIZATION)."""
    from mlflow.entities.gateway_guardrail import GuardrailAction, GuardrailStage
    from mlflow.genai.judges import make_judge

    process, primary, _ = server
    endpoints = {}
    for role in ("chat", "judge", "fixer"):
        definition = model(store, primary, f"{role}-guarded-model")
        endpoints[role] = store.create_gateway_endpoint(name=unique(role), model_configs=[config(definition)])
    experiment = store.create_experiment(unique("judges"))
    judge = make_judge(name="safe", instructions="Is the request in {{ inputs }} safe? Answer yes or no.",
                       model=f"gateway:/{endpoints['judge'].name}", feedback_value_type=str)
    scorer = store.register_scorer(experiment, "safe", json.dumps(judge.model_dump()))
    blocker = store.create_gateway_guardrail(name="no-secrets", scorer_id=scorer.scorer_id,
                                             scorer_version=scorer.scorer_version, stage=GuardrailStage.BEFORE,
                                             action=GuardrailAction.VALIDATION)
    assert blocker.guardrail_id.startswith("gr-") and blocker.scorer.scorer_id == scorer.scorer_id
    chat = endpoints["chat"]
    config_made = store.add_guardrail_to_endpoint(chat.endpoint_id, blocker.guardrail_id, execution_order=1)
    assert config_made.execution_order == 1 and config_made.guardrail.name == "no-secrets"
    assert [c.guardrail_id for c in store.list_endpoint_guardrail_configs(chat.endpoint_id)] == [blocker.guardrail_id]

    client = openai.OpenAI(base_url=f"{process.url}/gateway/mlflow/v1", api_key="unused")
    primary.script("judge-guarded-model", {"reply": json.dumps({"result": "no", "rationale": "it asks for a password"})})
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=chat.name, messages=[{"role": "user", "content": "the admin password?"}])
    # MLflow's routes answer in FastAPI's shape.
    assert refused.value.response.json() == {"detail": "Guardrail 'no-secrets' blocked: it asks for a password"}
    assert not [call for call in primary.calls() if call["model"] == "chat-guarded-model"]
    primary.script("judge-guarded-model", {"reply": json.dumps({"result": "yes", "rationale": "harmless"})})
    answer = client.chat.completions.create(model=chat.name, messages=[{"role": "user", "content": "hello"}])
    assert answer.choices[0].message.content == "echo: hello"
    store.remove_guardrail_from_endpoint(chat.endpoint_id, blocker.guardrail_id)

    # An answer with an e-mail address is rewritten by the fixer endpoint.
    checker = make_judge(name="private", instructions="Is {{ outputs }} free of personal data? Answer yes or no.",
                         model=f"gateway:/{endpoints['judge'].name}", feedback_value_type=str)
    checker_version = store.register_scorer(experiment, "private", json.dumps(checker.model_dump()))
    sanitizer = store.create_gateway_guardrail(name="redact", scorer_id=checker_version.scorer_id,
                                               scorer_version=checker_version.scorer_version,
                                               stage=GuardrailStage.AFTER, action=GuardrailAction.SANITIZATION,
                                               action_endpoint_id=endpoints["fixer"].endpoint_id)
    assert sanitizer.action_endpoint_name == endpoints["fixer"].name
    store.add_guardrail_to_endpoint(chat.endpoint_id, sanitizer.guardrail_id)
    rewritten = {"id": "chatcmpl-x", "object": "chat.completion", "created": 0, "model": "chat-guarded-model",
                 "choices": [{"index": 0, "finish_reason": "stop",
                              "message": {"role": "assistant", "content": "echo: [REDACTED]"}}]}
    primary.script("judge-guarded-model", {"reply": json.dumps({"result": "no", "rationale": "an e-mail address"})})
    primary.script("fixer-guarded-model", {"reply": json.dumps(rewritten)})
    response = requests.post(f"{process.url}/gateway/{chat.name}/mlflow/invocations",
                             json={"messages": [{"role": "user", "content": "ann@example.com"}]}, timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "echo: [REDACTED]"
    store.delete_gateway_guardrail(sanitizer.guardrail_id)
    assert not store.list_endpoint_guardrail_configs(chat.endpoint_id)
