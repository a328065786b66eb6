"""LiteLLM's per-call success logging is off for the proxy's provider calls (proxy.upstream).

The proxy registers no LiteLLM callbacks, so LiteLLM's logging payload (a copy of every
message, the call's price, its tokens) is work nobody reads. The switch the proxy uses is not
public LiteLLM API: these tests hold the pinned version to what proxy/upstream.py relies on,
with a callback registered through LiteLLM's public `callbacks` list to see what it logs. A
plain call, made the same way but without the switch, is logged: the check can fail.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import litellm
import pytest
from litellm.integrations.custom_logger import CustomLogger

from proxy import upstream
from proxy.targets import UpstreamTarget
from tests.support.fakes.anthropic_upstream import FakeAnthropic

MODEL = "claude-sonnet-4-5"
MESSAGES: list[dict[str, Any]] = [
    {"role": "user", "content": "Echo: the instance i-0a1b2c3d4e5f67890"}
]
BODY: dict[str, Any] = {"model": MODEL, "max_tokens": 16, "messages": MESSAGES}
LOGGING_SETTLES_SECONDS = 0.5


class CountingLogger(CustomLogger):
    """A LiteLLM callback that notes each event it is given (never their contents)."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []

    def log_success_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self.events.append("success")

    async def async_log_success_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self.events.append("async_success")


@pytest.fixture
def counting_logger() -> Iterator[CountingLogger]:
    """A callback registered for one test; LiteLLM's callback lists as they were after it."""
    lists = ("callbacks", "success_callback", "_async_success_callback")
    saved = {name: list(getattr(litellm, name)) for name in lists}
    logger = CountingLogger()
    litellm.callbacks = [logger]
    try:
        yield logger
    finally:
        for name, value in saved.items():
            setattr(litellm, name, value)


def target(fake: FakeAnthropic) -> UpstreamTarget:
    return UpstreamTarget(
        model=f"anthropic/{MODEL}",
        api_base=fake.base_url,
        api_key="test-provider-key",
        timeout=10.0,
        connect_timeout=5.0,
    )


async def logged_after(call: Any) -> None:
    await call
    await asyncio.sleep(LOGGING_SETTLES_SECONDS)  # LiteLLM logs from a task of its own


@pytest.mark.parametrize("large", [False, True], ids=["on the serving loop", "large"])
def test_the_proxys_call_is_not_logged_by_litellm(
    fake_anthropic: FakeAnthropic, counting_logger: CountingLogger, large: bool
) -> None:
    async def run() -> dict[str, Any]:
        try:
            _, answer = await upstream.create_message(
                BODY, {}, [target(fake_anthropic)], large=large
            )
            await asyncio.sleep(LOGGING_SETTLES_SECONDS)
        finally:
            await upstream.close_clients()
        assert isinstance(answer, dict)
        return answer

    answer = asyncio.run(run())

    assert answer["content"][0]["text"]  # the call itself went through
    assert counting_logger.events == []


def test_a_plain_litellm_call_is_logged(
    fake_anthropic: FakeAnthropic, counting_logger: CountingLogger
) -> None:
    async def run() -> None:
        try:
            await logged_after(
                litellm.anthropic.messages.acreate(
                    model=f"anthropic/{MODEL}",
                    api_base=fake_anthropic.base_url,
                    api_key="test-provider-key",
                    max_tokens=16,
                    messages=MESSAGES,
                )
            )
        finally:
            await upstream.close_clients()

    asyncio.run(run())

    assert "async_success" in counting_logger.events
