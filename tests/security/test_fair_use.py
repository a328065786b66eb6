"""One key cannot take what tenants share: Redis, the event loop, the worker's CPU.

A request with more messages, content blocks, strings or distinct values than the limits allow
is refused with a 413 before any value is placed in Redis (the pen test's 600,000-value and
300,000-block requests among them); so is a request refused for any other reason. Values are
placed in chunks, so no single script holds Redis for long. Keys without limits of their own
get the server's default rate and stream limits, which are on by default, and every key's
large requests may take only a share of the proxy's CPU a minute.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from django.conf import settings
from django.test import override_settings

import config.settings as production_settings
from patterns.store import ALLOCATION_CHUNK, Allocation, MappingStore, cipher_from_settings
from proxy import audit
from proxy.keys import generate_key
from proxy.models import ApiKey
from tests.support.fakes.anthropic_upstream import FakeAnthropic
from tests.support.live import IssuedKey, wait_for_a_fresh_minute
from tests.support.processes import PrivateRedis


def _body(messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"model": "fake-echo", "max_tokens": 20, "messages": messages, **extra}


def _instance(number: int) -> str:
    return f"i-{number:017x}"


@pytest.fixture
def http(proxy_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=proxy_url, timeout=120) as client:
        yield client


def _mappings(redis_client: redis.Redis, api_key: IssuedKey) -> list[bytes]:
    namespace = api_key.record.effective_namespace
    prefix = settings.CACHES["default"]["KEY_PREFIX"]
    return list(redis_client.scan_iter(match=f"{prefix}:mask:{{{namespace}}}:*", count=1000))


def _assert_refused_and_nothing_placed(
    response: httpx.Response,
    status: int,
    upstream: FakeAnthropic,
    redis_client: redis.Redis,
    api_key: IssuedKey,
) -> None:
    assert response.status_code == status, response.text[:300]
    assert upstream.requests == []
    assert _mappings(redis_client, api_key) == []


@pytest.mark.slow
def test_a_request_with_more_distinct_values_than_allowed_places_none_of_them(
    http: httpx.Client, api_key: IssuedKey, upstream: FakeAnthropic, redis_client: redis.Redis
) -> None:
    with override_settings(PROXY_MAX_VALUES_PER_REQUEST=1_000):
        text = " ".join(_instance(n) for n in range(1_001))
        response = http.post(
            "/v1/messages",
            json=_body([{"role": "user", "content": text}]),
            headers={"x-api-key": api_key.key},
        )
        # The audit writer reads settings: let it finish before they change back.
        audit.flush_audit(timeout=10)
    _assert_refused_and_nothing_placed(response, 413, upstream, redis_client, api_key)
    assert "PROXY_MAX_VALUES_PER_REQUEST" in response.json()["error"]["message"]


@pytest.mark.slow
def test_the_pen_tests_600000_values_are_refused_with_the_default_limit(
    http: httpx.Client, api_key: IssuedKey, upstream: FakeAnthropic, redis_client: redis.Redis
) -> None:
    text = " ".join(_instance(n) for n in range(600_000))  # 12 MB
    response = http.post(
        "/v1/messages",
        json=_body([{"role": "user", "content": text}]),
        headers={"x-api-key": api_key.key},
    )
    _assert_refused_and_nothing_placed(response, 413, upstream, redis_client, api_key)


@pytest.mark.slow
def test_the_pen_tests_300000_tiny_blocks_are_refused_before_any_scan(
    http: httpx.Client, api_key: IssuedKey, upstream: FakeAnthropic, redis_client: redis.Redis
) -> None:
    blocks = [{"type": "text", "text": "x"}] * 300_000
    blocks[-1] = {"type": "text", "text": _instance(1)}
    response = http.post(
        "/v1/messages",
        json=_body([{"role": "user", "content": blocks}]),
        headers={"x-api-key": api_key.key},
    )
    _assert_refused_and_nothing_placed(response, 413, upstream, redis_client, api_key)
    assert "PROXY_MAX_CONTENT_BLOCKS" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("limit", "body"),
    [
        (
            {"PROXY_MAX_MESSAGES": 3},
            _body([{"role": "user", "content": _instance(n)} for n in range(4)]),
        ),
        (
            {"PROXY_MAX_CONTENT_BLOCKS": 3},
            _body(
                [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "tool_result",
                                "tool_use_id": "t",
                                "content": [{"type": "text", "text": _instance(n)}],
                            }
                            for n in range(2)
                        ],
                    }
                ]
            ),
        ),
        (
            {"PROXY_MAX_STRINGS": 100},
            _body(
                [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "tool_result",
                                "tool_use_id": "t",
                                "content": _instance(1),
                            },
                        ],
                    },
                    {
                        "role": "assistant",
                        "content": [
                            {
                                "type": "tool_use",
                                "id": "t",
                                "name": "n",
                                "input": {"xs": ["x"] * 100},
                            }
                        ],
                    },
                ]
            ),
        ),
    ],
    ids=["messages", "content-blocks", "strings"],
)
def test_requests_over_a_size_limit_get_413_and_place_nothing(
    http: httpx.Client,
    api_key: IssuedKey,
    upstream: FakeAnthropic,
    redis_client: redis.Redis,
    limit: dict[str, int],
    body: dict[str, Any],
) -> None:
    with override_settings(**limit):
        response = http.post("/v1/messages", json=body, headers={"x-api-key": api_key.key})
        audit.flush_audit(timeout=10)  # the audit writer reads settings
    _assert_refused_and_nothing_placed(response, 413, upstream, redis_client, api_key)
    assert response.json()["error"]["type"] == "request_too_large"
    assert next(iter(limit)) in response.json()["error"]["message"]


def test_a_request_refused_for_an_unmaskable_value_places_none_of_its_values(
    http: httpx.Client, api_key: IssuedKey, upstream: FakeAnthropic, redis_client: redis.Redis
) -> None:
    body = _body(
        [{"role": "user", "content": f"about {_instance(7)}"}],
        tool_choice={"type": "tool", "name": _instance(8)},
    )
    response = http.post("/v1/messages", json=body, headers={"x-api-key": api_key.key})
    _assert_refused_and_nothing_placed(response, 400, upstream, redis_client, api_key)


@pytest.mark.redis
def test_values_are_placed_in_chunks_each_a_short_script(private_redis: PrivateRedis) -> None:
    values = [Allocation(_instance(n), "AWS_EC2", "ec2") for n in range(5 * ALLOCATION_CHUNK)]
    with private_redis.client() as client:
        store = MappingStore(client, cipher_from_settings(), ttl=60, key_prefix="chunks")
        store.allocate("ns-chunks", values[:1])  # Redis now knows the script
        client.config_resetstat()
        placed = store.allocate("ns-chunks", values)
        calls = client.info("commandstats")
        scripts = sum(
            stats["calls"]
            for name, stats in calls.items()
            if name in ("cmdstat_evalsha", "cmdstat_eval")
        )
    assert len(set(placed.values())) == len(values)
    assert scripts == 5


def test_rate_and_stream_limits_are_on_by_default() -> None:
    assert production_settings.PROXY_DEFAULT_RATE_LIMIT_PER_MINUTE == 600
    assert production_settings.PROXY_DEFAULT_MAX_CONCURRENT_STREAMS == 20


@pytest.mark.parametrize(("own", "limited"), [(None, True), (0, False), (10, False)])
def test_a_key_without_a_limit_of_its_own_gets_the_servers_default(
    http: httpx.Client, api_key: IssuedKey, upstream: FakeAnthropic, own: int | None, limited: bool
) -> None:
    ApiKey.objects.filter(pk=api_key.record.pk).update(rate_limit_per_minute=own)
    body = _body([{"role": "user", "content": "hi"}])
    wait_for_a_fresh_minute()
    with override_settings(PROXY_DEFAULT_RATE_LIMIT_PER_MINUTE=2):
        statuses = [
            http.post("/v1/messages", json=body, headers={"x-api-key": api_key.key}).status_code
            for _ in range(3)
        ]
    assert statuses == ([200, 200, 429] if limited else [200, 200, 200])


def test_a_key_past_its_cpu_share_waits_for_the_next_minute_and_others_do_not(
    http: httpx.Client, api_key: IssuedKey, upstream: FakeAnthropic
) -> None:
    other = generate_key()
    ApiKey.objects.create(name="other", prefix=other.prefix, key_hash=other.digest)
    large = _body([{"role": "user", "content": " ".join(_instance(n) for n in range(5_000))}])
    small = _body([{"role": "user", "content": "hi"}])
    wait_for_a_fresh_minute()
    with override_settings(PROXY_KEY_CPU_SECONDS_PER_MINUTE=0.001):
        first = http.post("/v1/messages", json=large, headers={"x-api-key": api_key.key})
        second = http.post("/v1/messages", json=small, headers={"x-api-key": api_key.key})
        others = http.post("/v1/messages", json=large, headers={"x-api-key": other.key})
    assert first.status_code == 200, first.text[:300]
    assert second.status_code == 429
    assert "PROXY_KEY_CPU_SECONDS_PER_MINUTE" in second.json()["error"]["message"]
    assert 0 < int(second.headers["retry-after"]) <= 60
    assert others.status_code == 200


def test_the_cpu_share_is_on_by_default() -> None:
    assert production_settings.PROXY_KEY_CPU_SECONDS_PER_MINUTE == 20
