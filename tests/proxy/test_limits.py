"""Per-key limits: requests per minute and streams open at once, answered with 429."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from proxy.models import ApiKey
from tests.support.fakes.anthropic_upstream import FakeAnthropic
from tests.support.live import IssuedKey, wait_for_a_fresh_minute, wait_for_audit

BODY = {"model": "fake-echo", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}


def _post(proxy_url: str, key: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{proxy_url}/v1/messages", json=body, headers={"x-api-key": key}, timeout=30)


def test_requests_over_the_per_minute_limit_get_429_and_are_not_forwarded(
    proxy_url: str, api_key: IssuedKey, upstream: FakeAnthropic
) -> None:
    ApiKey.objects.filter(pk=api_key.record.pk).update(rate_limit_per_minute=2)
    wait_for_a_fresh_minute()
    statuses = [_post(proxy_url, api_key.key, BODY).status_code for _ in range(2)]
    refused = _post(proxy_url, api_key.key, BODY)
    assert statuses == [200, 200]
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert len(upstream.requests) == 2


def test_streams_over_the_cap_get_429_and_slots_free_up(
    proxy_url: str, api_key: IssuedKey, upstream: FakeAnthropic
) -> None:
    ApiKey.objects.filter(pk=api_key.record.pk).update(max_concurrent_streams=1)
    slow = {**BODY, "model": "fake-slow", "stream": True}
    first: list[int] = []
    holder = threading.Thread(
        target=lambda: first.append(_post(proxy_url, api_key.key, slow).status_code)
    )
    holder.start()
    try:
        deadline = threading.Event()
        while not upstream.requests and not deadline.wait(0.02):
            pass
        second = _post(proxy_url, api_key.key, {**BODY, "stream": True})
        assert second.status_code == 429
        assert "streams open at once" in second.json()["error"]["message"]
        assert _post(proxy_url, api_key.key, BODY).status_code == 200  # not a stream: allowed
    finally:
        holder.join(timeout=30)
    assert first == [200]
    assert _post(proxy_url, api_key.key, {**BODY, "stream": True}).status_code == 200


def test_a_client_leaving_before_the_answer_frees_its_stream_slot_and_is_audited(
    proxy_url: str, api_key: IssuedKey, upstream: FakeAnthropic
) -> None:
    ApiKey.objects.filter(pk=api_key.record.pk).update(max_concurrent_streams=1)
    slow = {**BODY, "model": "fake-slow", "stream": True}
    with pytest.raises(httpx.ReadTimeout):  # gives up before the provider's headers
        httpx.post(
            f"{proxy_url}/v1/messages",
            json=slow,
            headers={"x-api-key": api_key.key},
            timeout=httpx.Timeout(30, read=0.5),
        )
    (record,) = wait_for_audit(1)
    assert (record.status, record.error_type, record.stream) == (499, "client_closed", True)
    assert _post(proxy_url, api_key.key, {**BODY, "stream": True}).status_code == 200
