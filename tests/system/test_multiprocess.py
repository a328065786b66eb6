"""Several proxy processes sharing one Redis and one database: one placeholder per value.

Three single-worker uvicorn processes (separate ports, so each request's process is chosen
by the test) run on one migrated SQLite database and the test Redis under a fresh key
prefix, in front of the fake Anthropic server. Many clients send overlapping random subsets
of one pool of generated values, spread at random over the processes; what the upstream
received then shows whether allocation stayed atomic and one-to-one across processes.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from django.conf import settings

from patterns.store import MappingStore, ValueCipher
from tests.support.constants import PROCESS_MASKING_KEY
from tests.support.fakes.anthropic_upstream import FakeAnthropic
from tests.support.redis_dump import dump_keys
from tests.support.sites import ProxyProcess, Site, prepare_site, running_proxies
from tests.support.traffic import (
    PLACEHOLDER_PREFIXES,
    PLACEHOLDER_RE,
    Reply,
    ValueFactory,
    bracketed,
    echo_of,
    forwarded_texts,
    kind_of,
    post_message,
    run_clients,
    tagged_text,
)

pytestmark = [pytest.mark.slow, pytest.mark.redis]

PROCESSES = 3
CLIENTS = 16
REQUESTS_PER_CLIENT = 25
VALUES_PER_KIND = 15  # four kinds: 60 values
STREAM_SHARE = 0.25
LOAD_NAMESPACE = "shared-load"
# Two fresh namespaces, so that both runs of the conversation number from 001.
SPREAD_NAMESPACE = "conversation-spread"
SINGLE_NAMESPACE = "conversation-single"
# Namespace memory: what one learns with context, another never learned.
LEARNING_NAMESPACE = "learns"
STRANGER_NAMESPACE = "never-learned"


@dataclass(frozen=True)
class Cluster:
    site: Site
    proxies: list[ProxyProcess]
    keys: dict[str, str]  # namespace -> proxy API key
    upstream: FakeAnthropic
    redis_key_prefix: str


@pytest.fixture(scope="module")
def cluster(
    site_directory: Path,
    fake_anthropic: FakeAnthropic,
    redis_client: redis.Redis,
) -> Iterator[Cluster]:
    # Under the run's own prefix: the shared Redis is never flushed, only these keys go.
    prefix = f"{settings.CACHES['default']['KEY_PREFIX']}:multiprocess-{uuid.uuid4().hex[:8]}"
    site = prepare_site(
        site_directory,
        redis_url=str(settings.CACHES["default"]["LOCATION"]),
        redis_key_prefix=prefix,
        upstream_url=fake_anthropic.base_url,
    )
    namespaces = (
        LOAD_NAMESPACE,
        SPREAD_NAMESPACE,
        SINGLE_NAMESPACE,
        LEARNING_NAMESPACE,
        STRANGER_NAMESPACE,
    )
    keys = {namespace: site.create_api_key(namespace, namespace) for namespace in namespaces}
    try:
        with running_proxies(site, PROCESSES) as proxies:
            yield Cluster(site, proxies, keys, fake_anthropic, prefix)
    finally:
        for key in redis_client.scan_iter(match=f"{prefix}:*", count=1000):
            redis_client.delete(key)


@dataclass(frozen=True)
class Job:
    tag: str
    values: tuple[str, ...]
    process: int
    stream: bool

    @property
    def text(self) -> str:
        return tagged_text(self.tag, self.values)


def _jobs(pool: list[str], rng: random.Random) -> list[Job]:
    return [
        Job(
            tag=f"client {client:02d} request {number:02d}",
            values=tuple(rng.sample(pool, rng.randint(3, 8))),
            process=rng.randrange(PROCESSES),
            stream=rng.random() < STREAM_SHARE,
        )
        for client in range(CLIENTS)
        for number in range(REQUESTS_PER_CLIENT)
    ]


def _number(placeholder: str) -> int:
    return int(placeholder.rsplit("_", 1)[1])


def test_concurrent_clients_across_processes_get_one_placeholder_per_value(
    cluster: Cluster, redis_client: redis.Redis
) -> None:
    cluster.upstream.clear()
    factory = ValueFactory(seed=60)
    pool = [make() for make in factory.kinds().values() for _ in range(VALUES_PER_KIND)]
    jobs = _jobs(pool, random.Random(16))
    key = cluster.keys[LOAD_NAMESPACE]

    def send(client: httpx.Client, job: Job) -> Reply:
        url = cluster.proxies[job.process].url
        messages = [{"role": "user", "content": job.text}]
        return post_message(client, url, key, messages, stream=job.stream)

    began = time.monotonic()
    replies = run_clients(jobs, send, clients=CLIENTS)
    elapsed = time.monotonic() - began

    for job, reply in zip(jobs, replies, strict=True):
        assert reply.status == 200, reply.raw
        assert reply.text == echo_of(job.text)  # exactly its own values, restored
    mapping, numbers = _assert_one_placeholder_per_value_numbered_without_gaps(cluster, jobs)
    upstream_bodies = cluster.upstream.raw_bodies().decode("utf-8", "replace")
    assert [value for value in pool if value in upstream_bodies] == []
    used = {value for job in jobs for value in job.values}
    _assert_redis_and_logs_hold_no_original(cluster, redis_client, mapping, used, pool)
    # Every process wrote its audit rows to the one database.
    rows = cluster.site.wait_for_audit(len(jobs))
    assert Counter(row["status"] for row in rows) == {200: len(jobs)}

    per_process = Counter(job.process for job in jobs)
    print(
        f"\n[multiprocess] {len(jobs)} requests ({sum(j.stream for j in jobs)} streamed) from "
        f"{CLIENTS} clients over {PROCESSES} processes "
        f"({', '.join(str(per_process[n]) for n in range(PROCESSES))}) in {elapsed:.1f} s; "
        f"{len(used)} distinct values, {len(mapping)} placeholders "
        f"({', '.join(f'{p} {len(n)}' for p, n in sorted(numbers.items()))}); "
        f"{sum(len(j.values) for j in jobs)} values masked, all restored; {len(rows)} audit rows"
    )


def _assert_one_placeholder_per_value_numbered_without_gaps(
    cluster: Cluster, jobs: list[Job]
) -> tuple[dict[str, str], dict[str, list[int]]]:
    """What the upstream received: each value always the same placeholder, never shared, of
    its kind's prefix, each prefix numbered 1..n. The mapping, and the numbers by prefix."""
    forwarded = forwarded_texts(cluster.upstream)
    assert len(cluster.upstream.requests) == len(jobs)
    placeholders_of: defaultdict[str, set[str]] = defaultdict(set)
    values_of: defaultdict[str, set[str]] = defaultdict(set)
    for job in jobs:
        (masked,) = forwarded[job.tag]
        for value, placeholder in zip(job.values, bracketed(masked), strict=True):
            placeholders_of[value].add(placeholder)
            values_of[placeholder].add(value)

    used = {value for job in jobs for value in job.values}
    assert set(placeholders_of) == used
    assert {v: p for v, p in placeholders_of.items() if len(p) > 1} == {}  # always the same
    assert {p: v for p, v in values_of.items() if len(v) > 1} == {}  # never shared
    mapping = {placeholder: value for placeholder, (value,) in values_of.items()}
    numbers: defaultdict[str, list[int]] = defaultdict(list)
    for placeholder, value in mapping.items():
        match = PLACEHOLDER_RE.match(placeholder)
        assert match is not None, placeholder
        assert match["prefix"] == PLACEHOLDER_PREFIXES[kind_of(value)]
        numbers[match["prefix"]].append(_number(placeholder))
    # Atomic allocation numbers each prefix 1..n with no gap and no repeat.
    for prefix, issued in numbers.items():
        assert sorted(issued) == list(range(1, len(issued) + 1)), prefix
    return mapping, numbers


def _assert_redis_and_logs_hold_no_original(
    cluster: Cluster,
    redis_client: redis.Redis,
    mapping: dict[str, str],
    used: set[str],
    pool: list[str],
) -> None:
    """Redis holds exactly these mappings, and no original in plaintext; nor do the logs."""
    store = MappingStore(
        redis_client,
        ValueCipher(PROCESS_MASKING_KEY.encode()),
        ttl=3600,
        key_prefix=cluster.redis_key_prefix,
    )
    assert store.restore(LOAD_NAMESPACE, mapping) == mapping
    assert sum(store.counts(LOAD_NAMESPACE).values()) == len(used)
    keys = redis_client.scan_iter(match=f"{cluster.redis_key_prefix}:*", count=1000)
    redis_dump = dump_keys(redis_client, keys).decode("latin-1")
    assert [value for value in pool if value in redis_dump] == []
    logs = "\n".join(proxy.output() for proxy in cluster.proxies)
    assert [value for value in pool if value in logs] == []


# Which of the conversation's values each user turn mentions: some new, some repeated.
TURNS = ((0, 1), (0, 2), (3, 1, 4), (0, 3, 5), (6, 2, 4, 5, 1))


def _converse(
    cluster: Cluster, namespace: str, values: list[str], route: Callable[[int], int]
) -> list[list[Any]]:
    """Hold the conversation, turn n on process route(n); the messages the upstream got."""
    history: list[dict[str, Any]] = []
    received: list[list[Any]] = []
    with httpx.Client(timeout=60.0) as client:
        for turn, indexes in enumerate(TURNS):
            text = tagged_text(f"turn {turn}", [values[i] for i in indexes])
            history.append({"role": "user", "content": text})
            before = len(cluster.upstream.requests)
            url = cluster.proxies[route(turn)].url
            reply = post_message(client, url, cluster.keys[namespace], list(history))
            assert reply.status == 200, reply.raw
            assert reply.text == echo_of(text)
            (request,) = cluster.upstream.requests[before:]
            assert request.json is not None
            received.append(request.json["messages"])
            history.append({"role": "assistant", "content": reply.text})
    return received


def test_conversation_over_several_processes_gets_the_placeholders_of_one_process(
    cluster: Cluster,
) -> None:
    cluster.upstream.clear()
    values = ValueFactory(seed=7).mixed(7)
    spread = _converse(cluster, SPREAD_NAMESPACE, values, lambda turn: turn % PROCESSES)
    single = _converse(cluster, SINGLE_NAMESPACE, values, lambda turn: 0)

    assert spread == single
    bodies = cluster.upstream.raw_bodies().decode("utf-8", "replace")
    assert [value for value in values if value in bodies] == []
    # Across turns (and so across processes) a value keeps its placeholder.
    seen: dict[str, str] = {}
    for turn, messages in zip(TURNS, spread, strict=True):
        last = messages[-1]["content"]
        text = last if isinstance(last, str) else "".join(block["text"] for block in last)
        for index, placeholder in zip(turn, bracketed(text), strict=True):
            assert seen.setdefault(values[index], placeholder) == placeholder
    assert len(set(seen.values())) == len(values)
    print(
        f"\n[conversation] {len(TURNS)} turns on processes "
        f"{[turn % PROCESSES for turn in range(len(TURNS))]} and on process 0 alone: identical "
        f"upstream messages; {len(values)} values -> {sorted(seen.values())}"
    )


def test_a_value_learned_by_one_process_is_masked_bare_by_another_from_its_next_request(
    cluster: Cluster,
) -> None:
    cluster.upstream.clear()
    bucket, account = "acme-billing-exports-7", "210987654321"
    with_context = f'{{"Bucket": "{bucket}", "Owner": {{"Account": "{account}"}}}}'
    bare = f"now delete {bucket} and revoke {account}:deployer"
    with httpx.Client(timeout=60.0) as client:

        def say(process: int, namespace: str, text: str) -> str:
            before = len(cluster.upstream.requests)
            messages = [{"role": "user", "content": text}]
            reply = post_message(
                client, cluster.proxies[process].url, cluster.keys[namespace], messages
            )
            assert reply.status == 200, reply.raw
            assert reply.text == echo_of(text)
            (request,) = cluster.upstream.requests[before:]
            return json.dumps(request.json)

        # Process 1 serves the namespace first (unlearned, a bare name is sent as it is), so
        # its copy of the namespace exists before process 0 learns.
        assert bucket in say(1, LEARNING_NAMESPACE, f"is {bucket} still there?")
        sent = say(0, LEARNING_NAMESPACE, with_context)
        assert bucket not in sent and account not in sent
        for process in (1, 2):
            sent = say(process, LEARNING_NAMESPACE, bare)
            assert bucket not in sent and account not in sent, process
        assert bucket in say(1, STRANGER_NAMESPACE, f"now delete {bucket}")
