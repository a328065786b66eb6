"""Namespace memory against a real Redis: what an allocation learns is listed once, sealed,
read by every process from where it stopped, bounded, and learned again after it expired."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
import redis
from django.conf import settings

from patterns.engine import Snapshot, build_snapshot
from patterns.library import DEFAULT_PATTERNS
from patterns.memory import NamespaceMemory
from patterns.occurrences import KnownValues
from patterns.store import (
    Allocation,
    AsyncMappingStore,
    MappingStore,
    build_async_store,
    cipher_from_settings,
)
from tests.support.redis_dump import dump_keys

pytestmark = pytest.mark.redis
T = TypeVar("T")

BUCKET = Allocation("acme-prod-logs-2025", "AWS_S3", "aws_s3_bucket_in_context", learn=True)
ACCOUNT = Allocation("123456789012", "AWS_ACCOUNT", "aws_account_id", learn=True)
NOT_LEARNED = Allocation("i-0123456789abcdef0", "AWS_EC2", "aws_ec2_instance_id")


@pytest.fixture(scope="module")
def library() -> Snapshot:
    return build_snapshot([entry.to_spec() for entry in DEFAULT_PATTERNS])


def _learned_key(namespace: str) -> str:
    return f"{settings.CACHES['default']['KEY_PREFIX']}:mask:{{{namespace}}}:learned"


def _with_store(job: Callable[[AsyncMappingStore], Awaitable[T]]) -> T:
    async def run() -> T:
        store = build_async_store()
        try:
            return await job(store)
        finally:
            await store.aclose()

    return asyncio.run(run())


def _known(memory: NamespaceMemory, namespace: str, snapshot: Snapshot) -> KnownValues:
    return _with_store(lambda store: memory.known(store, namespace, snapshot))


def test_an_allocation_lists_what_it_learns_once_and_readers_read_from_where_they_stopped(
    store: MappingStore, namespace: str
) -> None:
    store.allocate(namespace, [BUCKET, NOT_LEARNED])
    store.allocate(namespace, [BUCKET, ACCOUNT])  # the bucket again: not listed twice

    async def read(async_store: AsyncMappingStore) -> list[list[str]]:
        first = await async_store.learned_since(namespace, "", 1)
        values = [v.value for v in async_store.open_learned(namespace, first.records)]
        nothing_new = await async_store.learned_since(namespace, first.token, 1 + len(values))
        again = await async_store.learned_since(namespace, first.token, 2)
        other = await async_store.learned_since(namespace + "-other", "", 1)
        assert first.token and other.token == "" and not other.records
        return [
            values,
            [v.value for v in async_store.open_learned(namespace, nothing_new.records)],
            [v.value for v in async_store.open_learned(namespace, again.records)],
        ]

    assert _with_store(read) == [[BUCKET.value, ACCOUNT.value], [], [ACCOUNT.value]]


def test_redis_holds_what_was_learned_sealed(
    store: MappingStore, redis_client: redis.Redis, namespace: str
) -> None:
    store.allocate(namespace, [BUCKET, ACCOUNT])
    dump = dump_keys(redis_client, list(redis_client.scan_iter(match=f"*{namespace}*")))
    assert redis_client.llen(_learned_key(namespace)) == 3  # the token, two records
    for item in (BUCKET, ACCOUNT):
        assert item.value.encode() not in dump


def test_a_namespace_learns_at_most_its_limit_and_still_masks_the_rest(
    redis_client: redis.Redis, namespace: str
) -> None:
    small = MappingStore(
        redis_client,
        cipher_from_settings(),
        ttl=60,
        key_prefix=settings.CACHES["default"]["KEY_PREFIX"],
        learned_max=3,
    )
    items = [
        Allocation(f"bucket-{n:04d}-logs", "AWS_S3", "aws_s3_bucket_in_context", learn=True)
        for n in range(5)
    ]
    placeholders = small.allocate(namespace, items)
    assert len(set(placeholders.values())) == 5
    assert redis_client.llen(_learned_key(namespace)) == 1 + 3


def test_an_expired_list_starts_again_and_readers_read_it_whole(
    store: MappingStore, redis_client: redis.Redis, namespace: str, library: Snapshot
) -> None:
    memory = NamespaceMemory(capacity=1000)
    store.allocate(namespace, [BUCKET])
    assert BUCKET.value in _known(memory, namespace, library)
    redis_client.delete(_learned_key(namespace))  # as if it expired
    store.allocate(namespace, [ACCOUNT, BUCKET])  # the bucket's mapping lived on
    known = _known(memory, namespace, library)
    assert ACCOUNT.value in known and BUCKET.value in known
    assert len(known) == 2


def test_a_process_copy_follows_what_other_processes_learn(
    store: MappingStore, namespace: str, library: Snapshot
) -> None:
    worker_a, worker_b = NamespaceMemory(capacity=1000), NamespaceMemory(capacity=1000)
    assert len(_known(worker_b, namespace, library)) == 0
    store.allocate(namespace, [BUCKET])  # worker A's request learned it
    assert BUCKET.value in _known(worker_a, namespace, library)
    known = _known(worker_b, namespace, library)
    assert BUCKET.value in known
    assert _known(worker_b, namespace, library) is known  # nothing new: the same copy
    assert BUCKET.value not in _known(worker_b, namespace + "-other", library)


def test_a_process_holds_at_most_its_capacity_dropping_the_least_recent_namespace(
    store: MappingStore, namespace: str, library: Snapshot
) -> None:
    memory = NamespaceMemory(capacity=3)
    for suffix in ("a", "b", "c"):
        store.allocate(
            f"{namespace}-{suffix}",
            [
                Allocation(
                    f"{suffix}-bucket-{n}-logs", "AWS_S3", "aws_s3_bucket_in_context", learn=True
                )
                for n in (1, 2)
            ],
        )
    for suffix in ("a", "b", "c"):
        assert len(_known(memory, f"{namespace}-{suffix}", library)) == 2
        assert memory.values_held() <= 3
    # Dropped, then read whole again when its namespace returns.
    assert "a-bucket-1-logs" in _known(memory, f"{namespace}-a", library)


def test_nothing_is_learned_or_read_with_learning_off(
    store: MappingStore, namespace: str, library: Snapshot
) -> None:
    store.allocate(namespace, [BUCKET])
    assert len(_known(NamespaceMemory(capacity=0), namespace, library)) == 0


def test_concurrent_requests_of_a_namespace_read_for_the_first_time_share_one_copy(
    store: MappingStore, namespace: str, library: Snapshot
) -> None:
    items = [
        Allocation(f"acme-{n:05d}-exports", "AWS_S3", "aws_s3_bucket_in_context", learn=True)
        for n in range(3000)
    ]
    store.allocate(namespace, items)
    memory = NamespaceMemory(capacity=10_000)

    async def many(async_store: AsyncMappingStore) -> list[KnownValues]:
        calls = [memory.known(async_store, namespace, library) for _ in range(20)]
        return list(await asyncio.gather(*calls))

    copies = _with_store(many)
    assert {len(known) for known in copies} == {3000}
    assert memory.values_held() == 3000
    text = "restore acme-02999-exports from acme-00000-exports"
    assert [f.value for f in copies[-1].find((text,))[0]] == [
        "acme-02999-exports",
        "acme-00000-exports",
    ]


def test_values_learned_from_a_rule_since_disabled_or_since_allowed_are_no_longer_masked(
    store: MappingStore, namespace: str, library: Snapshot
) -> None:
    memory = NamespaceMemory(capacity=1000)
    store.allocate(namespace, [BUCKET, ACCOUNT])
    assert len(_known(memory, namespace, library)) == 2
    specs = [entry.to_spec() for entry in DEFAULT_PATTERNS]
    without_buckets = build_snapshot(
        [spec for spec in specs if spec.name != BUCKET.pattern], version="no-buckets"
    )
    assert BUCKET.value not in _known(memory, namespace, without_buckets)
    allowing = build_snapshot(specs, allowed=[ACCOUNT.value], version="allowing")
    known = _known(memory, namespace, allowing)
    assert BUCKET.value in known and ACCOUNT.value not in known
