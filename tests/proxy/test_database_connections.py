"""A request holds a database connection only while it reads the database: not while it waits
for the provider, which for a stream can be minutes (and a pool has few connections)."""

from __future__ import annotations

import threading
import time
from typing import Any

import anthropic
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created

from tests.support.fakes.anthropic_upstream import FakeAnthropic


def test_a_request_waiting_for_the_provider_holds_no_database_connection(
    client: anthropic.Anthropic, upstream: FakeAnthropic
) -> None:
    # Every connection opened (or taken from the pool) from now on, with its thread's name.
    opened: list[tuple[str, BaseDatabaseWrapper]] = []

    def record(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
        opened.append((threading.current_thread().name, connection))

    def ask() -> None:
        with client.messages.stream(
            model="fake-slow", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            texts.append(stream.get_final_text())

    texts: list[str] = []
    connection_created.connect(record)
    try:
        # The key is new to the proxy, so the request reads it from the database; fake-slow
        # then keeps the provider silent for 2 s before its headers.
        asking = threading.Thread(target=ask)
        asking.start()
        deadline = time.monotonic() + 10
        while upstream.active_responses == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert upstream.active_responses == 1
        # The test's own thread and the audit writer keep theirs, as they always have.
        requests = [c for name, c in opened if name not in {"MainThread", "audit-writer"}]
        assert requests, "the request read nothing from the database"
        assert all(c.connection is None for c in requests)
        asking.join(timeout=30)
        assert texts == ["You said: hi"]
    finally:
        connection_created.disconnect(record)
