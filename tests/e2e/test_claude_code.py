"""Claude Code through the proxy: what it shows the user, what it runs, what the provider sees."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Sequence
from typing import Any

import pytest

from tests.support.constants import UPSTREAM_KEY
from tests.support.e2e import SMALL_MODEL, ClaudeCode
from tests.support.fakes.anthropic_upstream import (
    BASH_OUTPUT_FILE,
    BASH_RESULT_PREFIX,
    BASH_TOOL_NAME,
    ECHO_PREFIX,
    SIGNATURE,
    THINKING_TEXT,
    FakeAnthropic,
    RecordedRequest,
)
from tests.support.scenario import (
    ACCESS_KEY,
    EC2,
    MASKED_VALUES,
    PLACEHOLDER,
    PROMPT,
    PUBLIC_IP,
    VALUES,
    VPC,
    assert_nothing_leaked,
    blocks_of,
    last_user_blocks,
    masked_form,
    present,
    prompt_as_sent,
    text_of,
)

pytestmark = pytest.mark.slow


def test_echoed_prompt_comes_back_exact_and_the_upstream_sees_placeholders(
    claude_code: ClaudeCode, upstream: FakeAnthropic
) -> None:
    run = claude_code.run(PROMPT, model="fake-echo").check()

    assert run.result.startswith(ECHO_PREFIX)
    assert run.result.endswith(PROMPT), run.result
    assert present(VALUES, run.result) == list(VALUES)
    assert_nothing_leaked(upstream, [*VALUES, claude_code.api_key])
    [request] = upstream.requests
    placeholders = masked_form(PROMPT, prompt_as_sent(request), MASKED_VALUES)
    print(f"\n  echo: {len(placeholders)} values, Claude Code run {run.seconds:.2f} s", end="")


def test_bash_runs_the_real_values_while_the_upstream_sees_placeholders_both_ways(
    claude_code: ClaudeCode, upstream: FakeAnthropic
) -> None:
    # fake-bash answers with a Bash tool_use whose command echoes the prompt it received (its
    # placeholders) into a file; Claude Code runs it and sends the output back in a
    # tool_result, which fake-bash echoes.
    run = claude_code.run(PROMPT, "--allowedTools", BASH_TOOL_NAME, model="fake-bash").check()

    # The command Claude Code ran held every real value: the proxy restored the streamed
    # tool input, and the file the command wrote says so.
    assert (claude_code.cwd / BASH_OUTPUT_FILE).read_text() == PROMPT + "\n"
    assert run.output["num_turns"] == 2
    assert run.result == BASH_RESULT_PREFIX + PROMPT
    assert_nothing_leaked(upstream, [*VALUES, claude_code.api_key])
    first, second = upstream.requests
    masked_prompt = prompt_as_sent(first)
    placeholders = masked_form(PROMPT, masked_prompt, MASKED_VALUES)
    # The second request carries the call and its output, masked with the same placeholders.
    [tool_use] = blocks_of(second, "assistant", "tool_use")
    assert tool_use["name"] == BASH_TOOL_NAME
    command = f"echo {shlex.quote(masked_prompt)} | tee {BASH_OUTPUT_FILE}"
    assert tool_use["input"]["command"] == command
    [tool_result] = blocks_of(second, "user", "tool_result")
    assert tool_result["tool_use_id"] == tool_use["id"]
    output = text_of(tool_result["content"])
    assert masked_form(PROMPT, output, MASKED_VALUES) == placeholders  # trailing newline cut
    # Claude Code's own transcript holds the command as it ran it, with the real values.
    transcript = claude_code.transcripts()
    assert json.dumps(f"echo {shlex.quote(PROMPT)} | tee {BASH_OUTPUT_FILE}") in transcript
    print(f"\n  bash: 2 requests, Claude Code run {run.seconds:.2f} s", end="")


def test_a_resumed_session_keeps_its_placeholders_and_restores_every_turn(
    claude_code: ClaudeCode, upstream: FakeAnthropic
) -> None:
    # This session sends the proxy key as a Bearer token (ANTHROPIC_AUTH_TOKEN), and asks
    # fake-thinking, whose signed thinking blocks Claude Code sends back in the history.
    claude_code.credential = "auth_token"
    other_vpc = "vpc-9f8e7d6c"
    prompts = [
        f"Turn one: {EC2} in {VPC} talks to {PUBLIC_IP}.",
        f"Turn two: is {VPC} peered with {other_vpc}? And {EC2}?",
        f"Turn three: {ACCESS_KEY} started {EC2}.",
    ]
    turn_values = [[EC2, VPC, PUBLIC_IP], [VPC, other_vpc, EC2], [ACCESS_KEY, EC2]]
    first = claude_code.run(prompts[0], model="fake-thinking").check()
    second = claude_code.run(prompts[1], "--resume", first.session_id, model="fake-thinking")
    third = claude_code.run(prompts[2], "--continue", model="fake-thinking")
    runs = [first, second.check(), third.check()]

    for run, prompt in zip(runs, prompts, strict=True):
        assert run.result.startswith(ECHO_PREFIX)
        assert run.result.endswith(prompt), run.result
    assert {run.session_id for run in runs} == {first.session_id}
    all_values = [*VALUES, other_vpc]
    assert_nothing_leaked(upstream, [*all_values, claude_code.api_key])
    requests = upstream.requests
    assert len(requests) == 3
    masked = [prompt_as_sent(request) for request in requests]
    found = [
        masked_form(prompt, text, values)
        for prompt, text, values in zip(prompts, masked, turn_values, strict=True)
    ]
    # One value, one placeholder, in every turn.
    assert found[0][EC2] == found[1][EC2] == found[2][EC2]
    assert found[0][VPC] == found[1][VPC]
    assert found[1][other_vpc] not in found[0].values()
    # Each request repeats the earlier turns exactly as the upstream first saw them: the
    # prompts, the echoes (restored for Claude Code, masked again for the upstream) and the
    # signed thinking blocks, byte for byte, so the provider's prompt cache keeps working.
    for number, request in enumerate(requests):
        user_texts = [b["text"] for b in blocks_of(request, "user", "text")]
        assert [text for text in user_texts if text in masked] == masked[: number + 1]
        echoes = [b["text"] for b in blocks_of(request, "assistant", "text")]
        assert echoes == [ECHO_PREFIX + echoed_text(earlier) for earlier in requests[:number]]
        thinking = blocks_of(request, "assistant", "thinking")
        assert (
            thinking
            == [{"type": "thinking", "thinking": THINKING_TEXT, "signature": SIGNATURE}] * number
        )
    # Claude Code's saved session holds the real values, never a placeholder.
    transcript = claude_code.transcripts()
    sent = sorted({value for values in turn_values for value in values})
    assert present(sent, transcript) == sent
    used = {p for turn in found for p in turn.values()}
    assert [p for p in sorted(used) if p in transcript] == []
    seconds = ", ".join(f"{run.seconds:.2f}" for run in runs)
    print(f"\n  resume: 3 turns, {len(used)} placeholders, runs {seconds} s", end="")


def echoed_text(request: RecordedRequest) -> str:
    """What fake-echo and fake-thinking echo: every text block of the last user message."""
    return "".join(str(b["text"]) for b in last_user_blocks(request) if b.get("type") == "text")


def test_after_a_stream_fails_midway_the_non_streamed_retry_is_restored_too(
    claude_code: ClaudeCode, upstream: FakeAnthropic
) -> None:
    # fake-error-midstream ends a stream with an error event after a few deltas, and answers
    # the echo without "stream": Claude Code then asks again without streaming.
    run = claude_code.run(PROMPT, model="fake-error-midstream").check()

    assert run.result.startswith(ECHO_PREFIX)
    assert run.result.endswith(PROMPT), run.result
    assert_nothing_leaked(upstream, [*VALUES, claude_code.api_key])
    streamed, retried = upstream.requests
    assert ((streamed.json or {}).get("stream"), (retried.json or {}).get("stream")) == (
        True,
        False,
    )
    assert masked_form(PROMPT, prompt_as_sent(retried), MASKED_VALUES) == masked_form(
        PROMPT, prompt_as_sent(streamed), MASKED_VALUES
    )
    print(f"\n  stream error, then a non-streamed retry: {run.seconds:.2f} s", end="")


# --- what Claude Code sends, and what of it reaches the upstream --------------------------------

# Headers the upstream gets exactly as Claude Code sent them.
FORWARDED_HEADERS = ("anthropic-version", "content-type")
# The same betas reach the upstream; LiteLLM sorts the list.
SORTED_HEADERS = ("anthropic-beta",)
# Claude Code's credential is the proxy key; the upstream gets the server's key instead.
CREDENTIAL_HEADERS = ("x-api-key", "authorization")
# Set by each HTTP client for its own connection.
TRANSPORT_HEADERS = ("accept", "accept-encoding", "connection", "content-length", "host")
# Not passed on (docs/clients.md, "Claude Code"): LiteLLM sends its own user-agent and none
# of Claude Code's client headers.
DROPPED_HEADERS = (
    "user-agent",
    "x-app",
    "x-claude-code-session-id",
    "anthropic-dangerous-direct-browser-access",
    "x-stainless-",  # and every other x-stainless-* header of the TypeScript SDK
)
# Claude Code's SDK asks for /v1/messages?beta=true; LiteLLM calls /v1/messages (the betas
# travel in anthropic-beta).
DROPPED_QUERY = "beta=true"
# Body fields LiteLLM drops for a model it does not know to support extended thinking
# (docs/clients.md, "What reaches the provider"): every fake-* model. The model names Claude
# Code uses keep them.
DROPPED_FOR_UNKNOWN_MODELS = ("thinking", "output_config")
CLAUDE_CODE_EMAIL = "noreply@anthropic.com"
SHOWN_FIELDS = ("max_tokens", "stream", "thinking", "output_config", "context_management")
INVENTORY_SESSION = "6f0e3c1a-5b7d-4e2f-9a8b-0c1d2e3f4a5b"


@pytest.mark.parametrize(
    ("model", "args"),
    [
        pytest.param("fake-bash", ("--allowedTools", BASH_TOOL_NAME), id="bash-round-trip"),
        pytest.param(None, (), id="default-model"),
        pytest.param("claude-sonnet-4-5", (), id="sonnet-4-5"),
    ],
)
def test_what_claude_code_sends_reaches_the_upstream_masked_or_documented_as_dropped(
    claude_code: ClaudeCode,
    upstream: FakeAnthropic,
    model: str | None,
    args: tuple[str, ...],
) -> None:
    # The same run twice with the same HOME, directory and session id, so that Claude Code
    # sends the same requests: first straight to the fake, then through the proxy.
    same = ("--session-id", INVENTORY_SESSION, "--no-session-persistence", *args)
    direct = ClaudeCode(
        claude_code.binary,
        upstream.base_url,
        "sk-direct-not-a-proxy-key",
        claude_code.home,
        claude_code.cwd,
        claude_code.outbound_proxy,
    )
    straight = direct.run(PROMPT, *same, model=model).check()
    sent = upstream.requests
    upstream.clear()
    run = claude_code.run(PROMPT, *same, model=model).check()
    received = upstream.requests

    assert_nothing_leaked(upstream, [*VALUES, claude_code.api_key])
    assert [(r.method, r.path) for r in received] == [(r.method, r.path) for r in sent]
    pairs: dict[str, str] = {}
    problems: list[str] = []
    for number, (before, after) in enumerate(zip(sent, received, strict=True)):
        where = f"request {number + 1}"
        if before.query_string != after.query_string and before.query_string != DROPPED_QUERY:
            problems.append(f"{where}: query {before.query_string!r} became {after.query_string!r}")
        problems += header_problems(where, before.headers, after.headers)
        # A fake-* model is unknown to LiteLLM; Claude Code's own model names are known.
        dropped = DROPPED_FOR_UNKNOWN_MODELS if str(model).startswith("fake-") else ()
        problems += body_problems(where, before.json or {}, after.json or {}, dropped, pairs)
    assert problems == []
    # Every masked string hid values with placeholders, one value for each placeholder. Besides
    # the prompt's, Claude Code's own text holds one value the default library masks: the
    # address in its commit attribution (Co-Authored-By: Claude Code <noreply@anthropic.com>).
    assert len(set(pairs.values())) == len(pairs), pairs
    assert sorted(set(pairs.values()) - set(MASKED_VALUES)) == [CLAUDE_CODE_EMAIL]
    assert all(r.headers.get("x-api-key") == UPSTREAM_KEY for r in received)
    assert not any("authorization" in r.headers for r in received)
    # One model per run: no call went to the smaller model.
    models = {str((r.json or {}).get("model")) for r in sent}
    assert len(models) == 1
    assert SMALL_MODEL not in models
    print(
        f"\n  inventory, {model or 'default model'}: run straight to the fake "
        f"{straight.seconds:.2f} s, through the proxy {run.seconds:.2f} s; {len(sent)} requests, "
        f"{len(pairs)} placeholders{inventory(sent)}",
        end="",
    )


def header_problems(where: str, sent: dict[str, str], received: dict[str, str]) -> list[str]:
    problems = []
    for name, value in sent.items():
        forwarded = received.get(name)
        if name in FORWARDED_HEADERS:
            ok = forwarded == value
        elif name in SORTED_HEADERS:
            ok = forwarded == ",".join(sorted(value.split(",")))
        elif name in CREDENTIAL_HEADERS:
            ok = forwarded != value
        elif name in TRANSPORT_HEADERS:
            ok = True
        elif name.startswith(DROPPED_HEADERS):
            # Claude Code's user-agent is replaced by LiteLLM's, the others are not sent.
            ok = forwarded != value
        else:
            problems.append(f"{where}: header {name}: {value!r} is not in the inventory")
            continue
        if not ok:
            problems.append(f"{where}: header {name}: {value!r} -> {forwarded!r}")
    return problems


def body_problems(
    where: str,
    sent: dict[str, Any],
    received: dict[str, Any],
    dropped: Sequence[str],
    pairs: dict[str, str],
) -> list[str]:
    problems = [f"{where}: {name} added" for name in received if name not in sent]
    for name, value in sent.items():
        if name in dropped:
            if name in received:
                problems.append(f"{where}: {name} is forwarded now: take it off the list")
        elif name not in received:
            problems.append(f"{where}: {name} dropped: {json.dumps(value)[:200]}")
        else:
            problems += unchanged_but_masked(f"{where}: {name}", value, received[name], pairs)
    return problems


def unchanged_but_masked(path: str, sent: Any, received: Any, pairs: dict[str, str]) -> list[str]:
    """Where `received` differs from `sent` other than by placeholders standing for values."""
    if isinstance(sent, dict) and isinstance(received, dict):
        if sent.keys() != received.keys():
            return [f"{path}: keys {sorted(sent)} became {sorted(received)}"]
        return [
            problem
            for key in sent
            for problem in unchanged_but_masked(f"{path}.{key}", sent[key], received[key], pairs)
        ]
    if isinstance(sent, list) and isinstance(received, list):
        if len(sent) != len(received):
            return [f"{path}: {len(sent)} items became {len(received)}"]
        return [
            problem
            for index, (one, other) in enumerate(zip(sent, received, strict=True))
            for problem in unchanged_but_masked(f"{path}[{index}]", one, other, pairs)
        ]
    if isinstance(sent, str) and isinstance(received, str) and sent != received:
        return [] if unmasks_to(sent, received, pairs) else [f"{path}: changed"]
    return [] if sent == received else [f"{path}: {sent!r} became {received!r}"]


def unmasks_to(sent: str, received: str, pairs: dict[str, str]) -> bool:
    """Whether `received` is `sent` with some values replaced by placeholders (kept in pairs)."""
    parts = PLACEHOLDER.split(received)
    placeholders = PLACEHOLDER.findall(received)
    match = re.fullmatch("(.+?)".join(re.escape(part) for part in parts), sent, re.DOTALL)
    if match is None:
        return False
    for placeholder, value in zip(placeholders, match.groups(), strict=True):
        if pairs.setdefault(placeholder, value) != value:
            return False
    return True


def inventory(requests: Sequence[RecordedRequest]) -> str:
    """What Claude Code sent, a line per request: the first in full, the others in short."""
    lines = []
    for number, request in enumerate(requests):
        body = request.json or {}
        system = body.get("system") or []
        messages = body.get("messages") or []
        shape: dict[str, Any] = {
            "path": f"{request.path}?{request.query_string}",
            "bytes": len(request.body),
            "roles": [message["role"] for message in messages],
            "cache_control": sum(
                json.dumps(part).count('"cache_control"') for part in (system, messages)
            ),
        }
        if number == 0:
            shape |= {
                "model": body.get("model"),
                "fields": sorted(body),
                "system": f"{len(system)} blocks, "
                f"{sum('cache_control' in block for block in system)} with cache_control",
                "tools": [tool.get("name") for tool in body.get("tools", [])],
                "tool keys": sorted({key for tool in body.get("tools", []) for key in tool}),
                **{name: body.get(name) for name in SHOWN_FIELDS},
                "metadata": sorted(body.get("metadata", {})),
                "anthropic-beta": request.headers.get("anthropic-beta"),
                "headers": sorted(request.headers),
            }
        lines.append(json.dumps(shape))
    return "\n    ".join(["", *lines])
