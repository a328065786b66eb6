"""Memory: the proxy worker's resident set after warm-up and after many requests, and what
1, 2 and 4 workers of make serve cost together.

A one-worker proxy of its own (uvicorn without --workers serves in its own process) gets
1,000 warm-up requests, then 10,000 more (1,000 with --quick), at concurrency 8. The
requests cycle through 500 texts of about 10 KB with 50 values each (25,000 distinct
values), and one in ten is streamed. The warm-up sends every text twice: caches that fill
once per kind of input (RE2's lazily built DFA states, the allocator's arenas) have filled
by then, so what grows afterwards is what a long-running process would keep growing. RSS
is VmRSS from /proc, read after a short pause, also half-way, to tell a slow warm-up from
a steady leak.

Workers: make serve's server (gunicorn forking uvicorn workers from one master that imported
the application, config/serving.py) with 1, 2 and 4 workers serving the same WORKER_TRAFFIC
requests (large ones among them, so that each worker's scanning process has started and
worked): the same traffic, hence the same values learned, which every worker of the
namespace holds; the figure is the proportional set size (PSS: shared pages split among the
processes that share them) of the whole process tree, master and scanning processes
included. Goal: 4 workers at most twice one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from bench.harness import Harness, Unavailable, process_tree, pss_kib, rss_kib
from bench.load import Throughput, messages_body, standard_text, throughput
from bench.report import Report, Row, RunOptions

GROWTH_GOAL_MB = 10.0
WARM_UP = 1_000  # every text twice
REQUESTS = 10_000
QUICK_REQUESTS = 1_000
TEXTS = 500
CONCURRENCY = 8
WORKER_COUNTS = (1, 2, 4)
WORKER_TRAFFIC = 800
PSS_GOAL_RATIO = 2.0


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
    report.add(_worker_rows(command, harness, api_key, bodies))
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


def _worker_rows(
    command: str, harness: Harness, api_key: str, bodies: Sequence[dict[str, Any]]
) -> list[Row]:
    large = messages_body(" ".join(standard_text(seed=3000 + n) for n in range(12)))
    warm_up = [large if index % 20 == 0 else body for index, body in enumerate(bodies)]
    idle: dict[int, int] = {}
    loaded: dict[int, int] = {}
    for workers in WORKER_COUNTS:
        with harness.served_proxy(workers) as proxy:
            time.sleep(2.0)  # each worker's scanning process has started
            idle[workers] = _tree_pss_kib(proxy.process.pid)
            _load(proxy.url, api_key, warm_up, WORKER_TRAFFIC)
            loaded[workers] = _tree_pss_kib(proxy.process.pid)
    rows = [
        Row(
            name=f"memory: make serve with {workers} worker(s), PSS in all",
            figure=_mb(loaded[workers]),
            unit="MB",
            goal="",
            met=None,
            command=command,
            note=(
                f"{_mb(loaded[workers]) / workers:.1f} MB a worker after the same "
                f"{WORKER_TRAFFIC} requests; {_mb(idle[workers])} MB before the "
                "first (master, workers and their scanning processes)"
            ),
        )
        for workers in WORKER_COUNTS
    ]
    most = WORKER_COUNTS[-1]
    ratio = loaded[most] / loaded[1]
    rows.append(
        Row(
            name=f"memory: make serve, {most} workers / 1 worker (PSS)",
            figure=round(ratio, 2),
            unit="x",
            goal=f"<= {PSS_GOAL_RATIO:g}x",
            met=ratio <= PSS_GOAL_RATIO,
            command=command,
            note=(
                f"{_mb(loaded[most]):.0f} MB vs {_mb(loaded[1]):.0f} MB after the requests; "
                f"before the first: {idle[most] / idle[1]:.2f}x"
            ),
        )
    )
    return rows


def _tree_pss_kib(pid: int) -> int:
    return sum(pss_kib(process) for process in process_tree(pid))


def _mb(kib: int) -> float:
    return round(kib * 1024 / 1e6, 1)
