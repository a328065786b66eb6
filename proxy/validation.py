"""Validation of Messages requests: what we must know to mask safely, and nothing more.

Fields we do not check pass through unchanged, so that what the real API accepts (Claude
Code's betas, blocks added after this was written) keeps working.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from django.conf import settings

from proxy.errors import InvalidRequest, RequestTooLarge

ROLES = frozenset({"user", "assistant", "system"})
MAX_NESTING = 128
# orjson gives an integer past 64 bits as a float; no float that large comes out of it
# otherwise unless the body wrote one.
_ORJSON_INTEGER_LIMIT = 2.0**63
# Model ids are short (Anthropic's are under 40 characters); a long one only costs matching.
MAX_MODEL_LENGTH = 256
# A model name goes into LiteLLM's provider/model string and, for some providers, into a URL
# path: letters, digits and the punctuation real ids use (Bedrock's "...-v2:0", Vertex's
# "@2024...", Claude Code's "[1m]"), never a path step up, a query or a space.
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/\[\]+-]*\Z")
# The client headers the provider sees, and the shape each value must have.
ANTHROPIC_VERSION_HEADER, ANTHROPIC_BETA_HEADER = "anthropic-version", "anthropic-beta"
_VERSION_VALUE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
_BETA_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")
MAX_BETAS = 64


@dataclass(frozen=True)
class RequestLimits:
    """How much one request may hold (PROXY_MAX_MESSAGES, PROXY_MAX_CONTENT_BLOCKS)."""

    messages: int
    blocks: int

    @classmethod
    def from_settings(cls) -> RequestLimits:
        return cls(messages=settings.PROXY_MAX_MESSAGES, blocks=settings.PROXY_MAX_CONTENT_BLOCKS)


def parse_json_body(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object, exactly as json.loads reads it; InvalidRequest for
    anything else.

    orjson reads a conversation's body in less than half json's time. Where the two could
    differ, json decides: every body orjson refuses (NaN, a byte order mark, a lone
    surrogate, 1e400, bad JSON) is read again by json, whose answer or error stands, and so
    is a body holding a float as large as an integer orjson could not keep exact."""
    if not raw.strip():
        raise InvalidRequest("The request body is empty; a JSON object is required.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = _json_loads(raw)
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    depth, large_float = _shape(body)
    if depth > MAX_NESTING:
        raise InvalidRequest(f"The request body is nested deeper than {MAX_NESTING} levels.")
    return _json_loads(raw) if large_float else body


def _json_loads(raw: bytes) -> Any:
    try:
        return json.loads(raw, parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        raise InvalidRequest("The request body is not valid UTF-8.") from None
    except json.JSONDecodeError as exc:
        raise InvalidRequest(
            f"The request body is not valid JSON: {exc.msg} at position {exc.pos}."
        ) from None
    except RecursionError:
        raise InvalidRequest("The request body is nested too deeply.") from None


def _refuse_constant(name: str) -> Any:
    # NaN and Infinity are Python's extension, not JSON: no provider accepts them.
    raise InvalidRequest(f"The request body is not valid JSON: {name} is not a JSON value.")


def _shape(value: Any) -> tuple[int, bool]:
    """How deep value nests (a scalar is 1), counted level by level and no further than one
    level past MAX_NESTING, and whether it holds a float of magnitude 2**63 or more.
    Iterative: the masking walk recurses, so depth is bounded here first; by levels, so that
    the long strings of a conversation are only referenced."""
    level = [value]
    depth = 0
    large_float = False
    while level and depth <= MAX_NESTING:
        depth += 1
        below: list[Any] = []
        for item in level:
            if isinstance(item, dict):
                below.extend(item.values())
            elif isinstance(item, list):
                below.extend(item)
            elif (
                item.__class__ is float
                and not -_ORJSON_INTEGER_LIMIT < item < _ORJSON_INTEGER_LIMIT
            ):
                large_float = True
        level = below
    return depth, large_float


def forwarded_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The client headers the provider sees (API version, beta flags), each value checked.

    Raises InvalidRequest naming the header (never quoting it) when a value has another shape.
    """
    forwarded: dict[str, str] = {}
    version = headers.get(ANTHROPIC_VERSION_HEADER, "").strip()
    if version:
        _require(
            _VERSION_VALUE.match(version),
            f"{ANTHROPIC_VERSION_HEADER}: a date such as 2023-06-01 is required.",
        )
        forwarded[ANTHROPIC_VERSION_HEADER] = version
    betas = [b.strip() for b in headers.get(ANTHROPIC_BETA_HEADER, "").split(",") if b.strip()]
    if betas:
        _require(
            len(betas) <= MAX_BETAS and all(_BETA_NAME.match(beta) for beta in betas),
            f"{ANTHROPIC_BETA_HEADER}: at most {MAX_BETAS} comma-separated beta names "
            "(letters, digits and . _ -).",
        )
        forwarded[ANTHROPIC_BETA_HEADER] = ",".join(betas)
    return forwarded


def validate_messages_request(
    body: dict[str, Any], *, count_tokens: bool = False, limits: RequestLimits | None = None
) -> None:
    """Raise InvalidRequest naming the first field that is missing or of the wrong type, or
    RequestTooLarge when the request holds more messages or blocks than limits allow."""
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("model: a non-empty string is required.")
    _require(
        len(model) <= MAX_MODEL_LENGTH and _MODEL_NAME.match(model) and ".." not in model,
        f"model: at most {MAX_MODEL_LENGTH} letters, digits and . _ : @ / [ ] + - (no '..').",
    )
    if not count_tokens:
        max_tokens = body.get("max_tokens")
        _require(
            isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and max_tokens > 0,
            "max_tokens: a positive integer is required.",
        )
        _require(isinstance(body.get("stream", False), bool), "stream: must be a boolean.")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages: a non-empty list is required.")
    limits = limits or RequestLimits.from_settings()
    if len(messages) > limits.messages:
        raise RequestTooLarge(
            f"messages: at most {limits.messages} messages in one request (this proxy's "
            "PROXY_MAX_MESSAGES)."
        )
    for index, message in enumerate(messages):
        _validate_message(index, message)
    if "system" in body:
        _validate_content(body["system"], "system", allow_empty=True)
    _validate_settings(body)
    if content_blocks(body) > limits.blocks:
        raise RequestTooLarge(
            f"At most {limits.blocks} content blocks in one request (this proxy's "
            "PROXY_MAX_CONTENT_BLOCKS)."
        )


def content_blocks(body: dict[str, Any]) -> int:
    """The content blocks of a (validated) request: messages, system, tool results' content."""
    lists = [body["system"]] if isinstance(body.get("system"), list) else []
    lists += [m["content"] for m in body["messages"] if isinstance(m["content"], list)]
    count = 0
    while lists:
        blocks = lists.pop()
        count += len(blocks)
        lists.extend(
            b["content"]
            for b in blocks
            if isinstance(b, dict) and isinstance(b.get("content"), list)
        )
    return count


# Optional fields LiteLLM reads: a wrong type there must be the client's 400, not a crash.
_OBJECT_FIELDS = ("metadata", "tool_choice", "thinking", "context_management", "output_config")
_NUMBER_FIELDS = ("temperature", "top_p", "top_k")


def _validate_settings(body: dict[str, Any]) -> None:
    for name in _OBJECT_FIELDS:
        if name in body:
            _require(isinstance(body[name], dict), f"{name}: must be an object.")
    for name in _NUMBER_FIELDS:
        if name in body:
            value = body[name]
            _require(
                isinstance(value, int | float) and not isinstance(value, bool),
                f"{name}: must be a number.",
            )
    if "tools" in body:
        tools = body["tools"]
        _require(
            isinstance(tools, list) and all(isinstance(t, dict) for t in tools),
            "tools: must be a list of tool objects.",
        )
        for index, tool in enumerate(tools):
            # LiteLLM would connect to the MCP server itself (its MCP gateway), from this
            # server; Anthropic's own MCP connector is the top-level mcp_servers field.
            _require(
                tool.get("type") != "mcp",
                f'tools.{index}: tools of type "mcp" are not supported; use mcp_servers.',
            )
    if "stop_sequences" in body:
        stops = body["stop_sequences"]
        _require(
            isinstance(stops, list) and all(isinstance(s, str) for s in stops),
            "stop_sequences: must be a list of strings.",
        )


def _validate_message(index: int, message: Any) -> None:
    where = f"messages.{index}"
    _require(isinstance(message, dict), f"{where}: must be an object.")
    role = message.get("role")
    _require(
        isinstance(role, str) and role in ROLES,
        f"{where}.role: must be one of user, assistant, system.",
    )
    _require("content" in message, f"{where}.content: is required.")
    _validate_content(message["content"], f"{where}.content", allow_empty=True)


def _validate_content(content: Any, where: str, *, allow_empty: bool) -> None:
    if isinstance(content, str):
        return
    _require(isinstance(content, list), f"{where}: must be a string or a list of content blocks.")
    for index, block in enumerate(content):
        _require(
            isinstance(block, dict) and isinstance(block.get("type"), str),
            f"{where}.{index}: must be a content block with a type.",
        )
        if block["type"] == "text":
            _require(isinstance(block.get("text"), str), f"{where}.{index}.text: must be a string.")


def _require(condition: object, message: str) -> None:
    if not condition:
        raise InvalidRequest(message)
