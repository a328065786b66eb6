"""A Redis failure tells the client and the audit trail which store failed, and both refuse
the request before anything reaches the provider: the mapping store (masking unavailable) and
the control store (rate limiting unavailable).

Each failure is a real Redis error: a key of ours given another type, so that Redis refuses
the command the proxy sends (WRONGTYPE), while every other command still works.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from django.conf import settings

from proxy.errors import MaskingUnavailable, RateLimitingUnavailable
from proxy.models import ApiKey
from tests.support.fakes.anthropic_upstream import FakeAnthropic
from tests.support.live import IssuedKey, wait_for_audit

BODY = {
    "model": "fake-echo",
    "max_tokens": 10,
    "messages": [{"role": "user", "content": "Stop i-0123456789abcdef0 tonight."}],
}


@pytest.fixture
def broken_keys(redis_client: redis.Redis) -> Iterator[list[str]]:
    """Names of our keys to turn into the wrong type; deleted afterwards."""
    names: list[str] = []
    yield names
    if names:
        redis_client.delete(*names)


def _prefix() -> str:
    return str(settings.CACHES["default"]["KEY_PREFIX"])


def _post(proxy_url: str, key: str) -> httpx.Response:
    return httpx.post(f"{proxy_url}/v1/messages", json=BODY, headers={"x-api-key": key}, timeout=30)


def _assert_refused(response: httpx.Response, error: Any, upstream: FakeAnthropic) -> None:
    assert response.status_code == 503
    assert response.json()["error"] == {"type": "api_error", "message": error.default_message}
    assert upstream.requests == []
    [record] = wait_for_audit(1)
    assert (record.status, record.error_type) == (503, "api_error")


def test_a_rate_limit_window_redis_refuses_is_rate_limiting_unavailable(
    proxy_url: str,
    api_key: IssuedKey,
    upstream: FakeAnthropic,
    redis_client: redis.Redis,
    broken_keys: list[str],
) -> None:
    ApiKey.objects.filter(pk=api_key.record.pk).update(rate_limit_per_minute=100)
    window = int(time.time() // 60)
    for minute in (window, window + 1):  # the request may start in the next minute
        name = f"{_prefix()}:ratelimit:{api_key.record.prefix}:{minute}"
        broken_keys.append(name)
        redis_client.rpush(name, "not a counter")

    response = _post(proxy_url, api_key.key)

    _assert_refused(response, RateLimitingUnavailable, upstream)


def test_a_stream_slot_redis_refuses_is_rate_limiting_unavailable(
    proxy_url: str,
    api_key: IssuedKey,
    upstream: FakeAnthropic,
    redis_client: redis.Redis,
    broken_keys: list[str],
) -> None:
    ApiKey.objects.filter(pk=api_key.record.pk).update(max_concurrent_streams=2)
    name = f"{_prefix()}:streams:{api_key.record.prefix}"
    broken_keys.append(name)
    redis_client.set(name, "not a set of streams")

    response = httpx.post(
        f"{proxy_url}/v1/messages",
        json={**BODY, "stream": True},
        headers={"x-api-key": api_key.key},
        timeout=30,
    )

    _assert_refused(response, RateLimitingUnavailable, upstream)


def test_a_mapping_redis_refuses_is_masking_unavailable(
    proxy_url: str,
    api_key: IssuedKey,
    upstream: FakeAnthropic,
    redis_client: redis.Redis,
    broken_keys: list[str],
    namespace: str,
) -> None:
    ApiKey.objects.filter(pk=api_key.record.pk).update(
        namespace=namespace, rate_limit_per_minute=100
    )
    # The allocation script counts each new value in this hash: a string makes it fail.
    name = f"{_prefix()}:mask:{{{namespace}}}:count"
    broken_keys.append(name)
    redis_client.set(name, "not a hash")

    response = _post(proxy_url, api_key.key)

    _assert_refused(response, MaskingUnavailable, upstream)
    assert "i-0123456789abcdef0" not in response.text
