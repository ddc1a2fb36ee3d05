"""The LLM gateway through the real `anthropic` SDK on `/v1/messages`: answered by an OpenAI-compatible
provider and by an Anthropic provider (both `loopline-fake-llm` processes), whole and streamed, with tool use,
Anthropic's error classes, and a Loopline token sent as the SDK sends keys (`x-api-key`)."""

import sys
import tempfile
from pathlib import Path

import anthropic
import openai
import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from loopline_process import LooplineProcess, free_port  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_provider import Fake  # noqa: E402

KEY = "sk-ant-fake-upstream-5150"
ADMIN_PASSWORD = "gateway admin password"


def start(directory, fakes_config, *extra, env=None):
    (directory / "gateway.yaml").write_text(fakes_config)
    port = free_port()
    return LooplineProcess(["server", "--port", str(port), "--data-dir", str(directory / "data"),
                            "--gateway-config", str(directory / "gateway.yaml"), *extra],
                           port, directory / "server.log", timeout=60, env=env)


@pytest.fixture(scope="module")
def gateway():
    compatible, claude = Fake(), Fake(KEY)
    directory = Path(tempfile.mkdtemp(prefix="loopline-gateway-anthropic-"))
    server = start(directory, f"""
providers:
  - {{name: compatible, kind: openai-compatible, base_url: "{compatible.base_url}"}}
  - {{name: claude, kind: anthropic, base_url: "{claude.base_url}", api_key_env: FAKE_ANTHROPIC_KEY}}
models:
  - {{name: gpt, deployments: [{{provider: compatible, model: gpt-x}}]}}
  - {{name: claude, deployments: [{{provider: claude, model: claude-x}}]}}
""", env={"FAKE_ANTHROPIC_KEY": KEY})
    try:
        yield server, compatible, claude
    finally:
        assert server.stop() == 0
        assert KEY not in server.log_text()
        compatible.stop()
        claude.stop()


def client(server, **options):
    return anthropic.Anthropic(base_url=server.url, api_key="unused-without-auth", max_retries=0, **options)


TOOLS = [{"name": "get_weather", "description": "Weather in a city",
          "input_schema": {"type": "object", "properties": {"text": {"type": "string"}}}}]


@pytest.mark.parametrize("model", ["gpt", "claude"])
def test_messages_whole_and_streamed(gateway, model):
    server, _, _ = gateway
    message = client(server).messages.create(model=model, max_tokens=64, system="be brief",
                                             messages=[{"role": "user", "content": "hello there"}])
    assert message.content[0].text == "echo: hello there"
    assert message.stop_reason == "end_turn" and message.usage.output_tokens == 3

    with client(server).messages.stream(model=model, max_tokens=64,
                                        messages=[{"role": "user", "content": "hello there"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "echo: hello there"
    assert final.stop_reason == "end_turn"


@pytest.mark.parametrize("model", ["gpt", "claude"])
def test_tool_use_and_its_result(gateway, model):
    server, _, _ = gateway
    asked = [{"role": "user", "content": "weather in Oslo"}]
    message = client(server).messages.create(model=model, max_tokens=64, tools=TOOLS, messages=asked)
    assert message.stop_reason == "tool_use"
    use = next(block for block in message.content if block.type == "tool_use")
    assert use.name == "get_weather" and use.input == {"text": "weather in Oslo"}

    with client(server).messages.stream(model=model, max_tokens=64, tools=TOOLS, messages=asked) as stream:
        final = stream.get_final_message()
    streamed = next(block for block in final.content if block.type == "tool_use")
    assert streamed.input == {"text": "weather in Oslo"}

    answered = asked + [{"role": "assistant", "content": [use.model_dump()]},
                        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "12 C"}]}]
    message = client(server).messages.create(model=model, max_tokens=64, tools=TOOLS, messages=answered)
    assert message.content[0].text == "echo: 12 C"


def test_the_anthropic_provider_is_called_in_its_own_format_with_the_configured_key(gateway):
    server, _, claude = gateway
    answer = openai.OpenAI(base_url=f"{server.url}/v1", api_key="-", max_retries=0).chat.completions.create(
        model="claude", messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == "echo: hi"
    call = claude.calls()[-1]
    assert call["path"] == "/v1/messages" and call["model"] == "claude-x"
    assert call["body"]["system"] == "be brief" and call["body"]["max_tokens"] == 4096


def test_errors_arrive_as_the_sdks_own_exceptions(gateway):
    server, _, _ = gateway
    with pytest.raises(anthropic.NotFoundError):
        client(server).messages.create(model="nope", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.BadRequestError) as raised:
        client(server).messages.create(model="gpt", max_tokens=8, messages=[{"role": "user", "content": [{"type": "video"}]}])
    assert "messages.0.content.0.type" in str(raised.value)


def test_with_auth_the_sdks_api_key_is_a_loopline_token():
    fake = Fake()
    directory = Path(tempfile.mkdtemp(prefix="loopline-gateway-anthropic-auth-"))
    server = start(directory, f"""
providers: [{{name: local, kind: openai-compatible, base_url: "{fake.base_url}"}}]
models: [{{name: allowed, deployments: [{{provider: local, model: a}}]}}, {{name: other, deployments: [{{provider: local, model: b}}]}}]
""", "--auth", "basic,token", env={"LOOPLINE_ADMIN_PASSWORD": ADMIN_PASSWORD})
    try:
        admin = ("admin", ADMIN_PASSWORD)
        assert requests.post(f"{server.url}/api/2.0/mlflow/users/create", auth=admin, timeout=30,
                             json={"username": "app", "password": "app user password"}).status_code == 200
        granted = requests.post(f"{server.url}/api/3.0/mlflow/users/permissions/grant", auth=admin, timeout=30,
                                json={"username": "app", "resource_type": "gateway_endpoint",
                                      "resource_id": "allowed", "permission": "USE"})
        assert granted.status_code == 200, granted.text
        issued = requests.post(f"{server.url}/api/loopline/v1/access/tokens", auth=("app", "app user password"),
                               json={"name": "llm", "scopes": ["predict"]}, timeout=30)
        token = issued.json()["token"]
        app = anthropic.Anthropic(base_url=server.url, api_key=token, max_retries=0)
        message = app.messages.create(model="allowed", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
        assert message.content[0].text == "echo: hi"
        with pytest.raises(anthropic.PermissionDeniedError):
            app.messages.create(model="other", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(anthropic.AuthenticationError):
            anthropic.Anthropic(base_url=server.url, api_key="not-a-token", max_retries=0).messages.create(
                model="allowed", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    finally:
        assert server.stop() == 0
        fake.stop()
