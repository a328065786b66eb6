"""Load from this process to a running proxy with httpx: bounded in count and in time."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from bench.engine_bench import generate_text

MODEL = "bench-echo"
TIMEOUT = httpx.Timeout(60.0, connect=5.0)


def messages_body(text: str, *, stream: bool = False, max_tokens: int = 1024) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": text}],
    }
    if stream:
        body["stream"] = True
    return body


def standard_text(seed: int = 7) -> str:
    """The proxy benchmarks' request text: about 10 KB holding 50 sensitive values."""
    return generate_text(10_000, 50, seed=seed)


def percentile(values: Sequence[float], q: int) -> float:
    """The q-th percentile (inclusive method), q in 1..99."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def client(api_key: str, concurrency: int = 1) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {
        "x-api-key": api_key,
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
    }
    return httpx.AsyncClient(headers=headers, timeout=TIMEOUT, limits=limits)


async def post(http: httpx.AsyncClient, url: str, body: dict[str, Any]) -> httpx.Response:
    response = await http.post(f"{url}/v1/messages", content=json.dumps(body).encode())
    if response.status_code != 200:
        raise RuntimeError(f"the proxy answered {response.status_code}: {response.text[:300]}")
    return response


async def latencies(url: str, api_key: str, body: dict[str, Any], n: int) -> list[float]:
    """Milliseconds per request, one request at a time on one kept-alive connection."""
    timings = []
    async with client(api_key) as http:
        for _ in range(n):
            started = time.perf_counter()
            await post(http, url, body)
            timings.append((time.perf_counter() - started) * 1e3)
    return timings


@dataclass(frozen=True)
class Throughput:
    done: int
    errors: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0


async def throughput(
    url: str,
    api_key: str,
    bodies: Sequence[dict[str, Any]],
    *,
    n: int,
    concurrency: int,
    seconds: float,
) -> Throughput:
    """n requests (bodies in turn) from `concurrency` tasks, stopping early after `seconds`."""
    started = time.perf_counter()
    deadline = started + seconds
    issued = done = errors = 0

    async def worker(http: httpx.AsyncClient) -> None:
        nonlocal issued, done, errors
        while issued < n and time.perf_counter() < deadline:
            body = bodies[issued % len(bodies)]
            issued += 1
            try:
                if body.get("stream"):
                    await stream(http, url, body)
                else:
                    await post(http, url, body)
            except (httpx.HTTPError, RuntimeError):
                errors += 1
            else:
                done += 1

    async with client(api_key, concurrency) as http:
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
    return Throughput(done=done, errors=errors, seconds=time.perf_counter() - started)


@dataclass(frozen=True)
class StreamTiming:
    ttfb_ms: float
    ttlb_ms: float
    body: bytes


async def stream(http: httpx.AsyncClient, url: str, body: dict[str, Any]) -> StreamTiming:
    """One streamed request: time to the first body byte, to the last, and the bytes."""
    started = time.perf_counter()
    first = 0.0
    chunks = []
    async with http.stream(
        "POST", f"{url}/v1/messages", content=json.dumps(body).encode()
    ) as response:
        if response.status_code != 200:
            await response.aread()
            raise RuntimeError(f"the proxy answered {response.status_code}")
        async for chunk in response.aiter_raw():
            if not first:
                first = time.perf_counter() - started
            chunks.append(chunk)
    last = time.perf_counter() - started
    return StreamTiming(ttfb_ms=first * 1e3, ttlb_ms=last * 1e3, body=b"".join(chunks))
