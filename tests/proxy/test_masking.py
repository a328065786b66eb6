"""Where each string of a request sits: masked, checked or skipped; restoring replies (pure)."""

from __future__ import annotations

from typing import Any

from patterns.engine import PatternSpec, build_snapshot
from proxy.masking import (
    FORWARDED_FIELDS,
    forwarded_request,
    holds_value,
    is_binary,
    replace_request_texts,
    request_strings,
    request_texts,
    restore_block,
    restore_response,
)

PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5Er"
    "kJggg=="
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
                    "source": {"type": "base64", "media_type": "image/png", "data": PNG},
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
    "stop here", "sys", "mid-conversation system", "plain", "assistant text", "cite", "cmd",
    "ls", "args", "a", "b", "c", "n", "result", "result string", "doc title", "doc body", "note",
    "future text", "tool description", "param description", "user_id", "u-1",
]  # fmt: skip


def _forwarded() -> dict[str, Any]:
    return forwarded_request(REQUEST)


def test_only_messages_api_fields_are_forwarded_and_metadata_is_cut_to_user_id() -> None:
    body = forwarded_request({**REQUEST, "api_base": "http://x", "custom_llm_provider": "o"})
    assert set(body) <= FORWARDED_FIELDS
    assert "api_base" not in body and "custom_llm_provider" not in body
    assert body["metadata"] == {"user_id": "u-1"}
    assert "metadata" not in forwarded_request({"metadata": {"other": "x"}})


def test_every_text_the_model_reads_is_listed_in_order() -> None:
    assert request_texts(_forwarded()) == EXPECTED_TEXTS


def test_names_ids_and_settings_are_checked_not_masked() -> None:
    checked = request_strings(_forwarded()).checked
    for name in ("m", "toolu_1", "bash", "tool_use", "ephemeral", "string", "cmd", "x_1"):
        assert name in checked
    assert "bash" not in request_texts(_forwarded())  # a tool_use's name is a name


def test_odd_fields_of_known_blocks_are_masked_too() -> None:
    body = {"messages": [{"role": "user", "content": [{"type": "document", "data": "x1"}]}]}
    assert request_texts(body) == ["x1"]


def test_binary_data_is_skipped_only_when_it_is_the_file_it_claims_to_be() -> None:
    def strings(data: str, media_type: str = "image/png") -> list[str]:
        source = {"type": "base64", "media_type": media_type, "data": data}
        body = {"messages": [{"role": "user", "content": [{"type": "image", "source": source}]}]}
        found = request_strings(body)
        return [*found.texts, *found.checked]

    assert PNG not in strings(PNG)
    assert "i-0123456789abcdef0" in strings("i-0123456789abcdef0")
    assert PNG in strings(PNG, media_type="image/jpeg")
    assert is_binary(PNG, "image/png") and not is_binary(PNG, "text/plain")


def test_thinking_is_skipped_only_in_assistant_turns() -> None:
    user_turn = {"messages": [{"role": "user", "content": [THINKING]}]}
    assert request_texts(user_turn) == ["i-0123456789abcdef0 is odd"]
    assistant_turn = {"messages": [{"role": "assistant", "content": [THINKING]}]}
    assert request_strings(assistant_turn).texts == []
    nested = {"type": "tool_result", "tool_use_id": "t", "content": [THINKING]}
    assert request_texts({"messages": [{"role": "assistant", "content": [nested]}]}) == [
        "i-0123456789abcdef0 is odd"
    ]


def test_urls_the_provider_fetches_and_mcp_servers_are_checked() -> None:
    body = {
        "messages": [
            {
                "role": "user",
                "content": [{"type": "image", "source": {"type": "url", "url": "https://a/b"}}],
            }
        ],
        "mcp_servers": [{"type": "url", "url": "https://m", "authorization_token": "ghp_x"}],
        "tool_choice": {"type": "tool", "name": "get"},
    }
    found = request_strings(body)
    assert found.texts == []
    assert {"https://a/b", "https://m", "ghp_x", "get"} <= set(found.checked)


def test_schemas_mask_their_prose_and_check_their_structure() -> None:
    schema = {
        "type": "object",
        "description": "about",
        "properties": {"bucket": {"type": "string", "enum": ["logs-a"], "default": "logs-a"}},
        "required": ["bucket"],
    }
    body = {
        "tools": [{"name": "t", "input_schema": schema}],
        "output_format": {"type": "json_schema", "schema": schema},
        "context_management": {"edits": [{"type": "compact_20260112", "instructions": "sum"}]},
    }
    found = request_strings(body)
    assert found.texts == ["about", "logs-a", "logs-a", "about", "logs-a", "logs-a", "sum"]
    assert {"bucket", "object", "string", "t", "compact_20260112"} <= set(found.checked)


def test_replacing_texts_touches_nothing_else() -> None:
    body = _forwarded()
    masked = replace_request_texts(body, iter(t.upper() for t in EXPECTED_TEXTS))
    assert request_texts(masked) == [t.upper() for t in EXPECTED_TEXTS]
    assert masked["messages"][2]["content"][0] is THINKING  # signed: byte for byte
    assert masked["messages"][2]["content"][1] == {"type": "redacted_thinking", "data": "opaque"}
    assert masked["messages"][3]["content"][2] == REQUEST["messages"][3]["content"][2]
    assert masked["messages"][2]["content"][3]["input"]["N"] == 3  # keys are texts too
    assert masked["messages"][2]["content"][3]["name"] == "bash"
    assert masked["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert masked["tools"][0]["input_schema"]["properties"]["cmd"]["type"] == "string"
    assert masked["metadata"] == {"USER_ID": "U-1"}
    assert masked["stop_sequences"] == ["STOP HERE", 5]
    assert request_texts(body) == EXPECTED_TEXTS  # the original is not modified


def test_response_restores_text_and_tool_input_but_not_thinking_or_names() -> None:
    restore = {"AWS_EC2_001": "i-0123456789abcdef0"}
    message = {
        "id": "msg_1",
        "content": [
            {"type": "thinking", "thinking": "AWS_EC2_001", "signature": "s"},
            {"type": "text", "text": "restart AWS_EC2_001 and AWS_EC2_002"},
            {
                "type": "tool_use",
                "id": "toolu_AWS_EC2_001",
                "name": "AWS_EC2_001",
                "input": {"command": "reboot AWS_EC2_001"},
            },
        ],
    }
    restored, count = restore_response(message, restore)
    assert restored["content"][0] == message["content"][0]
    assert restored["content"][1]["text"] == "restart i-0123456789abcdef0 and AWS_EC2_002"
    assert restored["content"][2]["input"] == {"command": "reboot i-0123456789abcdef0"}
    assert restored["content"][2]["id"] == "toolu_AWS_EC2_001"
    assert restored["content"][2]["name"] == "AWS_EC2_001"
    assert count == 2


def test_restore_block_is_the_one_rule_for_blocks() -> None:
    block = {"type": "tool_use", "id": "t", "name": "X_001", "input": {"X_001": "X_001"}}
    assert restore_block(block, str.lower) == {
        "type": "tool_use",
        "id": "t",
        "name": "X_001",
        "input": {"x_001": "x_001"},
    }


RULES = build_snapshot(
    [
        PatternSpec("ec2_instance", r"i-[0-9a-f]{17}", "AWS_EC2"),
        PatternSpec("vpc", r"vpc-[0-9a-f]{8}", "AWS_VPC"),
    ]
)


def test_a_placeholder_shaped_literal_is_not_a_value() -> None:
    assert holds_value("see i-0123456789abcdef0", RULES)
    assert not holds_value("see AWS_EC2_001", RULES)
    assert not holds_value("", RULES)


def _runs(body: dict[str, Any]) -> list[list[str]]:
    found = request_strings(body)
    grouped: dict[int, list[str]] = {}
    for text, run in zip(found.texts, found.runs, strict=True):
        grouped.setdefault(run, []).append(text)
    return list(grouped.values())


def test_prose_read_back_to_back_forms_one_run() -> None:
    def text(value: str) -> dict[str, Any]:
        return {"type": "text", "text": value}

    body = {
        "system": [text("s1"), text("s2")],
        "messages": [
            {"role": "user", "content": [text("a"), text("b")]},
            {"role": "user", "content": "c"},  # the API merges a role's consecutive turns
            {"role": "assistant", "content": [text("d")]},
            {
                "role": "user",
                "content": [
                    text("e"),
                    {"type": "tool_result", "tool_use_id": "t", "content": [text("f"), text("g")]},
                    text("h"),
                ],
            },
        ],
    }
    assert _runs(body) == [["s1", "s2"], ["a", "b", "c"], ["d"], ["e"], ["f", "g"], ["h"]]


def test_citations_do_not_break_the_run_of_their_text() -> None:
    cited = {"type": "text", "text": "a", "citations": [{"type": "x", "cited_text": "q"}]}
    body = {"messages": [{"role": "user", "content": [cited, {"type": "text", "text": "b"}]}]}
    assert _runs(body) == [["a", "b"], ["q"]]
