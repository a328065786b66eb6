"""A sensitive value in any position of the Messages schema is masked or refused, never sent.

One body holds every field and block type of the Messages API (and some it does not know).
Each test request puts a value into one string of it (a value, a dictionary key, a block's
`type`, or a sibling of a `type` crafted to look like a skipped block), sends it to
/v1/messages and count_tokens, and checks what the fake provider received. The only strings
left unscanned are the ones the provider signs (thinking, redacted_thinking and compaction
blocks of assistant turns) and the data of a base64 source that is the file it says it is.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.fakes.anthropic_upstream import FakeAnthropic
from tests.support.live import IssuedKey

VALUE = "i-0123456789abcdef0"
PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5Er"
    "kJggg=="
)
SCHEMA = {
    "type": "object",
    "description": "about",
    "properties": {"bucket": {"type": "string", "enum": ["a"], "title": "b", "default": "c"}},
    "required": ["bucket"],
}
SIGNED = {"type": "thinking", "thinking": "thought", "signature": "sig"}
SIGNED_REDACTED = {"type": "redacted_thinking", "data": "opaque"}
SIGNED_COMPACTION = {"type": "compaction", "content": "summary", "signature": "sig"}


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text, "cache_control": {"type": "ephemeral", "ttl": "5m"}}


BODY: dict[str, Any] = {
    "model": "fake-echo",
    "max_tokens": 50,
    "system": [_text("system prompt")],
    "stop_sequences": ["stop"],
    "metadata": {"user_id": "user-1"},
    "temperature": 0.5,
    "tool_choice": {"type": "tool", "name": "lookup", "disable_parallel_tool_use": True},
    "thinking": {"type": "enabled", "budget_tokens": 1024},
    "service_tier": "auto",
    "inference_geo": "us",
    "cache_control": {"type": "ephemeral"},
    "container": {"id": "container_1", "skills": [{"type": "anthropic", "skill_id": "xlsx"}]},
    "context_management": {
        "edits": [
            {"type": "clear_tool_uses_20250919", "exclude_tools": ["lookup"]},
            {"type": "compact_20260112", "instructions": "keep the ids"},
        ]
    },
    "compaction": {"type": "summarize", "instructions": "summarize it"},
    "output_config": {"effort": "high", "format": {"type": "json_schema", "schema": SCHEMA}},
    "output_format": {"type": "json_schema", "schema": SCHEMA},
    "mcp_servers": [
        {
            "type": "url",
            "url": "https://mcp.example/sse",
            "name": "corp",
            "authorization_token": "token-1",
            "tool_configuration": {"enabled": True, "allowed_tools": ["search"]},
        }
    ],
    "tools": [
        {
            "name": "lookup",
            "description": "Looks things up.",
            "input_schema": SCHEMA,
            "cache_control": {"type": "ephemeral"},
            "input_examples": [{"bucket": "example"}],
        },
        {
            "type": "web_search_20250305",
            "name": "web_search",
            "max_uses": 2,
            "allowed_domains": ["docs.example"],
            "user_location": {"type": "approximate", "city": "Seoul", "country": "KR"},
        },
        {"type": "mcp_toolset", "mcp_server_name": "corp"},
    ],
    "messages": [
        {"role": "system", "content": "mid-conversation system"},
        {
            "role": "user",
            "content": [
                _text("question"),
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                },
                {"type": "image", "source": {"type": "url", "url": "https://img.example/a.png"}},
                {"type": "image", "source": {"type": "file", "file_id": "file_1"}},
                {
                    "type": "document",
                    "title": "doc",
                    "context": "ctx",
                    "citations": {"enabled": True},
                    "source": {"type": "text", "media_type": "text/plain", "data": "doc text"},
                },
                {
                    "type": "document",
                    "source": {"type": "content", "content": [_text("chunk")]},
                },
                {"type": "document", "source": {"type": "url", "url": "https://doc.example/a"}},
                {
                    "type": "search_result",
                    "source": "https://kb.example/1",
                    "title": "result",
                    "content": [_text("snippet")],
                },
                {"type": "container_upload", "file_id": "file_2"},
                {"type": "future_block", "payload": {"note": "text"}},
                copy.deepcopy(SIGNED),
            ],
        },
        {
            "role": "assistant",
            "content": [
                copy.deepcopy(SIGNED),
                copy.deepcopy(SIGNED_REDACTED),
                copy.deepcopy(SIGNED_COMPACTION),
                {
                    "type": "text",
                    "text": "answer",
                    "citations": [
                        {
                            "type": "char_location",
                            "cited_text": "cited",
                            "document_index": 0,
                            "document_title": "doc",
                        },
                        {
                            "type": "web_search_result_location",
                            "url": "https://r.example",
                            "title": "t",
                            "encrypted_index": "enc",
                            "cited_text": "c",
                        },
                    ],
                },
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "lookup",
                    "input": {"bucket": "logs", "nested": [{"k": "v"}]},
                },
                {
                    "type": "server_tool_use",
                    "id": "srvtoolu_1",
                    "name": "web_search",
                    "input": {"query": "q"},
                },
                {
                    "type": "web_search_tool_result",
                    "tool_use_id": "srvtoolu_1",
                    "content": [
                        {
                            "type": "web_search_result",
                            "url": "https://r.example",
                            "title": "r",
                            "encrypted_content": "enc",
                            "page_age": "1 day",
                        }
                    ],
                },
                {
                    "type": "mcp_tool_use",
                    "id": "mcptoolu_1",
                    "name": "search",
                    "server_name": "corp",
                    "input": {"q": "x"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "is_error": False,
                    "content": [
                        _text("tool output"),
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                        },
                        copy.deepcopy(SIGNED),
                    ],
                },
                {
                    "type": "mcp_tool_result",
                    "tool_use_id": "mcptoolu_1",
                    "content": [_text("mcp output")],
                },
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "plain output"},
            ],
        },
    ],
}
# Skipped by design: what the provider signed in its own turns, and the image's real bytes.
_SIGNED_PATHS = {
    ("messages", 2, "content", 0),
    ("messages", 2, "content", 1),
    ("messages", 2, "content", 2),
}
_BINARY_DATA = "data"

Path = tuple[str | int, ...]


def _positions(value: Any, path: Path = ()) -> Iterator[tuple[Path, str]]:
    """(path, kind) for every string and every key, where kind is "value" or "key"."""
    if any(path[: len(signed)] == signed for signed in _SIGNED_PATHS):
        return
    if isinstance(value, str):
        if not (path[-1:] == (_BINARY_DATA,) and value == PNG):
            yield path, "value"
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _positions(item, (*path, index))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield (*path, key), "key"
            yield from _positions(item, (*path, key))


def _with_value(path: Path, kind: str) -> dict[str, Any]:
    body = copy.deepcopy(BODY)
    parent: Any = body
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if kind == "key":
        parent[f"{last} {VALUE}"] = parent.pop(last)
    else:
        parent[last] = f"{parent[last]} {VALUE}"
    return body


def _smuggled(path: Path, disguise: str) -> dict[str, Any]:
    """The dict at path dressed as a block the proxy skips, with the value beside its type."""
    body = copy.deepcopy(BODY)
    target: Any = body
    for step in path:
        target = target[step]
    target["type"] = disguise
    target["smuggled"] = VALUE
    return body


def _dict_paths(value: Any, path: Path = ()) -> Iterator[Path]:
    if isinstance(value, dict):
        yield path
        for key, item in value.items():
            yield from _dict_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _dict_paths(item, (*path, index))


POSITIONS = list(_positions(BODY))
DISGUISES = ("thinking", "redacted_thinking", "compaction", "url", "file", "base64")


def _send(http: httpx.Client, key: str, path: str, body: dict[str, Any]) -> httpx.Response:
    return http.post(path, json=body, headers={"x-api-key": key})


def _assert_masked_or_refused(response: httpx.Response, upstream: FakeAnthropic) -> None:
    assert response.status_code in (200, 400, 413), response.text[:300]
    if response.status_code != 200:
        assert response.json()["error"]["type"] in ("invalid_request_error", "request_too_large")
    assert VALUE.encode() not in upstream.raw_bodies()


@pytest.fixture
def http(proxy_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=proxy_url, timeout=30) as client:
        yield client


def test_the_body_itself_is_accepted_and_forwarded(
    http: httpx.Client, api_key: IssuedKey, upstream: FakeAnthropic
) -> None:
    for endpoint in ("/v1/messages", "/v1/messages/count_tokens"):
        response = _send(http, api_key.key, endpoint, BODY)
        assert response.status_code == 200, response.text[:300]
    assert len(upstream.requests) == 2
    sent = upstream.requests[0].json or {}
    # Signed blocks of the assistant's turn reach the provider byte for byte.
    assert sent["messages"][2]["content"][:3] == [SIGNED, SIGNED_REDACTED, SIGNED_COMPACTION]
    assert sent["messages"][1]["content"][1]["source"]["data"] == PNG


@pytest.mark.slow
def test_a_value_in_any_string_or_key_is_masked_or_refused(
    http: httpx.Client, api_key: IssuedKey, upstream: FakeAnthropic
) -> None:
    assert len(POSITIONS) > 250
    for path, kind in POSITIONS:
        body = _with_value(path, kind)
        for endpoint in ("/v1/messages", "/v1/messages/count_tokens"):
            upstream.clear()
            response = _send(http, api_key.key, endpoint, body)
            try:
                _assert_masked_or_refused(response, upstream)
            except AssertionError as failure:
                raise AssertionError(f"{endpoint} with a value at {kind} {path}") from failure


@pytest.mark.slow
def test_a_crafted_type_smuggles_nothing_past_the_scan(
    http: httpx.Client, api_key: IssuedKey, upstream: FakeAnthropic
) -> None:
    paths = [path for path in _dict_paths(BODY) if path and path not in _SIGNED_PATHS]
    assert len(paths) > 60
    for path in paths:
        for disguise in DISGUISES:
            upstream.clear()
            response = _send(http, api_key.key, "/v1/messages", _smuggled(path, disguise))
            try:
                _assert_masked_or_refused(response, upstream)
            except AssertionError as failure:
                raise AssertionError(f"{disguise} at {path}") from failure


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(
            {
                "mcp_servers": [
                    {
                        "type": "url",
                        "url": "https://mcp.corp.example/sse?account=123456789012",
                        "name": "corp",
                        "authorization_token": "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8",
                    }
                ]
            },
            id="mcp-connector-with-account-and-github-token",
        ),
        pytest.param(
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image",
                                "source": {
                                    "type": "url",
                                    "url": "https://examplebucket.s3.amazonaws.com/photo.jpg"
                                    "?X-Amz-Algorithm=AWS4-HMAC-SHA256"
                                    "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLF%2F20261207%2F"
                                    "us-east-1%2Fs3%2Faws4_request&X-Amz-Signature=abc",
                                },
                            }
                        ],
                    }
                ]
            },
            id="presigned-s3-image-url",
        ),
    ],
)
@pytest.mark.parametrize("endpoint", ["/v1/messages", "/v1/messages/count_tokens"])
def test_the_pen_tests_leaks_are_refused_before_anything_is_sent(
    http: httpx.Client,
    api_key: IssuedKey,
    upstream: FakeAnthropic,
    change: dict[str, Any],
    endpoint: str,
) -> None:
    body = {"model": "fake-echo", "max_tokens": 20, "messages": BODY["messages"][:2], **change}
    response = _send(http, api_key.key, endpoint, body)
    assert response.status_code == 400, response.text[:300]
    assert "cannot be masked" in response.json()["error"]["message"]
    assert upstream.requests == []


def test_a_value_in_the_beta_header_is_refused(
    http: httpx.Client, api_key: IssuedKey, upstream: FakeAnthropic
) -> None:
    headers = {"x-api-key": api_key.key, "anthropic-beta": "tools-2024-04-04,i-0123456789abcdef0"}
    body = {"model": "fake-echo", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
    response = http.post("/v1/messages", json=body, headers=headers)
    assert response.status_code == 400
    assert upstream.requests == []
    response = http.post("/v1/messages", json=body, headers={**headers, "anthropic-beta": "a b"})
    assert response.status_code == 400
    assert "anthropic-beta" in response.json()["error"]["message"]
