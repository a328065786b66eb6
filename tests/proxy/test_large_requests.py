"""Large requests (64 KiB or more) take the paths off the serving event loop: their texts are
scanned in the scanning process, their provider call runs on the provider loop. Masking,
restoring, streaming, errors and a client leaving behave as for small requests.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from django.test import override_settings

from proxy.fair_use import OFF_LOOP_BYTES
from tests.support.fakes.anthropic_upstream import FakeAnthropic
from tests.support.live import IssuedKey, wait_for_audit
from tests.support.traffic import sse_text

INSTANCE, VPC = "i-0123456789abcdef0", "vpc-0a1b2c3d4e5f60718"
FILLER = f"Logs of {VPC}: all quiet. " * (OFF_LOOP_BYTES // 20)


def _large(model: str, *, stream: bool) -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": 50,
        "stream": stream,
        "messages": [
            {"role": "user", "content": FILLER},
            {"role": "assistant", "content": "Noted."},
            {"role": "user", "content": f"restart {INSTANCE}"},
        ],
    }


def _wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.mark.parametrize("stream", [False, True], ids=["message", "stream"])
def test_a_large_request_is_masked_and_its_answer_restored(
    proxy_url: str, api_key: IssuedKey, upstream: FakeAnthropic, stream: bool
) -> None:
    body = _large("fake-echo", stream=stream)
    response = httpx.post(
        f"{proxy_url}/v1/messages", json=body, headers={"x-api-key": api_key.key}, timeout=60
    )
    assert response.status_code == 200, response.text[:300]
    [request] = upstream.requests
    assert len(request.body) >= OFF_LOOP_BYTES
    assert INSTANCE.encode() not in request.body and VPC.encode() not in request.body
    text = sse_text(response.text) if stream else response.json()["content"][0]["text"]
    assert text == f"You said: restart {INSTANCE}"
    [record] = wait_for_audit(1)
    assert record.status == 200 and record.masked_total >= 2


@pytest.mark.slow
def test_a_client_leaving_a_large_stream_lets_the_provider_go(
    proxy_url: str, api_key: IssuedKey, upstream: FakeAnthropic
) -> None:
    abandoned = upstream.abandoned
    body = _large("fake-slow-stream-long", stream=True)
    with (
        httpx.Client(timeout=60) as client,
        client.stream(
            "POST", f"{proxy_url}/v1/messages", json=body, headers={"x-api-key": api_key.key}
        ) as response,
    ):
        seen = b""
        for chunk in response.iter_raw():
            seen += chunk
            if seen.count(b"content_block_delta") >= 2:
                break
    assert _wait_until(lambda: upstream.active_responses == 0)
    assert upstream.abandoned == abandoned + 1
    [record] = wait_for_audit(1)
    assert (record.status, record.error_type) == (499, "client_closed")


@pytest.mark.slow
def test_a_large_stream_that_stalls_ends_with_an_error_event_and_lets_the_provider_go(
    proxy_url: str, api_key: IssuedKey, upstream: FakeAnthropic
) -> None:
    abandoned = upstream.abandoned
    with override_settings(PROXY_UPSTREAM_TIMEOUT=1.0):
        response = httpx.post(
            f"{proxy_url}/v1/messages",
            json=_large("fake-stall-midstream", stream=True),
            headers={"x-api-key": api_key.key},
            timeout=60,
        )
    assert response.status_code == 200
    assert "event: error" in response.text and "message_stop" not in response.text
    assert _wait_until(lambda: upstream.active_responses == 0)
    assert upstream.abandoned == abandoned + 1
    [record] = wait_for_audit(1)
    assert record.status == 504
