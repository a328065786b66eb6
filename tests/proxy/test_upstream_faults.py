"""Provider faults test_errors.py leaves out, and clients that leave mid-stream.

Each fault comes from the fake upstream (a model that fails a given way) or a closed port; the
request carries real-looking AWS values, and every answer is searched for them. A client that
leaves mid-stream must make the proxy let go of the upstream at once, and leave no task or
connection behind, however often it happens.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, fields
from typing import Any

import pytest
from django.test import override_settings

from tests.support.clients import (
    LET_GO_SECONDS,
    SHORT_TIMEOUT,
    Answer,
    ask,
    leave_mid_stream,
    wait_until,
)
from tests.support.constants import SENSITIVE_VALUES
from tests.support.fakes.anthropic_upstream import ERRORS, RETRY_AFTER_SECONDS, FakeAnthropic
from tests.support.leaks import assert_nothing_found
from tests.support.live import SERVERS, IssuedKey, wait_for_audit

DISCONNECTS = 20


def assert_clean(answer: Answer) -> None:
    """No traceback, and no original value in the body or any header."""
    assert "Traceback" not in answer.text
    headers = "\n".join(f"{name}: {value}" for name, value in answer.headers.items())
    assert_nothing_found({"body": answer.text, "headers": headers}, SENSITIVE_VALUES)


def assert_error(answer: Answer, status: int, error_type: str) -> dict[str, Any]:
    """A plain (not streamed) Anthropic error with this status and type, and a message."""
    assert answer.status == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    error = answer.error()
    assert error["type"] == error_type
    assert error["message"]
    assert_clean(answer)
    return error


def assert_stream_ends_with_error(answer: Answer, error_type: str) -> dict[str, Any]:
    """A stream that started well (200, message_start, some text) and ends with an error event."""
    assert answer.status == 200, answer.text
    assert answer.headers["content-type"].startswith("text/event-stream")
    events = answer.events()
    names = [name for name, _ in events]
    assert names[0] == "message_start"
    assert "content_block_delta" in names
    assert "message_stop" not in names
    name, data = events[-1]
    assert (name, data["type"], data["error"]["type"]) == ("error", "error", error_type)
    assert data["error"]["message"]
    assert_clean(answer)
    error: dict[str, Any] = data["error"]
    return error


def assert_forwarded_masked(upstream: FakeAnthropic, count: int = 1) -> None:
    """The provider got the request count times, and only ever placeholders."""
    assert len(upstream.requests) == count
    received = upstream.raw_bodies().decode()
    assert_nothing_found({"upstream": received}, SENSITIVE_VALUES)
    assert "AWS_EC2_001" in received


# Faults before the stream starts: the provider's error answer. Without "stream", test_errors
# covers all but 413.
@pytest.mark.parametrize(
    ("status", "error_type"),
    [(status, error_type) for status, (error_type, _) in ERRORS.items()],
)
def test_provider_error_before_a_stream_keeps_its_status_type_and_message(
    proxy_url: str, api_key: IssuedKey, upstream: FakeAnthropic, status: int, error_type: str
) -> None:
    answer = ask(proxy_url, api_key.key, f"fake-error-{status}", stream=True)

    error = assert_error(answer, status, error_type)
    assert error["message"] == ERRORS[status][1]
    assert answer.headers["upstream-request-id"].startswith("req_fake_")
    if status == 429:
        assert answer.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
    assert_forwarded_masked(upstream)
    record = wait_for_audit()[0]
    assert (record.status, record.error_type, record.stream) == (status, error_type, True)


def test_provider_413_keeps_its_status(
    proxy_url: str, api_key: IssuedKey, upstream: FakeAnthropic
) -> None:
    answer = ask(proxy_url, api_key.key, "fake-error-413", stream=False)

    assert_error(answer, 413, "request_too_large")
    assert wait_for_audit()[0].status == 413


def test_refused_connection_before_a_stream_is_a_502(
    proxy_url: str, api_key: IssuedKey, upstream: FakeAnthropic, closed_port: int
) -> None:
    with override_settings(PROXY_UPSTREAM_BASE_URL=f"http://127.0.0.1:{closed_port}"):
        answer = ask(proxy_url, api_key.key, "fake-echo", stream=True)

    assert_error(answer, 502, "api_error")
    assert upstream.requests == []
    record = wait_for_audit()[0]
    assert (record.status, record.stream) == (502, True)


@pytest.mark.slow
def test_timeout_before_a_streams_headers_is_a_504_and_the_upstream_is_let_go(
    proxy_url: str, api_key: IssuedKey, upstream: FakeAnthropic
) -> None:
    abandoned = upstream.abandoned
    with override_settings(PROXY_UPSTREAM_TIMEOUT=SHORT_TIMEOUT):
        answer = ask(proxy_url, api_key.key, "fake-slow", stream=True)

    assert_error(answer, 504, "api_error")
    assert_forwarded_masked(upstream)
    # fake-slow would answer after its pause: the proxy hung up on it first.
    assert wait_until(lambda: upstream.active_responses == 0)
    assert upstream.abandoned == abandoned + 1
    assert wait_for_audit()[0].status == 504


@pytest.mark.slow
@pytest.mark.parametrize("stream", [False, True], ids=["message", "stream"])
def test_upstream_stalling_mid_answer_is_a_504_and_the_upstream_is_let_go(
    proxy_url: str, api_key: IssuedKey, upstream: FakeAnthropic, stream: bool
) -> None:
    abandoned = upstream.abandoned
    with override_settings(PROXY_UPSTREAM_TIMEOUT=SHORT_TIMEOUT):
        answer = ask(proxy_url, api_key.key, "fake-stall-midstream", stream=stream)

    if stream:
        error = assert_stream_ends_with_error(answer, "api_error")
        assert "time" in error["message"]
    else:
        assert_error(answer, 504, "api_error")
    assert_forwarded_masked(upstream)
    # The fake stalls for STALL_SECONDS: only a proxy that closed the connection ends it now.
    assert wait_until(lambda: upstream.active_responses == 0)
    assert upstream.abandoned == abandoned + 1
    record = wait_for_audit()[0]
    assert (record.status, record.error_type, record.stream) == (504, "api_error", stream)


def test_message_cut_off_mid_body_is_a_502(
    proxy_url: str, api_key: IssuedKey, upstream: FakeAnthropic
) -> None:
    answer = ask(proxy_url, api_key.key, "fake-truncated", stream=False)

    assert_error(answer, 502, "api_error")
    assert wait_for_audit()[0].status == 502


def test_error_event_mid_stream_is_relayed_as_the_last_event(
    proxy_url: str, api_key: IssuedKey, upstream: FakeAnthropic
) -> None:
    answer = ask(proxy_url, api_key.key, "fake-error-midstream", stream=True)

    error = assert_stream_ends_with_error(answer, "overloaded_error")
    assert error["message"] == "Overloaded"
    deltas = [data["delta"] for name, data in answer.events() if name == "content_block_delta"]
    assert "You said: ".startswith("".join(delta["text"] for delta in deltas))
    assert_forwarded_masked(upstream)


def test_error_event_mid_stream_is_audited_as_a_failure(
    proxy_url: str, api_key: IssuedKey, upstream: FakeAnthropic
) -> None:
    ask(proxy_url, api_key.key, "fake-error-midstream", stream=True)

    record = wait_for_audit()[0]
    assert (record.status, record.error_type) == (529, "overloaded_error")


# Client disconnects.


@dataclass(frozen=True)
class Usage:
    """What the live proxy and the fake hold at one moment; each should fall back to its floor."""

    proxy_tasks: int  # asyncio tasks on the proxy's event loop
    proxy_requests: int  # requests uvicorn is running for the proxy
    proxy_client_connections: int  # connections clients hold open to the proxy
    proxy_upstream_sockets: int  # this process's sockets connected to the fake's port
    upstream_responses: int  # responses the fake is still writing
    upstream_connections: int  # connections open to the fake, idle keep-alive ones included

    def at_most(self, baseline: Usage) -> bool:
        return all(getattr(self, f.name) <= getattr(baseline, f.name) for f in fields(self))


class LiveProxy:
    """The proxy_url fixture's uvicorn server, for counting what its event loop holds."""

    def __init__(self, proxy_url: str) -> None:
        self.server = SERVERS[proxy_url]
        self.loop = self.server.servers[0].get_loop()

    def tasks(self) -> int:
        async def count() -> int:
            current = asyncio.current_task()
            return sum(1 for task in asyncio.all_tasks() if task is not current)

        return asyncio.run_coroutine_threadsafe(count(), self.loop).result(timeout=5)

    def usage(self, upstream: FakeAnthropic) -> Usage:
        state = self.server.server_state
        return Usage(
            proxy_tasks=self.tasks(),
            proxy_requests=len(state.tasks),
            proxy_client_connections=len(state.connections),
            proxy_upstream_sockets=sockets_connected_to(upstream.port),
            upstream_responses=upstream.active_responses,
            upstream_connections=upstream.open_connections,
        )


def sockets_connected_to(port: int) -> int:
    """This process's TCP sockets whose far end is 127.0.0.1:port, in any state."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed since listed
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    with open("/proc/net/tcp") as table:
        rows = [line.split() for line in table.read().splitlines()[1:]]
    # Columns: sl, local address, remote address (hex ip:port), state, ..., inode (10th).
    return sum(1 for row in rows if int(row[2].split(":")[1], 16) == port and row[9] in inodes)

    # Leaving the block closes a response that was not read to its end: the connection goes.


@pytest.mark.slow
def test_clients_leaving_mid_stream_release_the_upstream_and_leave_nothing_behind(
    proxy_url: str, api_key: IssuedKey, upstream: FakeAnthropic
) -> None:
    live = LiveProxy(proxy_url)
    # A whole stream first: pooled connections and lazily started tasks belong to the floor.
    assert ask(proxy_url, api_key.key, "fake-echo", stream=True).status == 200
    wait_for_audit(1)
    assert wait_until(lambda: live.usage(upstream).proxy_requests == 0)
    baseline = live.usage(upstream)
    abandoned = upstream.abandoned

    let_go: list[float] = []
    for _ in range(DISCONNECTS):
        leave_mid_stream(proxy_url, api_key.key, upstream)
        left = time.monotonic()
        assert wait_until(lambda: upstream.active_responses == 0), "the upstream was kept open"
        let_go.append(time.monotonic() - left)

    assert upstream.abandoned == abandoned + DISCONNECTS
    records = wait_for_audit(1 + DISCONNECTS)
    assert {(r.model, r.stream) for r in records[1:]} == {("fake-stall-midstream", True)}
    # Audited as what happened: the client left (not a success, not the provider's failure).
    assert {(r.status, r.error_type) for r in records[1:]} == {(499, "client_closed")}
    settled = wait_until(lambda: live.usage(upstream).at_most(baseline))
    after = live.usage(upstream)
    print(
        f"\n{DISCONNECTS} disconnects: upstream let go after {max(let_go):.3f} s at most; "
        f"baseline {baseline}; after {after}"
    )
    assert settled, f"still held after {LET_GO_SECONDS} s: {after}, baseline {baseline}"
    assert_forwarded_masked(upstream, 1 + DISCONNECTS)
