"""A fast, deterministic fake Anthropic Messages API for the benchmarks (a raw ASGI app).

Served by uvicorn in a process of its own (`uvicorn bench.fake_upstream:app`):

- `POST /v1/messages` answers with one text block holding the last user text, as it came
  (so the proxy has placeholders to restore). With `"stream": true` it sends Anthropic's
  events, the text cut in deltas of DELTA_CHARS characters, one socket write per event.
  Each text delta carries `bench_seq` (its number) at the top level of the event, and the
  `message_delta` event carries `bench_masked_text` (the whole text it sent): the proxy
  relays both untouched, and the stream benchmark uses them to measure the hold-back.
- `GET /bench/last-request` returns the body of the last `POST /v1/messages`, so that a
  benchmark can check what reached the provider.

Unlike tests/support/fakes/anthropic_upstream.py it does no random writes and no error scenarios:
it should cost as little as possible, the same for every request.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

Json = dict[str, Any]
Receive = Callable[[], Awaitable[Json]]
Send = Callable[[Json], Awaitable[None]]

DELTA_CHARS = 16
MESSAGES_PATH = "/v1/messages"
LAST_REQUEST_PATH = "/bench/last-request"

# The last request body. This process serves one benchmark at a time; the value is only
# read back by that benchmark.
_last_body = b"{}"


async def app(scope: Json, receive: Receive, send: Send) -> None:
    global _last_body
    if scope["type"] != "http":
        return
    body = await _read_body(receive)
    if scope["method"] == "GET" and scope["path"] == LAST_REQUEST_PATH:
        await _send_json(send, 200, _last_body)
        return
    if scope["method"] != "POST" or scope["path"] != MESSAGES_PATH:
        await _send_json(send, 404, _error("not_found_error", "Not found"))
        return
    try:
        request = json.loads(body)
    except ValueError:
        await _send_json(send, 400, _error("invalid_request_error", "Invalid JSON"))
        return
    _last_body = body
    text = _last_user_text(request)
    model = str(request.get("model", "bench"))
    if request.get("stream") is True:
        await _stream(send, model, text)
    else:
        await _send_json(send, 200, json.dumps(_message(model, text)).encode())


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send_json(send: Send, status: int, data: bytes) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(data)).encode()),
        (b"request-id", b"req_bench"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


def _error(kind: str, message: str) -> bytes:
    return json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()


def _last_user_text(request: Json) -> str:
    messages = request.get("messages") or []
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    content = users[-1].get("content") if users else ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    texts = [b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text"]
    return "".join(t for t in texts if isinstance(t, str))


def _usage(text: str) -> Json:
    return {"input_tokens": len(text) // 4 + 1, "output_tokens": len(text) // 4 + 1}


def _message(model: str, text: str) -> Json:
    return {
        "id": "msg_bench",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": _usage(text),
    }


def _event(name: str, data: Json) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


async def _stream(send: Send, model: str, text: str) -> None:
    headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})

    async def write(name: str, data: Json) -> None:
        await send({"type": "http.response.body", "body": _event(name, data), "more_body": True})

    opening = {**_message(model, ""), "content": [], "stop_reason": None}
    await write("message_start", {"type": "message_start", "message": opening})
    block = {"type": "text", "text": ""}
    await write(
        "content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}
    )
    await write("ping", {"type": "ping"})
    for seq, start in enumerate(range(0, len(text), DELTA_CHARS)):
        delta = {"type": "text_delta", "text": text[start : start + DELTA_CHARS]}
        event = {"type": "content_block_delta", "index": 0, "delta": delta, "bench_seq": seq}
        await write("content_block_delta", event)
    await write("content_block_stop", {"type": "content_block_stop", "index": 0})
    closing = {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": _usage(text)["output_tokens"]},
        "bench_masked_text": text,
    }
    await write("message_delta", closing)
    await write("message_stop", {"type": "message_stop"})
    await send({"type": "http.response.body", "body": b"", "more_body": False})
