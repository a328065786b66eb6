"""Redis faults against a real proxy process: it fails closed (503, nothing sent upstream) and
recovers by itself, with the same placeholders, once Redis is back.

One uvicorn process (REDIS_SOCKET_TIMEOUT 0.5 s, our loggers at DEBUG) uses a private
redis-server, which the tests stop (SIGTERM), start again on the same port and data, and
pause (SIGSTOP); the provider is the fake Anthropic server over real HTTP. The last test
sweeps everything the module's requests could have left behind for original values.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from proxy.errors import MaskingUnavailable
from tests.support.fakes.anthropic_upstream import FakeAnthropic
from tests.support.processes import PrivateRedis
from tests.support.sites import ProxyProcess, Site, prepare_site, running_proxies
from tests.support.traffic import (
    Job,
    Reply,
    ValueFactory,
    bracketed,
    echo_of,
    forwarded_texts,
    post_message,
    run_clients,
)

pytestmark = pytest.mark.slow

NAMESPACE = "faults"
SOCKET_TIMEOUT = 0.5
# Generous bounds: the machine is shared and noisy. The measured times are printed.
FAIL_CLOSED_WITHIN = 10.0
RECOVERY_WITHIN = 30.0
CLIENTS = 8
LOAD_REQUESTS = 160
STOP_AFTER = 60  # answers in before Redis is stopped
OUTAGE_REQUESTS = 40


@dataclass
class FaultLab:
    """The module's proxy, its Redis and database, and everything sent through them so far."""

    redis: PrivateRedis
    site: Site
    proxy: ProxyProcess
    key: str
    upstream: FakeAnthropic
    values: ValueFactory = field(default_factory=lambda: ValueFactory(seed=6))
    sent_values: set[str] = field(default_factory=set)
    sent_requests: int = 0
    refusals: list[str] = field(default_factory=list)  # the raw 503 bodies

    def jobs(self, name: str, count: int) -> list[Job]:
        """`count` requests with 4 new values each, one in four of them streamed."""
        return [
            Job(f"{name} {n:03d}", tuple(self.values.mixed(4)), stream=n % 4 == 3)
            for n in range(count)
        ]

    def ask(self, client: httpx.Client, job: Job, *, path: str = "/v1/messages") -> Reply:
        self.sent_values.update(job.values)
        self.sent_requests += 1
        reply = self._send(client, job, path=path)
        if reply.status == 503:
            self.refusals.append(reply.raw)
        return reply

    def _send(self, client: httpx.Client, job: Job, *, path: str = "/v1/messages") -> Reply:
        messages = [{"role": "user", "content": job.text}]
        return post_message(
            client, self.proxy.url, self.key, messages, stream=job.stream, path=path
        )

    def send_all(
        self, jobs: Sequence[Job], *, midway: tuple[int, Callable[[], None]] | None = None
    ) -> list[Reply]:
        """The jobs from CLIENTS concurrent clients; replies in job order."""
        self.sent_values.update(value for job in jobs for value in job.values)
        self.sent_requests += len(jobs)
        replies = run_clients(jobs, self._send, clients=min(CLIENTS, len(jobs)), midway=midway)
        self.refusals += [reply.raw for reply in replies if reply.status == 503]
        return replies

    def until_served(self, client: httpx.Client, name: str, values: Sequence[str]) -> list[Reply]:
        """The same values under new tags until one answer is 200 (bounded); every attempt."""
        attempts: list[Reply] = []
        deadline = time.monotonic() + RECOVERY_WITHIN
        while True:
            attempts.append(self.ask(client, Job(f"{name} {len(attempts):03d}", tuple(values))))
            if attempts[-1].ok or time.monotonic() > deadline:
                return attempts
            time.sleep(0.1)

    def placeholders(self, job: Job) -> dict[str, str]:
        """value -> placeholder, as the upstream received them in the one request of job."""
        (masked,) = forwarded_texts(self.upstream)[job.tag]
        return dict(zip(job.values, bracketed(masked), strict=True))


@pytest.fixture(scope="module")
def lab(
    private_redis: PrivateRedis,
    site_directory: Path,
    fake_anthropic: FakeAnthropic,
) -> Iterator[FaultLab]:
    site = prepare_site(
        site_directory,
        redis_url=private_redis.url,
        redis_key_prefix="faults",
        upstream_url=fake_anthropic.base_url,
        REDIS_SOCKET_TIMEOUT=str(SOCKET_TIMEOUT),
        LOG_LEVEL="DEBUG",
        LITELLM_LOG_LEVEL="INFO",
    )
    key = site.create_api_key("faults", namespace=NAMESPACE)
    with running_proxies(site) as (proxy,):
        yield FaultLab(private_redis, site, proxy, key, fake_anthropic)


@pytest.fixture
def faults(lab: FaultLab) -> Iterator[FaultLab]:
    """The lab with Redis running and the upstream's record cleared; Redis running after."""
    lab.upstream.clear()
    if not lab.redis.running:
        lab.redis.start()
    yield lab
    lab.redis.resume()
    if not lab.redis.running:
        lab.redis.start()


def assert_fails_closed(reply: Reply) -> None:
    """503 in Anthropic's error shape, with the error of an unavailable mapping store."""
    assert reply.status == 503, reply.raw
    assert reply.payload is not None
    assert reply.payload["type"] == "error"
    assert reply.payload["error"] == {
        "type": MaskingUnavailable.error_type,
        "message": MaskingUnavailable.default_message,
    }


def assert_served(job: Job, reply: Reply) -> None:
    assert reply.status == 200, reply.raw
    assert reply.text == echo_of(job.text)  # its own values, every one restored


def test_redis_stopped_under_load_fails_closed_and_recovers_with_same_placeholders(
    faults: FaultLab,
) -> None:
    began = time.monotonic()
    (before,) = faults.jobs("before", 1)
    with httpx.Client(timeout=60.0) as client:
        assert_served(before, faults.ask(client, before))
    placeholders_before = faults.placeholders(before)

    stopped_at: list[float] = []

    def stop_redis() -> None:
        faults.redis.stop()
        stopped_at.append(time.monotonic())  # the server has exited: nothing can reach it

    jobs = faults.jobs("load", LOAD_REQUESTS)
    replies = faults.send_all(jobs, midway=(STOP_AFTER, stop_redis))
    forwarded_after_load = len(faults.upstream.requests)
    statuses, served = _assert_served_until_stopped_then_refused(
        faults, before, jobs, replies, stopped_at[0]
    )

    # While Redis stays down, a further batch is refused and nothing more is forwarded.
    outage = faults.send_all(faults.jobs("outage", OUTAGE_REQUESTS))
    for reply in outage:
        assert_fails_closed(reply)
    assert len(faults.upstream.requests) == forwarded_after_load
    assert faults.proxy.health() == 503  # and it says it cannot serve

    recovered, attempts, recovered_in = _recover_keeping_placeholders(
        faults, before, served, placeholders_before, forwarded_after_load
    )

    upstream_bodies = faults.upstream.raw_bodies().decode("utf-8", "replace")
    assert [value for value in faults.sent_values if value in upstream_bodies] == []
    print(
        f"\n[redis stopped under load] {len(jobs)} requests ({sum(j.stream for j in jobs)} "
        f"streamed) from {CLIENTS} clients, Redis stopped after {STOP_AFTER} answers: "
        f"{statuses[200]} x 200, {statuses[503]} x 503, "
        f"no other status; forwards observed: {forwarded_after_load} (the 200s and 1 before); "
        f"outage batch: {len(outage)} x 503, forwards unchanged; served again "
        f"{recovered_in:.2f} s after the restart ({len(attempts) - 1} refused attempts), "
        f"{len(recovered.values)} earlier values kept their placeholders; "
        f"{time.monotonic() - began:.1f} s"
    )


def _assert_served_until_stopped_then_refused(
    faults: FaultLab, before: Job, jobs: list[Job], replies: list[Reply], stopped_at: float
) -> tuple[Counter[int], list[Job]]:
    """Every answer a 200 with its own values or a 503, none served after the stop, and only
    the served requests forwarded, each once. The statuses, and the jobs served."""
    statuses = Counter(reply.status for reply in replies)
    assert set(statuses) <= {200, 503}, statuses  # never a 500
    for job, reply in zip(jobs, replies, strict=True):
        if reply.ok:
            assert_served(job, reply)
        else:
            assert_fails_closed(reply)
    # Redis went away midway: some answers came before, the rest were refused.
    assert statuses[200] >= STOP_AFTER and statuses[503] > 0, statuses
    assert all(not r.ok for r in replies if r.started > stopped_at)
    # Exactly the requests answered 200 reached the upstream, each once; no refused one did.
    served = [job for job, reply in zip(jobs, replies, strict=True) if reply.ok]
    forwarded = forwarded_texts(faults.upstream)
    assert set(forwarded) == {before.tag} | {job.tag for job in served}
    assert all(len(texts) == 1 for texts in forwarded.values())
    return statuses, served


def _recover_keeping_placeholders(
    faults: FaultLab,
    before: Job,
    served: list[Job],
    placeholders_before: dict[str, str],
    forwarded_after_load: int,
) -> tuple[Job, list[Reply], float]:
    """Back on the same port and data: the proxy recovers without a restart, and values sent
    before the outage keep their placeholders. The request served, every attempt, and how
    long after the restart it was served."""
    first_seen = {v: p for job in served for v, p in faults.placeholders(job).items()}
    earlier = [value for job in served for value in job.values][:16]
    faults.redis.start()
    restarted_at = time.monotonic()
    with httpx.Client(timeout=60.0) as client:
        attempts = faults.until_served(client, "recovered", [*before.values, *earlier])
    recovered_in = time.monotonic() - restarted_at
    recovered = Job(f"recovered {len(attempts) - 1:03d}", (*before.values, *earlier))
    assert_served(recovered, attempts[-1])
    for refused in attempts[:-1]:
        assert_fails_closed(refused)
    kept = placeholders_before | {value: first_seen[value] for value in earlier}
    assert faults.placeholders(recovered) == kept
    assert len(faults.upstream.requests) == forwarded_after_load + 1  # no refused attempt
    assert faults.proxy.health() == 200
    return recovered, attempts, recovered_in


def test_connections_pooled_before_a_redis_restart_refuse_nothing_after_it(
    faults: FaultLab,
) -> None:
    # Enough concurrent requests for the proxy to pool several connections.
    for reply in faults.send_all(faults.jobs("pooled", 2 * CLIENTS)):
        assert reply.ok, reply.raw
    faults.redis.stop()
    faults.redis.start()
    jobs = faults.jobs("after restart", 4 * CLIENTS)
    replies = faults.send_all(jobs)
    for job, reply in zip(jobs, replies, strict=True):
        assert_served(job, reply)  # each stale connection is replaced, not a refusal
    print(
        f"\n[redis restarted while idle] {len(jobs)} concurrent requests right after the "
        f"restart: all 200"
    )


def test_redis_paused_beyond_socket_timeout_fails_closed_within_bound(faults: FaultLab) -> None:
    values = tuple(faults.values.mixed(4))
    with httpx.Client(timeout=60.0) as client:
        warm_up = faults.until_served(client, "pause", values)
        assert len(warm_up) == 1  # served at once, even right after another test's restart
        first = Job(f"pause {len(warm_up) - 1:03d}", values)
        assert_served(first, warm_up[-1])
        placeholders = faults.placeholders(first)
        faults.redis.pause()
        try:
            paused = faults.send_all(faults.jobs("paused", 4))
            forwarded_while_paused = len(faults.upstream.requests)
        finally:
            faults.redis.resume()
        resumed_at = time.monotonic()
        attempts = faults.until_served(client, "resumed", first.values)
    resumed_in = time.monotonic() - resumed_at

    for reply in paused:
        assert_fails_closed(reply)
        assert reply.seconds < FAIL_CLOSED_WITHIN
    assert forwarded_while_paused == 1  # only the request before the pause
    resumed = Job(f"resumed {len(attempts) - 1:03d}", first.values)
    assert_served(resumed, attempts[-1])
    assert faults.placeholders(resumed) == placeholders
    assert set(forwarded_texts(faults.upstream)) == {first.tag, resumed.tag}
    seconds = sorted(reply.seconds for reply in paused)
    print(
        f"\n[redis paused] REDIS_SOCKET_TIMEOUT={SOCKET_TIMEOUT} s: {len(paused)} concurrent "
        f"requests all 503 in {seconds[0]:.2f}-{seconds[-1]:.2f} s (bound "
        f"{FAIL_CLOSED_WITHIN} s), nothing forwarded; served again {resumed_in:.2f} s after "
        f"SIGCONT ({len(attempts) - 1} refused attempts)"
    )


def test_failure_paths_leave_no_value_in_logs_audit_rows_redis_or_errors(
    faults: FaultLab,
) -> None:
    down_json, down_stream, down_count, paused_json, paused_stream = (
        Job(name, tuple(faults.values.mixed(2)), stream=name.endswith("stream"))
        for name in ("down json", "down stream", "down count", "paused json", "paused stream")
    )
    with httpx.Client(timeout=60.0) as client:
        faults.redis.stop()
        refused = [
            faults.ask(client, down_json),
            faults.ask(client, down_stream),
            faults.ask(client, down_count, path="/v1/messages/count_tokens"),
        ]
        faults.redis.start()
        assert faults.until_served(client, "restarted", down_json.values)[-1].ok
        faults.redis.pause()
        try:
            refused.append(faults.ask(client, paused_json))
            refused.append(faults.ask(client, paused_stream))
        finally:
            faults.redis.resume()
        assert faults.until_served(client, "unpaused", paused_json.values)[-1].ok
    for reply in refused:
        assert_fails_closed(reply)  # a refused stream never starts: a plain JSON error
    refused_tags = {"down json", "down stream", "down count", "paused json", "paused stream"}
    assert not refused_tags & set(forwarded_texts(faults.upstream))

    # Everything this module sent: loads, outages, pauses and recoveries.
    rows = faults.site.wait_for_audit(faults.sent_requests)
    assert len(rows) == faults.sent_requests
    refused_rows = [row for row in rows if row["status"] == 503]
    assert len(refused_rows) == len(faults.refusals)
    assert all(json.loads(row["masked_by_pattern"]) == {} for row in refused_rows)
    output = faults.proxy.output()
    assert "mapping store unavailable" in output  # the failures were logged, without values
    redis_dump = faults.redis.dump()
    assert b":mask:{" + NAMESPACE.encode() + b"}:p:" in redis_dump  # mappings are there
    places = {
        "proxy stdout and stderr": output,
        "database (audit rows included)": faults.site.database_dump(),
        "private Redis (every key and value)": redis_dump.decode("latin-1"),
        "503 bodies": "\n".join(faults.refusals),
        "upstream": faults.upstream.raw_bodies().decode("utf-8", "replace"),
    }
    secrets = (*faults.sent_values, faults.key)
    for place, text in places.items():
        leaked = sorted(secret for secret in secrets if secret in text)
        assert leaked == [], f"found in {place}: {leaked[:5]}"
    print(
        f"\n[secrets sweep] {len(faults.sent_values)} values in {faults.sent_requests} requests, "
        f"{len(faults.refusals)} refused: none in {len(output.splitlines())} log lines, "
        f"{len(rows)} audit rows ({len(refused_rows)} of 503), the database, "
        f"{len(redis_dump)} bytes of Redis dump, the 503 bodies or the upstream bodies"
    )
