"""A Sentinel-managed Redis fails over under load: the proxy fails closed meanwhile, follows
the new master by itself, and keeps every mapping the replica had.

Real processes: a private master and its replica (redis-server --replicaof), three sentinels
(redis-server <conf> --sentinel, quorum 2, down after 1 s), one uvicorn proxy pointed at the
sentinels (REDIS_SENTINELS) and the fake Anthropic server over HTTP. The master is killed
(SIGKILL) while eight clients send requests. The mappings are then read back from the new
master, through the proxy and directly, and compared with what the upstream received.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis
import redis.asyncio

from patterns.store import (
    Allocation,
    AsyncMappingStore,
    MappingStore,
    MappingStoreUnavailable,
    ValueCipher,
)
from proxy.errors import MaskingUnavailable
from tests.support.constants import HOST, PROCESS_MASKING_KEY
from tests.support.fakes.anthropic_upstream import FakeAnthropic
from tests.support.processes import REDIS_NEEDED, PrivateRedis, PrivateSentinel
from tests.support.sites import ProxyProcess, Site, prepare_site, running_proxies
from tests.support.traffic import (
    Job,
    Reply,
    ValueFactory,
    bracketed,
    echo_of,
    forwarded_texts,
    post_message,
)

pytestmark = pytest.mark.slow

SERVICE = "maskproxy-failover"
NAMESPACE = "failover"
KEY_PREFIX = "sentinel"
SOCKET_TIMEOUT = 0.5
CLIENTS = 8
BEFORE_REQUESTS = 20
KILL_AFTER = 80  # answers during the load before the master is killed
SERVED_AFTER = 80  # answers 200 after the kill before the load stops
# Generous bounds: the machine is shared and noisy. The measured times are printed.
TOPOLOGY_WITHIN = 60.0
FAILOVER_WITHIN = 60.0


@dataclass
class Group:
    """The master, its replica and the sentinels watching them."""

    master: PrivateRedis
    replicas: list[PrivateRedis]
    sentinels: list[PrivateSentinel]

    @property
    def sentinel_addresses(self) -> str:
        return ",".join(sentinel.address for sentinel in self.sentinels)

    def master_port(self) -> int | None:
        """The master's port as the first sentinel that answers names it."""
        for sentinel in self.sentinels:
            try:
                return int(sentinel.master()["port"])
            except redis.RedisError:
                continue
        return None

    def settled(self) -> bool:
        """Every sentinel sees the master, a replica and its two peers; the link is up."""
        try:
            states = [sentinel.master() for sentinel in self.sentinels]
            links = []
            for replica in self.replicas:
                with replica.client() as client:
                    links.append(client.info("replication").get("master_link_status"))
        except redis.RedisError:
            return False
        return all(link == "up" for link in links) and all(
            state["num-slaves"] >= len(self.replicas)
            and state["num-other-sentinels"] == len(self.sentinels) - 1
            for state in states
        )

    def replicas_caught_up(self) -> bool:
        with self.master.client() as master:
            written = master.info("replication")["master_repl_offset"]
        for replica in self.replicas:
            with replica.client() as client:
                if client.info("replication")["slave_repl_offset"] < written:
                    return False
        return True

    def promoted(self) -> PrivateRedis:
        port = self.master_port()
        (found,) = [replica for replica in self.replicas if replica.port == port]
        return found


def _wait(condition: object, within: float, what: str) -> float:
    began = time.monotonic()
    while not condition():  # type: ignore[operator]
        if time.monotonic() - began > within:
            pytest.fail(f"{what} within {within} s")
        time.sleep(0.05)
    return time.monotonic() - began


@contextlib.contextmanager
def sentinel_group(replicas: int) -> Iterator[Group]:
    """A master, `replicas` replicas and three sentinels (quorum 2), stopped on exit."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip(REDIS_NEEDED + "; the sentinels are redis-server --sentinel")
    with tempfile.TemporaryDirectory(prefix="maskproxy-sentinel-") as name:
        directory = Path(name)
        (directory / "master").mkdir()
        master = PrivateRedis(binary, directory / "master")
        servers = [master]
        sentinels: list[PrivateSentinel] = []
        try:
            master.start()
            for number in range(replicas):
                (directory / f"replica-{number}").mkdir()
                replica = PrivateRedis(
                    binary,
                    directory / f"replica-{number}",
                    extra_args=("--replicaof", HOST, str(master.port)),
                )
                servers.append(replica)
                replica.start()
            for number in range(3):
                sentinels.append(
                    PrivateSentinel(
                        binary,
                        directory / f"sentinel-{number}",
                        service=SERVICE,
                        master_port=master.port,
                        quorum=2,
                    )
                )
            found = Group(master, servers[1:], sentinels)
            _wait(found.settled, TOPOLOGY_WITHIN, "the sentinels did not see master and replicas")
            yield found
        finally:
            for sentinel in sentinels:
                sentinel.stop()
            for server in servers:
                server.stop()


@dataclass
class Record:
    """Every request sent and its answer, in the order the answers came."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    answers: list[tuple[Job, Reply]] = field(default_factory=list)

    def add(self, job: Job, reply: Reply) -> None:
        with self.lock:
            self.answers.append((job, reply))


def assert_answer(job: Job, reply: Reply) -> None:
    """200 with exactly its own values restored, or 503 in Anthropic's shape; never else."""
    if reply.status == 200:
        assert reply.text == echo_of(job.text), reply.raw
        return
    assert reply.status == 503, reply.raw
    assert reply.payload is not None
    assert reply.payload["type"] == "error"
    assert reply.payload["error"] == {
        "type": MaskingUnavailable.error_type,
        "message": MaskingUnavailable.default_message,
    }


@pytest.mark.parametrize(
    ("wait_replicas", "replicas"),
    [pytest.param(0, 1, id="async-replication"), pytest.param(1, 2, id="wait-1-of-2-replicas")],
)
def test_master_killed_under_load_fails_closed_and_fails_over_keeping_placeholders(
    wait_replicas: int, replicas: int, tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    with sentinel_group(replicas) as group:
        _failover_under_load(group, wait_replicas, tmp_path, fake_anthropic)


def _failover_under_load(
    group: Group, wait_replicas: int, directory: Path, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.clear()
    site = _failover_site(group, wait_replicas, directory, fake_anthropic)
    # manage.py wrote through django-redis's Sentinel pool: the key and the rules version.
    key = site.create_api_key("failover", namespace=NAMESPACE)
    factory = ValueFactory(seed=88)
    record = Record()
    with running_proxies(site) as (proxy,), httpx.Client(timeout=60.0) as client:
        before = _send_before_anything_fails(client, proxy, key, factory, record)
        _wait(group.replicas_caught_up, 30.0, "the replicas did not catch up")
        load = _load_while_the_master_is_killed(group, proxy, key, factory, record, before)
        new_master = group.promoted()
        _serve_after_the_failover(client, proxy, site, factory, record)
        forwarded, again = _send_every_forwarded_value_again(
            client, proxy, key, fake_anthropic, record
        )

    statuses = _assert_every_answer(record)
    _assert_nothing_unmasked_reached_the_upstream(record, fake_anthropic)
    holds = _held_by(new_master, forwarded)
    kept, lost, reassigned = _classify(forwarded, again, holds)
    before_values = {value for job in before for value in job.values}
    # Replicated before the kill: every one keeps its placeholder.
    assert before_values <= set(kept)
    if wait_replicas:
        # Nothing was forwarded before a replica had it: nothing forwarded was lost.
        assert (lost, reassigned) == ([], [])
    # One placeholder per value and one value per placeholder, except where the replica had
    # not received a mapping when the master died (measured and printed below).
    by_placeholder, doubled = _assert_one_placeholder_per_value(
        forwarded, again, exempt=set(lost) | set(reassigned)
    )

    after_kill = [r for _, r in record.answers if r.started > load.killed_at]
    refused = [r for r in after_kill if r.status == 503]
    first_served = min(r.finished for r in after_kill if r.ok)
    print(
        f"\nsentinel failover (REDIS_WAIT_REPLICAS={wait_replicas}, {len(group.replicas)} "
        f"replicas): {len(record.answers)} requests ({dict(statuses)}) in "
        f"{load.seconds:.1f} s of load; 503s after the kill: {len(refused)}; sentinels "
        f"switched {load.switched:.2f} s after SIGKILL; first 200 after the kill "
        f"{first_served - load.killed_at:.2f} s after it; forwards: "
        f"{len(fake_anthropic.requests)}; values forwarded before the check: {len(forwarded)}, "
        f"placeholders seen: {len(by_placeholder)}; kept {len(kept)}, lost {len(lost)}, "
        f"reassigned {len(reassigned)}; placeholders with two values: {len(doubled)}"
    )


def _failover_site(
    group: Group, wait_replicas: int, directory: Path, fake_anthropic: FakeAnthropic
) -> Site:
    """A migrated site whose proxies find the master through the sentinels."""
    return prepare_site(
        directory,
        redis_url=f"redis://{SERVICE}/0",
        redis_key_prefix=KEY_PREFIX,
        upstream_url=fake_anthropic.base_url,
        REDIS_SENTINELS=group.sentinel_addresses,
        REDIS_SENTINEL_MASTER=SERVICE,
        REDIS_SOCKET_TIMEOUT=str(SOCKET_TIMEOUT),
        REDIS_WAIT_REPLICAS=str(wait_replicas),
    )


def _send_before_anything_fails(
    client: httpx.Client, proxy: ProxyProcess, key: str, factory: ValueFactory, record: Record
) -> list[Job]:
    """Step 1: values written and replicated before anything fails; every one served."""
    before = [Job(f"before {n:03d}", tuple(factory.mixed(4))) for n in range(BEFORE_REQUESTS)]
    for job in before:
        reply = _send(client, proxy, key, job)
        assert reply.status == 200, reply.raw
        record.add(job, reply)
    return before


@dataclass(frozen=True)
class Load:
    """When the master was killed, how long the sentinels took to switch, how long it ran."""

    killed_at: float
    switched: float
    seconds: float


def _load_while_the_master_is_killed(
    group: Group,
    proxy: ProxyProcess,
    key: str,
    factory: ValueFactory,
    record: Record,
    before: list[Job],
) -> Load:
    """Step 2: load from several clients, each request with new values and one earlier value;
    the master is killed midway and the load goes on until the proxy serves again."""
    stop = threading.Event()
    lock = threading.Lock()
    counter = iter(range(1_000_000))
    earlier = [value for job in before for value in job.values]

    def next_job() -> Job:
        with lock:
            n = next(counter)
            values = (*factory.mixed(3), earlier[n % len(earlier)])
        return Job(f"load {n:05d}", values, stream=n % 4 == 3)

    def client_loop() -> None:
        with httpx.Client(timeout=60.0) as own:
            while not stop.is_set():
                job = next_job()
                reply = _send(own, proxy, key, job)
                record.add(job, reply)
                if reply.status != 200:
                    time.sleep(0.02)

    threads = [threading.Thread(target=client_loop) for _ in range(CLIENTS)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    try:
        killed_at, switched = _kill_the_master_and_wait_for_service(group, record)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    return Load(killed_at=killed_at, switched=switched, seconds=time.monotonic() - began)


def _kill_the_master_and_wait_for_service(group: Group, record: Record) -> tuple[float, float]:
    """Once the load is under way, SIGKILL the master; return once the sentinels have
    switched and the proxy has served SERVED_AFTER requests since. When it was killed, and
    how long the sentinels took."""
    old_port = group.master.port
    _wait(lambda: len(record.answers) >= BEFORE_REQUESTS + KILL_AFTER, 120.0, "no load")
    group.master.kill()
    killed_at = time.monotonic()
    switched = _wait(
        lambda: group.master_port() not in (old_port, None),
        FAILOVER_WITHIN,
        "the sentinels did not fail over",
    )

    def served_after_kill() -> int:
        with record.lock:
            return sum(1 for _, reply in record.answers if reply.ok and reply.started > killed_at)

    _wait(lambda: served_after_kill() >= SERVED_AFTER, FAILOVER_WITHIN, "not served")
    return killed_at, switched


def _serve_after_the_failover(
    client: httpx.Client, proxy: ProxyProcess, site: Site, factory: ValueFactory, record: Record
) -> None:
    """Step 3: the same proxy process, never restarted, serves; so does a new key (sync
    path)."""
    assert proxy.health() == 200
    second_key = site.create_api_key("after", namespace=NAMESPACE)
    (after,) = [Job("after 000", tuple(factory.mixed(2)))]
    reply = _send_until_served(client, proxy, second_key, after, record)
    assert reply.status == 200, reply.raw


def _send_every_forwarded_value_again(
    client: httpx.Client,
    proxy: ProxyProcess,
    key: str,
    fake_anthropic: FakeAnthropic,
    record: Record,
) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Step 4: every value forwarded so far, sent again: which placeholder does it get now?
    The placeholders each value was forwarded with, and the one it gets now."""
    forwarded = _forwarded_placeholders(fake_anthropic, record)
    resend_values = sorted(forwarded)
    again: dict[str, str] = {}
    for n in range(0, len(resend_values), 8):
        job = Job(f"again {n:05d}", tuple(resend_values[n : n + 8]))
        reply = _send_until_served(client, proxy, key, job, record)
        assert reply.status == 200, reply.raw
        (masked,) = forwarded_texts(fake_anthropic)[job.tag]
        again.update(zip(job.values, bracketed(masked), strict=True))
    return forwarded, again


def _assert_every_answer(record: Record) -> Counter[int]:
    """Every answer: 200 with its own values, or 503 in Anthropic's shape. Never a 500."""
    statuses = Counter(reply.status for _, reply in record.answers)
    assert set(statuses) <= {200, 503}, statuses
    for job, reply in record.answers:
        assert_answer(job, reply)
    return statuses


def _assert_nothing_unmasked_reached_the_upstream(
    record: Record, fake_anthropic: FakeAnthropic
) -> None:
    sent_values = {value for job, _ in record.answers for value in job.values}
    upstream_bodies = "\n".join(json.dumps(r.json) for r in fake_anthropic.requests)
    assert not [value for value in sent_values if value in upstream_bodies]


def _held_by(new_master: PrivateRedis, forwarded: dict[str, list[str]]) -> dict[str, str]:
    """Read the new master directly: placeholder -> value it now holds, for every one seen."""
    with new_master.client() as direct:
        store = MappingStore(
            direct, ValueCipher(PROCESS_MASKING_KEY.encode()), ttl=3600, key_prefix=KEY_PREFIX
        )
        seen = {p for placeholders in forwarded.values() for p in placeholders}
        return store.restore(NAMESPACE, seen)


def _classify(
    forwarded: dict[str, list[str]], again: dict[str, str], holds: dict[str, str]
) -> tuple[list[str], list[str], list[str]]:
    """Every value forwarded before step 4, by what the new master holds for it: kept (same
    placeholder, held), lost (its placeholder holds nothing) or reassigned (another value)."""
    kept, lost, reassigned = [], [], []
    for value, placeholders in forwarded.items():
        first = placeholders[0]
        if again[value] == first and holds.get(first) == value:
            kept.append(value)
        elif holds.get(first) in (None, value):
            lost.append(value)
        else:
            reassigned.append(value)
    return kept, lost, reassigned


def _assert_one_placeholder_per_value(
    forwarded: dict[str, list[str]], again: dict[str, str], *, exempt: set[str]
) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """One placeholder per value and one value per placeholder, but for the `exempt` values.
    Every placeholder with its values, and those with more than one."""
    by_placeholder: defaultdict[str, set[str]] = defaultdict(set)
    for value, placeholders in forwarded.items():
        if value not in exempt:
            assert set(placeholders) == {again[value]}, value
        for placeholder in placeholders:
            by_placeholder[placeholder].add(value)
    for value, placeholder in again.items():
        by_placeholder[placeholder].add(value)
    doubled = {p: vs for p, vs in by_placeholder.items() if len(vs) > 1}
    assert all(values & exempt for values in doubled.values()), doubled
    return by_placeholder, doubled


def _send(client: httpx.Client, proxy: ProxyProcess, key: str, job: Job) -> Reply:
    messages = [{"role": "user", "content": job.text}]
    return post_message(client, proxy.url, key, messages, stream=job.stream)


def _send_until_served(
    client: httpx.Client, proxy: ProxyProcess, key: str, job: Job, record: Record
) -> Reply:
    """_send, again while the answer is a 503 (each attempt recorded), for up to
    FAILOVER_WITHIN: with REDIS_WAIT_REPLICAS the proxy rightly refuses until a replica
    follows the new master, which after a failover takes a resync, longer on a busy machine.
    """
    deadline = time.monotonic() + FAILOVER_WITHIN
    while True:
        reply = _send(client, proxy, key, job)
        record.add(job, reply)
        if reply.status != 503 or time.monotonic() > deadline:
            return reply
        time.sleep(0.1)


def _forwarded_placeholders(upstream: FakeAnthropic, record: Record) -> dict[str, list[str]]:
    """value -> the placeholders the upstream received for it, in the order received."""
    jobs = {job.tag: job for job, _ in record.answers}
    found: dict[str, list[str]] = {}
    for tag, texts in forwarded_texts(upstream).items():
        job = jobs[tag]
        for masked in texts:
            for value, placeholder in zip(job.values, bracketed(masked), strict=True):
                found.setdefault(value, []).append(placeholder)
    return found


def test_wait_replicas_allocates_once_replicas_have_it_and_refuses_otherwise() -> None:
    items = [Allocation("i-0123456789abcdef0", "AWS_EC2", "aws_ec2_instance_id")]

    async def allocate(port: int, wait_replicas: int) -> dict[str, str]:
        client = redis.asyncio.Redis(host=HOST, port=port, socket_timeout=SOCKET_TIMEOUT)
        store = AsyncMappingStore(
            client,
            ValueCipher(PROCESS_MASKING_KEY.encode()),
            ttl=60,
            key_prefix=KEY_PREFIX,
            wait_replicas=wait_replicas,
            wait_timeout_ms=200,
        )
        try:
            return await store.allocate(NAMESPACE, items)
        finally:
            await store.aclose()

    with sentinel_group(1) as group:
        # A fresh master knows no script yet: the pipeline loads it and tries again.
        first = asyncio.run(allocate(group.master.port, 1))
        with group.replicas[0].client() as replica:
            store = MappingStore(
                replica, ValueCipher(PROCESS_MASKING_KEY.encode()), ttl=60, key_prefix=KEY_PREFIX
            )
            # Acknowledged means the replica holds it when the answer comes.
            assert store.restore(NAMESPACE, first.values()) == {p: v for v, p in first.items()}
        with pytest.raises(MappingStoreUnavailable):
            asyncio.run(allocate(group.master.port, 2))  # only one replica exists
