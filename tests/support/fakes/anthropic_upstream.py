"""A fake Anthropic Messages API served by uvicorn on 127.0.0.1, for the proxy to call in tests.

The request's ``model`` picks the scenario, so a test chooses one by the model it sends:

- ``fake-echo`` (and any unknown model): one text block, "You said: " + the last user text.
- ``fake-tool``: "Running it." then a ``tool_use`` of the first tool, stop reason ``tool_use``.
- ``fake-thinking``: a signed ``thinking`` block, then the echo.
- ``fake-bash``: a ``tool_use`` of the ``Bash`` tool (Claude Code's) whose command echoes the
  last text block of the last user message into ``BASH_OUTPUT_FILE``; once that message holds a
  ``tool_result``, "Tool said: " + the result's text.
- ``fake-error-<status>`` (400 401 403 404 413 429 500 529): Anthropic's error JSON.
- ``fake-error-midstream``: a stream that stops with an ``error`` event after a few deltas
  (without ``"stream": true``, the echo).
- ``fake-slow``: the echo, after a pause of ``SLOW_SECONDS`` before the response headers.
- ``fake-truncated``: the connection closes part-way through the body (stream or JSON).
- ``fake-stall-midstream``: part of the body (a few deltas, or half the JSON), then nothing
  for ``STALL_SECONDS`` unless the client leaves, then the rest.
- ``fake-slow-stream``: the echo's stream, its text in ``SLOW_STREAM_DELTAS`` even pieces (fewer
  for a shorter text), one event a write and a pause of ``SLOW_STREAM_INTERVAL`` after each
  delta: about 2 s in all (without ``"stream": true``, the echo at once). ``fake-slow-stream-long``:
  the same in ``LONG_STREAM_DELTAS`` pieces, about 6 s (for tests that must still be streaming
  a second or two after their first deltas, however late those reach them).

``POST /v1/messages/count_tokens`` answers with the characters of all text // 4 + 1;
``GET /v1/models`` lists ``MODEL_IDS`` in pages (``limit``, ``after_id``); any other path gets
Anthropic's 404 error.

``active_responses`` says how many requests are being answered, ``open_connections`` (and
``client_ports``) which client connections are open, and ``abandoned`` how many clients left
before their answer was complete: a test reads them to prove its client (the proxy) let go.

Streams cut text and tool input into pieces of 1-4 characters and write the SSE bytes to the
socket in pieces of random size, seeded by the request body so that every run is the same.
The server, its recording and counting, and the cutting live in ``tests.support.fakes.server``.
"""

from __future__ import annotations

import itertools
import json
import random
import shlex
import urllib.parse
from collections.abc import Iterator

from tests.support.fakes.server import (
    FakeServer,
    Json,
    Receive,
    RecordedRequest,
    Reply,
    error_status,
    pause_unless_disconnected,
    seeded_random,
    socket_writes,
    text_pieces,
)

Event = tuple[str, Json]

MESSAGES_PATH = "/v1/messages"
COUNT_TOKENS_PATH = "/v1/messages/count_tokens"
MODELS_PATH = "/v1/models"
# What GET /v1/models lists, newest first like Anthropic's list.
MODEL_IDS = ("claude-fake-opus-9", "claude-fake-sonnet-9", "fake-echo", "fake-tool")
ECHO_PREFIX = "You said: "
TOOL_PREAMBLE = "Running it."
TOOL_USE_ID = "toolu_fake_1"
DEFAULT_TOOL_NAME = "bash"
BASH_TOOL_NAME = "Bash"
BASH_TOOL_USE_ID = "toolu_fake_bash_1"
BASH_OUTPUT_FILE = "fake-bash-output.txt"
BASH_RESULT_PREFIX = "Tool said: "
THINKING_TEXT = "The user wants their own words back, so I will repeat them."
SIGNATURE = "sig_" + "EqQBCkgIARABGAIiQGFrZTEyMzQ1Njc4OTBhYmNk"
SLOW_SECONDS = 2.0
SLOW_STREAM_DELTAS = 20
LONG_STREAM_DELTAS = 60
SLOW_STREAM_INTERVAL = 0.1
# Longer than any timeout a test sets, so only a client that lets go ends a stall early.
STALL_SECONDS = 30.0
RETRY_AFTER_SECONDS = 7
MIDSTREAM_ERROR = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
# Streams that fail or stall stop after this many deltas, so the client has seen some text first.
DELTAS_BEFORE_FAILURE = 3

# Anthropic's error type, and a message in its style, for each status a test can ask for.
ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "messages: Field required"),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use this resource."),
    404: ("not_found_error", "model: fake-error-404"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your rate limit."),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}


class FakeAnthropic(FakeServer):
    """The fake Anthropic upstream, run in a background thread; ``requests`` lists what it got."""

    name = "fake Anthropic"

    async def answer(self, request: RecordedRequest, receive: Receive, reply: Reply) -> None:
        if request.method == "GET" and request.path == MODELS_PATH:
            await reply.send_json(200, _model_page(request.query_string))
        elif request.method != "POST" or request.path not in (MESSAGES_PATH, COUNT_TOKENS_PATH):
            message = f"Not found: {request.method} {request.path}"
            await _send_error(reply, 404, "not_found_error", message)
        elif request.json is None:
            message = "The body must be a JSON object."
            await _send_error(reply, 400, "invalid_request_error", message)
        elif request.path == COUNT_TOKENS_PATH:
            await reply.send_json(200, {"input_tokens": _count_tokens(request.json)})
        else:
            await _messages(request.json, request.body, receive, reply)


def _model_page(query_string: str) -> Json:
    """One page of MODEL_IDS, with Anthropic's limit and after_id parameters."""
    query = urllib.parse.parse_qs(query_string)
    limit = int(query.get("limit", ["20"])[0])
    after = query.get("after_id", [""])[0]
    start = MODEL_IDS.index(after) + 1 if after in MODEL_IDS else 0
    ids = MODEL_IDS[start : start + limit]
    return {
        "data": [
            {
                "type": "model",
                "id": model_id,
                "display_name": model_id.replace("-", " ").title(),
                "created_at": "2026-01-01T00:00:00Z",
            }
            for model_id in ids
        ],
        "has_more": start + limit < len(MODEL_IDS),
        "first_id": ids[0] if ids else None,
        "last_id": ids[-1] if ids else None,
    }


async def _send_error(reply: Reply, status: int, error_type: str, message: str) -> None:
    payload = {
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": reply.request_id,
    }
    retry = [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())] if status == 429 else []
    await reply.send_json(status, payload, retry)


async def _messages(body: Json, raw: bytes, receive: Receive, reply: Reply) -> None:
    model = str(body.get("model", ""))
    status = error_status(model, ERRORS)
    if status is not None:
        await _send_error(reply, status, *ERRORS[status])
        return
    if model == "fake-slow" and not await pause_unless_disconnected(receive, SLOW_SECONDS):
        return
    rng = seeded_random(raw)
    message = _message(model, body, rng)
    if body.get("stream") is True:
        await _stream(reply, receive, model, message, rng)
    elif model in ("fake-truncated", "fake-stall-midstream"):
        data = json.dumps(message).encode()
        await reply.start(200, "application/json")
        await reply.write(data[: len(data) // 2], more=True)
        if model == "fake-stall-midstream" and await pause_unless_disconnected(
            receive, STALL_SECONDS
        ):
            await reply.write(data[len(data) // 2 :], more=False)
        # Otherwise, returning before the last body message makes uvicorn drop the connection.
    else:
        await reply.send_json(200, message)


def _message(model: str, body: Json, rng: random.Random) -> Json:
    content = _reply_content(model, body)
    return {
        "id": f"msg_fake_{rng.getrandbits(96):024x}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": "tool_use" if content[-1]["type"] == "tool_use" else "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": _count_tokens(body),
            "output_tokens": len(json.dumps(content)) // 4 + 1,
        },
    }


def _reply_content(model: str, body: Json) -> list[Json]:
    said = _last_user_text(body)
    echo = {"type": "text", "text": ECHO_PREFIX + said}
    if model == "fake-tool":
        tool_use = {
            "type": "tool_use",
            "id": TOOL_USE_ID,
            "name": _first_tool_name(body),
            "input": {"command": "describe " + said},
        }
        return [{"type": "text", "text": TOOL_PREAMBLE}, tool_use]
    if model == "fake-thinking":
        return [{"type": "thinking", "thinking": THINKING_TEXT, "signature": SIGNATURE}, echo]
    if model == "fake-bash":
        return _bash_content(body)
    return [echo]


def _bash_content(body: Json) -> list[Json]:
    """A Bash call that writes the user's last words to a file, then the echo of its result."""
    result = _last_tool_result_text(body)
    if result is not None:
        return [{"type": "text", "text": BASH_RESULT_PREFIX + result}]
    # tee: the words land in a file the test can read and in the output that comes back.
    words = shlex.quote(_last_user_block_text(body))
    tool_use = {
        "type": "tool_use",
        "id": BASH_TOOL_USE_ID,
        "name": _tool_named(body, BASH_TOOL_NAME),
        "input": {"command": f"echo {words} | tee {BASH_OUTPUT_FILE}", "description": "Echo"},
    }
    return [{"type": "text", "text": TOOL_PREAMBLE}, tool_use]


def _last_user_text(body: Json) -> str:
    messages = body.get("messages")
    users = [m for m in messages if _is_user(m)] if isinstance(messages, list) else []
    content = users[-1].get("content") if users else None
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    texts = [b.get("text") for b in content if isinstance(b, dict) and b.get("type") == "text"]
    return "".join(text for text in texts if isinstance(text, str))


def _last_user_blocks(body: Json) -> list[Json]:
    messages = body.get("messages")
    users = [m for m in messages if _is_user(m)] if isinstance(messages, list) else []
    content = users[-1].get("content") if users else None
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


def _last_user_block_text(body: Json) -> str:
    """The last text block of the last user message (Claude Code puts its reminders first)."""
    texts = [b.get("text") for b in _last_user_blocks(body) if b.get("type") == "text"]
    return next((text for text in reversed(texts) if isinstance(text, str)), "")


def _last_tool_result_text(body: Json) -> str | None:
    """The text of the last tool_result in the last user message; None when it has none."""
    results = [b for b in _last_user_blocks(body) if b.get("type") == "tool_result"]
    return "".join(_texts(results[-1].get("content"))) if results else None


def _is_user(message: object) -> bool:
    return isinstance(message, dict) and message.get("role") == "user"


def _first_tool_name(body: Json) -> str:
    tools = body.get("tools")
    if isinstance(tools, list) and tools and isinstance(tools[0], dict):
        return str(tools[0].get("name", DEFAULT_TOOL_NAME))
    return DEFAULT_TOOL_NAME


def _tool_named(body: Json, name: str) -> str:
    tools = body.get("tools")
    names = [t.get("name") for t in tools if isinstance(t, dict)] if isinstance(tools, list) else []
    return name if name in names else _first_tool_name(body)


def _count_tokens(body: Json) -> int:
    texts = list(_texts(body.get("system")))
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else []:
        if isinstance(message, dict):
            texts += _texts(message.get("content"))
    return sum(len(text) for text in texts) // 4 + 1


def _texts(content: object) -> Iterator[str]:
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for block in content:
            if isinstance(block, dict):
                if isinstance(block.get("text"), str):
                    yield block["text"]
                # A tool_result holds its own content: a string or more blocks.
                yield from _texts(block.get("content"))


async def _stream(
    reply: Reply, receive: Receive, model: str, message: Json, rng: random.Random
) -> None:
    if model in ("fake-slow-stream", "fake-slow-stream-long"):
        pieces = LONG_STREAM_DELTAS if model.endswith("-long") else SLOW_STREAM_DELTAS
        await _stream_slowly(reply, receive, _slow_events(message, rng, pieces))
        return
    events = _events(message, rng)
    rest: list[Event] = []
    if model == "fake-error-midstream":
        events = [*_first_deltas(events), ("error", MIDSTREAM_ERROR)]
    elif model == "fake-truncated":
        events = _first_deltas(events)
    elif model == "fake-stall-midstream":
        first = _first_deltas(events)
        events, rest = first, events[len(first) :]
    await reply.start(200, "text/event-stream", [(b"cache-control", b"no-cache")])
    for piece in socket_writes(_sse(events), rng):
        await reply.write(piece, more=True)
    if rest:
        # Whole events before the pause: the client has every byte sent so far to act on.
        if not await pause_unless_disconnected(receive, STALL_SECONDS):
            return
        await reply.write(_sse(rest), more=True)
    # A truncated stream returns without the last body message: uvicorn drops the connection
    # and the client never sees the end of the chunked body.
    if model != "fake-truncated":
        await reply.write(b"", more=False)


async def _stream_slowly(reply: Reply, receive: Receive, events: list[Event]) -> None:
    await reply.start(200, "text/event-stream", [(b"cache-control", b"no-cache")])
    for name, data in events:
        await reply.write(_sse([(name, data)]), more=True)
        if name == "content_block_delta" and not await pause_unless_disconnected(
            receive, SLOW_STREAM_INTERVAL
        ):
            return
    await reply.write(b"", more=False)


def _slow_events(message: Json, rng: random.Random, count: int) -> list[Event]:
    """The echo's stream with its text cut into `count` pieces of even length."""
    text = message["content"][0]["text"]
    size, longer = divmod(len(text), count)
    ends = list(itertools.accumulate(size + (n < longer) for n in range(count)))
    pieces = [text[start:end] for start, end in itertools.pairwise([0, *ends]) if end > start]
    deltas: list[Event] = [
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}},
        )
        for p in pieces
    ]
    events = _events(message, rng)
    positions = [n for n, (name, _) in enumerate(events) if name == "content_block_delta"]
    return [*events[: positions[0]], *deltas, *events[positions[-1] + 1 :]]


def _events(message: Json, rng: random.Random) -> list[Event]:
    """Anthropic's stream for a finished message: the same content, cut into deltas."""
    usage = message["usage"]
    opening = {**message, "content": [], "stop_reason": None, "stop_sequence": None}
    opening["usage"] = {"input_tokens": usage["input_tokens"], "output_tokens": 1}
    events: list[Event] = [("message_start", {"type": "message_start", "message": opening})]
    for index, block in enumerate(message["content"]):
        start = {"type": "content_block_start", "index": index, "content_block": _opening(block)}
        events.append(("content_block_start", start))
        if index == 0:
            events.append(("ping", {"type": "ping"}))  # Anthropic pings after the first start
        for delta in _deltas(block, rng):
            event = {"type": "content_block_delta", "index": index, "delta": delta}
            events.append(("content_block_delta", event))
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    closing = {"output_tokens": usage["output_tokens"]}
    events.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": closing}))
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def _opening(block: Json) -> Json:
    if block["type"] == "thinking":
        return {"type": "thinking", "thinking": "", "signature": ""}
    if block["type"] == "tool_use":
        return {**block, "input": {}}
    return {"type": "text", "text": ""}


def _deltas(block: Json, rng: random.Random) -> list[Json]:
    if block["type"] == "thinking":
        pieces = text_pieces(block["thinking"], rng)
        thinking = [{"type": "thinking_delta", "thinking": piece} for piece in pieces]
        return [*thinking, {"type": "signature_delta", "signature": block["signature"]}]
    if block["type"] == "tool_use":
        # Anthropic opens tool input with an empty piece; the escapes (\" and \n) of the JSON
        # text get cut like any other characters.
        pieces = ["", *text_pieces(json.dumps(block["input"], ensure_ascii=False), rng)]
        return [{"type": "input_json_delta", "partial_json": piece} for piece in pieces]
    return [{"type": "text_delta", "text": piece} for piece in text_pieces(block["text"], rng)]


def _first_deltas(events: list[Event]) -> list[Event]:
    seen = 0
    for position, (name, _) in enumerate(events):
        if name == "content_block_delta":
            seen += 1
            if seen == DELTAS_BEFORE_FAILURE:
                return events[: position + 1]
    return events


def _sse(events: list[Event]) -> bytes:
    return b"".join(
        f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()
        for name, data in events
    )
