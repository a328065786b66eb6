"""An OpenAI-compatible provider behind a model route: masking, restoring and streaming survive
LiteLLM's conversion from Anthropic's Messages format to Chat Completions and back.

The client is the official anthropic SDK against the live proxy; the provider is the fake
OpenAI Chat Completions server, reached over HTTP by LiteLLM. Every test runs with `openai/`
(through the OpenAI SDK inside LiteLLM) and `hosted_vllm/` (LiteLLM's own HTTP client), the two
ways to reach a server that speaks Chat Completions.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from proxy.models import ModelRoute, RouteFallback
from proxy.routes import routes_changed
from proxy.targets import NO_CREDENTIAL
from tests.support.fakes.anthropic_upstream import FakeAnthropic
from tests.support.fakes.openai_upstream import (
    ECHO_PREFIX,
    RETRY_AFTER_SECONDS,
    TOOL_CALL_ID,
    TOOL_PREAMBLE,
    TOOL_RESULT_PREFIX,
    FakeOpenAI,
)
from tests.support.live import IssuedKey, wait_for_audit

INSTANCE = "i-0a1b2c3d4e5f60718"
VPC = "vpc-0fedcba9876543210"
ACCOUNT = "123456789012"
ROLE_NAME = "deploy"
ACCOUNT_ARN = f"arn:aws:iam::{ACCOUNT}:role/{ROLE_NAME}"
# An ARN keeps its structure: its account and its name are masked, each with its placeholder.
VALUES = (INSTANCE, VPC, ACCOUNT, ROLE_NAME)
PROMPT = f"Is {INSTANCE} in {VPC}? It runs as {ACCOUNT_ARN}."
ROUTE_KEY = "sk-openai-route-test-key"
TOOLS: list[Any] = [
    {
        "name": "aws_cli",
        "description": "Run an AWS CLI command.",
        "input_schema": {
            "type": "object",
            "properties": {"command": {"type": "string"}},
            "required": ["command"],
        },
    }
]


@pytest.fixture
def openai_fake(fake_openai: FakeOpenAI) -> Iterator[FakeOpenAI]:
    fake_openai.clear()
    yield fake_openai


@pytest.fixture(params=["openai", "hosted_vllm"])
def provider(
    request: pytest.FixtureRequest,
    transactional_db: None,
    openai_fake: FakeOpenAI,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[str]:
    """Routes `fake-*` (the fake's scenarios) to the fake OpenAI through one LiteLLM provider."""
    monkeypatch.setenv("OPENAI_ROUTE_TEST_KEY", ROUTE_KEY)
    route = ModelRoute(
        model_pattern="fake-*",
        litellm_model=f"{request.param}/{{model}}",
        api_base=f"{openai_fake.base_url}/v1",
        api_key_env="OPENAI_ROUTE_TEST_KEY",
        timeout_seconds=10.0,
    )
    route.full_clean()
    route.save()
    yield request.param
    routes_changed()


def sent(fake: FakeOpenAI) -> list[dict[str, Any]]:
    return [request.json or {} for request in fake.requests]


def assert_nothing_leaked(fake: FakeOpenAI, upstream: FakeAnthropic) -> None:
    raw = fake.raw_bodies()
    for value in VALUES:
        assert value.encode() not in raw, f"{value} reached the provider"
    assert upstream.requests == []  # nothing went to the default route


def placeholders(text: str, masked: str) -> dict[str, str]:
    """The placeholder standing for each value of VALUES in text, read off its masked form."""
    found = [value for value in VALUES if value in text]
    pattern = re.escape(text)
    for value in found:
        pattern = pattern.replace(re.escape(value), r"([A-Z][A-Z0-9_]*_\d{3,})", 1)
    matched = re.fullmatch(pattern, masked)
    assert matched is not None, masked
    return dict(zip(found, matched.groups(), strict=True))


def test_an_answer_comes_back_with_every_value_and_the_provider_sees_none(
    client: anthropic.Anthropic, openai_fake: FakeOpenAI, upstream: FakeAnthropic, provider: str
) -> None:
    message = client.messages.create(
        model="fake-echo",
        max_tokens=100,
        system=f"You look after account {ACCOUNT_ARN}.",
        messages=[{"role": "user", "content": PROMPT}],
    )
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == ECHO_PREFIX + PROMPT  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"
    [body] = sent(openai_fake)
    assert openai_fake.requests[0].path == "/v1/chat/completions"
    assert openai_fake.requests[0].headers["authorization"] == f"Bearer {ROUTE_KEY}"
    system, user = body["messages"]
    assert system["role"] == "system" and "AWS_" in json.dumps(system)
    assert placeholders(PROMPT, _text(user["content"]))[INSTANCE].startswith("AWS_EC2_")
    assert_nothing_leaked(openai_fake, upstream)
    [record] = wait_for_audit(1)
    assert (record.status, record.model, record.upstream_model) == (
        200,
        "fake-echo",
        f"{provider}/fake-echo",
    )
    # The instance, the VPC, and the ARN's account and role name.
    assert record.masked_total >= 5 and record.restored_total == 4


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))


def test_a_streamed_answer_is_restored_across_the_providers_small_pieces(
    client: anthropic.Anthropic, openai_fake: FakeOpenAI, upstream: FakeAnthropic, provider: str
) -> None:
    with client.messages.stream(
        model="fake-echo", max_tokens=100, messages=[{"role": "user", "content": PROMPT}]
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == ECHO_PREFIX + PROMPT
    assert len(pieces) > 10  # really streamed, in pieces (a placeholder spans several)
    assert final.content[0].text == ECHO_PREFIX + PROMPT  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    assert sent(openai_fake)[0]["stream"] is True
    assert_nothing_leaked(openai_fake, upstream)


def test_raw_stream_events_keep_anthropics_sequence(
    client: anthropic.Anthropic, openai_fake: FakeOpenAI, provider: str
) -> None:
    events = client.messages.create(
        model="fake-echo",
        max_tokens=100,
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
    )
    kinds = [event.type for event in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert kinds[1] == "content_block_start" and "content_block_stop" in kinds
    assert set(kinds[2 : kinds.index("content_block_stop")]) == {"content_block_delta"}


def ask_tool(client: anthropic.Anthropic, **fields: Any) -> anthropic.types.Message:
    message: anthropic.types.Message = client.messages.create(
        model="fake-tool",
        max_tokens=200,
        tools=TOOLS,
        messages=[{"role": "user", "content": f"the tags of {INSTANCE}"}],
        **fields,
    )
    return message


def test_a_tool_call_comes_back_with_the_real_value_in_its_input(
    client: anthropic.Anthropic, openai_fake: FakeOpenAI, upstream: FakeAnthropic, provider: str
) -> None:
    message = ask_tool(client, tool_choice={"type": "tool", "name": "aws_cli"})
    text, tool_use = message.content
    assert text.type == "text" and text.text == TOOL_PREAMBLE
    assert tool_use.type == "tool_use"
    assert (tool_use.id, tool_use.name) == (TOOL_CALL_ID, "aws_cli")
    assert tool_use.input == {"command": f"describe the tags of {INSTANCE}"}
    assert message.stop_reason == "tool_use"
    [body] = sent(openai_fake)
    assert body["tools"][0]["function"]["name"] == "aws_cli"
    assert body["tool_choice"] == {"type": "function", "function": {"name": "aws_cli"}}
    assert_nothing_leaked(openai_fake, upstream)


def test_a_streamed_tool_call_is_restored_inside_its_partial_json(
    client: anthropic.Anthropic, openai_fake: FakeOpenAI, upstream: FakeAnthropic, provider: str
) -> None:
    with client.messages.stream(
        model="fake-tool",
        max_tokens=200,
        tools=TOOLS,
        messages=[{"role": "user", "content": f"the tags of {INSTANCE}"}],
    ) as stream:
        partial = [
            event.delta.partial_json
            for event in stream
            if event.type == "content_block_delta" and event.delta.type == "input_json_delta"
        ]
        final = stream.get_final_message()
    assert len(partial) > 5
    assert json.loads("".join(partial)) == {"command": f"describe the tags of {INSTANCE}"}
    assert final.content[1].input == {"command": f"describe the tags of {INSTANCE}"}  # type: ignore[union-attr]
    assert_nothing_leaked(openai_fake, upstream)


def test_a_tool_result_turn_reaches_the_provider_masked_and_comes_back_whole(
    client: anthropic.Anthropic, openai_fake: FakeOpenAI, upstream: FakeAnthropic, provider: str
) -> None:
    first = ask_tool(client)
    tool_use = first.content[1]
    assert tool_use.type == "tool_use"
    result = f"{INSTANCE} is tagged team=ops in {VPC}"
    second = client.messages.create(
        model="fake-tool",
        max_tokens=200,
        tools=TOOLS,
        messages=[
            {"role": "user", "content": f"the tags of {INSTANCE}"},
            {"role": "assistant", "content": first.content},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": result}],
            },
        ],
    )
    assert second.content[0].text == TOOL_RESULT_PREFIX + result  # type: ignore[union-attr]
    _, replayed = sent(openai_fake)
    assistant, tool = replayed["messages"][1:3]
    arguments = json.loads(assistant["tool_calls"][0]["function"]["arguments"])
    placeholder = placeholders(f"describe the tags of {INSTANCE}", arguments["command"])
    assert tool["role"] == "tool" and tool["tool_call_id"] == TOOL_CALL_ID
    # The same value has the same placeholder in every turn and every field.
    assert placeholders(result, _text(tool["content"]))[INSTANCE] == placeholder[INSTANCE]
    assert_nothing_leaked(openai_fake, upstream)


@pytest.mark.parametrize(
    ("status", "error_class", "error_type"),
    [
        (400, anthropic.BadRequestError, "invalid_request_error"),
        (401, anthropic.AuthenticationError, "authentication_error"),
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (503, anthropic.InternalServerError, "api_error"),
    ],
)
def test_provider_errors_reach_the_client_in_anthropics_shape(
    client: anthropic.Anthropic,
    openai_fake: FakeOpenAI,
    provider: str,
    status: int,
    error_class: type[anthropic.APIStatusError],
    error_type: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(error_class) as raised:
        client.messages.create(
            model=f"fake-error-{status}",
            max_tokens=10,
            messages=[{"role": "user", "content": PROMPT}],
        )
    error = raised.value
    assert error.status_code == status
    assert isinstance(error.body, dict) and error.body["error"]["type"] == error_type
    assert "litellm" not in error.response.text.lower()
    assert "OpenAIException" not in error.response.text
    if status == 429:
        assert error.response.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
    if status == 401:
        # OpenAI quotes the rejected key back: the proxy's own, so the client is told less.
        assert error.body["error"]["message"] == (
            "The upstream provider refused the proxy's credentials for this model."
        )
    logged = "\n".join(r.getMessage() + str(r.exc_info or "") for r in caplog.records)
    assert ROUTE_KEY not in logged + error.response.text
    assert len(openai_fake.requests) == 1  # one attempt: no hidden retries


def test_a_stream_the_provider_cuts_off_ends_with_a_clean_error_event(
    proxy_url: str,
    api_key: IssuedKey,
    openai_fake: FakeOpenAI,
    provider: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    body = {
        "model": "fake-truncated",
        "max_tokens": 100,
        "stream": True,
        "messages": [{"role": "user", "content": PROMPT}],
    }
    response = httpx.post(
        f"{proxy_url}/v1/messages", json=body, headers={"x-api-key": api_key.key}, timeout=30
    )
    assert response.status_code == 200
    events = [block for block in response.text.split("\n\n") if block.strip()]
    assert events[0].startswith("event: message_start")
    assert events[-1].startswith("event: error")
    error = json.loads(events[-1].split("data: ", 1)[1])
    assert error["error"] == {
        "type": "api_error",
        "message": "The upstream stream ended before the message was complete.",
    }
    assert "litellm" not in response.text.lower()
    [record] = wait_for_audit(1)
    assert (record.status, record.error_type) == (502, "api_error")
    logged = "\n".join(r.getMessage() + str(r.exc_info or "") for r in caplog.records)
    for value in VALUES:
        assert value not in logged


def test_an_openai_route_falls_back_to_anthropic_when_it_is_down(
    client: anthropic.Anthropic,
    openai_fake: FakeOpenAI,
    upstream: FakeAnthropic,
    provider: str,
) -> None:
    main = ModelRoute.objects.create(
        model_pattern="main",
        litellm_model=f"{provider}/fake-error-503",
        api_base=f"{openai_fake.base_url}/v1",
        api_key_env="OPENAI_ROUTE_TEST_KEY",
    )
    spare = ModelRoute.objects.create(
        model_pattern="spare", litellm_model="anthropic/fake-echo", api_base=upstream.base_url
    )
    RouteFallback.objects.create(route=main, fallback=spare)
    message = client.messages.create(
        model="main", max_tokens=100, messages=[{"role": "user", "content": PROMPT}]
    )
    assert message.content[0].text == ECHO_PREFIX + PROMPT  # type: ignore[union-attr]
    assert len(openai_fake.requests) == 1 and len(upstream.requests) == 1
    for value in VALUES:
        assert value.encode() not in openai_fake.raw_bodies() + upstream.raw_bodies()


def test_count_tokens_for_an_openai_route_is_estimated_here_and_sends_nothing(
    client: anthropic.Anthropic, openai_fake: FakeOpenAI, upstream: FakeAnthropic, provider: str
) -> None:
    counted = client.messages.count_tokens(
        model="fake-echo", tools=TOOLS, messages=[{"role": "user", "content": PROMPT}]
    )
    assert 10 < counted.input_tokens < 200
    assert openai_fake.requests == [] and upstream.requests == []


def test_a_route_without_a_credential_sends_none_of_the_environments_keys(
    client: anthropic.Anthropic,
    openai_fake: FakeOpenAI,
    provider: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # LiteLLM would send these to the route's API base if the proxy gave it no key at all.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-from-the-environment")
    monkeypatch.setenv("HOSTED_VLLM_API_KEY", "sk-vllm-from-the-environment")
    ModelRoute.objects.create(
        model_pattern="local",
        litellm_model=f"{provider}/fake-echo",
        api_base=f"{openai_fake.base_url}/v1",
    )
    message = client.messages.create(
        model="local", max_tokens=100, messages=[{"role": "user", "content": PROMPT}]
    )
    assert message.content[0].text == ECHO_PREFIX + PROMPT  # type: ignore[union-attr]
    assert openai_fake.requests[0].headers["authorization"] == f"Bearer {NO_CREDENTIAL}"
