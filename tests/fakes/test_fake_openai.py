"""The fake OpenAI upstream speaks Chat Completions well enough for the official SDK."""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import (
    ChatCompletionChunk,
    ChatCompletionMessageParam,
    ChatCompletionToolParam,
)

from tests.support.fakes.openai_upstream import (
    BASH_OUTPUT_FILE,
    BASH_TOOL_CALL_ID,
    BASH_TOOL_NAME,
    CONVERTED_SYSTEM_NOTE,
    DELTAS_BEFORE_FAILURE,
    ECHO_PREFIX,
    MODEL_IDS,
    RETRY_AFTER_SECONDS,
    TOOL_CALL_ID,
    TOOL_PREAMBLE,
    TOOL_RESULT_PREFIX,
    FakeOpenAI,
)

PLACEHOLDER = "AWS_EC2_001"
# What LiteLLM sends for a system message Claude Code puts after its prompt.
CONVERTED_SYSTEM_TURN: ChatCompletionMessageParam = {
    "role": "user",
    "content": [
        {"type": "text", "text": f"{CONVERTED_SYSTEM_NOTE} the following was a system reminder."},
        {"type": "text", "text": "# Environment"},
    ],
}
TOOLS: list[ChatCompletionToolParam] = [
    {
        "type": "function",
        "function": {"name": "run_shell", "parameters": {"type": "object"}},
    }
]


# The parameter names the imported fixture on purpose: pytest injects fixtures by name.
@pytest.fixture
def fake(fake_openai: FakeOpenAI) -> FakeOpenAI:
    fake_openai.clear()
    return fake_openai


@pytest.fixture
def client(fake: FakeOpenAI) -> Iterator[openai.OpenAI]:
    # No retries: the SDK would retry 429 and 5xx, and honour retry-after.
    with openai.OpenAI(base_url=f"{fake.base_url}/v1", api_key="test", max_retries=0) as sdk:
        yield sdk


@pytest.fixture
def http(fake: FakeOpenAI) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.base_url, timeout=10) as raw:
        yield raw


def _user(text: str) -> list[ChatCompletionMessageParam]:
    return [{"role": "user", "content": text}]


def _sse_data(data: bytes) -> list[str]:
    frames = [frame for frame in data.decode().split("\n\n") if frame]
    assert all(frame.startswith("data: ") for frame in frames)
    return [frame.removeprefix("data: ") for frame in frames]


def _stream_body(model: str, text: str, **fields: Any) -> dict[str, Any]:
    return {"model": model, "stream": True, "messages": _user(text), **fields}


def test_create_echoes_the_last_user_text(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="fake-echo", messages=_user("hello there"))

    assert completion.id.startswith("chatcmpl-")
    assert completion.object == "chat.completion"
    assert completion.model == "fake-echo"
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == ECHO_PREFIX + "hello there"
    assert choice.message.tool_calls is None
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    usage = completion.usage
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens > 0


def test_echo_joins_the_text_parts_of_the_last_user_message_only(client: openai.OpenAI) -> None:
    messages: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "earlier words"},
        {"role": "assistant", "content": "ok"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "one "}, {"type": "text", "text": "two"}],
        },
    ]
    completion = client.chat.completions.create(model="any-model", messages=messages)

    assert completion.choices[0].message.content == ECHO_PREFIX + "one two"


def test_echo_passes_over_a_user_turn_litellm_made_from_a_system_message(
    client: openai.OpenAI,
) -> None:
    messages = [*_user("my words"), CONVERTED_SYSTEM_TURN]
    completion = client.chat.completions.create(model="fake-echo", messages=messages)

    assert completion.choices[0].message.content == ECHO_PREFIX + "my words"


def test_stream_content_joins_to_the_echo_from_tiny_deltas(client: openai.OpenAI) -> None:
    text = f"please restore {PLACEHOLDER} now"
    stream = client.chat.completions.create(model="fake-echo", messages=_user(text), stream=True)
    chunks: list[ChatCompletionChunk] = list(stream)

    deltas = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert "".join(deltas) == ECHO_PREFIX + text
    assert all(1 <= len(delta) <= 4 for delta in deltas)
    assert not any(PLACEHOLDER in delta for delta in deltas)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert {chunk.id for chunk in chunks} == {chunks[0].id}
    assert all(chunk.usage is None for chunk in chunks)


def test_stream_ends_with_a_usage_chunk_when_asked(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="fake-echo",
        messages=_user("count me"),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert all(chunk.usage is None for chunk in chunks[:-1])


def test_stream_reaches_the_client_in_pieces_and_ends_with_done(http: httpx.Client) -> None:
    body = _stream_body("fake-echo", "x" * 60)
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        pieces = list(response.iter_raw())

    assert response.headers["content-type"] == "text/event-stream"
    assert len(pieces) > 20
    data = _sse_data(b"".join(pieces))
    assert data[-1] == "[DONE]"
    assert all(json.loads(item)["object"] == "chat.completion.chunk" for item in data[:-1])


def test_same_request_streams_the_same_pieces(http: httpx.Client) -> None:
    body = _stream_body("fake-echo", "the same words")
    runs = []
    for _ in range(2):
        with http.stream("POST", "/chat/completions", json=body) as response:
            runs.append(b"".join(response.iter_raw()))

    assert runs[0] == runs[1]


def test_tool_call_names_the_first_tool_with_json_arguments(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="fake-tool", messages=_user("the disk"), tools=TOOLS, tool_choice="auto"
    )

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == TOOL_PREAMBLE
    assert choice.message.tool_calls is not None
    [call] = choice.message.tool_calls
    assert call.id == TOOL_CALL_ID
    assert call.type == "function"
    assert call.function.name == "run_shell"
    assert json.loads(call.function.arguments) == {"command": "describe the disk"}


def test_tool_call_streams_its_arguments_as_small_pieces(http: httpx.Client) -> None:
    body = _stream_body("fake-tool", f'say "{PLACEHOLDER}"', tools=TOOLS)
    response = http.post("/v1/chat/completions", json=body)
    chunks = [json.loads(item) for item in _sse_data(response.content)[:-1]]

    deltas = [chunk["choices"][0]["delta"] for chunk in chunks]
    calls = [delta["tool_calls"][0] for delta in deltas if "tool_calls" in delta]
    opening, fragments = calls[0], calls[1:]
    assert opening == {
        "index": 0,
        "id": TOOL_CALL_ID,
        "type": "function",
        "function": {"name": "run_shell", "arguments": ""},
    }
    assert all(set(fragment) == {"index", "function"} for fragment in fragments)
    arguments = "".join(fragment["function"]["arguments"] for fragment in fragments)
    assert json.loads(arguments) == {"command": f'describe say "{PLACEHOLDER}"'}
    assert len(fragments) >= len(arguments) // 4
    content = "".join(delta.get("content") or "" for delta in deltas)
    assert content == TOOL_PREAMBLE
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_tool_call_stream_reassembles_in_the_sdk(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="fake-tool", messages=_user("the disk"), tools=TOOLS, stream=True
    )
    arguments = ""
    names = []
    for chunk in stream:
        for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            assert call.index == 0
            if call.function and call.function.name:
                names.append(call.function.name)
            arguments += (call.function.arguments or "") if call.function else ""

    assert names == ["run_shell"]
    assert json.loads(arguments) == {"command": "describe the disk"}


@pytest.mark.parametrize(
    "content", ["42 files", [{"type": "text", "text": "42 "}, {"type": "text", "text": "files"}]]
)
def test_tool_result_turn_echoes_the_tool_message(
    client: openai.OpenAI, content: str | list[dict[str, str]]
) -> None:
    messages: list[Any] = [
        {"role": "user", "content": "the disk"},
        {
            "role": "assistant",
            "content": TOOL_PREAMBLE,
            "tool_calls": [
                {
                    "id": TOOL_CALL_ID,
                    "type": "function",
                    "function": {"name": "run_shell", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": TOOL_CALL_ID, "content": content},
    ]
    completion = client.chat.completions.create(model="fake-tool", messages=messages, tools=TOOLS)

    assert completion.choices[0].message.content == TOOL_RESULT_PREFIX + "42 files"
    assert completion.choices[0].message.tool_calls is None
    assert completion.choices[0].finish_reason == "stop"


def _function_tool(name: str) -> ChatCompletionToolParam:
    return {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}


@pytest.mark.parametrize(
    ("tools", "called"),
    [
        ([_function_tool("Read"), _function_tool(BASH_TOOL_NAME)], BASH_TOOL_NAME),
        ([_function_tool("run_shell")], "run_shell"),
    ],
    ids=["bash-tool", "first-tool"],
)
def test_bash_call_echoes_the_last_text_part_of_the_last_user_message_into_a_file(
    client: openai.OpenAI, tools: list[ChatCompletionToolParam], called: str
) -> None:
    words = f"it's {PLACEHOLDER} & more"
    messages: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "earlier words"},
        {"role": "assistant", "content": "ok"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "<system-reminder>first</system-reminder>"},
                {"type": "text", "text": words},
            ],
        },
        CONVERTED_SYSTEM_TURN,
    ]
    completion = client.chat.completions.create(model="fake-bash", messages=messages, tools=tools)

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == TOOL_PREAMBLE
    assert choice.message.tool_calls is not None
    [call] = choice.message.tool_calls
    assert call.type == "function"
    assert (call.id, call.function.name) == (BASH_TOOL_CALL_ID, called)
    arguments = json.loads(call.function.arguments)
    command = f"echo {shlex.quote(words)} | tee {BASH_OUTPUT_FILE}"
    assert arguments == {"command": command, "description": "Echo"}
    assert shlex.split(command)[1] == words


def test_bash_call_streams_and_then_echoes_the_tool_message(client: openai.OpenAI) -> None:
    tools = [_function_tool(BASH_TOOL_NAME)]
    stream = client.chat.completions.create(
        model="fake-bash", messages=_user("hello"), tools=tools, stream=True
    )
    arguments = "".join(
        call.function.arguments or ""
        for chunk in stream
        for call in (chunk.choices[0].delta.tool_calls or [])
        if chunk.choices
        if call.function
    )
    command = f"echo hello | tee {BASH_OUTPUT_FILE}"
    assert json.loads(arguments) == {"command": command, "description": "Echo"}

    messages: list[Any] = [
        *_user("hello"),
        {
            "role": "assistant",
            "content": TOOL_PREAMBLE,
            "tool_calls": [
                {
                    "id": BASH_TOOL_CALL_ID,
                    "type": "function",
                    "function": {"name": BASH_TOOL_NAME, "arguments": arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": BASH_TOOL_CALL_ID, "content": "hello\n"},
    ]
    completion = client.chat.completions.create(model="fake-bash", messages=messages, tools=tools)

    assert completion.choices[0].message.content == TOOL_RESULT_PREFIX + "hello\n"
    assert completion.choices[0].message.tool_calls is None
    assert completion.choices[0].finish_reason == "stop"


@pytest.mark.parametrize(
    ("status", "exception"),
    [
        (400, openai.BadRequestError),
        (401, openai.AuthenticationError),
        (403, openai.PermissionDeniedError),
        (404, openai.NotFoundError),
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
        (503, openai.InternalServerError),
    ],
)
def test_error_model_raises_the_sdks_matching_exception(
    client: openai.OpenAI, status: int, exception: type[openai.APIStatusError]
) -> None:
    with pytest.raises(exception) as raised:
        client.chat.completions.create(model=f"fake-error-{status}", messages=_user("hi"))

    assert raised.value.status_code == status
    assert raised.value.request_id is not None
    assert raised.value.request_id.startswith("req_")
    body = raised.value.body
    assert isinstance(body, dict)
    assert set(body) == {"message", "type", "param", "code"}
    assert body["param"] is None


def test_error_model_fails_a_stream_before_it_starts(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="fake-error-503", messages=_user("hi"), stream=True)


def test_rate_limit_says_when_to_retry(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", json={"model": "fake-error-429"})

    assert response.status_code == 429
    assert response.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
    assert response.json()["error"]["code"] == "rate_limit_exceeded"


def test_truncated_stream_drops_the_connection_before_done(http: httpx.Client) -> None:
    received = bytearray()
    with (
        pytest.raises(httpx.RemoteProtocolError),
        http.stream("POST", "/v1/chat/completions", json=_stream_body("fake-truncated", "hi")) as r,
    ):
        for piece in r.iter_raw():
            received += piece

    data = _sse_data(bytes(received).rpartition(b"\n\n")[0])
    assert "[DONE]" not in data
    assert len(data) == 1 + DELTAS_BEFORE_FAILURE


def test_truncated_completion_drops_the_connection_mid_json(http: httpx.Client) -> None:
    body = {"model": "fake-truncated", "messages": _user("hi")}
    with pytest.raises(httpx.RemoteProtocolError):
        http.post("/v1/chat/completions", json=body)


def test_models_lists_the_fake_models(client: openai.OpenAI) -> None:
    assert [model.id for model in client.models.list()] == list(MODEL_IDS)


def test_requests_are_recorded_with_headers_and_json(
    fake: FakeOpenAI, client: openai.OpenAI
) -> None:
    client.chat.completions.create(model="fake-echo", messages=_user("recorded"))

    [request] = fake.requests
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.headers["authorization"] == "Bearer test"
    assert request.json is not None
    assert request.json["messages"] == _user("recorded")
    assert b"recorded" in fake.raw_bodies()


def test_other_paths_get_an_openai_not_found(http: httpx.Client) -> None:
    response = http.post("/v1/messages", json={"model": "fake-echo"})

    assert response.status_code == 404
    assert response.headers["x-request-id"].startswith("req_")
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"] == "Invalid URL (POST /v1/messages)"


def test_a_body_that_is_not_json_is_a_bad_request(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", content=b"not json")

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
