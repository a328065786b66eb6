"""The floor: a bare uvicorn app that does only what any server in front of LiteLLM must.

It reads the body, parses it, calls `litellm.anthropic.messages.acreate` as the proxy does
(the arguments of bench/direct_client.py, without LiteLLM's success logging), and answers
with LiteLLM's result (a JSON object, or the SSE bytes as they come). No Django, no
authentication, no masking, no audit. Served by uvicorn with the proxy's loop and HTTP
parser (uvloop, httptools), it shows what part of the added latency, time to first byte and
throughput loss comes from being an ASGI server with LiteLLM in it at all, and what part
the proxy adds on top.

Run by bench/harness.py: `uvicorn bench.floor_app:app`, with FLOOR_UPSTREAM_URL naming the
fake upstream.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import httpx
import litellm
from litellm._internal_context import internal_sub_call

os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")
litellm.suppress_debug_info = True
for _name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
    logging.getLogger(_name).setLevel(logging.CRITICAL)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
HEADERS = {"anthropic-version": "2023-06-01"}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    body = await _body(receive)
    if scope["path"] != "/v1/messages":
        await _answer(send, 200, b"{}", b"application/json")
        return
    fields = json.loads(body)
    model = fields.pop("model")
    # As proxy/upstream.py calls it: without LiteLLM's success logging.
    with internal_sub_call():
        result: Any = await litellm.anthropic.messages.acreate(
            model=f"anthropic/{model}",
            api_base=os.environ["FLOOR_UPSTREAM_URL"],
            api_key="sk-ant-bench-dummy",
            timeout=httpx.Timeout(60.0, connect=5.0),
            extra_headers=HEADERS,
            num_retries=0,
            **fields,
        )
    if isinstance(result, dict):
        await _answer(send, 200, json.dumps(result).encode(), b"application/json")
        return
    await send(
        {"type": "http.response.start", "status": 200, "headers": [_type(b"text/event-stream")]}
    )
    async for chunk in result:
        data = chunk if isinstance(chunk, bytes) else json.dumps(chunk).encode()
        await send({"type": "http.response.body", "body": data, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _body(receive: Receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


async def _answer(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [_type(content_type)]})
    await send({"type": "http.response.body", "body": body})


def _type(content_type: bytes) -> tuple[bytes, bytes]:
    return (b"content-type", content_type)
