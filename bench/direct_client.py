"""LiteLLM straight to the fake upstream: the baseline the proxy's overhead is measured against.

Run by bench/harness.py as `python -m bench.direct_client UPSTREAM_URL`, in a process of its
own (LiteLLM costs ~2 s and ~200 MB to import). It reads one JSON command per line on
stdin and answers one JSON line on stdout:

- {"op": "ping"}: {"ok": true} once LiteLLM is imported and warmed up.
- {"op": "latency", "body": {...}, "n": N}: N requests one after another;
  {"ms": [...]} (with `"stream": true` in the body: {"ttfb_ms": [...], "ttlb_ms": [...]}).
- {"op": "throughput", "body": {...}, "n": N, "concurrency": C, "seconds": S}: N requests
  from C concurrent tasks, stopping early after S seconds; {"done", "errors", "seconds"}.

Each request is the call the proxy makes (proxy/upstream.py): `litellm.anthropic.messages.
acreate` with the same arguments, as LiteLLM makes it by default: with its success logging,
which the proxy turns off for its own calls (the floor, bench/floor_app.py, does too).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from typing import Any

os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")
os.environ.setdefault("LITELLM_MODE", "PRODUCTION")

import httpx
import litellm

litellm.suppress_debug_info = True
litellm.drop_params = False
for _name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
    logging.getLogger(_name).setLevel(logging.CRITICAL)

HEADERS = {"anthropic-version": "2023-06-01"}
WARM_UP_BODY = {
    "model": "bench-echo",
    "max_tokens": 16,
    "messages": [{"role": "user", "content": "warm up"}],
}


class Client:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    async def send(self, body: dict[str, Any]) -> tuple[float, float]:
        """One call; (seconds to the first byte, seconds to the last byte)."""
        fields = dict(body)
        model = fields.pop("model")
        started = time.perf_counter()
        result: Any = await litellm.anthropic.messages.acreate(
            model=f"anthropic/{model}",
            api_base=self.base_url,
            api_key="sk-ant-bench-dummy",
            timeout=httpx.Timeout(60.0, connect=5.0),
            extra_headers=HEADERS,
            num_retries=0,
            **fields,
        )
        if isinstance(result, dict):
            elapsed = time.perf_counter() - started
            return elapsed, elapsed
        first = 0.0
        async for _ in result:
            if not first:
                first = time.perf_counter() - started
        return first, time.perf_counter() - started

    async def latency(self, body: dict[str, Any], n: int) -> dict[str, Any]:
        timings = [await self.send(body) for _ in range(n)]
        if body.get("stream"):
            return {
                "ttfb_ms": [first * 1e3 for first, _ in timings],
                "ttlb_ms": [last * 1e3 for _, last in timings],
            }
        return {"ms": [last * 1e3 for _, last in timings]}

    async def throughput(
        self, body: dict[str, Any], n: int, concurrency: int, seconds: float
    ) -> dict[str, Any]:
        started = time.perf_counter()
        deadline = started + seconds
        remaining = n
        done = errors = 0

        async def worker() -> None:
            nonlocal remaining, done, errors
            while remaining > 0 and time.perf_counter() < deadline:
                remaining -= 1
                try:
                    await self.send(body)
                except Exception:  # noqa: BLE001 - counted and reported, never hidden
                    errors += 1
                else:
                    done += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return {"done": done, "errors": errors, "seconds": time.perf_counter() - started}


async def serve(base_url: str) -> None:
    client = Client(base_url)
    loop = asyncio.get_running_loop()
    # The first stream pays for LiteLLM's lazy imports: not part of any figure.
    await client.send(WARM_UP_BODY)
    await client.send({**WARM_UP_BODY, "stream": True})
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        command = json.loads(line)
        op = command.pop("op")
        try:
            if op == "ping":
                answer: dict[str, Any] = {"ok": True}
            elif op == "latency":
                answer = await client.latency(command["body"], command["n"])
            elif op == "throughput":
                answer = await client.throughput(
                    command["body"], command["n"], command["concurrency"], command["seconds"]
                )
            else:
                answer = {"error": f"unknown op {op!r}"}
        except Exception as exc:  # noqa: BLE001 - reported to the benchmark, which stops
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1]))
