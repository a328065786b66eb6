"""POST /v1/messages end to end: the anthropic SDK -> live proxy -> LiteLLM -> fake upstream."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import anthropic
import httpx
import pytest
from django.test import override_settings

from tests.support.constants import KOREAN_REPORT, KOREAN_REPORT_VALUES, MASTER_KEY, UPSTREAM_KEY
from tests.support.fakes.anthropic_upstream import SIGNATURE, THINKING_TEXT, FakeAnthropic
from tests.support.live import IssuedKey, wait_for_audit

SYSTEM = "You operate account 123456789012 behind 52.95.110.1."
SYSTEM_VALUES = ("123456789012", "52.95.110.1")


def assert_nothing_leaked(
    upstream: FakeAnthropic, values: tuple[str, ...] = KOREAN_REPORT_VALUES
) -> None:
    recorded = upstream.raw_bodies()
    assert upstream.requests, "the upstream was not called"
    for value in values:
        assert value.encode() not in recorded, value


def upstream_json(upstream: FakeAnthropic, index: int = -1) -> dict[str, Any]:
    body = upstream.requests[index].json
    assert isinstance(body, dict)
    return body


def text_of(message: anthropic.types.Message) -> str:
    return "".join(block.text for block in message.content if block.type == "text")


def test_create_masks_what_the_provider_sees_and_restores_the_reply(
    client: anthropic.Anthropic, upstream: FakeAnthropic, api_key: IssuedKey
) -> None:
    message = client.messages.create(
        model="fake-echo",
        max_tokens=100,
        system=SYSTEM,
        messages=[{"role": "user", "content": KOREAN_REPORT}],
    )
    assert text_of(message) == "You said: " + KOREAN_REPORT
    assert_nothing_leaked(upstream, KOREAN_REPORT_VALUES + SYSTEM_VALUES)
    sent = upstream_json(upstream)
    assert "AWS_EC2_001" in sent["messages"][0]["content"]
    assert "AWS_ACCOUNT" in sent["system"] or "AWS_ACCOUNT" in json.dumps(sent["system"])
    assert upstream.requests[-1].headers["x-api-key"] == UPSTREAM_KEY
    record = wait_for_audit()[0]
    assert (record.api_key_id, record.status, record.endpoint) == (
        api_key.record.pk,
        200,
        "messages",
    )
    assert record.masked_total == 9
    assert record.restored_total >= 1
    assert record.masked_by_pattern["aws_ec2_instance_id"] == 2
    row = json.dumps([record.masked_by_pattern, record.model, record.key_name, record.error_type])
    for value in KOREAN_REPORT_VALUES + SYSTEM_VALUES:
        assert value not in row


def test_stream_restores_placeholders_split_across_deltas(
    client: anthropic.Anthropic, upstream: FakeAnthropic
) -> None:
    with client.messages.stream(
        model="fake-echo", max_tokens=100, messages=[{"role": "user", "content": KOREAN_REPORT}]
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == "You said: " + KOREAN_REPORT
    assert text_of(final) == "You said: " + KOREAN_REPORT
    assert len(pieces) > 10
    assert_nothing_leaked(upstream)


@pytest.mark.parametrize("stream", [False, True])
def test_tool_round_trip_restores_inputs_and_masks_results(
    client: anthropic.Anthropic, upstream: FakeAnthropic, stream: bool
) -> None:
    tools: list[Any] = [
        {
            "name": "bash",
            "description": "Run a shell command",
            "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}},
        }
    ]
    question = "Is i-1234567890abcdef0 in vpc-12345678?"
    messages: list[Any] = [{"role": "user", "content": question}]
    reply: anthropic.types.Message
    if stream:
        with client.messages.stream(
            model="fake-tool", max_tokens=100, tools=tools, messages=messages
        ) as events:
            reply = events.get_final_message()
    else:
        reply = client.messages.create(
            model="fake-tool", max_tokens=100, tools=tools, messages=messages
        )
    tool_use = next(block for block in reply.content if block.type == "tool_use")
    assert tool_use.input == {"command": "describe " + question}
    first_placeholders = upstream_json(upstream)["messages"][0]["content"]
    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in reply.content]},
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": tool_use.id,
                    "content": "i-1234567890abcdef0 runs in vpc-12345678 at 52.95.110.1",
                }
            ],
        },
    ]
    client.messages.create(model="fake-echo", max_tokens=100, tools=tools, messages=messages)
    assert_nothing_leaked(upstream, ("i-1234567890abcdef0", "vpc-12345678", "52.95.110.1"))
    second = upstream_json(upstream)["messages"]
    assert second[0]["content"] == first_placeholders  # same placeholders on every turn
    assert "AWS_EC2_001" in second[1]["content"][-1]["input"]["command"]


def test_three_turn_conversation_keeps_placeholders_stable(
    client: anthropic.Anthropic, upstream: FakeAnthropic
) -> None:
    history: list[Any] = []
    turns = [
        "Check i-1234567890abcdef0",
        "And vpc-12345678 too",
        "Compare i-1234567890abcdef0 and vpc-12345678",
    ]
    for turn in turns:
        history.append({"role": "user", "content": turn})
        reply = client.messages.create(model="fake-echo", max_tokens=100, messages=history)
        assert text_of(reply) == "You said: " + turn
        history.append({"role": "assistant", "content": text_of(reply)})
    assert_nothing_leaked(upstream, ("i-1234567890abcdef0", "vpc-12345678"))
    last = upstream_json(upstream)["messages"]
    assert last[0]["content"] == "Check AWS_EC2_001"
    assert last[1]["content"] == "You said: Check AWS_EC2_001"
    assert last[4]["content"] == "Compare AWS_EC2_001 and AWS_VPC_001"


def test_thinking_blocks_pass_unchanged_both_ways(
    client: anthropic.Anthropic, upstream: FakeAnthropic
) -> None:
    question = "Why is i-1234567890abcdef0 slow?"
    reply = client.messages.create(
        model="fake-thinking",
        max_tokens=100,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": question}],
    )
    thinking = next(block for block in reply.content if block.type == "thinking")
    assert (thinking.thinking, thinking.signature) == (THINKING_TEXT, SIGNATURE)
    history: list[Any] = [
        {"role": "user", "content": question},
        {"role": "assistant", "content": [thinking.model_dump(exclude_none=True)]},
        {"role": "user", "content": "go on"},
    ]
    client.messages.create(model="fake-echo", max_tokens=100, messages=history)
    resent = upstream_json(upstream)["messages"][1]["content"][0]
    assert resent == thinking.model_dump(exclude_none=True)


def test_system_messages_inside_messages_and_beta_query_are_accepted(
    proxy_url: str, api_key: IssuedKey, upstream: FakeAnthropic
) -> None:
    body = {
        "model": "fake-echo",
        "max_tokens": 50,
        "messages": [
            {"role": "user", "content": "hello"},
            {"role": "system", "content": "Host 52.95.110.1 is prod"},
            {"role": "user", "content": [{"type": "text", "text": "and i-1234567890abcdef0?"}]},
        ],
        "future_field": {"kept": True},
    }
    response = httpx.post(
        f"{proxy_url}/v1/messages?beta=true",
        json=body,
        headers={
            "x-api-key": api_key.key,
            "anthropic-version": "2023-06-01",
            "anthropic-beta": "test-beta-2025",
        },
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.json()["content"][0]["text"] == "You said: and i-1234567890abcdef0?"
    assert response.headers["request-id"].startswith("req_")
    assert_nothing_leaked(upstream, ("52.95.110.1", "i-1234567890abcdef0"))
    assert upstream.requests[-1].headers.get("anthropic-beta") == "test-beta-2025"


@override_settings(PROXY_MASTER_KEY=MASTER_KEY)
def test_a_plain_http_request_with_the_master_key_is_masked_in_the_master_namespace(
    proxy_url: str, upstream: FakeAnthropic, seeded_rules: None
) -> None:
    response = httpx.post(
        f"{proxy_url}/v1/messages",
        headers={"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"},
        content=json.dumps(
            {
                "model": "claude-3-5-sonnet",
                "messages": [{"role": "user", "content": "Analyze EC2 i-1234567890abcdef0"}],
                "max_tokens": 100,
            }
        ),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.json()["content"][0]["text"] == "You said: Analyze EC2 i-1234567890abcdef0"
    assert_nothing_leaked(upstream, ("i-1234567890abcdef0",))
    assert wait_for_audit()[0].namespace == "master"


def test_count_tokens_is_masked_and_counted_upstream(
    client: anthropic.Anthropic, upstream: FakeAnthropic
) -> None:
    result = client.messages.count_tokens(
        model="fake-echo", messages=[{"role": "user", "content": KOREAN_REPORT}]
    )
    assert result.input_tokens > 0
    assert upstream.requests[-1].path == "/v1/messages/count_tokens"
    assert_nothing_leaked(upstream)


def test_async_client_creates_and_streams(
    proxy_url: str, api_key: IssuedKey, upstream: FakeAnthropic
) -> None:
    async def run() -> tuple[str, str]:
        async with anthropic.AsyncAnthropic(
            base_url=proxy_url, api_key=api_key.key, max_retries=0
        ) as sdk:
            message = await sdk.messages.create(
                model="fake-echo",
                max_tokens=50,
                messages=[{"role": "user", "content": KOREAN_REPORT}],
            )
            async with sdk.messages.stream(
                model="fake-echo",
                max_tokens=50,
                messages=[{"role": "user", "content": KOREAN_REPORT}],
            ) as stream:
                streamed = "".join([text async for text in stream.text_stream])
        return text_of(message), streamed

    created, streamed = asyncio.run(run())
    assert created == streamed == "You said: " + KOREAN_REPORT
    assert_nothing_leaked(upstream)


def test_client_disconnect_mid_stream_still_leaves_an_audit_record(
    proxy_url: str, api_key: IssuedKey, upstream: FakeAnthropic
) -> None:
    body = {
        "model": "fake-echo",
        "max_tokens": 50,
        "stream": True,
        "messages": [{"role": "user", "content": KOREAN_REPORT * 20}],
    }
    with httpx.stream(
        "POST",
        f"{proxy_url}/v1/messages",
        json=body,
        headers={"x-api-key": api_key.key},
        timeout=30,
    ) as response:
        assert next(response.iter_bytes())
    record = wait_for_audit()[0]
    assert record.stream
    assert record.masked_total == 7 * 20
