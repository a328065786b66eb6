"""A fake OpenAI Chat Completions API served by uvicorn on 127.0.0.1, for tests of OpenAI routes.

The request's ``model`` picks the scenario, so a test chooses one by the model it sends:

- ``fake-echo`` (and any unknown model): "You said: " + the text of the last user message
  (a string, or the ``text`` parts of a list), finish reason ``stop``.
- ``fake-tool``: "Running it." and one ``tool_calls`` entry (``call_fake_1``) of the first tool
  in ``tools``, its arguments ``{"command": "describe " + the last user text}``, finish reason
  ``tool_calls``. Once the last message is a ``tool`` message: "Tool said: " + its content.
- ``fake-bash``: "Running it." and a ``tool_calls`` entry of the ``Bash`` tool (Claude Code's;
  else the first tool) whose command echoes the last text part of the last user message into
  ``BASH_OUTPUT_FILE``; once the last message is a ``tool`` message, "Tool said: " + its content.
- ``fake-error-<status>`` (400 401 403 404 429 500 503): OpenAI's error JSON (429 with
  ``retry-after``).
- ``fake-truncated``: the connection closes part-way through the body (stream or JSON).

"The last user message" is the user's own: LiteLLM turns a ``system`` message in the middle of an
Anthropic conversation (Claude Code sends one after the prompt) into a user message that opens
with ``CONVERTED_SYSTEM_NOTE``, so that the model can tell it from the user's words; the fake
passes over those as a model would.

``POST /v1/chat/completions`` streams with ``"stream": true``: ``data: {chunk}`` events, the
first with ``delta.role``, then content pieces, each tool call opened with its id, type and name
and then its ``arguments`` in pieces, a chunk with the finish reason, a usage chunk when
``stream_options.include_usage`` is set, and ``data: [DONE]``. ``GET /v1/models`` lists
``MODEL_IDS``. Both paths also answer without the ``/v1`` prefix (a base URL without it); any
other request gets OpenAI's 404 error.

Streams cut content and tool arguments into pieces of 1-4 characters and write the SSE bytes to
the socket in pieces of random size, seeded by the request body so that every run is the same.
The server, its recording and counting, and the cutting live in ``tests.support.fakes.server``.
"""

from __future__ import annotations

import json
import random
import shlex
from collections.abc import Iterator

from tests.support.fakes.server import (
    FakeServer,
    Json,
    Receive,
    RecordedRequest,
    Reply,
    error_status,
    seeded_random,
    socket_writes,
    text_pieces,
)

COMPLETIONS_PATHS = ("/v1/chat/completions", "/chat/completions")
MODELS_PATHS = ("/v1/models", "/models")
MODEL_IDS = ("fake-echo", "fake-tool", "fake-bash")
ECHO_PREFIX = "You said: "
TOOL_PREAMBLE = "Running it."
TOOL_CALL_ID = "call_fake_1"
DEFAULT_TOOL_NAME = "bash"
TOOL_RESULT_PREFIX = "Tool said: "
BASH_TOOL_NAME = "Bash"
BASH_TOOL_CALL_ID = "call_fake_bash_1"
BASH_OUTPUT_FILE = "fake-bash-output.txt"
# How LiteLLM 1.110.2 opens a user message it made from a mid-conversation system message.
CONVERTED_SYSTEM_NOTE = "Operator note (not from the user):"
# A fixed time, not the clock: the same request then gives the same bytes, cut the same way.
CREATED = 1_767_225_600
RETRY_AFTER_SECONDS = 7
# A truncated stream stops after this many content deltas, so the client has seen some text.
DELTAS_BEFORE_FAILURE = 3

# OpenAI's error type, code, and a message in its style, for each status a test can ask for.
ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "'messages' is a required property"),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided: sk-fake."),
    403: (
        "invalid_request_error",
        "unsupported_country_region_territory",
        "Country, region, or territory not supported",
    ),
    404: (
        "invalid_request_error",
        "model_not_found",
        "The model `fake-error-404` does not exist or you do not have access to it.",
    ),
    429: ("tokens", "rate_limit_exceeded", "Rate limit reached for fake-error-429 on tokens."),
    500: ("server_error", None, "The server had an error while processing your request."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


class FakeOpenAI(FakeServer):
    """The fake OpenAI upstream, run in a background thread; ``requests`` lists what it got."""

    name = "fake OpenAI"
    request_id_header = "x-request-id"
    request_id_prefix = "req_"

    async def answer(self, request: RecordedRequest, receive: Receive, reply: Reply) -> None:
        if request.method == "GET" and request.path in MODELS_PATHS:
            await reply.send_json(200, _model_list())
        elif request.method != "POST" or request.path not in COMPLETIONS_PATHS:
            message = f"Invalid URL ({request.method} {request.path})"
            await _send_error(reply, 404, "invalid_request_error", None, message)
        elif request.json is None:
            message = "We could not parse the JSON body of your request."
            await _send_error(reply, 400, "invalid_request_error", None, message)
        else:
            await _completions(request.json, request.body, reply)


async def _send_error(
    reply: Reply, status: int, error_type: str, code: str | None, message: str
) -> None:
    payload = {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    retry = [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())] if status == 429 else []
    await reply.send_json(status, payload, retry)


def _model_list() -> Json:
    models = [
        {"id": model_id, "object": "model", "created": CREATED, "owned_by": "fake"}
        for model_id in MODEL_IDS
    ]
    return {"object": "list", "data": models}


async def _completions(body: Json, raw: bytes, reply: Reply) -> None:
    model = str(body.get("model", ""))
    status = error_status(model, ERRORS)
    if status is not None:
        error_type, code, message = ERRORS[status]
        await _send_error(reply, status, error_type, code, message)
        return
    rng = seeded_random(raw)
    completion = _completion(model, body, rng)
    if body.get("stream") is True:
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        chunks = _chunks(completion, rng, include_usage=include_usage)
        await _stream(reply, chunks, rng, truncated=model == "fake-truncated")
    elif model == "fake-truncated":
        data = json.dumps(completion).encode()
        await reply.start(200, "application/json")
        # Returning before the last body message makes uvicorn drop the connection.
        await reply.write(data[: len(data) // 2], more=True)
    else:
        await reply.send_json(200, completion)


def _completion(model: str, body: Json, rng: random.Random) -> Json:
    message = _assistant_message(model, body)
    completion_tokens = len(json.dumps(message)) // 4 + 1
    prompt_tokens = _count_tokens(body)
    choice = {
        "index": 0,
        "message": message,
        "logprobs": None,
        "finish_reason": "tool_calls" if message.get("tool_calls") else "stop",
    }
    return {
        "id": f"chatcmpl-fake{rng.getrandbits(96):024x}",
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [choice],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def _assistant_message(model: str, body: Json) -> Json:
    messages = body.get("messages")
    turns = [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []
    tool_scenario = model in ("fake-tool", "fake-bash")
    if tool_scenario and turns and turns[-1].get("role") == "tool":
        content = TOOL_RESULT_PREFIX + "".join(_texts(turns[-1].get("content")))
        return {"role": "assistant", "content": content, "refusal": None}
    users = [m for m in turns if _from_user(m)]
    parts = list(_texts(users[-1].get("content"))) if users else []
    if model == "fake-tool":
        arguments = {"command": "describe " + "".join(parts)}
        call = _call(TOOL_CALL_ID, _first_tool_name(body), arguments)
    elif model == "fake-bash":
        # The last part only: Claude Code puts its system reminders first.
        call = _bash_call(body, parts[-1] if parts else "")
    else:
        return {"role": "assistant", "content": ECHO_PREFIX + "".join(parts), "refusal": None}
    return {"role": "assistant", "content": TOOL_PREAMBLE, "refusal": None, "tool_calls": [call]}


def _from_user(message: Json) -> bool:
    """A user message, unless LiteLLM made it from a system message."""
    if message.get("role") != "user":
        return False
    first = next(_texts(message.get("content")), "")
    return not first.startswith(CONVERTED_SYSTEM_NOTE)


def _bash_call(body: Json, words: str) -> Json:
    """A Bash call that writes the words to a file, and to its output (tee), when run."""
    command = f"echo {shlex.quote(words)} | tee {BASH_OUTPUT_FILE}"
    arguments = {"command": command, "description": "Echo"}
    return _call(BASH_TOOL_CALL_ID, _tool_named(body, BASH_TOOL_NAME), arguments)


def _call(call_id: str, name: str, arguments: Json) -> Json:
    encoded = json.dumps(arguments, ensure_ascii=False)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": encoded}}


def _tool_names(body: Json) -> list[str]:
    tools = body.get("tools")
    listed = tools if isinstance(tools, list) else []
    functions = [tool.get("function") for tool in listed if isinstance(tool, dict)]
    names = [f.get("name") for f in functions if isinstance(f, dict)]
    return [name for name in names if isinstance(name, str)]


def _first_tool_name(body: Json) -> str:
    names = _tool_names(body)
    return names[0] if names else DEFAULT_TOOL_NAME


def _tool_named(body: Json, name: str) -> str:
    return name if name in _tool_names(body) else _first_tool_name(body)


def _count_tokens(body: Json) -> int:
    messages = body.get("messages")
    texts: list[str] = []
    for message in messages if isinstance(messages, list) else []:
        if isinstance(message, dict):
            texts += _texts(message.get("content"))
    return sum(len(text) for text in texts) // 4 + 1


def _texts(content: object) -> Iterator[str]:
    """The text of a message's content: a string, or the ``text`` of its text parts."""
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text":
                text = part.get("text")
                if isinstance(text, str):
                    yield text


def _chunks(completion: Json, rng: random.Random, *, include_usage: bool) -> list[Json]:
    """OpenAI's stream for a finished completion: the same message, cut into deltas."""
    choice = completion["choices"][0]
    message = choice["message"]
    deltas: list[Json] = [{"role": "assistant", "content": "", "refusal": None}]
    deltas += [{"content": piece} for piece in text_pieces(message["content"], rng)]
    for index, call in enumerate(message.get("tool_calls", [])):
        function = call["function"]
        opening = {
            "index": index,
            "id": call["id"],
            "type": "function",
            "function": {"name": function["name"], "arguments": ""},
        }
        deltas.append({"tool_calls": [opening]})
        for piece in text_pieces(function["arguments"], rng):
            deltas.append({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    chunks = [_chunk(completion, delta, None, include_usage) for delta in deltas]
    chunks.append(_chunk(completion, {}, choice["finish_reason"], include_usage))
    if include_usage:
        # The last chunk has no choices, only the usage (every other chunk says "usage": null).
        closing = _chunk(completion, {}, None, include_usage)
        chunks.append({**closing, "choices": [], "usage": completion["usage"]})
    return chunks


def _chunk(completion: Json, delta: Json, finish_reason: str | None, include_usage: bool) -> Json:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
    chunk = {
        "id": completion["id"],
        "object": "chat.completion.chunk",
        "created": completion["created"],
        "model": completion["model"],
        "choices": [choice],
    }
    return {**chunk, "usage": None} if include_usage else chunk


async def _stream(reply: Reply, chunks: list[Json], rng: random.Random, *, truncated: bool) -> None:
    data = b"".join(
        f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode()
        for chunk in (chunks[: 1 + DELTAS_BEFORE_FAILURE] if truncated else chunks)
    )
    if not truncated:
        data += b"data: [DONE]\n\n"
    await reply.start(200, "text/event-stream", [(b"cache-control", b"no-cache")])
    for piece in socket_writes(data, rng):
        await reply.write(piece, more=True)
    # A truncated stream returns without the last body message: uvicorn drops the connection
    # and the client never sees the end of the chunked body.
    if not truncated:
        await reply.write(b"", more=False)
