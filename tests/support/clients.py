"""Requests to the live proxy that carry the sensitive values, and what came back (the
provider-fault and failure-secret suites share them)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from tests.support.constants import SENSITIVE_TEXT, SENSITIVE_VALUES
from tests.support.fakes.anthropic_upstream import FakeAnthropic

# Far below the fake's stalls (STALL_SECONDS), far above a local round trip.
SHORT_TIMEOUT = 1.0


# How long the proxy may take to let go of the upstream, or to settle after a request.
LET_GO_SECONDS = 5.0


@dataclass(frozen=True)
class Answer:
    """What a client got from the proxy: status, headers and the whole body as text."""

    status: int
    headers: httpx.Headers
    text: str

    def error(self) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(self.text)
        assert body["type"] == "error", self.text
        error: dict[str, Any] = body["error"]
        return error

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        """The server-sent events, as (event name, data) pairs."""
        events = []
        for frame in self.text.replace("\r\n", "\n").split("\n\n"):
            fields = dict(line.split(": ", 1) for line in frame.splitlines() if ": " in line)
            if "data" in fields:
                events.append((fields.get("event", ""), json.loads(fields["data"])))
        return events


def sensitive_request(model: str, *, stream: bool) -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": 50,
        "stream": stream,
        "system": f"You look after {SENSITIVE_VALUES[0]}.",
        "messages": [{"role": "user", "content": SENSITIVE_TEXT}],
    }


def ask(proxy_url: str, key: str, model: str, *, stream: bool) -> Answer:
    """Send the sensitive request and read the whole answer (an SSE error event included)."""
    response = httpx.post(
        f"{proxy_url}/v1/messages",
        json=sensitive_request(model, stream=stream),
        headers={"x-api-key": key},
        timeout=30,
    )
    return Answer(response.status_code, response.headers, response.text)


def wait_until(condition: Callable[[], bool], seconds: float = LET_GO_SECONDS) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def leave_mid_stream(proxy_url: str, key: str, upstream: FakeAnthropic) -> None:
    """Read a stalling stream up to its first text, then hang up."""
    body = sensitive_request("fake-stall-midstream", stream=True)
    with (
        httpx.Client(timeout=30) as client,
        client.stream(
            "POST", f"{proxy_url}/v1/messages", json=body, headers={"x-api-key": key}
        ) as response,
    ):
        assert response.status_code == 200
        chunks: Iterator[bytes] = response.iter_raw()
        received = b""
        while b"content_block_delta" not in received:
            received += next(chunks)
        # The fake now stalls with its connection open: only the proxy can end it early.
        assert upstream.active_responses == 1
