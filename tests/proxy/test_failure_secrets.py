"""On every failure path, no original value is logged, stored, forwarded or told the client.

Each fault of the matrix runs alone with every logger at DEBUG (LiteLLM, httpx and uvicorn
included); then the client's answer, the log records, the process's stdout and stderr, every
database table (the audit rows with them), this run's Redis keys and values, and what the
provider received are searched for the values the request carried, and for the keys.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis
from django.test import override_settings

from tests.support.clients import SHORT_TIMEOUT, ask, leave_mid_stream, wait_until
from tests.support.constants import MASTER_KEY, SENSITIVE_TEXT, SENSITIVE_VALUES, UPSTREAM_KEY
from tests.support.fakes.anthropic_upstream import ERRORS, FakeAnthropic
from tests.support.leaks import (
    assert_nothing_found,
    database_dump,
    every_logger_at_debug,
    redis_down_request,
    redis_dump,
)
from tests.support.live import IssuedKey, wait_for_audit


@dataclass(frozen=True)
class Fault:
    model: str
    stream: bool
    upstream_timeout: float | None = None
    refused: bool = False  # the provider's address is a closed port

    def __str__(self) -> str:
        cause = "refused" if self.refused else self.model.removeprefix("fake-")
        return f"{cause}-{'stream' if self.stream else 'message'}"


FAULTS = [
    *(Fault(f"fake-error-{status}", stream) for status in ERRORS for stream in (False, True)),
    *(Fault("fake-echo", stream, refused=True) for stream in (False, True)),
    *(
        pytest.param(Fault(model, stream, SHORT_TIMEOUT), marks=pytest.mark.slow)
        for model in ("fake-slow", "fake-stall-midstream")
        for stream in (False, True)
    ),
    *(Fault("fake-truncated", stream) for stream in (False, True)),
    Fault("fake-error-midstream", stream=True),
]


@pytest.fixture(autouse=True)
def master_key_set() -> Iterator[None]:
    # The proxy holds a master key, so that not finding it in what the provider received
    # means something.
    with override_settings(PROXY_MASTER_KEY=MASTER_KEY):
        yield


@pytest.fixture
def everything_at_debug(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    # caplog first: it puts back the levels it found, so it must find the original ones.
    caplog.set_level(logging.DEBUG)
    with every_logger_at_debug():
        yield


@dataclass
class Sweep:
    """Searches every place a value could have gone, once the failure has happened."""

    api_key: IssuedKey
    upstream: FakeAnthropic
    redis_client: redis.Redis
    caplog: pytest.LogCaptureFixture
    capfd: pytest.CaptureFixture[str]

    def __call__(self, told_the_client: str, *, audited: int = 1) -> None:
        wait_for_audit(audited)
        output = self.capfd.readouterr()
        places = {
            "what the client was told": told_the_client,
            "log records": self.caplog.text,
            "stdout": output.out,
            "stderr": output.err,
            "database": database_dump(),
            "redis": redis_dump(self.redis_client),
        }
        assert self.caplog.records, "nothing was logged: the capture is not working"
        assert_nothing_found(places, (*SENSITIVE_VALUES, self.api_key.key, UPSTREAM_KEY))
        # The provider gets its own key, and nothing else of ours.
        forwarded = {"what the provider received": self.upstream.raw_bodies()}
        assert_nothing_found(forwarded, (*SENSITIVE_VALUES, self.api_key.key, MASTER_KEY))
        print(
            f" forwarded={len(self.upstream.requests)} log_records={len(self.caplog.records)}"
            f" searched_chars={sum(len(str(place)) for place in places.values())}",
            end="",
        )


@pytest.fixture
def sweep(
    everything_at_debug: None,
    api_key: IssuedKey,
    upstream: FakeAnthropic,
    redis_client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> Sweep:
    return Sweep(api_key, upstream, redis_client, caplog, capfd)


@pytest.mark.parametrize("fault", FAULTS, ids=str)
def test_provider_fault_leaks_no_value(
    proxy_url: str, closed_port: int, sweep: Sweep, fault: Fault
) -> None:
    settings: dict[str, object] = {}
    if fault.upstream_timeout is not None:
        settings["PROXY_UPSTREAM_TIMEOUT"] = fault.upstream_timeout
    if fault.refused:
        settings["PROXY_UPSTREAM_BASE_URL"] = f"http://127.0.0.1:{closed_port}"
    with override_settings(**settings):
        answer = ask(proxy_url, sweep.api_key.key, fault.model, stream=fault.stream)

    assert answer.status >= 400 or "event: error" in answer.text
    sweep(answer.text + "\n" + "\n".join(f"{k}: {v}" for k, v in answer.headers.items()))


def test_client_leaving_mid_stream_leaks_no_value(proxy_url: str, sweep: Sweep) -> None:
    leave_mid_stream(proxy_url, sweep.api_key.key, sweep.upstream)

    assert wait_until(lambda: sweep.upstream.active_responses == 0)
    sweep("")


def test_unreachable_redis_leaks_no_value(closed_port: int, sweep: Sweep) -> None:
    error = redis_down_request(closed_port, SENSITIVE_TEXT)

    assert sweep.upstream.requests == []
    sweep(f"{error}\n{error.message}\n{error!r}")
