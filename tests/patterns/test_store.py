"""The mapping store against a real Redis: allocation, TTLs, encryption at rest, failures."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import random
from typing import Any, cast

import pytest
import redis
import redis.asyncio
from django.conf import settings

from patterns.store import (
    ALLOCATION_CHUNK,
    Allocation,
    AsyncMappingStore,
    ControlStoreUnavailable,
    MappingStore,
    MappingStoreUnavailable,
    ValueCipher,
    build_async_store,
    cipher_from_settings,
)
from tests.support.redis_dump import dump_keys

VALUES = [
    Allocation("i-0123456789abcdef0", "AWS_EC2", "ec2_instance"),
    Allocation("i-abcdef1234567890a", "AWS_EC2", "ec2_instance"),
    Allocation("vpc-12345678", "AWS_VPC", "vpc"),
    Allocation("AKIA1234567890ABCDEF", "AWS_ACCESS_KEY", "access_key"),
]


class CountingRedis(redis.Redis):
    """A client that records the commands it sends: one per round trip here."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands: list[str] = []

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.commands.append(str(args[0]))
        return super().execute_command(*args, **options)


def _namespace_keys(client: redis.Redis, namespace: str) -> list[bytes]:
    prefix = settings.CACHES["default"]["KEY_PREFIX"]
    return list(client.scan_iter(match=f"{prefix}:mask:{{{namespace}}}:*"))


def test_values_get_numbered_placeholders_per_prefix(store: MappingStore, namespace: str) -> None:
    placeholders = store.allocate(namespace, VALUES)
    assert placeholders == {
        "i-0123456789abcdef0": "AWS_EC2_001",
        "i-abcdef1234567890a": "AWS_EC2_002",
        "vpc-12345678": "AWS_VPC_001",
        "AKIA1234567890ABCDEF": "AWS_ACCESS_KEY_001",
    }


def test_same_value_gets_the_same_placeholder_in_a_later_call(
    store: MappingStore, namespace: str
) -> None:
    first = store.allocate(namespace, VALUES)
    second = store.allocate(namespace, list(reversed(VALUES)))
    assert first == second


def test_namespaces_number_independently(store: MappingStore, namespace: str) -> None:
    store.allocate(namespace, VALUES[1:2])
    assert store.allocate(namespace + "-b", VALUES[:1]) == {"i-0123456789abcdef0": "AWS_EC2_001"}


def test_allocation_is_one_round_trip_a_chunk_of_values(
    redis_client: redis.Redis, namespace: str
) -> None:
    client = cast(CountingRedis, CountingRedis.from_url(settings.CACHES["default"]["LOCATION"]))
    store = MappingStore(
        client,
        cipher_from_settings(),
        ttl=60,
        key_prefix=settings.CACHES["default"]["KEY_PREFIX"],
    )
    store.allocate(namespace, VALUES[:1])  # loads the script once
    for count in (1, 100, ALLOCATION_CHUNK, ALLOCATION_CHUNK + 1, 4 * ALLOCATION_CHUNK):
        client.commands.clear()
        items = [Allocation(f"i-{n:08x}", "AWS_EC2", "ec2") for n in range(count)]
        store.allocate(namespace, items)
        assert client.commands == ["EVALSHA"] * -(-count // ALLOCATION_CHUNK)
    client.close()


def test_every_key_has_a_ttl_refreshed_on_use(
    store: MappingStore, redis_client: redis.Redis, namespace: str
) -> None:
    store.allocate(namespace, VALUES)
    keys = _namespace_keys(redis_client, namespace)
    assert len(keys) == 4 * 2 + 3 + 1  # value and reverse keys, 3 counters, counts hash
    for key in keys:
        redis_client.expire(key, 5)
    store.allocate(namespace, VALUES)
    ttls = [redis_client.ttl(key) for key in keys]
    assert all(ttl > settings.MAPPING_TTL_SECONDS - 10 for ttl in ttls), ttls


def test_redis_holds_no_original_value(
    store: MappingStore, redis_client: redis.Redis, namespace: str
) -> None:
    store.allocate(namespace, VALUES)
    dump = dump_keys(redis_client, _namespace_keys(redis_client, namespace))
    for item in VALUES:
        assert item.value.encode() not in dump
        assert item.value.lower().encode() not in dump.lower()


def test_restore_returns_only_what_this_namespace_issued(
    store: MappingStore, namespace: str
) -> None:
    placeholders = store.allocate(namespace, VALUES)
    restored = store.restore(namespace, [*placeholders.values(), "AWS_EC2_999"])
    assert restored == {p: v for v, p in placeholders.items()}
    assert store.restore(namespace + "-other", placeholders.values()) == {}


def test_a_ciphertext_moved_to_another_namespace_fails_authentication(
    store: MappingStore, redis_client: redis.Redis, namespace: str
) -> None:
    store.allocate(namespace, VALUES[:1])
    store.allocate(namespace + "-b", VALUES[1:2])
    prefix = settings.CACHES["default"]["KEY_PREFIX"]
    stolen = redis_client.get(f"{prefix}:mask:{{{namespace}}}:p:AWS_EC2_001")
    assert stolen is not None
    redis_client.set(f"{prefix}:mask:{{{namespace}-b}}:p:AWS_EC2_001", stolen)
    with pytest.raises(ValueError, match="failed authentication"):
        store.restore(namespace + "-b", ["AWS_EC2_001"])


def test_a_lost_counter_never_reuses_a_live_placeholder(
    store: MappingStore, redis_client: redis.Redis, namespace: str
) -> None:
    store.allocate(namespace, VALUES[:2])
    prefix = settings.CACHES["default"]["KEY_PREFIX"]
    redis_client.delete(f"{prefix}:mask:{{{namespace}}}:seq:AWS_EC2")
    new = store.allocate(namespace, [Allocation("i-99999999", "AWS_EC2", "ec2_instance")])
    assert new == {"i-99999999": "AWS_EC2_003"}


def test_counts_per_pattern(store: MappingStore, namespace: str) -> None:
    store.allocate(namespace, VALUES)
    store.allocate(namespace, VALUES)
    assert store.counts(namespace) == {"ec2_instance": 2, "vpc": 1, "access_key": 1}


def test_bad_namespace_is_refused(store: MappingStore) -> None:
    with pytest.raises(ValueError, match="namespace"):
        store.allocate("bad namespace}", VALUES)


def test_unreachable_redis_raises_a_specific_error_without_values(
    closed_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    client = redis.Redis(port=closed_port, socket_connect_timeout=0.5, socket_timeout=0.5)
    store = MappingStore(client, cipher_from_settings(), ttl=60, key_prefix="unused")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(MappingStoreUnavailable) as raised:
        store.allocate("ns", VALUES)
    with pytest.raises(MappingStoreUnavailable):
        store.restore("ns", ["AWS_EC2_001"])
    for item in VALUES:
        assert item.value not in str(raised.value)
        assert item.value not in caplog.text


def test_each_store_names_itself_when_redis_fails(
    closed_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    # The mapping store and the control store share connections but not their errors: the
    # log and the caller learn which of them failed.
    client = redis.Redis(port=closed_port, socket_connect_timeout=0.5, socket_timeout=0.5)
    store = MappingStore(client, cipher_from_settings(), ttl=60, key_prefix="unused")
    with pytest.raises(MappingStoreUnavailable):
        store.counts("ns")
    assert "mapping store unavailable: ConnectionError" in caplog.text
    caplog.clear()
    with pytest.raises(ControlStoreUnavailable):
        store.control.rules_version()
    with pytest.raises(ControlStoreUnavailable):
        store.control.bump_keys_version()
    assert "control store (key limits, version tokens) unavailable" in caplog.text
    assert "mapping store" not in caplog.text


def test_the_async_control_store_fails_closed_on_its_own_error(closed_port: int) -> None:
    async def failures() -> list[str]:
        client = redis.asyncio.Redis(port=closed_port, socket_connect_timeout=0.5)
        control = AsyncMappingStore(
            client, cipher_from_settings(), ttl=60, key_prefix="unused"
        ).control
        calls = [
            control.versions(),
            control.key_usage("mpk-abc", now=0.0),
            control.acquire_stream("mpk-abc", "req-1", limit=2, now=0.0, max_age=60.0),
            control.charge_cpu("mpk-abc", 1.0, now=0.0),
        ]
        failed = []
        for call in calls:
            try:
                await call
            except ControlStoreUnavailable as exc:
                failed.append(str(exc))
        await client.aclose()
        return failed

    assert asyncio.run(failures()) == ["The control store (Redis) is unavailable."] * 4


def test_async_store_shares_placeholders_with_the_sync_store(
    store: MappingStore, namespace: str
) -> None:
    expected = store.allocate(namespace, VALUES[:2])

    async def run() -> tuple[dict[str, str], dict[str, str]]:
        async_store = build_async_store()
        try:
            placeholders = await async_store.allocate(namespace, VALUES)
            restored = await async_store.restore(namespace, placeholders.values())
        finally:
            await async_store.aclose()
        return placeholders, restored

    placeholders, restored = asyncio.run(run())
    assert placeholders.items() >= expected.items()
    assert restored == {p: v for v, p in placeholders.items()}


def _allocate_in_process(args: tuple[str, str, str, int]) -> dict[str, str]:
    url, key_prefix, namespace, seed = args
    store = MappingStore(
        redis.Redis.from_url(url),
        ValueCipher(b"concurrency-test-secret"),
        ttl=60,
        key_prefix=key_prefix,
    )
    rng = random.Random(seed)
    values = [f"i-{n:08x}" for n in range(300)]
    rng.shuffle(values)
    result: dict[str, str] = {}
    for start in range(0, len(values), 7):
        batch = [Allocation(v, "AWS_EC2", "ec2") for v in values[start : start + 7]]
        result.update(store.allocate(namespace, batch))
    return result


def test_concurrent_processes_never_share_or_split_a_placeholder(namespace: str) -> None:
    url = settings.CACHES["default"]["LOCATION"]
    prefix = settings.CACHES["default"]["KEY_PREFIX"]
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        results = pool.map(_allocate_in_process, [(url, prefix, namespace, s) for s in range(4)])
    first = results[0]
    assert len(first) == 300
    for other in results[1:]:
        assert other == first  # one value, one placeholder, in every process
    assert len(set(first.values())) == 300  # one placeholder, one value
    assert sorted(first.values()) == [f"AWS_EC2_{n:03d}" for n in range(1, 301)]
