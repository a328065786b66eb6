"""A live proxy (uvicorn, real HTTP) in front of the fake Anthropic upstream: fixtures that
tests/conftest.py registers once for every suite (one server, one settings override), and
the helpers tests use with them."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import pytest
import uvicorn
from django.test import override_settings

from proxy import audit
from proxy.keys import generate_key
from proxy.models import ApiKey, AuditRecord
from tests.support.constants import MASTER_KEY, UPSTREAM_KEY
from tests.support.fakes.anthropic_upstream import FakeAnthropic

# The live proxy's uvicorn server by its URL, for tests that count what its event loop holds.
SERVERS: dict[str, uvicorn.Server] = {}


@pytest.fixture(scope="session")
def proxy_url(fake_anthropic: FakeAnthropic) -> Iterator[str]:
    overrides = override_settings(
        PROXY_UPSTREAM_BASE_URL=fake_anthropic.base_url,
        ANTHROPIC_API_KEY=UPSTREAM_KEY,
        PROXY_MASTER_KEY=MASTER_KEY,
        PROXY_UPSTREAM_TIMEOUT=10.0,
    )
    overrides.enable()
    # Served as in production: with the bounds on requests and clients, and no WebSocket.
    config = uvicorn.Config(
        "config.asgi:application",
        host="127.0.0.1",
        port=0,
        lifespan="on",
        log_level="warning",
        http="config.http:BoundedHttpProtocol",
        ws="none",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="live-proxy", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the live proxy did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    SERVERS[url] = server
    try:
        yield url
    finally:
        del SERVERS[url]
        server.should_exit = True
        thread.join(timeout=10)
        overrides.disable()


@dataclass(frozen=True)
class IssuedKey:
    key: str
    record: ApiKey


@pytest.fixture
def api_key(seeded_rules: None) -> IssuedKey:
    new = generate_key()
    record = ApiKey.objects.create(name="tests", prefix=new.prefix, key_hash=new.digest)
    return IssuedKey(key=new.key, record=record)


@pytest.fixture
def upstream(fake_anthropic: FakeAnthropic) -> Iterator[FakeAnthropic]:
    fake_anthropic.clear()
    yield fake_anthropic
    # Audit rows are written in the background: let them land before the database is
    # flushed for the next test.
    audit.flush_audit(timeout=10)


@pytest.fixture
def client(
    proxy_url: str, api_key: IssuedKey, upstream: FakeAnthropic
) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=proxy_url, api_key=api_key.key, max_retries=0) as sdk:
        yield sdk


def wait_for_audit(count: int = 1, timeout: float = 10.0) -> list[AuditRecord]:
    """The audit records, once `count` of them exist (they are written in the background)."""
    deadline = time.monotonic() + timeout
    while AuditRecord.objects.count() < count and time.monotonic() < deadline:
        time.sleep(0.02)
    records = list(AuditRecord.objects.order_by("created_at"))
    assert len(records) == count, f"{len(records)} audit records, expected {count}"
    return records


def wait_for_a_fresh_minute(margin: float = 5.0) -> None:
    """Limits count per wall-clock minute: do not start a count just before one ends."""
    seconds = time.time() % 60
    if seconds > 60 - margin:
        time.sleep(60.5 - seconds)


def assert_error(response: httpx.Response, status: int, error_type: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == error_type
    assert body["error"]["message"]
    assert "Traceback" not in response.text
    return body
