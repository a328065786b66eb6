"""Where an original value could leak, and the tools the leak tests search those places with."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any

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
from tests.support.redis_dump import dump_keys

# The test's own client: the official SDK logs the requests it sends at DEBUG, values
# included, in this process. It is the caller, not the proxy.
CLIENT_LOGGERS = ("anthropic",)


@contextlib.contextmanager
def every_logger_at_debug() -> Iterator[None]:
    """Every logger at DEBUG and propagating to the root, where caplog listens.

    Loggers that keep their records to themselves (uvicorn's) propagate too while this lasts,
    so nothing logged anywhere escapes the search. The test's own SDK client stays at WARNING.
    """
    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] not in CLIENT_LOGGERS]
    loggers = [logging.getLogger(), *(logging.getLogger(n) for n in names)]
    saved = [(logger, logger.level, logger.propagate) for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
        logger.propagate = True
    for name in CLIENT_LOGGERS:
        client = logging.getLogger(name)
        saved.append((client, client.level, client.propagate))
        client.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level, propagate in saved:
            logger.setLevel(level)
            logger.propagate = propagate


def database_dump() -> str:
    """Every row of every table as JSON; of the patterns, not the examples admins wrote."""
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


def redis_dump(redis_client: redis.Redis) -> bytes:
    """Every key of this test run, with its value (strings) or fields and values (hashes)."""
    prefix = settings.CACHES["default"]["KEY_PREFIX"]
    return dump_keys(redis_client, redis_client.scan_iter(match=f"{prefix}:*", count=1000))


def redis_down_request(closed_port: int, text: str) -> MaskingUnavailable:
    """Send text through the service with Redis at a closed port; the error it raised."""
    caches = {
        "default": {
            **settings.CACHES["default"],
            "LOCATION": f"redis://127.0.0.1:{closed_port}/0",
            "OPTIONS": {**settings.CACHES["default"]["OPTIONS"], "SOCKET_CONNECT_TIMEOUT": 0.5},
        }
    }
    principal = KeyPrincipal(key_id=None, name="t", prefix="t", namespace="ns-leak-check")
    body = {"model": "fake-echo", "max_tokens": 5, "messages": [{"role": "user", "content": text}]}
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

    with pytest.raises(MaskingUnavailable) as raised:
        asyncio.run(run())
    return raised.value


def assert_nothing_found(places: Mapping[str, Any], secrets: tuple[str, ...]) -> None:
    """No secret in any place (text, or bytes read as UTF-8)."""
    for place, content in places.items():
        text = content.decode("utf-8", "replace") if isinstance(content, bytes) else str(content)
        for secret in secrets:
            assert secret not in text, f"{secret!r} found in {place}"
