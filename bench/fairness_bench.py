"""Fairness: one key sends the worst requests the limits allow; another key's stay fast.

A one-worker proxy of its own, the private Redis and the fake upstream. Two keys in
different namespaces: the attacker's has the server's default limits (requests a minute,
streams), the victim's none. Each scenario is one of the worst requests the per-request
limits (read from the proxy's own settings) let through or refuse only after working:

(a) one text with PROXY_MAX_VALUES_PER_REQUEST distinct new EC2 IDs: accepted, placed;
(b) the same with one ID more: refused with 413, after the scan;
(c) PROXY_MAX_CONTENT_BLOCKS tiny text blocks: accepted, every block a string to scan;
(d) a body just under PROXY_MAX_BODY_BYTES of ordinary text with IDs sprinkled in: accepted;
(e) the pen test's request, 600,000 distinct IDs in 12 MB: refused with 413.

The attacker runs in a process of its own (its bodies are built there, before the clock
starts, so that it takes no time from the victim's client) and sends its request back to
back, ATTACK_CONCURRENCY at a time, for a fixed time; it ignores 429s and keeps sending, as
an attacker would. Accepted requests carry IDs never sent before (new values are what
costs Redis most); refused ones repeat one body. The big text goes in a first user turn
and the conversation ends with a short question: the fake echoes the last user turn, so
the reply stays as short as a real one bounded by max_tokens (bench/fairness_bodies.py).

Meanwhile the victim sends a ~2 KB prompt with 4 values, non-streaming, VICTIM_RATE times a
second on a fixed schedule (open loop: a slow answer does not delay the next request), and
records each latency. The same victim load alone, just before each scenario, is its
baseline. Redis' SLOWLOG (commands of 0.1 ms or more, reset before each phase) gives the
longest single command: while it runs, every other tenant's command waits. The proxy
worker's resident set after each scenario shows what the big requests leave behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import sqlite3
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx

from bench.engine_bench import generate_text
from bench.fairness_bodies import ATTACK_MODEL, SCENARIOS, Scenario, Template
from bench.harness import Harness, Proxy, Unavailable, rss_kib
from bench.load import client, messages_body, percentile
from bench.report import Report, Row, RunOptions
from tests.support.processes import PrivateRedis

P99_GOAL_MS = 100.0
VICTIM_RATE = 20.0  # requests a second
VICTIM_TEXTS = 20
VICTIM_CONNECTIONS = 1024
ATTACK_CONCURRENCY = 2
ATTACKER_NAMESPACE, VICTIM_NAMESPACE = "fair-attacker", "fair-victim"
LIMIT_SETTINGS = (
    "PROXY_MAX_BODY_BYTES",
    "PROXY_MAX_CONTENT_BLOCKS",
    "PROXY_MAX_VALUES_PER_REQUEST",
    "PROXY_DEFAULT_RATE_LIMIT_PER_MINUTE",
    "PROXY_DEFAULT_MAX_CONCURRENT_STREAMS",
)
SLOWLOG_THRESHOLD_US = 100
ATTACK_CREDENTIAL = "BENCH_ATTACK_KEY"
AUDIT_WAIT_SECONDS = 10.0
# Seconds per scenario: the attack, and the victim alone before it.
ATTACK_SECONDS, BASELINE_SECONDS = 30.0, 10.0
QUICK_ATTACK_SECONDS, QUICK_BASELINE_SECONDS = 8.0, 4.0


# --- the attacker, in a process of its own -----------------------------------------------


@dataclass(frozen=True)
class AttackPlan:
    url: str
    api_key: str
    scenario: str
    limits: dict[str, int]
    tag: int
    seconds: float
    concurrency: int


def _attacker_main(plan: AttackPlan, connection: Connection) -> None:
    """The attacker process: build, say how big, wait for the start, attack, send results."""
    [scenario] = [s for s in SCENARIOS if s.key == plan.scenario]
    template = scenario.build(plan.limits, plan.tag)
    connection.send((template.values, len(template.body(0))))
    connection.recv()  # the start
    connection.send(asyncio.run(_attack(plan, template)))
    connection.close()


async def _attack(plan: AttackPlan, template: Template) -> list[tuple[float, int]]:
    """(seconds, status) per request, back to back from `concurrency` tasks; 0: no answer."""
    records: list[tuple[float, int]] = []
    numbers = iter(range(1, 1 << 30))
    fixed = None if template.fresh else template.body(0)
    deadline = time.perf_counter() + plan.seconds
    # Long enough for the slowest request; the harness' proxy gives up upstream at 60 s.
    timeout = httpx.Timeout(120.0, connect=5.0)

    async def sender(http: httpx.AsyncClient) -> None:
        while time.perf_counter() < deadline:
            body = fixed if fixed is not None else template.body(next(numbers))
            started = time.perf_counter()
            try:
                response = await http.post(f"{plan.url}/v1/messages", content=body)
                status = response.status_code
            except httpx.HTTPError:
                status = 0
            records.append((time.perf_counter() - started, status))

    async with client(plan.api_key, plan.concurrency) as http:
        http.timeout = timeout
        await asyncio.gather(*(sender(http) for _ in range(plan.concurrency)))
    return records


class Attacker:
    """The attacker process for one scenario, ready (its bodies built) once constructed."""

    def __init__(self, plan: AttackPlan) -> None:
        context = multiprocessing.get_context("spawn")
        self._connection, theirs = context.Pipe()
        self._process = context.Process(target=_attacker_main, args=(plan, theirs), daemon=True)
        self._process.start()
        theirs.close()
        self.values, self.body_bytes = self._connection.recv()

    def start(self) -> None:
        self._connection.send("start")

    def results(self) -> list[tuple[float, int]]:
        records: list[tuple[float, int]] = self._connection.recv()
        self._process.join(timeout=30)
        return records

    def stop(self) -> None:
        if self._process.is_alive():
            self._process.terminate()  # our own child, by its handle
            self._process.join(timeout=10)
        self._connection.close()


# --- the victim, in this process ---------------------------------------------------------


@dataclass(frozen=True)
class VictimRun:
    latencies_ms: list[float]
    errors: int
    request_ids: list[str] = field(default_factory=list)
    # The proxy's own part of each latency (its audit row: total minus the provider's time).
    proxy_ms: list[float] = field(default_factory=list)


async def _victim(url: str, api_key: str, bodies: Sequence[bytes], seconds: float) -> VictimRun:
    """Requests on a fixed schedule, each timed from its send to its whole answer."""
    count = int(seconds * VICTIM_RATE)
    latencies: list[float] = []
    request_ids: list[str] = []
    errors = 0

    async def one(http: httpx.AsyncClient, body: bytes) -> None:
        nonlocal errors
        started = time.perf_counter()
        try:
            response = await http.post(f"{url}/v1/messages", content=body)
        except httpx.HTTPError:
            errors += 1
            return
        if response.status_code != 200:
            errors += 1
            return
        latencies.append((time.perf_counter() - started) * 1e3)
        request_ids.append(response.headers.get("request-id", ""))

    # Connections enough that none waits for another's answer, even seconds-long ones.
    async with client(api_key, concurrency=VICTIM_CONNECTIONS) as http:
        began = time.perf_counter()
        tasks = []
        for index in range(count):
            delay = began + index / VICTIM_RATE - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(http, bodies[index % len(bodies)])))
        await asyncio.gather(*tasks)
    return VictimRun(latencies, errors, request_ids)


def _with_proxy_times(run: VictimRun, database: Path) -> VictimRun:
    """run, with the proxy's own time for each request, read off its audit rows (written in
    the background: waited for a few seconds)."""
    wanted = [rid for rid in run.request_ids if rid]
    rows: list[tuple[int, int | None]] = []
    deadline = time.monotonic() + AUDIT_WAIT_SECONDS
    while time.monotonic() < deadline:
        with contextlib.closing(sqlite3.connect(database, timeout=10)) as connection:
            connection.execute("CREATE TEMP TABLE IF NOT EXISTS wanted (request_id TEXT)")
            connection.execute("DELETE FROM wanted")
            connection.executemany("INSERT INTO wanted VALUES (?)", [(r,) for r in wanted])
            rows = connection.execute(
                "SELECT latency_ms, upstream_latency_ms FROM proxy_auditrecord "
                "WHERE request_id IN (SELECT request_id FROM wanted)"
            ).fetchall()
        if len(rows) >= len(wanted):
            break
        time.sleep(0.2)
    proxy_ms = [float(total - (upstream or 0)) for total, upstream in rows]
    return VictimRun(run.latencies_ms, run.errors, run.request_ids, proxy_ms)


def victim_bodies() -> list[bytes]:
    """Small realistic prompts: about 2 KB of prose holding 4 values each."""
    return [
        json.dumps(messages_body(generate_text(2_000, 4, seed=3000 + seed))).encode()
        for seed in range(VICTIM_TEXTS)
    ]


# --- Redis' own view ---------------------------------------------------------------------


@dataclass(frozen=True)
class RedisFigures:
    logged: int  # commands that took SLOWLOG_THRESHOLD_US or more
    longest_us: int
    longest_command: str
    over_1ms: int
    total_over_1ms_us: int


class SlowLog:
    """Redis' commands of SLOWLOG_THRESHOLD_US or more, logged with their durations.

    Not every command: Redis 7 also logs the commands a script runs, and logging each of
    a chunk's thousand would slow the script it measures. Settings are restored on close.
    """

    def __init__(self, private: PrivateRedis) -> None:
        self._redis = private.client(timeout=10)
        self._saved: dict[str, str] = {
            name: str(self._redis.config_get(name)[name])
            for name in ("slowlog-log-slower-than", "slowlog-max-len")
        }
        self._redis.config_set("slowlog-log-slower-than", SLOWLOG_THRESHOLD_US)
        self._redis.config_set("slowlog-max-len", 100_000)

    def reset(self) -> None:
        self._redis.slowlog_reset()

    def figures(self) -> RedisFigures:
        entries = self._redis.slowlog_get(self._redis.slowlog_len())
        entries = [e for e in entries if _command_name(e) != "SLOWLOG"]
        slow = [e for e in entries if e["duration"] > 1_000]
        longest = max(entries, key=lambda e: e["duration"], default=None)
        return RedisFigures(
            logged=len(entries),
            longest_us=int(longest["duration"]) if longest else 0,
            longest_command=_command_name(longest) if longest else "",
            over_1ms=len(slow),
            total_over_1ms_us=sum(int(e["duration"]) for e in slow),
        )

    def close(self) -> None:
        for name, value in self._saved.items():
            self._redis.config_set(name, value)
        self._redis.close()


def _command_name(entry: dict[str, Any]) -> str:
    command = entry["command"]
    if isinstance(command, bytes):
        command = command.decode(errors="replace")
    return str(command).split(" ", 1)[0].upper()


# --- the benchmark -----------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    scenario: Scenario
    values: int
    body_bytes: int
    baseline: VictimRun
    baseline_redis: RedisFigures
    attacked: VictimRun
    attacked_redis: RedisFigures
    attacks: list[tuple[float, int]]
    rss_before_kib: int  # the proxy worker's resident set
    rss_after_kib: int


def run(options: RunOptions, report: Report, harness: Harness) -> None:
    command = options.command("fairness")
    try:
        private = harness.redis()
        limits = proxy_limits(harness)
        attacker_key = harness.create_api_key("fair-attacker", ATTACKER_NAMESPACE, unlimited=False)
        victim_key = harness.create_api_key("fair-victim", VICTIM_NAMESPACE, unlimited=True)
        _route_the_attacker_elsewhere(harness)
    except Unavailable as exc:
        report.add([Row("fairness", None, "", "", None, command, str(exc))])
        return
    attack_s, baseline_s = (
        (QUICK_ATTACK_SECONDS, QUICK_BASELINE_SECONDS)
        if options.quick
        else (ATTACK_SECONDS, BASELINE_SECONDS)
    )
    bodies = victim_bodies()
    outcomes = []
    slowlog = SlowLog(private)
    try:
        with harness.fresh_proxy(1) as proxy:
            _warm_up(proxy, attacker_key, victim_key, bodies)
            for tag, scenario in enumerate(SCENARIOS, start=1):
                plan = AttackPlan(
                    url=proxy.url,
                    api_key=attacker_key,
                    scenario=scenario.key,
                    limits=limits,
                    tag=tag,
                    seconds=attack_s,
                    concurrency=ATTACK_CONCURRENCY,
                )
                outcome = run_scenario(
                    proxy, plan, victim_key, bodies, slowlog, baseline_s, harness.database
                )
                outcomes.append(outcome)
                print(f"    {_progress(outcome)}", flush=True)
    finally:
        slowlog.close()
    report.add([row for outcome in outcomes for row in _rows(outcome, command, attack_s)])
    report.details["fairness"] = {
        "limits": limits,
        "victim_rate_per_s": VICTIM_RATE,
        "attack_seconds": attack_s,
        "attack_concurrency": ATTACK_CONCURRENCY,
        "scenarios": [_details(outcome) for outcome in outcomes],
    }


def _route_the_attacker_elsewhere(harness: Harness) -> None:
    """The attacker's model goes to a fake upstream of its own: a real provider is not one
    process, and the victim must not wait behind the attacker's requests there."""
    harness.extra_env.update(
        {"PROXY_ROUTE_CREDENTIALS": ATTACK_CREDENTIAL, ATTACK_CREDENTIAL: "bench-attack-key"}
    )
    harness.manage(
        "model_route",
        "set",
        ATTACK_MODEL,
        "anthropic/{model}",
        "--api-base",
        harness.upstream_url("attacker"),
        "--api-key-env",
        ATTACK_CREDENTIAL,
    )


def proxy_limits(harness: Harness) -> dict[str, int]:
    """The limits as the proxy's settings have them (its environment included)."""
    script = (
        "import json; from django.conf import settings; "
        f"print(json.dumps({{n: getattr(settings, n) for n in {list(LIMIT_SETTINGS)!r}}}))"
    )
    output = harness.manage("shell", "-c", script)
    limits: dict[str, int] = json.loads(output.strip().splitlines()[-1])
    return limits


def run_scenario(
    proxy: Proxy,
    plan: AttackPlan,
    victim_key: str,
    bodies: Sequence[bytes],
    slowlog: SlowLog,
    baseline_seconds: float,
    database: Path,
) -> Outcome:
    """The victim alone, then the victim under this plan's attack."""
    [scenario] = [s for s in SCENARIOS if s.key == plan.scenario]
    attacker = Attacker(plan)  # builds its bodies while nothing is measured
    rss_before = rss_kib(proxy.pid)
    try:
        slowlog.reset()
        baseline = asyncio.run(_victim(proxy.url, victim_key, bodies, baseline_seconds))
        baseline_redis = slowlog.figures()
        slowlog.reset()
        attacker.start()
        attacked = asyncio.run(_victim(proxy.url, victim_key, bodies, plan.seconds))
        attacks = attacker.results()
        attacked_redis = slowlog.figures()
    finally:
        attacker.stop()
    return Outcome(
        scenario=scenario,
        values=attacker.values,
        body_bytes=attacker.body_bytes,
        baseline=_with_proxy_times(baseline, database),
        baseline_redis=baseline_redis,
        attacked=_with_proxy_times(attacked, database),
        attacked_redis=attacked_redis,
        attacks=attacks,
        rss_before_kib=rss_before,
        rss_after_kib=rss_kib(proxy.pid),
    )


def _warm_up(proxy: Proxy, attacker_key: str, victim_key: str, bodies: Sequence[bytes]) -> None:
    """Rules loaded, keys checked and connections open before anything is timed."""

    async def both() -> None:
        for key in (attacker_key, victim_key):
            async with client(key) as http:
                for body in bodies[:5]:
                    response = await http.post(f"{proxy.url}/v1/messages", content=body)
                    response.raise_for_status()

    asyncio.run(both())


# --- figures -----------------------------------------------------------------------------


def _summary(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": round(percentile(values, 50), 2),
        "p95": round(percentile(values, 95), 2),
        "p99": round(percentile(values, 99), 2),
        "max": round(max(values), 2),
    }


def _latency_line(run: VictimRun) -> str:
    figures = _summary(run.latencies_ms)
    if not figures["n"]:
        return f"no answer ({run.errors} errors)"
    errors = f", {run.errors} errors" if run.errors else ""
    return (
        f"p50 {figures['p50']:.1f} / p95 {figures['p95']:.1f} / p99 {figures['p99']:.1f} / "
        f"max {figures['max']:.1f} ms (n={figures['n']}{errors})"
    )


def _figures_line(values: Sequence[float]) -> str:
    figures = _summary(values)
    if not figures["n"]:
        return "none"
    return (
        f"p50 {figures['p50']:.1f} / p95 {figures['p95']:.1f} / p99 {figures['p99']:.1f} / "
        f"max {figures['max']:.1f} ms (n={figures['n']})"
    )


def _statuses(attacks: Sequence[tuple[float, int]]) -> str:
    counts = Counter(status for _, status in attacks)
    return ", ".join(f"{status or 'no answer'} x{n}" for status, n in sorted(counts.items()))


def _title(outcome: Outcome) -> str:
    scenario = outcome.scenario
    return f"({scenario.key}) {scenario.label}"


def _size(outcome: Outcome) -> str:
    return f"{outcome.values:,} IDs, {outcome.body_bytes / 1e6:.2f} MB"


def _progress(outcome: Outcome) -> str:
    p99 = _summary(outcome.attacked.latencies_ms).get("p99")
    proxy_p99 = _summary(outcome.attacked.proxy_ms).get("p99")
    return (
        f"{_title(outcome)}: victim p99 {p99} ms (in the proxy {proxy_p99} ms); attacker "
        f"{_statuses(outcome.attacks)}; "
        f"Redis longest {outcome.attacked_redis.longest_us / 1e3:.1f} ms"
    )


def _rows(outcome: Outcome, command: str, seconds: float) -> list[Row]:
    title = _title(outcome)
    attacked = _summary(outcome.attacked.latencies_ms)
    p99 = attacked.get("p99")
    durations = [d * 1e3 for d, _ in outcome.attacks]
    refused = sum(1 for _, status in outcome.attacks if status == 429)
    expected = outcome.scenario.expected
    rate_note = f"; the rate limit refused {refused}" if refused else ""
    slow = outcome.attacked_redis
    return [
        Row(
            name=f"fairness: victim p99, attack {title}",
            figure=p99,
            unit="ms",
            goal=f"<= {P99_GOAL_MS:g} ms",
            met=None if p99 is None else p99 <= P99_GOAL_MS and outcome.attacked.errors == 0,
            command=command,
            note=(
                f"under attack {_latency_line(outcome.attacked)}; alone "
                f"{_latency_line(outcome.baseline)}; {VICTIM_RATE:g} req/s of ~2 KB, 4 IDs"
            ),
        ),
        Row(
            name=f"fairness: victim p99 in the proxy, attack {title}",
            figure=_summary(outcome.attacked.proxy_ms).get("p99"),
            unit="ms",
            goal="",
            met=None,
            command=command,
            note=(
                "the proxy's own part of each latency (audit: total minus provider): under "
                f"attack {_figures_line(outcome.attacked.proxy_ms)}; alone "
                f"{_figures_line(outcome.baseline.proxy_ms)}"
            ),
        ),
        Row(
            name=f"fairness: attacker median, {title}",
            figure=round(statistics.median(durations), 1) if durations else None,
            unit="ms",
            goal="",
            met=None,
            command=command,
            note=(
                f"{_size(outcome)}; {len(durations)} requests in {seconds:g} s, "
                f"{ATTACK_CONCURRENCY} at a time: {_statuses(outcome.attacks)} "
                f"(expected {expected}{rate_note}); proxy RSS {_mb(outcome.rss_before_kib)} "
                f"-> {_mb(outcome.rss_after_kib)} MB"
            ),
        ),
        Row(
            name=f"fairness: Redis longest command, {title}",
            figure=round(slow.longest_us / 1e3, 2),
            unit="ms",
            goal="",
            met=None,
            command=command,
            note=(
                f"{slow.longest_command or '-'}; {slow.over_1ms} commands over 1 ms "
                f"({slow.total_over_1ms_us / 1e3:.0f} ms in all); alone: longest "
                f"{_longest(outcome.baseline_redis)}"
            ),
        ),
    ]


def _mb(kib: int) -> str:
    return f"{kib * 1024 / 1e6:,.0f}"


def _longest(figures: RedisFigures) -> str:
    if not figures.logged:
        return f"under {SLOWLOG_THRESHOLD_US / 1e3:g} ms"
    return f"{figures.longest_us / 1e3:.2f} ms ({figures.longest_command})"


def _details(outcome: Outcome) -> dict[str, Any]:
    durations = [d * 1e3 for d, _ in outcome.attacks]
    return {
        "scenario": outcome.scenario.key,
        "label": outcome.scenario.label,
        "values": outcome.values,
        "body_bytes": outcome.body_bytes,
        "victim_ms": _summary(outcome.attacked.latencies_ms),
        "victim_errors": outcome.attacked.errors,
        "baseline_ms": _summary(outcome.baseline.latencies_ms),
        "baseline_errors": outcome.baseline.errors,
        "attacker": {
            "requests": len(durations),
            "statuses": {str(k): v for k, v in Counter(s for _, s in outcome.attacks).items()},
            "ms": _summary(durations),
        },
        "proxy_rss_kib": {"before": outcome.rss_before_kib, "after": outcome.rss_after_kib},
        "redis": {
            "attacked": vars(outcome.attacked_redis),
            "alone": vars(outcome.baseline_redis),
        },
    }
