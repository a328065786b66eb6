"""Memory: the proxy worker's resident set after warm-up and after many requests.

A one-worker proxy of its own (uvicorn without --workers serves in its own process) gets
1,000 warm-up requests, then 10,000 more (1,000 with --quick), at concurrency 8. The
requests cycle through 500 texts of about 10 KB with 50 values each (25,000 distinct
values), and one in ten is streamed. The warm-up sends every text twice: caches that fill
once per kind of input (RE2's lazily built DFA states, the allocator's arenas) have filled
by then, so what grows afterwards is what a long-running process would keep growing. RSS
is VmRSS from /proc, read after a short pause, also half-way, to tell a slow warm-up from
a steady leak.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from bench.harness import Harness, Unavailable, rss_kib
from bench.load import Throughput, messages_body, standard_text, throughput
from bench.report import Report, Row, RunOptions

GROWTH_GOAL_MB = 10.0
WARM_UP = 1_000  # every text twice
REQUESTS = 10_000
QUICK_REQUESTS = 1_000
TEXTS = 500
CONCURRENCY = 8


def run(options: RunOptions, report: Report, harness: Harness) -> None:
    command = options.command("memory")
    try:
        api_key = harness.api_key()
    except Unavailable as exc:
        report.add([Row("memory", None, "", "", None, command, str(exc))])
        return
    bodies = [
        messages_body(standard_text(seed=2000 + index), stream=index % 10 == 9)
        for index in range(TEXTS)
    ]
    requests = QUICK_REQUESTS if options.quick else REQUESTS
    with harness.fresh_proxy(1) as proxy:
        started_kib = rss_kib(proxy.pid)
        warm = _load(proxy.url, api_key, bodies, WARM_UP)
        warm_kib = rss_kib(proxy.pid)
        rotated = bodies[WARM_UP % TEXTS :] + bodies[: WARM_UP % TEXTS]
        first_half = _load(proxy.url, api_key, rotated, requests // 2)
        half_kib = rss_kib(proxy.pid)
        second_half = _load(proxy.url, api_key, rotated, requests - requests // 2)
        after_kib = rss_kib(proxy.pid)
    loaded = Throughput(
        done=first_half.done + second_half.done,
        errors=first_half.errors + second_half.errors,
        seconds=first_half.seconds + second_half.seconds,
    )
    growth_mb = (after_kib - warm_kib) * 1024 / 1e6
    errors = warm.errors + loaded.errors
    report.add(
        [
            Row(
                name="memory: proxy worker RSS after warm-up",
                figure=round(warm_kib * 1024 / 1e6, 1),
                unit="MB",
                goal="",
                met=None,
                command=command,
                note=(
                    f"{started_kib * 1024 / 1e6:.1f} MB before any request; "
                    f"{WARM_UP} warm-up requests"
                ),
            ),
            Row(
                name=f"memory: RSS growth over {loaded.done:,} more requests",
                figure=round(growth_mb, 1),
                unit="MB",
                goal=f"<= {GROWTH_GOAL_MB:g} MB",
                met=growth_mb <= GROWTH_GOAL_MB and errors == 0,
                command=command,
                note=(
                    f"{after_kib * 1024 / 1e6:.1f} MB after, "
                    f"{(after_kib - half_kib) * 1024 / 1e6:.1f} MB of it in the second half; "
                    f"{loaded.per_second:.0f} req/s at "
                    f"c={CONCURRENCY}, 1 in 10 streamed"
                    + (f"; --quick: {requests:,} instead of {REQUESTS:,}" if options.quick else "")
                    + (f"; {errors} errors" if errors else "")
                ),
            ),
        ]
    )
    report.details["memory"] = {
        "rss_start_kib": started_kib,
        "rss_warm_kib": warm_kib,
        "rss_half_kib": half_kib,
        "rss_after_kib": after_kib,
        "requests": loaded.done,
        "errors": errors,
    }


def _load(url: str, api_key: str, bodies: Sequence[dict[str, Any]], n: int) -> Throughput:
    result = asyncio.run(
        throughput(url, api_key, bodies, n=n, concurrency=CONCURRENCY, seconds=600)
    )
    time.sleep(1.0)  # background audit writes finish; the allocator settles
    return result
