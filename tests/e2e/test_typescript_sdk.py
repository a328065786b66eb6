"""The official Anthropic TypeScript SDK through the proxy: what it hands back, what it raises.

Each test runs e2e/sdk_client.mjs in node once, with the pinned SDK pointed at the live proxy
(a proxy key as `apiKey`, or as `authToken`: a Bearer token) in front of the fake upstream.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

import pytest

from tests.support.constants import UPSTREAM_KEY
from tests.support.e2e import TypeScriptSdk
from tests.support.fakes.anthropic_upstream import (
    BASH_OUTPUT_FILE,
    BASH_RESULT_PREFIX,
    BASH_TOOL_NAME,
    BASH_TOOL_USE_ID,
    ECHO_PREFIX,
    ERRORS,
    MIDSTREAM_ERROR,
    RETRY_AFTER_SECONDS,
    TOOL_PREAMBLE,
    FakeAnthropic,
)
from tests.support.scenario import (
    EC2,
    MASKED_VALUES,
    PROMPT,
    PUBLIC_IP,
    VALUES,
    VPC,
    assert_no_placeholder_reached_the_client,
    assert_nothing_leaked,
    blocks_of,
    masked_form,
    prompt_as_sent,
    report,
    scenario,
    text_of,
)

pytestmark = pytest.mark.slow

ECHO = ECHO_PREFIX + PROMPT
# The anthropic-version header the pinned SDK (1.14.0) sends with every request.
SDK_ANTHROPIC_VERSION = "2026-10-21"


@pytest.mark.parametrize("credential", ["apiKey", "authToken"])
def test_create_stream_and_raw_events_give_back_every_value_exactly(
    typescript_sdk: TypeScriptSdk, upstream: FakeAnthropic, credential: str
) -> None:
    run = typescript_sdk.run(
        [
            scenario("create", "create", "fake-echo", credential=credential),
            scenario("stream", "stream", "fake-echo", credential=credential),
            scenario("raw", "raw", "fake-echo", credential=credential),
        ]
    )

    created = run.ok("create")
    assert created["texts"] == [ECHO]
    assert created["stopReason"] == "end_turn"
    assert str(created["requestID"]).startswith("req_")
    # messages.stream: the text events put together, and finalMessage(), are the echo.
    streamed = run.ok("stream")
    assert streamed["streamedText"] == ECHO
    assert streamed["final"]["texts"] == [ECHO]
    assert streamed["errorEvents"] == 0
    # The fake cuts its text into pieces of 1-4 characters; the client still gets many events.
    assert streamed["textEvents"] > len(ECHO) // 8
    # messages.create({stream: true}): Anthropic's raw events, each kind where it belongs.
    raw = run.ok("raw")
    assert raw["streamedText"] == ECHO
    counts = raw["counts"]
    assert {k: counts[k] for k in counts if k != "content_block_delta"} == {
        "message_start": 1,
        "content_block_start": 1,
        "content_block_stop": 1,
        "message_delta": 1,
        "message_stop": 1,
    }
    assert counts["content_block_delta"] > len(ECHO) // 8
    assert_no_placeholder_reached_the_client(run)

    assert_nothing_leaked(upstream, [*VALUES, typescript_sdk.api_key])
    requests = upstream.requests
    assert [(r.json or {}).get("stream", False) for r in requests] == [False, True, True]
    # The provider saw the prompt with a placeholder in place of each value, the same ones
    # in all three requests; and the provider's key, not the proxy key, in both auth forms.
    placeholders = [masked_form(PROMPT, prompt_as_sent(r), MASKED_VALUES) for r in requests]
    assert placeholders[0] == placeholders[1] == placeholders[2]
    assert {r.headers.get("x-api-key") for r in requests} == {UPSTREAM_KEY}
    assert {r.headers.get("authorization") for r in requests} == {None}
    # SDK 1.x sends its own anthropic-version; the proxy passes it on unchanged.
    assert {r.headers.get("anthropic-version") for r in requests} == {SDK_ANTHROPIC_VERSION}
    print(
        f"\n  {credential}: {len(placeholders[0])} values; {streamed['textEvents']} text "
        f"events, {counts['content_block_delta']} raw deltas",
        end="",
    )
    report(credential, run)


@pytest.mark.parametrize("streamed", [False, True], ids=["create", "stream"])
def test_tool_round_trip_gives_the_tool_real_values_and_the_provider_placeholders(
    typescript_sdk: TypeScriptSdk, upstream: FakeAnthropic, streamed: bool
) -> None:
    # fake-bash answers with a Bash tool_use whose command echoes the prompt it received (its
    # placeholders); the program answers with a tool_result quoting the command it got, and
    # fake-bash echoes that result.
    run = typescript_sdk.run([scenario("tools", "tools", "fake-bash", stream=streamed)])

    out = run.ok("tools")
    command = f"echo {shlex.quote(PROMPT)} | tee {BASH_OUTPUT_FILE}"
    first = out["first"]
    assert first["texts"] == [TOOL_PREAMBLE]
    assert first["stopReason"] == "tool_use"
    assert first["toolUses"] == [
        {
            "id": BASH_TOOL_USE_ID,
            "name": BASH_TOOL_NAME,
            "input": {"command": command, "description": "Echo"},
        }
    ]
    if streamed:  # the input arrived in many input_json_delta pieces, restored as a whole
        assert first["inputJsonEvents"] > len(command) // 8
    assert out["toolResults"] == [f"ran: {command}"]
    assert out["second"]["texts"] == [f"{BASH_RESULT_PREFIX}ran: {command}"]
    assert_no_placeholder_reached_the_client(run)

    assert_nothing_leaked(upstream, [*VALUES, typescript_sdk.api_key])
    first_request, second_request = upstream.requests
    masked_prompt = prompt_as_sent(first_request)
    masked_form(PROMPT, masked_prompt, MASKED_VALUES)
    # The second request carries the call and its result, masked with the same placeholders.
    masked_command = f"echo {shlex.quote(masked_prompt)} | tee {BASH_OUTPUT_FILE}"
    [tool_use] = blocks_of(second_request, "assistant", "tool_use")
    assert tool_use["id"] == BASH_TOOL_USE_ID
    assert tool_use["input"] == {"command": masked_command, "description": "Echo"}
    [tool_result] = blocks_of(second_request, "user", "tool_result")
    assert tool_result["tool_use_id"] == BASH_TOOL_USE_ID
    assert text_of(tool_result["content"]) == f"ran: {masked_command}"
    [prompt_again] = blocks_of(second_request, "user", "text")
    assert prompt_again["text"] == masked_prompt  # the history, byte for byte
    report("tools, streamed" if streamed else "tools", run)


def assert_api_error(error: Mapping[str, Any], status: int, name: str, *types: str) -> None:
    """An error of the SDK's class `name` (and each of `types`) with the provider's status."""
    error_type, message = ERRORS[status]
    assert error["name"] == name, error
    assert all(error["is"][t] for t in (name, "APIError", *types)), error["is"]
    assert error["status"] == status
    assert error["type"] == error_type
    assert error["apiMessage"] == message
    assert str(error["requestID"]).startswith("req_"), error


def test_provider_errors_reach_the_sdk_as_its_typed_errors(
    typescript_sdk: TypeScriptSdk, upstream: FakeAnthropic
) -> None:
    run = typescript_sdk.run(
        [
            scenario("429", "create", "fake-error-429"),
            scenario("429 stream", "stream", "fake-error-429", credential="authToken"),
            scenario("529", "create", "fake-error-529"),
            scenario("529 raw", "raw", "fake-error-529"),
            # The proxy's own refusal: a key it does not know never reaches the provider.
            scenario("bad key", "create", "fake-echo", key="mpk-not-a-key-at-all"),
        ]
    )

    for name in ("429", "429 stream"):
        error = run.error(name)
        assert_api_error(error, 429, "RateLimitError")
        assert error["retryAfter"] == str(RETRY_AFTER_SECONDS)
    for name in ("529", "529 raw"):
        error = run.error(name)
        assert_api_error(error, 529, "OverloadedError", "InternalServerError")
        assert not error["is"]["RateLimitError"]
    assert run.results["429 stream"]["out"]["textEvents"] == 0
    refused = run.error("bad key")
    assert refused["name"] == "AuthenticationError"
    assert refused["status"] == 401
    assert refused["type"] == "authentication_error"
    assert "mpk-not-a-key-at-all" not in refused["message"]

    # The four provider errors were asked for once each; the refused request never left.
    models = [str((r.json or {}).get("model")) for r in upstream.requests]
    assert sorted(models) == ["fake-error-429"] * 2 + ["fake-error-529"] * 2
    assert_nothing_leaked(upstream, [*VALUES, typescript_sdk.api_key])
    report("errors", run)


def test_an_error_event_mid_stream_surfaces_in_the_sdk_stream(
    typescript_sdk: TypeScriptSdk, upstream: FakeAnthropic
) -> None:
    # The echo starts with a value, so the few deltas before the error end inside its
    # placeholder: the client must get a prefix of the real text, never part of a placeholder.
    prompt = f"{EC2} in {VPC} cannot reach {PUBLIC_IP}."
    run = typescript_sdk.run(
        [
            {"name": "stream", "kind": "stream", "model": "fake-error-midstream", "prompt": prompt},
            {"name": "raw", "kind": "raw", "model": "fake-error-midstream", "prompt": prompt},
        ]
    )

    echo = ECHO_PREFIX + prompt
    for name in ("stream", "raw"):
        error = run.error(name)
        # An `error` event is an APIError without a status, typed as the event says.
        assert error["name"] == "APIError", error
        assert error["status"] is None
        assert {"type": error["type"], "message": error["apiMessage"]} == MIDSTREAM_ERROR["error"]
        # At most 12 characters came before the error: the prefix and part of a placeholder,
        # which the proxy holds back rather than send half of it.
        text = run.results[name]["out"]["streamedText"]
        assert ECHO_PREFIX.startswith(text), f"{name}: {text!r} is not a prefix of {echo!r}"
    stream_out = run.results["stream"]["out"]
    assert stream_out["errorEvents"] == 1
    assert "final" not in stream_out  # finalMessage() rejected
    assert run.results["raw"]["out"]["counts"]["message_start"] == 1
    assert_no_placeholder_reached_the_client(run)
    assert_nothing_leaked(upstream, [EC2, VPC, PUBLIC_IP, typescript_sdk.api_key])
    assert len(upstream.requests) == 2
    # Lengths only: the text holds the values sent, which test output must not show either.
    sizes = [str(len(run.results[name]["out"]["streamedText"])) for name in ("stream", "raw")]
    print(f"\n  mid-stream error: {' and '.join(sizes)} characters before it", end="")
    report("mid-stream error", run)
