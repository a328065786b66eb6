"""Claude Code and the TypeScript SDK through a model route to an OpenAI-compatible provider.

The routes send the models Claude Code is told to use (and its small model) to the fake OpenAI
Chat Completions server, with a key read from E2E_OPENAI_KEY. Claude Code 2.1.332, given a model
name it does not know (a fake-* name here, as a user would give gpt-...), sends adaptive thinking
(`{"type": "adaptive"}` and `output_config.effort`), which LiteLLM turns into `reasoning_effort`
on Chat Completions: these routes use `openai/`. For the Claude 4.5 names it sends thinking of
type `enabled` instead, which takes an `openai/` route to OpenAI's Responses API; the last tests
pin that, and that `hosted_vllm/` keeps Chat Completions.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from proxy.models import ModelRoute
from proxy.routes import routes_changed
from tests.support.e2e import SMALL_MODEL, ClaudeCode, TypeScriptSdk
from tests.support.fakes.anthropic_upstream import FakeAnthropic
from tests.support.fakes.openai_upstream import (
    BASH_OUTPUT_FILE,
    BASH_TOOL_CALL_ID,
    BASH_TOOL_NAME,
    CONVERTED_SYSTEM_NOTE,
    ECHO_PREFIX,
    TOOL_PREAMBLE,
    TOOL_RESULT_PREFIX,
    FakeOpenAI,
)
from tests.support.fakes.server import RecordedRequest
from tests.support.scenario import (
    MASKED_VALUES,
    PLACEHOLDER,
    PROMPT,
    VALUES,
    assert_no_placeholder_reached_the_client,
    masked_form,
    present,
    report,
    scenario,
)

pytestmark = pytest.mark.slow

ROUTE_KEY_VARIABLE = "E2E_OPENAI_KEY"
ROUTE_KEY = "sk-openai-e2e-route-key"
CHAT_COMPLETIONS = "/v1/chat/completions"
# A model name for which Claude Code sends thinking of type "enabled", with a budget.
ENABLED_THINKING_MODEL = "claude-sonnet-4-5"
RouteToOpenAI = Callable[..., None]


@pytest.fixture
def openai_fake(fake_openai: FakeOpenAI) -> FakeOpenAI:
    fake_openai.clear()
    return fake_openai


@pytest.fixture
def route_to_openai(
    transactional_db: None, openai_fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RouteToOpenAI]:
    """Routes models to the fake OpenAI; every process forgets them after the test."""
    # The live proxy runs in this process: it reads the route's key from this environment.
    monkeypatch.setenv(ROUTE_KEY_VARIABLE, ROUTE_KEY)

    def route(*models: str, provider: str = "openai", scenario: str = "") -> None:
        """Each model to the fake scenario of its own name (or `scenario`), SMALL_MODEL to echo."""
        targets = [(model, scenario or model) for model in models] + [(SMALL_MODEL, "fake-echo")]
        for pattern, target in targets:
            created = ModelRoute(
                model_pattern=pattern,
                litellm_model=f"{provider}/{target}",
                api_base=f"{openai_fake.base_url}/v1",
                api_key_env=ROUTE_KEY_VARIABLE,
                timeout_seconds=10.0,
            )
            created.full_clean()
            created.save()

    yield route
    # The database is flushed after the test without signals: move the version ourselves.
    routes_changed()


def assert_only_placeholders_reached_openai(
    openai_fake: FakeOpenAI, upstream: FakeAnthropic, secrets: Sequence[str]
) -> None:
    """No value nor the proxy key reached the fake OpenAI (the route's key did); nothing at all
    reached the fake Anthropic."""
    assert openai_fake.requests, "nothing reached the OpenAI provider"
    raw = openai_fake.raw_bodies()
    leaked = [secret for secret in secrets if secret.encode() in raw]
    assert leaked == [], f"reached the OpenAI provider: {leaked}"
    authorizations = {request.headers.get("authorization") for request in openai_fake.requests}
    assert authorizations == {f"Bearer {ROUTE_KEY}"}
    assert upstream.requests == []


def messages_of(request: RecordedRequest) -> list[dict[str, Any]]:
    return list((request.json or {}).get("messages", []))


def texts_of(content: object) -> list[str]:
    if isinstance(content, str):
        return [content]
    assert isinstance(content, list), content
    return [str(part["text"]) for part in content if part.get("type") == "text"]


def is_converted_system_turn(message: dict[str, Any]) -> bool:
    """A user turn LiteLLM made from a system message (Claude Code sends one after the prompt)."""
    if message["role"] != "user":
        return False
    return any(text.startswith(CONVERTED_SYSTEM_NOTE) for text in texts_of(message["content"])[:1])


def prompt_as_sent(request: RecordedRequest) -> str:
    """The last text part of the user's last message, where Claude Code puts the prompt."""
    users = [m for m in messages_of(request) if m["role"] == "user"]
    own = [m for m in users if not is_converted_system_turn(m)]
    return texts_of(own[-1]["content"])[-1]


def test_echoed_prompt_comes_back_exact_and_the_openai_provider_sees_placeholders(
    claude_code: ClaudeCode,
    upstream: FakeAnthropic,
    openai_fake: FakeOpenAI,
    route_to_openai: RouteToOpenAI,
) -> None:
    route_to_openai("fake-echo")
    run = claude_code.run(PROMPT, model="fake-echo").check()

    assert run.result.startswith(ECHO_PREFIX)
    assert run.result.endswith(PROMPT), run.result
    assert present(VALUES, run.result) == list(VALUES)
    assert PLACEHOLDER.findall(run.result) == []
    assert_only_placeholders_reached_openai(openai_fake, upstream, [*VALUES, claude_code.api_key])
    [request] = openai_fake.requests
    body = request.json or {}
    assert (request.path, body["model"], body["stream"]) == (CHAT_COMPLETIONS, "fake-echo", True)
    # Claude Code's adaptive thinking arrives as OpenAI's reasoning effort.
    assert body["reasoning_effort"] == "high"
    assert "thinking" not in body
    placeholders = masked_form(PROMPT, prompt_as_sent(request), MASKED_VALUES)
    # The system message Claude Code sends after the prompt became a user turn with a note.
    roles = [
        "converted" if is_converted_system_turn(m) else m["role"] for m in messages_of(request)
    ]
    assert roles == ["system", "user", "converted"]
    print(
        f"\n  echo: {len(placeholders)} values, {len(body['tools'])} tools, Claude Code run "
        f"{run.seconds:.2f} s",
        end="",
    )


def test_bash_runs_the_real_values_while_the_openai_provider_sees_placeholders_both_ways(
    claude_code: ClaudeCode,
    upstream: FakeAnthropic,
    openai_fake: FakeOpenAI,
    route_to_openai: RouteToOpenAI,
) -> None:
    # fake-bash answers with a Bash tool call whose command echoes the prompt it received (its
    # placeholders) into a file; Claude Code runs it and sends the output back in a tool
    # message, which fake-bash echoes.
    route_to_openai("fake-bash")
    run = claude_code.run(PROMPT, "--allowedTools", BASH_TOOL_NAME, model="fake-bash").check()

    # The command Claude Code ran held every real value: the proxy restored the tool input
    # LiteLLM rebuilt from the streamed arguments, and the file the command wrote says so.
    assert (claude_code.cwd / BASH_OUTPUT_FILE).read_text() == PROMPT + "\n"
    assert run.output["num_turns"] == 2
    assert run.result == TOOL_RESULT_PREFIX + PROMPT
    assert_only_placeholders_reached_openai(openai_fake, upstream, [*VALUES, claude_code.api_key])
    first, second = openai_fake.requests
    masked_prompt = prompt_as_sent(first)
    placeholders = masked_form(PROMPT, masked_prompt, MASKED_VALUES)
    # The second request carries the call and its output, masked with the same placeholders.
    *history, call_turn, tool_turn = messages_of(second)
    assert history == messages_of(first)
    command = f"echo {shlex.quote(masked_prompt)} | tee {BASH_OUTPUT_FILE}"
    assert call_turn["role"] == "assistant"
    assert call_turn["content"] == TOOL_PREAMBLE
    [call] = call_turn["tool_calls"]
    assert (call["id"], call["function"]["name"]) == (BASH_TOOL_CALL_ID, BASH_TOOL_NAME)
    assert json.loads(call["function"]["arguments"]) == {"command": command, "description": "Echo"}
    assert (tool_turn["role"], tool_turn["tool_call_id"]) == ("tool", BASH_TOOL_CALL_ID)
    output = "".join(texts_of(tool_turn["content"]))
    assert masked_form(PROMPT, output, MASKED_VALUES) == placeholders  # trailing newline cut
    # Claude Code's own transcript holds the command as it ran it, with the real values.
    transcript = claude_code.transcripts()
    assert json.dumps(f"echo {shlex.quote(PROMPT)} | tee {BASH_OUTPUT_FILE}") in transcript
    print(f"\n  bash: 2 requests, Claude Code run {run.seconds:.2f} s", end="")


def test_typescript_sdk_create_stream_and_tools_get_every_value_back(
    typescript_sdk: TypeScriptSdk,
    upstream: FakeAnthropic,
    openai_fake: FakeOpenAI,
    route_to_openai: RouteToOpenAI,
) -> None:
    route_to_openai("fake-echo", "fake-bash")
    run = typescript_sdk.run(
        [
            scenario("create", "create", "fake-echo"),
            scenario("stream", "stream", "fake-echo"),
            scenario("tools", "tools", "fake-bash", stream=False),
            scenario("tools streamed", "tools", "fake-bash", stream=True),
        ]
    )

    echo = ECHO_PREFIX + PROMPT
    created = run.ok("create")
    assert (created["texts"], created["stopReason"]) == ([echo], "end_turn")
    streamed = run.ok("stream")
    assert streamed["streamedText"] == echo
    assert streamed["final"]["texts"] == [echo]
    assert streamed["textEvents"] > len(echo) // 8
    command = f"echo {shlex.quote(PROMPT)} | tee {BASH_OUTPUT_FILE}"
    for name in ("tools", "tools streamed"):
        out = run.ok(name)
        first = out["first"]
        assert (first["texts"], first["stopReason"]) == ([TOOL_PREAMBLE], "tool_use")
        assert first["toolUses"] == [
            {
                "id": BASH_TOOL_CALL_ID,
                "name": BASH_TOOL_NAME,
                "input": {"command": command, "description": "Echo"},
            }
        ]
        assert out["toolResults"] == [f"ran: {command}"]
        assert out["second"]["texts"] == [f"{TOOL_RESULT_PREFIX}ran: {command}"]
    # The streamed tool input arrived in many pieces, restored as a whole.
    assert run.ok("tools streamed")["first"]["inputJsonEvents"] > len(command) // 8
    assert_no_placeholder_reached_the_client(run)

    assert_only_placeholders_reached_openai(
        openai_fake, upstream, [*VALUES, typescript_sdk.api_key]
    )
    requests = openai_fake.requests
    assert {request.path for request in requests} == {CHAT_COMPLETIONS}
    streams = [bool((request.json or {}).get("stream")) for request in requests]
    assert streams == [False, True, False, False, True, True]
    # One placeholder per value across all six requests.
    masked_prompts = [prompt_as_sent(request) for request in requests]
    assert len(set(masked_prompts)) == 1
    masked_form(PROMPT, masked_prompts[0], MASKED_VALUES)
    masked_command = f"echo {shlex.quote(masked_prompts[0])} | tee {BASH_OUTPUT_FILE}"
    for second in (requests[3], requests[5]):
        *_, call_turn, tool_turn = messages_of(second)
        [call] = call_turn["tool_calls"]
        arguments = json.loads(call["function"]["arguments"])
        assert arguments == {"command": masked_command, "description": "Echo"}
        assert texts_of(tool_turn["content"]) == [f"ran: {masked_command}"]
    report("OpenAI route", run)


def test_enabled_thinking_takes_an_openai_route_to_the_responses_api(
    claude_code: ClaudeCode,
    upstream: FakeAnthropic,
    openai_fake: FakeOpenAI,
    route_to_openai: RouteToOpenAI,
) -> None:
    # Not what an admin wants, pinned so that a change shows: with thinking of type
    # "enabled", LiteLLM sends an openai/ model to POST /v1/responses even though the proxy
    # asks for Chat Completions (a server that only speaks Chat Completions answers 404).
    route_to_openai(ENABLED_THINKING_MODEL, scenario="fake-echo")
    run = claude_code.run(PROMPT, model=ENABLED_THINKING_MODEL)

    assert run.returncode != 0
    assert run.output["is_error"] is True
    assert run.output["api_error_status"] == 404
    assert_only_placeholders_reached_openai(openai_fake, upstream, [*VALUES, claude_code.api_key])
    # Claude Code's stream, then its retry without streaming (neither body asks for a stream).
    requests = openai_fake.requests
    assert [request.path for request in requests] == ["/v1/responses"] * 2
    assert all((r.json or {}).get("reasoning") == {"effort": "high"} for r in requests)
    print(f"\n  enabled thinking, openai/: Claude Code run {run.seconds:.2f} s", end="")


def test_enabled_thinking_stays_on_chat_completions_through_a_hosted_vllm_route(
    claude_code: ClaudeCode,
    upstream: FakeAnthropic,
    openai_fake: FakeOpenAI,
    route_to_openai: RouteToOpenAI,
) -> None:
    route_to_openai(ENABLED_THINKING_MODEL, provider="hosted_vllm", scenario="fake-echo")
    run = claude_code.run(PROMPT, model=ENABLED_THINKING_MODEL).check()

    assert run.result.startswith(ECHO_PREFIX)
    assert run.result.endswith(PROMPT), run.result
    assert present(VALUES, run.result) == list(VALUES)
    assert_only_placeholders_reached_openai(openai_fake, upstream, [*VALUES, claude_code.api_key])
    [request] = openai_fake.requests
    body = request.json or {}
    assert (request.path, body["model"], body["stream"]) == (CHAT_COMPLETIONS, "fake-echo", True)
    # The thinking budget arrives as OpenAI's reasoning effort.
    assert body["reasoning_effort"] == "high"
    masked_form(PROMPT, prompt_as_sent(request), MASKED_VALUES)
    # For this model Claude Code sends no system message after the prompt.
    assert [m["role"] for m in messages_of(request)] == ["system", "user"]
    print(f"\n  enabled thinking, hosted_vllm/: Claude Code run {run.seconds:.2f} s", end="")
