"""The proof: with every logger at DEBUG, a full request suite leaks no original value.

Searched: every log record, everything the process wrote to stdout and stderr, the audit
rows, every table of the database, every Redis key and value of this run, and what the
provider received.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any, cast

import anthropic
import httpx
import pytest
import redis
from django.apps import apps
from django.conf import settings
from django.core import serializers
from django.test import override_settings

from patterns.models import Pattern
from patterns.store import build_async_store
from proxy import services
from proxy.audit import drain_audit
from proxy.auth import KeyPrincipal
from proxy.errors import MaskingUnavailable
from proxy.stores import use_store
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.proxy.conftest import IssuedKey, wait_for_audit
from tests.spec_example import SPEC_TEXT, SPEC_VALUES

EXTRA = "Also 52.95.110.1 and account 123456789012."
VALUES = (*SPEC_VALUES, "52.95.110.1", "123456789012")
TOOLS: list[Any] = [
    {
        "name": "bash",
        "description": "Run a command on i-1234567890abcdef0",
        "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}},
    }
]


# The test's own client: the official SDK logs the requests it sends at DEBUG, values
# included, in this process. It is the caller, not the proxy.
CLIENT_LOGGERS = ("anthropic",)


@pytest.fixture
def everything_at_debug() -> Iterator[None]:
    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] not in CLIENT_LOGGERS]
    loggers = [logging.getLogger(), *(logging.getLogger(n) for n in names)]
    levels = [(logger, logger.level) for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    for name in CLIENT_LOGGERS:
        levels.append((logging.getLogger(name), logging.getLogger(name).level))
        logging.getLogger(name).setLevel(logging.WARNING)
    yield
    for logger, level in levels:
        logger.setLevel(level)


def _ask(client: anthropic.Anthropic, model: str, **fields: Any) -> None:
    messages = fields.pop("messages", [{"role": "user", "content": SPEC_TEXT + EXTRA}])
    with contextlib.suppress(anthropic.APIStatusError):
        client.messages.create(model=model, max_tokens=50, messages=messages, **fields)


def _stream(client: anthropic.Anthropic, model: str, **fields: Any) -> None:
    with (
        contextlib.suppress(anthropic.APIStatusError),
        client.messages.stream(
            model=model, max_tokens=50, messages=[{"role": "user", "content": SPEC_TEXT}], **fields
        ) as stream,
    ):
        stream.get_final_message()


def _request_suite(client: anthropic.Anthropic, proxy_url: str, key: str) -> int:
    """Runs the requests; returns how many of them leave an audit record."""
    _ask(client, "fake-echo", system=SPEC_TEXT)
    _stream(client, "fake-echo")
    _stream(client, "fake-tool", tools=TOOLS)
    _ask(client, "fake-tool", tools=TOOLS)
    _ask(client, "fake-thinking", thinking={"type": "enabled", "budget_tokens": 1024})
    history: list[Any] = [{"role": "user", "content": "i-1234567890abcdef0?"}]
    for _ in range(3):
        history += [
            {"role": "assistant", "content": "Yes, vpc-12345678."},
            {"role": "user", "content": SPEC_TEXT},
        ]
        _ask(client, "fake-echo", messages=history)
    for model in ("fake-error-400", "fake-error-429", "fake-error-529", "fake-error-500"):
        _ask(client, model)
    _stream(client, "fake-error-midstream")
    _stream(client, "fake-truncated")
    client.messages.count_tokens(
        model="fake-echo", messages=[{"role": "user", "content": SPEC_TEXT}]
    )
    headers = {"x-api-key": key}
    bad_json = b'{"model": "m", "messages": [{"content": "' + SPEC_TEXT.encode() + b'"'
    httpx.post(f"{proxy_url}/v1/messages", content=bad_json, headers=headers, timeout=30)
    wrong_type = {"model": SPEC_TEXT, "max_tokens": "i-1234567890abcdef0", "messages": []}
    httpx.post(f"{proxy_url}/v1/messages", json=wrong_type, headers=headers, timeout=30)
    httpx.post(f"{proxy_url}/v1/messages", json={"x": SPEC_TEXT}, timeout=30)  # no key
    return 17  # all but the one without a key


def _redis_down_request(closed_port: int) -> None:
    caches = {
        "default": {
            **settings.CACHES["default"],
            "LOCATION": f"redis://127.0.0.1:{closed_port}/0",
            "OPTIONS": {**settings.CACHES["default"]["OPTIONS"], "SOCKET_CONNECT_TIMEOUT": 0.5},
        }
    }
    principal = KeyPrincipal(key_id=None, name="t", prefix="t", namespace="ns-leak-check")
    body = {
        "model": "fake-echo",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": SPEC_TEXT}],
    }
    call = services.ProxyCall(
        principal=principal, endpoint="messages", body=body, headers={}, request_id="req_x"
    )

    async def run() -> None:
        with override_settings(CACHES=caches):
            store = build_async_store()
        use_store(store)
        try:
            await services.send_message(call)
        finally:
            await drain_audit()
            await store.aclose()

    with pytest.raises(MaskingUnavailable):
        asyncio.run(run())


def _database_dump() -> str:
    # Every table; of the patterns, not the examples admins wrote (they show such values).
    dumped = []
    for model in apps.get_models():
        rows = model._default_manager.all()
        if model is Pattern:
            rows = rows.defer("positive_examples", "negative_examples")
            fields = [f.name for f in Pattern._meta.fields if not f.name.endswith("_examples")]
            dumped.append(serializers.serialize("json", rows, fields=fields))
        else:
            dumped.append(serializers.serialize("json", rows))
    return "\n".join(dumped)


def _redis_dump(redis_client: redis.Redis) -> bytes:
    prefix = settings.CACHES["default"]["KEY_PREFIX"]
    dump = b""
    for key in redis_client.scan_iter(match=f"{prefix}:*", count=1000):
        dump += key
        kind = redis_client.type(key)
        if kind == b"string":
            dump += cast(bytes, redis_client.get(key) or b"")
        elif kind == b"hash":
            fields = cast(dict[bytes, bytes], redis_client.hgetall(key))
            dump += b"".join(k + v for k, v in fields.items())
    return dump


def test_no_original_value_is_logged_stored_or_forwarded(
    everything_at_debug: None,
    proxy_url: str,
    client: anthropic.Anthropic,
    api_key: IssuedKey,
    upstream: FakeAnthropic,
    redis_client: redis.Redis,
    closed_port: int,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    audited = _request_suite(client, proxy_url, api_key.key)
    _redis_down_request(closed_port)
    wait_for_audit(audited + 1)
    output = capfd.readouterr()
    places = {
        "log records": caplog.text,
        "stdout": output.out,
        "stderr": output.err,
        "database": _database_dump(),
        "redis": _redis_dump(redis_client).decode("latin-1"),
        "upstream": upstream.raw_bodies().decode("utf-8", "replace"),
    }
    assert len(caplog.records) > 50  # the suite really logged at DEBUG
    for place, text in places.items():
        for value in (*VALUES, api_key.key):
            assert value not in text, f"{value!r} found in {place}"
