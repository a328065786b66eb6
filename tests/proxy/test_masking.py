"""Which request texts are masked, and restoring responses (pure)."""

from __future__ import annotations

from typing import Any

from patterns.engine import PatternSpec, build_snapshot
from proxy.masking import (
    replace_request_texts,
    request_texts,
    restore_response,
    unmaskable_leftovers,
)

THINKING = {"type": "thinking", "thinking": "i-0123456789abcdef0 is odd", "signature": "sig_abc"}
REQUEST: dict[str, Any] = {
    "model": "m",
    "max_tokens": 10,
    "metadata": {"user_id": "u-1", "other": "kept"},
    "stop_sequences": ["stop here", 5],
    "system": [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}],
    "messages": [
        {"role": "system", "content": "mid-conversation system"},
        {"role": "user", "content": "plain"},
        {
            "role": "assistant",
            "content": [
                THINKING,
                {"type": "redacted_thinking", "data": "opaque"},
                {"type": "text", "text": "assistant text", "citations": [{"cited_text": "cite"}]},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "bash",
                    "input": {"cmd": "ls", "args": ["a", {"b": "c"}], "n": 3},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": [{"type": "text", "text": "result"}],
                },
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "result string"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
                },
                {
                    "type": "document",
                    "title": "doc title",
                    "source": {"type": "text", "media_type": "text/plain", "data": "doc body"},
                },
                {"type": "future_block", "id": "x_1", "payload": {"note": "future text"}},
            ],
        },
    ],
    "tools": [
        {
            "name": "bash",
            "description": "tool description",
            "input_schema": {
                "type": "object",
                "properties": {"cmd": {"type": "string", "description": "param description"}},
            },
        }
    ],
}
EXPECTED_TEXTS = [
    "sys", "mid-conversation system", "plain", "assistant text", "cited_text", "cite",
    "bash", "cmd", "ls", "args", "a", "b", "c", "n", "result", "result string", "doc title",
    "doc body", "note", "future text", "tool description", "param description", "stop here",
    "u-1",
]  # fmt: skip


def test_odd_fields_of_known_blocks_are_masked_too() -> None:
    body = {"messages": [{"role": "user", "content": [{"type": "document", "data": "x1"}]}]}
    assert request_texts(body) == ["x1"]
    image = {"type": "document", "source": {"type": "base64", "media_type": "x", "data": "QUJD"}}
    assert request_texts({"messages": [{"role": "user", "content": [image]}]}) == []


def test_unknown_top_level_fields_are_masked_keys_included() -> None:
    body = {**REQUEST, "future": {"i-0123456789abcdef0": ["x"]}}
    assert request_texts(body)[:2] == ["i-0123456789abcdef0", "x"]


def test_every_text_the_provider_reads_is_listed_in_order() -> None:
    assert request_texts(REQUEST) == EXPECTED_TEXTS


def test_replacing_texts_touches_nothing_else() -> None:
    masked = replace_request_texts(REQUEST, iter(t.upper() for t in EXPECTED_TEXTS))
    assert request_texts(masked) == [t.upper() for t in EXPECTED_TEXTS]
    assert masked["messages"][2]["content"][0] is THINKING  # signed: byte for byte
    assert masked["messages"][2]["content"][1] == {"type": "redacted_thinking", "data": "opaque"}
    assert masked["messages"][3]["content"][2] == REQUEST["messages"][3]["content"][2]
    assert masked["messages"][2]["content"][3]["input"]["N"] == 3  # keys are texts too
    assert masked["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert masked["tools"][0]["input_schema"]["properties"]["cmd"]["type"] == "string"
    assert masked["metadata"] == {"user_id": "U-1", "other": "kept"}
    assert masked["stop_sequences"] == ["STOP HERE", 5]
    assert request_texts(REQUEST) == EXPECTED_TEXTS  # the original is not modified


def test_response_restores_text_and_tool_input_but_not_thinking() -> None:
    restore = {"AWS_EC2_001": "i-0123456789abcdef0"}
    message = {
        "id": "msg_1",
        "content": [
            {"type": "thinking", "thinking": "AWS_EC2_001", "signature": "s"},
            {"type": "text", "text": "restart AWS_EC2_001 and AWS_EC2_002"},
            {
                "type": "tool_use",
                "id": "toolu_AWS_EC2_001",
                "name": "bash",
                "input": {"command": "reboot AWS_EC2_001"},
            },
        ],
    }
    restored, count = restore_response(message, restore)
    assert restored["content"][0] == message["content"][0]
    assert restored["content"][1]["text"] == "restart i-0123456789abcdef0 and AWS_EC2_002"
    assert restored["content"][2]["input"] == {"command": "reboot i-0123456789abcdef0"}
    assert restored["content"][2]["id"] == "toolu_AWS_EC2_001"
    assert count == 2


LEFTOVER_RULES = build_snapshot(
    [
        PatternSpec("ec2_instance", r"i-[0-9a-f]{17}", "AWS_EC2"),
        PatternSpec("vpc", r"vpc-[0-9a-f]{8}", "AWS_VPC"),
    ]
)
SYSTEM_PROMPT = "You are a helpful assistant for operations teams. " * 200


def _with_tool_use_id(tool_use_id: str) -> dict[str, Any]:
    return {
        "model": "m",
        "system": SYSTEM_PROMPT,
        "messages": [
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": tool_use_id, "name": "t", "input": {}}],
            }
        ],
    }


def test_a_value_where_nothing_is_masked_is_reported_by_its_path() -> None:
    body = _with_tool_use_id("i-0123456789abcdef0")
    assert unmaskable_leftovers(body, LEFTOVER_RULES) == "body.messages.0.content.0.id"


def test_texts_known_clean_are_skipped_but_values_elsewhere_still_found() -> None:
    clean = frozenset({SYSTEM_PROMPT, "m", "assistant", "tool_use", "t"})
    assert unmaskable_leftovers(_with_tool_use_id("toolu_01"), LEFTOVER_RULES, clean) is None
    leftover = unmaskable_leftovers(_with_tool_use_id("vpc-0a1b2c3d"), LEFTOVER_RULES, clean)
    assert leftover == "body.messages.0.content.0.id"
