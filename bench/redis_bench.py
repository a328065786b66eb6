"""Redis round trips per proxied request, from Redis' own command statistics.

The proxy (one worker) talks to a private redis-server. For requests holding 1, 100 and
1,000 distinct new values: CONFIG RESETSTAT, one request, INFO commandstats. Redis counts
the commands a Lua script runs among its own, so MONITOR runs alongside to tell the
commands clients sent from those run inside a script. Commands the proxy sends in one
pipeline are one round trip: a key's minute (INCRBY, EXPIRE, GET) and its CPU charge
(INCRBYFLOAT, EXPIRE); every other command is one.

A request with values costs: the versions (MGET), the key's minute, what its namespace
learned (EVALSHA), and the allocation script (EVALSHA), one per ALLOCATION_CHUNK new values.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Any

import redis

from bench.engine_bench import generate_text
from bench.harness import Harness, Unavailable
from bench.load import latencies, messages_body
from bench.report import Report, Row, RunOptions
from tests.support.processes import PrivateRedis

VALUE_COUNTS = (1, 100, 1_000)
GOAL = 4  # for up to ALLOCATION_CHUNK values; one more per chunk beyond
END_MARK = "bench-monitor-end"
# The benchmark's own commands, not the proxy's.
_OWN_COMMANDS = frozenset({"config|resetstat", "info", "echo", "monitor", "ping", "hello"})


def run(options: RunOptions, report: Report, harness: Harness) -> None:
    command = options.command("redis")
    try:
        private = harness.redis()
        proxy = harness.proxy(1)
        api_key = harness.api_key()
    except Unavailable as exc:
        report.add([Row("redis: round trips per request", None, "", "", None, command, str(exc))])
        return
    # Rules loaded and the allocation script cached in Redis before anything is counted.
    asyncio.run(latencies(proxy.url, api_key, messages_body("warm up i-0123456789abcdef0"), 3))
    results = []
    for seed, values in enumerate(VALUE_COUNTS):
        text = generate_text(max(1_000, values * 100), values, seed=1000 + seed)
        body = messages_body(text)
        stats, monitored = _count(private, lambda b=body: _one_request(proxy.url, api_key, b))
        results.append((values, stats, monitored))

    trips = [_round_trips(m["client"]) for _, _, m in results]
    constant = len({t for (v, _, _), t in zip(results, trips, strict=True) if v <= 250}) == 1
    rows = []
    for (values, stats, monitored), count in zip(results, trips, strict=True):
        sent = ", ".join(f"{name} {n}" for name, n in sorted(monitored["client"].items()))
        rows.append(
            Row(
                name=f"redis: round trips per request, {values:,} value{'s' * (values > 1)}",
                figure=count,
                unit="",
                goal=f"<= {GOAL} up to 250 values, constant",
                met=None if values > 250 else count <= GOAL and constant,
                command=command,
                note=(
                    f"sent: {sent}; {sum(monitored['lua'].values())} more run inside the "
                    f"Lua script; commandstats total {sum(stats.values())}"
                ),
            )
        )
    report.details["redis"] = [
        {"values": v, "commandstats": dict(s), "sent": dict(m["client"]), "lua": dict(m["lua"])}
        for v, s, m in results
    ]
    report.add(rows)


def _round_trips(sent: Counter[str]) -> int:
    """Commands sent, less those that rode in a pipeline with another (see the docstring)."""
    return sum(sent.values()) - sent["EXPIRE"] - min(sent["INCRBY"], sent["GET"])


def _one_request(url: str, api_key: str, body: dict[str, Any]) -> None:
    asyncio.run(latencies(url, api_key, body, 1))


def _count(private: PrivateRedis, action: Any) -> tuple[Counter[str], dict[str, Counter[str]]]:
    """Commandstats calls for one action, and MONITOR's split into client and Lua commands."""
    client = private.client(timeout=10)
    monitored: dict[str, Counter[str]] = {"client": Counter(), "lua": Counter()}
    listening = threading.Event()

    def watch() -> None:
        with private.client(timeout=10).monitor() as monitor:
            listening.set()
            for entry in monitor.listen():
                name = entry["command"].split(" ", 1)[0].strip('"').lower()
                if name == "echo" and END_MARK in entry["command"]:
                    return
                if name in _OWN_COMMANDS:
                    continue
                source = "lua" if entry.get("client_type") == "lua" else "client"
                monitored[source][name.upper()] += 1

    watcher = threading.Thread(target=watch, name="redis-monitor", daemon=True)
    watcher.start()
    listening.wait(10)
    client.config_resetstat()
    action()
    stats = _commandstats(client)
    client.echo(END_MARK)
    watcher.join(timeout=30)
    return stats, monitored


def _commandstats(client: redis.Redis) -> Counter[str]:
    info: dict[str, Any] = client.info("commandstats")
    calls: Counter[str] = Counter()
    for key, value in info.items():
        name = key.removeprefix("cmdstat_")
        if name not in _OWN_COMMANDS:
            calls[name.upper()] = int(value["calls"])
    return calls
