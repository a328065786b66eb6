"""Proxy overhead: the same request straight through LiteLLM vs through the proxy.

The request is about 10 KB holding 50 sensitive values (model "bench-echo": the fake
upstream echoes it, placeholders included, so the proxy restores 50 values in the answer).

(a) direct: bench/direct_client.py calls `litellm.anthropic.messages.acreate` against the
    fake upstream, exactly as proxy/upstream.py does, in a process of its own.
(b) proxy: `uvicorn config.asgi:application` with 1 and with 2 workers in front of the same
    fake, called with httpx from this process.
(c) floor: bench/floor_app.py, a bare uvicorn app that parses the body and makes the same
    LiteLLM call (no Django, no masking): what any server with LiteLLM in it adds.

Latency is measured one request at a time, in interleaved blocks (direct, 1 worker,
2 workers, again), so that a noisy neighbour hits all of them alike; the added latency is
the difference of the percentiles. Throughput is requests per second at concurrency 32.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict

from bench.harness import Harness, Unavailable
from bench.load import (
    Throughput,
    latencies,
    messages_body,
    percentile,
    standard_text,
    throughput,
)
from bench.report import Report, Row, RunOptions

P50_GOAL_MS = 3.0
P99_GOAL_MS = 10.0
THROUGHPUT_GOAL = 0.70  # of the direct client's
CONCURRENCY = 32
WORKER_COUNTS = (1, 2)


def run(options: RunOptions, report: Report, harness: Harness) -> None:
    command = options.command("proxy")
    try:
        direct = harness.direct()
        proxies = {workers: harness.proxy(workers) for workers in WORKER_COUNTS}
        floor = harness.floor()
        api_key = harness.api_key()
    except Unavailable as exc:
        report.add([Row("proxy overhead", None, "", "", None, command, str(exc))])
        return
    body = messages_body(standard_text())
    blocks, per_block = (2, 25) if options.quick else (5, 100)
    throughput_n, throughput_s = (300, 20.0) if options.quick else (3000, 60.0)

    for proxy in proxies.values():  # each worker loads its rules and opens its connections
        asyncio.run(
            throughput(proxy.url, api_key, [body], n=16 * proxy.workers, concurrency=8, seconds=30)
        )
    direct.call(op="latency", body=body, n=10)

    asyncio.run(latencies(floor.url, api_key, body, 10))
    direct_ms: list[float] = []
    floor_ms: list[float] = []
    proxy_ms: dict[int, list[float]] = {workers: [] for workers in proxies}
    for _ in range(blocks):
        direct_ms += direct.call(op="latency", body=body, n=per_block)["ms"]
        floor_ms += asyncio.run(latencies(floor.url, api_key, body, per_block))
        for workers, proxy in proxies.items():
            proxy_ms[workers] += asyncio.run(latencies(proxy.url, api_key, body, per_block))

    answer = direct.call(
        op="throughput", body=body, n=throughput_n, concurrency=CONCURRENCY, seconds=throughput_s
    )
    direct_rate = Throughput(answer["done"], answer["errors"], answer["seconds"])
    proxy_rates = {
        workers: asyncio.run(
            throughput(
                proxy.url,
                api_key,
                [body],
                n=throughput_n,
                concurrency=CONCURRENCY,
                seconds=throughput_s,
            )
        )
        for workers, proxy in proxies.items()
    }

    floor_rate = asyncio.run(
        throughput(
            floor.url,
            api_key,
            [body],
            n=throughput_n,
            concurrency=CONCURRENCY,
            seconds=throughput_s,
        )
    )

    samples = len(direct_ms)
    d50, d99 = percentile(direct_ms, 50), percentile(direct_ms, 99)
    rows = [
        Row(
            name="proxy: direct LiteLLM latency p50, c=1",
            figure=round(d50, 2),
            unit="ms",
            goal="",
            met=None,
            command=command,
            note=f"p99 {d99:.2f} ms; {samples} requests of 10 KB with 50 IDs",
        )
    ]
    f50 = percentile(floor_ms, 50)
    rows.append(
        Row(
            name="proxy: floor added latency p50, c=1 (uvicorn + LiteLLM, no proxy)",
            figure=round(f50 - d50, 2),
            unit="ms",
            goal="",
            met=None,
            command=command,
            note=f"floor p50 {f50:.2f} ms vs direct {d50:.2f} ms (bench/floor_app.py)",
        )
    )
    for workers, timings in proxy_ms.items():
        p50, p99 = percentile(timings, 50), percentile(timings, 99)
        label = f"{workers} worker{'s' if workers > 1 else ''}"
        rows += [
            Row(
                name=f"proxy: added latency p50, c=1, {label}",
                figure=round(p50 - d50, 2),
                unit="ms",
                goal=f"<= {P50_GOAL_MS:g} ms",
                met=p50 - d50 <= P50_GOAL_MS,
                command=command,
                note=(
                    f"proxy p50 {p50:.2f} ms vs direct {d50:.2f} ms; "
                    f"{p50 - f50:+.2f} ms over the floor"
                ),
            ),
            Row(
                name=f"proxy: added latency p99, c=1, {label}",
                figure=round(p99 - d99, 2),
                unit="ms",
                goal=f"<= {P99_GOAL_MS:g} ms",
                met=p99 - d99 <= P99_GOAL_MS,
                command=command,
                note=f"proxy p99 {p99:.2f} ms vs direct {d99:.2f} ms",
            ),
        ]
    rows.append(
        Row(
            name=f"proxy: direct LiteLLM throughput, c={CONCURRENCY}",
            figure=round(direct_rate.per_second, 1),
            unit="req/s",
            goal="",
            met=None,
            command=command,
            note=_counts(direct_rate),
        )
    )
    floor_share = floor_rate.per_second / direct_rate.per_second if direct_rate.per_second else 0
    rows.append(
        Row(
            name=f"proxy: floor throughput vs direct, c={CONCURRENCY} (uvicorn + LiteLLM)",
            figure=round(floor_share * 100, 1),
            unit="%",
            goal="",
            met=None,
            command=command,
            note=f"{floor_rate.per_second:.1f} req/s; {_counts(floor_rate)}",
        )
    )
    for workers, rate in proxy_rates.items():
        share = rate.per_second / direct_rate.per_second if direct_rate.per_second else 0.0
        rows.append(
            Row(
                name=(
                    f"proxy: throughput vs direct, c={CONCURRENCY}, "
                    f"{workers} worker{'s' if workers > 1 else ''}"
                ),
                figure=round(share * 100, 1),
                unit="%",
                goal=f">= {THROUGHPUT_GOAL:.0%}",
                met=share >= THROUGHPUT_GOAL and rate.errors == 0,
                command=command,
                note=f"{rate.per_second:.1f} req/s; {_counts(rate)}",
            )
        )
    report.details["proxy"] = {
        "direct_ms": _summary(direct_ms),
        "floor_ms": _summary(floor_ms),
        "proxy_ms": {str(w): _summary(t) for w, t in proxy_ms.items()},
        "throughput": {
            "direct": asdict(direct_rate),
            "floor": asdict(floor_rate),
            **{f"proxy_{w}_workers": asdict(r) for w, r in proxy_rates.items()},
        },
    }
    report.add(rows)


def _counts(rate: Throughput) -> str:
    errors = f", {rate.errors} errors" if rate.errors else ""
    return f"{rate.done} requests in {rate.seconds:.1f} s{errors}"


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": round(percentile(values, 50), 3),
        "p90": round(percentile(values, 90), 3),
        "p99": round(percentile(values, 99), 3),
        "max": round(max(values), 3),
    }
