"""The fake Anthropic upstream speaks the API well enough for the official SDK."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
from anthropic.types import (
    Message,
    MessageParam,
    TextBlock,
    TextBlockParam,
    ThinkingBlock,
    ToolParam,
    ToolResultBlockParam,
    ToolUseBlock,
)

from tests.support.fakes import anthropic_upstream
from tests.support.fakes.anthropic_upstream import (
    BASH_OUTPUT_FILE,
    BASH_RESULT_PREFIX,
    DELTAS_BEFORE_FAILURE,
    MODEL_IDS,
    RETRY_AFTER_SECONDS,
    SIGNATURE,
    SLOW_SECONDS,
    THINKING_TEXT,
    FakeAnthropic,
)

PLACEHOLDER = "AWS_EC2_001"
TOOLS: list[ToolParam] = [
    {"name": "run_shell", "description": "Run a command.", "input_schema": {"type": "object"}}
]


# The parameter names the imported fixture on purpose: pytest injects fixtures by name.
@pytest.fixture
def fake(fake_anthropic: FakeAnthropic) -> FakeAnthropic:
    fake_anthropic.clear()
    return fake_anthropic


@pytest.fixture
def client(fake: FakeAnthropic) -> Iterator[anthropic.Anthropic]:
    # No retries: the SDK would retry 429 and 5xx, and honour retry-after.
    with anthropic.Anthropic(base_url=fake.base_url, api_key="test", max_retries=0) as sdk:
        yield sdk


@pytest.fixture
def http(fake: FakeAnthropic) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.base_url, timeout=10) as raw:
        yield raw


def _user(text: str) -> list[MessageParam]:
    return [{"role": "user", "content": text}]


def _sse_events(data: bytes) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for frame in data.decode().split("\n\n"):
        if frame:
            name_line, data_line = frame.split("\n")
            events.append((name_line.removeprefix("event: "), json.loads(data_line[6:])))
    return events


def _text_deltas(events: list[tuple[str, dict[str, Any]]]) -> list[str]:
    deltas = [data["delta"] for name, data in events if name == "content_block_delta"]
    return [delta["text"] for delta in deltas if delta["type"] == "text_delta"]


def _is_utf8(chunk: bytes) -> bool:
    try:
        chunk.decode()
    except UnicodeDecodeError:
        return False
    return True


def test_create_echoes_the_last_user_text(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model="fake-echo", max_tokens=100, messages=_user(f"Restart {PLACEHOLDER} now")
    )

    assert message.id.startswith("msg_fake_")
    assert (message.model, message.stop_reason) == ("fake-echo", "end_turn")
    assert isinstance(message.content[0], TextBlock)
    assert message.content[0].text == f"You said: Restart {PLACEHOLDER} now"
    assert message.usage.input_tokens > 0
    assert message.usage.output_tokens > 0


def test_echo_joins_the_text_blocks_of_the_last_user_message_only(
    client: anthropic.Anthropic,
) -> None:
    messages: list[MessageParam] = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "one "}, {"type": "text", "text": "two"}],
        },
    ]

    message = client.messages.create(model="claude-unknown", max_tokens=100, messages=messages)

    assert isinstance(message.content[0], TextBlock)
    assert message.content[0].text == "You said: one two"


def test_stream_text_joins_to_the_echo(client: anthropic.Anthropic) -> None:
    prompt = f"Restart {PLACEHOLDER} in café ☕"
    with client.messages.stream(model="fake-echo", max_tokens=99, messages=_user(prompt)) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()

    assert text == f"You said: {prompt}"
    assert isinstance(final.content[0], TextBlock)
    assert final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 1


def test_stream_cuts_a_placeholder_across_tiny_text_deltas(http: httpx.Client) -> None:
    body = {"model": "fake-echo", "max_tokens": 9, "stream": True, "messages": _user(PLACEHOLDER)}

    response = http.post("/v1/messages", json=body)
    deltas = _text_deltas(_sse_events(response.content))

    assert "".join(deltas) == f"You said: {PLACEHOLDER}"
    assert all(1 <= len(delta) <= 4 for delta in deltas)
    assert not any(PLACEHOLDER in delta for delta in deltas)


def test_stream_follows_anthropics_event_sequence(http: httpx.Client) -> None:
    body = {"model": "fake-echo", "max_tokens": 9, "stream": True, "messages": _user("hi")}

    response = http.post("/v1/messages", json=body)
    names = [name for name, _ in _sse_events(response.content)]

    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["request-id"].startswith("req_fake_")
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert set(names[3:-3]) == {"content_block_delta"}
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]


def test_stream_reaches_the_client_in_pieces_that_ignore_boundaries(http: httpx.Client) -> None:
    body = {"model": "fake-echo", "max_tokens": 9, "stream": True, "messages": _user("café ☕")}

    with http.stream("POST", "/v1/messages", json=body) as response:
        chunks = list(response.iter_raw())

    assert any(not chunk.endswith(b"\n\n") for chunk in chunks), "an event split across reads"
    assert any(chunk.count(b"\n\n") >= 2 for chunk in chunks), "several events in one read"
    assert any(not _is_utf8(chunk) for chunk in chunks), "a character split across reads"
    assert _text_deltas(_sse_events(b"".join(chunks)))


def test_same_request_streams_the_same_pieces(http: httpx.Client) -> None:
    body = {"model": "fake-echo", "max_tokens": 9, "stream": True, "messages": _user("again")}

    def read() -> list[bytes]:
        with http.stream("POST", "/v1/messages", json=body) as response:
            return list(response.iter_raw())

    assert read() == read()


def test_tool_use_streams_its_input_as_small_json_pieces(client: anthropic.Anthropic) -> None:
    prompt = f'list "{PLACEHOLDER}"\nand café'
    with client.messages.stream(
        model="fake-tool", max_tokens=100, tools=TOOLS, messages=_user(prompt)
    ) as stream:
        pieces = [event.partial_json for event in stream if event.type == "input_json"]
        final = stream.get_final_message()

    text, tool_use = final.content
    assert isinstance(text, TextBlock)
    assert text.text == "Running it."
    assert isinstance(tool_use, ToolUseBlock)
    assert (tool_use.id, tool_use.name) == ("toolu_fake_1", "run_shell")
    assert tool_use.input == {"command": f"describe {prompt}"}
    assert final.stop_reason == "tool_use"
    assert "".join(pieces) == json.dumps(tool_use.input, ensure_ascii=False)
    assert all(len(piece) <= 4 for piece in pieces)
    assert not any(PLACEHOLDER in piece for piece in pieces)


def test_tool_use_without_tools_calls_bash(client: anthropic.Anthropic) -> None:
    message = client.messages.create(model="fake-tool", max_tokens=100, messages=_user("ls"))

    tool_use = message.content[1]
    assert isinstance(tool_use, ToolUseBlock)
    assert (tool_use.name, tool_use.input) == ("bash", {"command": "describe ls"})
    assert message.stop_reason == "tool_use"


def test_bash_calls_claude_codes_bash_tool_to_echo_the_last_text_block_into_a_file(
    client: anthropic.Anthropic, tmp_path: Path
) -> None:
    # Claude Code sends its reminders as text blocks before the prompt.
    prompt = f'Save {PLACEHOLDER}\'s "state" now'
    tools: list[ToolParam] = [*TOOLS, {"name": "Bash", "input_schema": {"type": "object"}}]
    messages: list[MessageParam] = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "<reminder/>"}, {"type": "text", "text": prompt}],
        }
    ]
    with client.messages.stream(
        model="fake-bash", max_tokens=100, tools=tools, messages=messages
    ) as stream:
        final = stream.get_final_message()

    text, tool_use = final.content
    assert isinstance(text, TextBlock)
    assert isinstance(tool_use, ToolUseBlock)
    assert (tool_use.name, final.stop_reason) == ("Bash", "tool_use")
    assert isinstance(tool_use.input, dict)
    command = tool_use.input["command"]
    assert command == f"echo {shlex.quote(prompt)} | tee {BASH_OUTPUT_FILE}"
    bash = shutil.which("bash") or "/bin/bash"
    ran = subprocess.run(
        [bash, "-c", command], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert ran.stdout == (tmp_path / BASH_OUTPUT_FILE).read_text() == prompt + "\n"


def test_bash_echoes_the_tool_result_once_it_comes_back(client: anthropic.Anthropic) -> None:
    first = client.messages.create(
        model="fake-bash", max_tokens=100, tools=TOOLS, messages=_user(PLACEHOLDER)
    )
    tool_use = first.content[1]
    assert isinstance(tool_use, ToolUseBlock)
    assert tool_use.name == "run_shell"  # no Bash tool: the first one
    output = f"{PLACEHOLDER}\n"
    results: list[ToolResultBlockParam] = [
        {"type": "tool_result", "tool_use_id": tool_use.id, "content": output},
        {"type": "tool_result", "tool_use_id": tool_use.id, "content": [_text_block(output)]},
    ]
    for result in results:
        messages: list[MessageParam] = [
            *_user(PLACEHOLDER),
            {"role": "assistant", "content": first.content},
            {"role": "user", "content": [result, _text_block("<reminder/>")]},
        ]

        second = client.messages.create(
            model="fake-bash", max_tokens=100, tools=TOOLS, messages=messages
        )

        assert isinstance(second.content[0], TextBlock)
        assert second.content[0].text == f"{BASH_RESULT_PREFIX}{PLACEHOLDER}\n"
        assert second.stop_reason == "end_turn"


def _text_block(text: str) -> TextBlockParam:
    return {"type": "text", "text": text}


def test_thinking_comes_signed_before_the_echo(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model="fake-thinking",
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=_user("why?"),
    )

    thinking, text = message.content
    assert isinstance(thinking, ThinkingBlock)
    assert (thinking.thinking, thinking.signature) == (THINKING_TEXT, SIGNATURE)
    assert isinstance(text, TextBlock)
    assert text.text == "You said: why?"


def test_thinking_streams_thinking_and_signature_deltas(client: anthropic.Anthropic) -> None:
    with client.messages.stream(
        model="fake-thinking",
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=_user("why?"),
    ) as stream:
        kinds = {event.type for event in stream}
        final = stream.get_final_message()

    assert {"thinking", "signature", "text"} <= kinds
    thinking = final.content[0]
    assert isinstance(thinking, ThinkingBlock)
    assert (thinking.thinking, thinking.signature) == (THINKING_TEXT, SIGNATURE)
    assert isinstance(final.content[1], TextBlock)
    assert final.content[1].text == "You said: why?"


@pytest.mark.parametrize(
    ("status", "error_type", "exception"),
    [
        (400, "invalid_request_error", anthropic.BadRequestError),
        (401, "authentication_error", anthropic.AuthenticationError),
        (403, "permission_error", anthropic.PermissionDeniedError),
        (404, "not_found_error", anthropic.NotFoundError),
        (413, "request_too_large", anthropic.ContentTooLargeError),
        (429, "rate_limit_error", anthropic.RateLimitError),
        (500, "api_error", anthropic.InternalServerError),
        (529, "overloaded_error", anthropic.OverloadedError),
    ],
)
def test_error_model_raises_the_sdks_matching_exception(
    client: anthropic.Anthropic,
    status: int,
    error_type: str,
    exception: type[anthropic.APIStatusError],
) -> None:
    with pytest.raises(exception) as caught:
        client.messages.create(model=f"fake-error-{status}", max_tokens=9, messages=_user("x"))

    error = caught.value
    assert type(error) is exception
    assert error.status_code == status
    assert isinstance(error.body, dict)
    assert error.body["type"] == "error"
    assert error.body["error"]["type"] == error_type
    assert error.request_id is not None
    assert error.request_id.startswith("req_fake_")
    assert error.response.headers["content-type"] == "application/json"


def test_rate_limit_says_when_to_retry(http: httpx.Client) -> None:
    body = {"model": "fake-error-429", "max_tokens": 9, "messages": _user("x")}

    response = http.post("/v1/messages", json=body)

    assert response.status_code == 429
    assert response.headers["retry-after"] == str(RETRY_AFTER_SECONDS)


def test_midstream_error_reaches_the_sdk_after_some_text(client: anthropic.Anthropic) -> None:
    received: list[str] = []
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        client.messages.stream(
            model="fake-error-midstream", max_tokens=9, messages=_user("hello there")
        ) as stream,
    ):
        received.extend(stream.text_stream)

    # The HTTP status was 200; the error lives in the event's body.
    assert received
    assert "You said: hello there".startswith("".join(received))
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"] == {"type": "overloaded_error", "message": "Overloaded"}


def test_truncated_stream_drops_the_connection_before_message_stop(http: httpx.Client) -> None:
    body = {"model": "fake-truncated", "max_tokens": 9, "stream": True, "messages": _user("hi")}
    received: list[bytes] = []

    with (
        pytest.raises(httpx.RemoteProtocolError),
        http.stream("POST", "/v1/messages", json=body) as response,
    ):
        received.extend(response.iter_raw())

    assert b"event: content_block_delta" in b"".join(received)
    assert b"message_stop" not in b"".join(received)


def test_truncated_message_drops_the_connection_mid_json(http: httpx.Client) -> None:
    body = {"model": "fake-truncated", "max_tokens": 9, "messages": _user("hi")}

    with pytest.raises(httpx.RemoteProtocolError):
        http.post("/v1/messages", json=body)


def test_slow_model_outlasts_a_short_read_timeout(http: httpx.Client) -> None:
    body = {"model": "fake-slow", "max_tokens": 9, "messages": _user("hi")}

    with pytest.raises(httpx.ReadTimeout):
        http.post("/v1/messages", json=body, timeout=0.2)


@pytest.mark.slow
def test_slow_model_answers_after_its_pause(client: anthropic.Anthropic) -> None:
    started = time.monotonic()
    message = client.messages.create(model="fake-slow", max_tokens=9, messages=_user("hi"))

    assert time.monotonic() - started >= SLOW_SECONDS
    assert isinstance(message.content[0], TextBlock)
    assert message.content[0].text == "You said: hi"


@pytest.mark.slow
def test_slow_stream_sends_even_pieces_of_text_a_pause_apart(http: httpx.Client) -> None:
    prompt = f"Restart {PLACEHOLDER} in the eu-west-1 region now"
    body = {
        "model": "fake-slow-stream",
        "max_tokens": 99,
        "stream": True,
        "messages": _user(prompt),
    }
    arrivals: list[float] = []
    received = b""

    started = time.monotonic()
    with http.stream("POST", "/v1/messages", json=body) as response:
        for chunk in response.iter_raw():
            received += chunk
            arrivals += [time.monotonic() - started] * chunk.count(b"event: content_block_delta")
    events = _sse_events(received)
    deltas = _text_deltas(events)

    print(
        f"\nfake-slow-stream: {len(deltas)} deltas, first at {arrivals[0]:.2f} s, last at "
        f"{arrivals[-1]:.2f} s"
    )
    assert "".join(deltas) == f"You said: {prompt}"
    assert len(deltas) == anthropic_upstream.SLOW_STREAM_DELTAS
    assert max(map(len, deltas)) - min(map(len, deltas)) <= 1
    assert [name for name, _ in events][-3:] == [
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    # Each delta but the last is followed by a pause before the next is written.
    assert arrivals[-1] >= (len(deltas) - 1) * anthropic_upstream.SLOW_STREAM_INTERVAL
    assert arrivals[-1] - arrivals[0] > 1.0, "the text came at once instead of over time"


def test_slow_stream_of_a_short_text_sends_one_character_a_delta(http: httpx.Client) -> None:
    body = {"model": "fake-slow-stream", "max_tokens": 9, "stream": True, "messages": _user("")}

    response = http.post("/v1/messages", json=body)

    assert _text_deltas(_sse_events(response.content)) == list("You said: ")


def test_slow_stream_stops_when_the_client_leaves(fake: FakeAnthropic, http: httpx.Client) -> None:
    body = {"model": "fake-slow-stream", "max_tokens": 9, "stream": True, "messages": _user("hi")}
    abandoned = fake.abandoned

    with http.stream("POST", "/v1/messages", json=body) as response:
        chunks = response.iter_raw()
        received = b""
        while b"event: content_block_delta" not in received:
            received += next(chunks)
    assert _wait_until(lambda: fake.active_responses == 0)
    assert fake.abandoned == abandoned + 1
    assert b"message_stop" not in received


def test_slow_stream_model_without_stream_answers_the_echo(client: anthropic.Anthropic) -> None:
    message = client.messages.create(model="fake-slow-stream", max_tokens=9, messages=_user("hi"))

    assert isinstance(message.content[0], TextBlock)
    assert message.content[0].text == "You said: hi"


def _wait_until(condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + 5
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_stalled_stream_pauses_after_some_deltas_until_the_client_leaves(
    fake: FakeAnthropic, http: httpx.Client
) -> None:
    body = {"model": "fake-stall-midstream", "max_tokens": 9, "stream": True, "messages": []}
    abandoned = fake.abandoned

    with http.stream("POST", "/v1/messages", json=body) as response:
        chunks = response.iter_raw()
        received = b""
        while received.count(b"event: content_block_delta") < DELTAS_BEFORE_FAILURE:
            received += next(chunks)
        assert fake.active_responses == 1
    # The stall ends as soon as the client hangs up, not after STALL_SECONDS.
    assert _wait_until(lambda: fake.active_responses == 0)
    assert fake.abandoned == abandoned + 1
    assert received.endswith(b"\n\n")
    assert b"message_stop" not in received


def test_stalled_message_sends_half_its_json_then_pauses(
    fake: FakeAnthropic, http: httpx.Client
) -> None:
    body = {"model": "fake-stall-midstream", "max_tokens": 9, "messages": _user("hi")}
    received = b""

    with (
        pytest.raises(httpx.ReadTimeout),
        http.stream("POST", "/v1/messages", json=body, timeout=0.5) as response,
    ):
        for chunk in response.iter_raw():
            received += chunk

    assert received.startswith(b'{"id": "msg_fake_')
    assert _wait_until(lambda: fake.active_responses == 0)


@pytest.mark.parametrize("stream", [False, True])
def test_stalled_answer_completes_after_its_pause(
    fake: FakeAnthropic,
    client: anthropic.Anthropic,
    monkeypatch: pytest.MonkeyPatch,
    stream: bool,
) -> None:
    monkeypatch.setattr(anthropic_upstream, "STALL_SECONDS", 0.2)
    model, prompt = "fake-stall-midstream", _user("all of it")
    message: Message
    if stream:
        with client.messages.stream(model=model, max_tokens=9, messages=prompt) as events:
            message = events.get_final_message()
    else:
        message = client.messages.create(model=model, max_tokens=9, messages=prompt)

    assert isinstance(message.content[0], TextBlock)
    assert message.content[0].text == "You said: all of it"
    assert message.stop_reason == "end_turn"


def test_open_connections_include_idle_keep_alive_ones(fake: FakeAnthropic) -> None:
    with httpx.Client(base_url=fake.base_url, timeout=10) as raw:
        response = raw.post("/v1/messages", json={"model": "fake-echo", "messages": _user("hi")})
        port = response.extensions["network_stream"].get_extra_info("client_addr")[1]
        # Answered, and the connection is still open for the next request.
        assert fake.active_responses == 0
        assert port in fake.client_ports
        assert fake.open_connections >= 1
    assert _wait_until(lambda: port not in fake.client_ports)


def test_requests_are_recorded_with_headers_and_json(
    fake: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    client.beta.messages.create(
        model="fake-echo",
        max_tokens=9,
        betas=["fake-beta-2025-01-01"],
        messages=[{"role": "user", "content": "hi"}],
    )

    [request] = fake.requests
    assert (request.method, request.path) == ("POST", "/v1/messages")
    assert request.headers["content-type"] == "application/json"
    assert request.headers["anthropic-beta"] == "fake-beta-2025-01-01"
    assert "anthropic-version" in request.headers
    assert request.json is not None
    assert request.json["messages"] == [{"role": "user", "content": "hi"}]
    assert json.loads(request.body) == request.json


def test_raw_bodies_hold_every_body_and_header_value(
    fake: FakeAnthropic, http: httpx.Client
) -> None:
    http.post(
        "/v1/messages?trace=q-secret",
        headers={"x-api-key": "sk-header-secret"},
        json={"model": "fake-echo", "max_tokens": 9, "messages": _user("body-secret")},
    )
    http.get("/v1/models")

    raw = fake.raw_bodies()
    assert all(value in raw for value in (b"q-secret", b"sk-header-secret", b"body-secret"))
    assert [request.path for request in fake.requests] == ["/v1/messages", "/v1/models"]

    fake.clear()
    assert (fake.requests, fake.raw_bodies()) == ([], b"")


def test_count_tokens_counts_a_quarter_of_the_characters(
    fake: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    counted = client.messages.count_tokens(
        model="fake-echo", system="abcd", messages=_user("12345678")
    )

    assert counted.input_tokens == 12 // 4 + 1
    assert fake.requests[0].path == "/v1/messages/count_tokens"


def test_other_paths_get_an_anthropic_not_found(http: httpx.Client) -> None:
    response = http.get("/v1/files")

    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"
    assert response.headers["request-id"].startswith("req_fake_")


def test_models_are_listed_in_pages_like_anthropics(http: httpx.Client) -> None:
    first = http.get("/v1/models", params={"limit": 3}).json()
    assert [model["id"] for model in first["data"]] == list(MODEL_IDS[:3])
    assert (first["has_more"], first["last_id"]) == (True, MODEL_IDS[2])
    rest = http.get("/v1/models", params={"after_id": first["last_id"]}).json()
    assert [model["id"] for model in rest["data"]] == list(MODEL_IDS[3:])
    assert rest["has_more"] is False
    assert {"type", "id", "display_name", "created_at"} <= set(first["data"][0])


def test_a_body_that_is_not_json_is_a_bad_request(http: httpx.Client) -> None:
    response = http.post("/v1/messages", content=b"not json")

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
