"""Long sessions: what a turn costs as the conversation's history grows.

Claude Code and agent loops resend the whole conversation every turn; only the last turn is
new. Each session here has a system prompt and tool definitions, a history of HISTORY_SIZES
bytes (user turns holding file contents and command output with values, assistant answers),
and then TURNS turns, each adding about TURN_BYTES of new text with TURN_VALUES new values
and the assistant's answer to the turn before. Turn k's body is the history plus turns 1..k,
as a client sends it. The fake upstream echoes the last user text.

Each turn goes straight through LiteLLM (bench/direct_client.py) and through a one-worker
proxy, interleaved, non-streamed and then, in a session of its own, streamed (time to the
last byte); the added latency is the difference of the percentiles over the turns. The
proxy's CPU time per request is its process's user and system time over the non-streamed
turns (the proxy does nothing else).
The goal: a turn at 400 KB of history adds at most 2x what a turn at 10 KB adds, at 1 MB at
most 3x.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

from bench.engine_bench import generate_text
from bench.harness import Harness, Proxy, Unavailable, process_tree
from bench.load import MODEL, client, percentile, post, stream
from bench.report import Report, Row, RunOptions

HISTORY_SIZES = (10_000, 100_000, 400_000, 1_000_000)
TURN_BYTES = 1_300
TURN_VALUES = 4
# A history's user turns: a file or a command's output (with values), and a short answer.
EXCHANGE_BYTES = 5_000
EXCHANGE_VALUES = 20
ANSWER_BYTES = 800
RATIO_GOALS = {400_000: 2.0, 1_000_000: 3.0}
BASE_SIZE = 10_000
TOOLS = [
    {
        "name": name,
        "description": f"Run {name} in the project's shell and return what it prints.",
        "input_schema": {
            "type": "object",
            "properties": {"command": {"type": "string", "description": "The command line."}},
            "required": ["command"],
        },
    }
    for name in ("bash", "aws_cli", "kubectl", "terraform")
]


def session(history_bytes: int, turns: int, seed: int) -> list[dict[str, Any]]:
    """The bodies of `turns` turns of one session with history_bytes of history."""
    system = generate_text(3_000, 10, seed=seed)
    messages: list[dict[str, Any]] = []
    size = len(system)
    number = 0
    while size < history_bytes:
        number += 1
        user = generate_text(EXCHANGE_BYTES, EXCHANGE_VALUES, seed=seed * 1_000 + number)
        answer = generate_text(ANSWER_BYTES, 2, seed=seed * 1_000 + 500 + number)
        messages += [_message("user", user), _message("assistant", answer)]
        size += len(user) + len(answer)
    bodies = []
    for turn in range(1, turns + 1):
        text = generate_text(TURN_BYTES, TURN_VALUES, seed=seed * 1_000_000 + turn)
        messages.append(_message("user", text))
        bodies.append(
            {
                "model": MODEL,
                "max_tokens": 1024,
                "system": system,
                "tools": TOOLS,
                "messages": list(messages),
            }
        )
        messages.append(_message("assistant", text))  # the echo the client got back
    return bodies


def _message(role: str, text: str) -> dict[str, Any]:
    return {"role": role, "content": [{"type": "text", "text": text}]}


def run(options: RunOptions, report: Report, harness: Harness) -> None:
    command = options.command("session")
    try:
        direct = harness.direct()
        proxy = harness.proxy(1)
        api_key = harness.api_key()
    except Unavailable as exc:
        report.add([Row("session", None, "", "", None, command, str(exc))])
        return
    turns = 4 if options.quick else 20
    added: dict[tuple[int, bool], float] = {}
    rows: list[Row] = []
    for index, history in enumerate(HISTORY_SIZES):
        # Streamed turns are a session of their own: the same bodies again would find every
        # new turn's text and values known to the proxy already.
        bodies = session(history, turns, seed=index + 1)
        streamed_bodies = session(history, turns, seed=index + 101)
        figures = _measure(direct, proxy, api_key, bodies, streamed_bodies)
        added[(history, False)] = figures["added_ms"]
        added[(history, True)] = figures["added_stream_ms"]
        rows += _size_rows(command, history, len(bodies), figures)
    for history, goal in RATIO_GOALS.items():
        for streamed in (False, True):
            ratio = _ratio(added[(history, streamed)], added[(BASE_SIZE, streamed)])
            what = "streamed, to the last byte" if streamed else "non-streamed"
            rows.append(
                Row(
                    name=f"session: added per turn, {history // 1000} KB / 10 KB, {what}",
                    figure=round(ratio, 2),
                    unit="x",
                    goal=f"<= {goal:g}x",
                    met=ratio <= goal,
                    command=command,
                    note=(
                        f"+{added[(history, streamed)]:.1f} ms vs "
                        f"+{added[(BASE_SIZE, streamed)]:.1f} ms, same run"
                    ),
                )
            )
    report.add(rows)


def _measure(
    direct: Any,
    proxy: Proxy,
    api_key: str,
    bodies: list[dict[str, Any]],
    streamed: list[dict[str, Any]],
) -> dict[str, float]:
    return asyncio.run(_measure_turns(direct, proxy, api_key, bodies, streamed))


async def _measure_turns(
    direct: Any,
    proxy: Proxy,
    api_key: str,
    bodies: list[dict[str, Any]],
    streamed_bodies: list[dict[str, Any]],
) -> dict[str, float]:
    """Each turn direct, then through the proxy on one kept-alive connection (the direct
    client blocks this loop while it works: nothing else runs on it)."""
    direct_ms: list[float] = []
    proxy_ms: list[float] = []
    direct_stream_ms: list[float] = []
    proxy_stream_ms: list[float] = []
    cpu_seconds = 0.0
    async with client(api_key) as http:
        for warm_up in (bodies[0], {**streamed_bodies[0], "stream": True}):  # connections
            direct.call(op="latency", body=warm_up, n=1)
            if warm_up.get("stream"):
                await stream(http, proxy.url, warm_up)
            else:
                await post(http, proxy.url, warm_up)
        for body in bodies:
            direct_ms += direct.call(op="latency", body=body, n=1)["ms"]
            before = _cpu_seconds(proxy.pid)
            started = time.perf_counter()
            await post(http, proxy.url, body)
            proxy_ms.append((time.perf_counter() - started) * 1e3)
            cpu_seconds += _cpu_seconds(proxy.pid) - before
        for body in streamed_bodies:
            streamed = {**body, "stream": True}
            direct_stream_ms += direct.call(op="latency", body=streamed, n=1)["ttlb_ms"]
            proxy_stream_ms.append((await stream(http, proxy.url, streamed)).ttlb_ms)
    return {
        "body_kb": len(json.dumps(bodies[-1])) / 1000,
        "direct_ms": percentile(direct_ms, 50),
        "proxy_ms": percentile(proxy_ms, 50),
        "added_ms": percentile(proxy_ms, 50) - percentile(direct_ms, 50),
        "added_p99_ms": percentile(proxy_ms, 99) - percentile(direct_ms, 99),
        "added_stream_ms": percentile(proxy_stream_ms, 50) - percentile(direct_stream_ms, 50),
        "added_stream_p99_ms": (percentile(proxy_stream_ms, 99) - percentile(direct_stream_ms, 99)),
        "cpu_ms": cpu_seconds / len(bodies) * 1e3,
    }


def _size_rows(command: str, history: int, turns: int, figures: dict[str, float]) -> list[Row]:
    label = f"{history // 1000} KB history"
    return [
        Row(
            name=f"session: added latency per turn p50, {label}",
            figure=round(figures["added_ms"], 1),
            unit="ms",
            goal="",
            met=None,
            command=command,
            note=(
                f"p99 +{figures['added_p99_ms']:.1f} ms; proxy {figures['proxy_ms']:.1f} ms vs "
                f"direct {figures['direct_ms']:.1f} ms; {turns} turns, last body "
                f"{figures['body_kb']:.0f} KB"
            ),
        ),
        Row(
            name=f"session: added to the last byte per streamed turn p50, {label}",
            figure=round(figures["added_stream_ms"], 1),
            unit="ms",
            goal="",
            met=None,
            command=command,
            note=f"p99 +{figures['added_stream_p99_ms']:.1f} ms; {turns} turns",
        ),
        Row(
            name=f"session: proxy CPU per turn, {label}",
            figure=round(figures["cpu_ms"], 1),
            unit="ms",
            goal="",
            met=None,
            command=command,
            note="user + system time of the one-worker proxy and its scanning process",
        ),
    ]


def _ratio(value: float, base: float) -> float:
    # An added latency at or below zero at 10 KB (noise) would make any ratio meaningless.
    return value / max(base, 0.1)


def _cpu_seconds(pid: int) -> float:
    """User and system time of a process and its descendants alive now (the proxy scans large
    requests in a process of its own)."""
    total = 0
    for process in process_tree(pid):
        try:
            fields = Path(f"/proc/{process}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended in between
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")
