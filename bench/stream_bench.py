"""Streaming: time to first and last byte through the proxy vs direct, and the hold-back.

The fake upstream streams the request's text back (about 10 KB, 50 values, placeholders
included) in text deltas of 16 characters, one socket write per event. Direct is LiteLLM's
stream straight from the fake (bench/direct_client.py); through the proxy it is a httpx
stream from a one-worker proxy. Both are measured in interleaved blocks.

Hold-back: each delta from the fake carries its number (`bench_seq`), which the proxy
relays; deltas it holds back entirely never reach the client, so the client knows, after
each event, how much masked text the fake had sent and how much restored text it has
received. With the placeholders' originals (read back from the private Redis with the
mapping store) the restored text is mapped back to masked characters; the difference,
at its largest, is the longest hold-back, to compare with the longest placeholder.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bench.fake_upstream import DELTA_CHARS
from bench.harness import (
    BENCH_MASKING_SECRET,
    NAMESPACE,
    REDIS_KEY_PREFIX,
    Harness,
    Unavailable,
)
from bench.load import StreamTiming, client, messages_body, percentile, standard_text, stream
from bench.report import Report, Row, RunOptions
from patterns.store import MappingStore, ValueCipher
from tests.support.processes import PrivateRedis

TTFB_GOAL_MS = 5.0
_TOKEN = re.compile(r"[A-Z][A-Z0-9_]*_[0-9]{3,}")


def run(options: RunOptions, report: Report, harness: Harness) -> None:
    command = options.command("stream")
    try:
        direct = harness.direct()
        proxy = harness.proxy(1)
        floor = harness.floor()
        api_key = harness.api_key()
        private = harness.redis()
    except Unavailable as exc:
        report.add([Row("stream", None, "", "", None, command, str(exc))])
        return
    text = standard_text()
    body = messages_body(text, stream=True)
    blocks, per_block = (2, 10) if options.quick else (5, 40)

    asyncio.run(_streams(proxy.url, api_key, body, 5))  # warm-up
    direct.call(op="latency", body=body, n=5)
    direct_first: list[float] = []
    direct_last: list[float] = []
    timings: list[StreamTiming] = []
    floor_timings: list[StreamTiming] = []
    asyncio.run(_streams(floor.url, api_key, body, 5))  # warm-up
    for _ in range(blocks):
        answer = direct.call(op="latency", body=body, n=per_block)
        direct_first += answer["ttfb_ms"]
        direct_last += answer["ttlb_ms"]
        floor_timings += asyncio.run(_streams(floor.url, api_key, body, per_block))
        timings += asyncio.run(_streams(proxy.url, api_key, body, per_block))

    holds = [hold_back(t.body, private, text) for t in timings]
    longest_hold = max(h.longest for h in holds)
    longest_placeholder = max(h.placeholder_length for h in holds)
    restored_ok = all(h.restored_ok for h in holds)

    proxy_first = [t.ttfb_ms for t in timings]
    proxy_last = [t.ttlb_ms for t in timings]
    first_added = percentile(proxy_first, 50) - percentile(direct_first, 50)
    floor_first = percentile([t.ttfb_ms for t in floor_timings], 50)
    last_added = percentile(proxy_last, 50) - percentile(direct_last, 50)
    n = len(timings)
    report.add(
        [
            Row(
                name="stream: added time to first byte, p50",
                figure=round(first_added, 2),
                unit="ms",
                goal=f"<= {TTFB_GOAL_MS:g} ms",
                met=first_added <= TTFB_GOAL_MS,
                command=command,
                note=(
                    f"proxy {percentile(proxy_first, 50):.2f} ms (p99 "
                    f"{percentile(proxy_first, 99):.2f}) vs direct "
                    f"{percentile(direct_first, 50):.2f} ms (p99 "
                    f"{percentile(direct_first, 99):.2f}); {n} streams each"
                ),
            ),
            Row(
                name="stream: floor added time to first byte, p50 (uvicorn + LiteLLM)",
                figure=round(floor_first - percentile(direct_first, 50), 2),
                unit="ms",
                goal="",
                met=None,
                command=command,
                note=(
                    f"floor {floor_first:.2f} ms (bench/floor_app.py); the proxy "
                    f"{percentile(proxy_first, 50) - floor_first:+.2f} ms over it"
                ),
            ),
            Row(
                name="stream: added time to last byte, p50",
                figure=round(last_added, 2),
                unit="ms",
                goal="",
                met=None,
                command=command,
                note=(
                    f"proxy {percentile(proxy_last, 50):.2f} ms vs direct "
                    f"{percentile(direct_last, 50):.2f} ms for "
                    f"{len(text) // DELTA_CHARS + 1} text deltas"
                ),
            ),
            Row(
                name="stream: longest hold-back of text",
                figure=longest_hold,
                unit="chars",
                goal="<= one placeholder",
                met=longest_hold <= longest_placeholder and restored_ok,
                command=command,
                note=(
                    f"longest placeholder {longest_placeholder} chars; text restored "
                    f"{'exactly' if restored_ok else 'WRONGLY'} in all {n} streams"
                ),
            ),
        ]
    )
    report.details["stream"] = {
        "direct_ttfb_ms": round(percentile(direct_first, 50), 3),
        "proxy_ttfb_ms": round(percentile(proxy_first, 50), 3),
        "direct_ttlb_ms": round(percentile(direct_last, 50), 3),
        "proxy_ttlb_ms": round(percentile(proxy_last, 50), 3),
        "longest_hold_chars": longest_hold,
        "longest_placeholder_chars": longest_placeholder,
    }


async def _streams(url: str, api_key: str, body: dict[str, Any], n: int) -> list[StreamTiming]:
    async with client(api_key) as http:
        return [await stream(http, url, body) for _ in range(n)]


@dataclass(frozen=True)
class HoldBack:
    longest: int  # most masked characters sent by the fake but not yet by the proxy
    placeholder_length: int  # the longest placeholder in the stream
    restored_ok: bool  # the client got the original text back, exactly


def hold_back(raw: bytes, private: PrivateRedis, original: str) -> HoldBack:
    """The longest hold-back in one stream the proxy relayed, in masked characters."""
    deltas: list[tuple[int | None, str]] = []
    masked = ""
    for block in raw.decode().split("\n\n"):
        data = "".join(
            line.removeprefix("data:").strip()
            for line in block.splitlines()
            if line.startswith("data:")
        )
        if not data:
            continue
        event = json.loads(data)
        if event.get("type") == "content_block_delta":
            deltas.append((event.get("bench_seq"), event["delta"].get("text", "")))
        elif event.get("type") == "message_delta":
            masked = event.get("bench_masked_text", "")
    store = MappingStore(
        private.client(timeout=10),
        ValueCipher(BENCH_MASKING_SECRET.encode()),
        ttl=3600,
        key_prefix=REDIS_KEY_PREFIX,
    )
    restore = store.restore(NAMESPACE, _TOKEN.findall(masked))
    to_masked = _RestoredToMasked(masked, restore)

    received_after: dict[int, int] = {}  # bench_seq -> restored characters received by then
    received = 0
    for seq, piece in deltas:
        received += len(piece)
        if seq is not None:
            received_after[seq] = received
    longest = 0
    received = 0
    for seq in range(0, (len(masked) + DELTA_CHARS - 1) // DELTA_CHARS):
        received = received_after.get(seq, received)  # absent: held back entirely
        sent = min((seq + 1) * DELTA_CHARS, len(masked))
        longest = max(longest, sent - to_masked(received))
    restored_text = "".join(piece for _, piece in deltas)
    return HoldBack(
        longest=longest,
        placeholder_length=max(map(len, restore), default=0),
        restored_ok=restored_text == original,
    )


class _RestoredToMasked:
    """Maps a length of restored text back to the length of masked text it came from."""

    def __init__(self, masked: str, restore: Mapping[str, str]) -> None:
        self._r_starts: list[int] = []
        self._r_ends: list[int] = []
        self._m_starts: list[int] = []
        self._m_ends: list[int] = []
        shift = 0  # restored position minus masked position
        for match in _TOKEN.finditer(masked):
            original = restore.get(match.group())
            if original is None:
                continue
            self._m_starts.append(match.start())
            self._r_starts.append(match.start() + shift)
            shift += len(original) - len(match.group())
            self._m_ends.append(match.end())
            self._r_ends.append(match.end() + shift)

    def __call__(self, restored_length: int) -> int:
        index = bisect.bisect_right(self._r_ends, restored_length)
        if index < len(self._r_starts) and self._r_starts[index] < restored_length:
            return self._m_starts[index]  # inside a value: count it as not yet sent
        if index == 0:
            return restored_length
        return self._m_ends[index - 1] + restored_length - self._r_ends[index - 1]
