"""The required floor: a request naming 100 AWS resources is masked, forwarded and restored in
under 0.15 s, end to end.

One request through the one-worker proxy holds 100 distinct AWS resources (instances,
VPCs, subnets, security groups, AMIs, volumes, snapshots, ENIs, access key IDs, ARNs and
S3 buckets), new ones every time, so that all 100 are allocated. The fake upstream echoes
the masked text; each run checks that none of the 100 reached it and that the answer holds
every one restored. The figure is the client's wall time per request, end to end.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
from collections.abc import Callable

import httpx

from bench.harness import Harness, Unavailable
from bench.load import client, messages_body, post
from bench.report import Report, Row, RunOptions

RESOURCES = 100
GOAL_MS = 150.0  # required: 100 AWS resources masked, forwarded and restored in under 0.15 s


def _hex(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


RESOURCE_MAKERS: tuple[tuple[str, Callable[[random.Random], str]], ...] = (
    ("EC2", lambda r: f"i-{_hex(r, 17)}"),
    ("VPC", lambda r: f"vpc-{_hex(r, 8)}"),
    ("Subnet", lambda r: f"subnet-{_hex(r, 17)}"),
    ("Security group", lambda r: f"sg-{_hex(r, 17)}"),
    ("AMI", lambda r: f"ami-{_hex(r, 17)}"),
    ("EBS", lambda r: f"vol-{_hex(r, 17)}"),
    ("Snapshot", lambda r: f"snap-{_hex(r, 17)}"),
    ("ENI", lambda r: f"eni-{_hex(r, 17)}"),
    (
        "IAM",
        lambda r: "AKIA" + "".join(r.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16)),
    ),
    ("ARN", lambda r: f"arn:aws:iam::{r.randrange(10**11, 10**12)}:role/app-{_hex(r, 6)}"),
    ("S3", lambda r: f"s3://data-{_hex(r, 10)}/exports/"),
)


def resources_text(seed: int) -> tuple[str, list[str]]:
    """A Korean infrastructure report ("인프라 분석:", one "- kind: value" line per resource)
    listing 100 distinct resources, and the values."""
    rng = random.Random(seed)
    lines = ["인프라 분석:"]
    values: list[str] = []
    for index in range(RESOURCES):
        kind, make = RESOURCE_MAKERS[index % len(RESOURCE_MAKERS)]
        value = make(rng)
        values.append(value.removeprefix("s3://").split("/")[0] if kind == "S3" else value)
        lines.append(f"- {kind}: {value} 상태 확인 필요")
    return "\n".join(lines) + "\n", values


def run(options: RunOptions, report: Report, harness: Harness) -> None:
    command = options.command("spec")
    try:
        proxy = harness.proxy(1)
        api_key = harness.api_key()
        upstream = harness.upstream_url()
    except Unavailable as exc:
        report.add([Row("spec: 100 AWS resources", None, "", "", None, command, str(exc))])
        return
    runs = 5 if options.quick else 30
    timings, problems = asyncio.run(_measure(proxy.url, upstream, api_key, runs))
    median = statistics.median(timings)
    report.add(
        [
            Row(
                name=f"spec: {RESOURCES} AWS resources masked, forwarded, restored",
                figure=round(median, 1),
                unit="ms",
                goal=f"<= {GOAL_MS:g} ms",
                met=median <= GOAL_MS and not problems,
                command=command,
                note=(
                    f"median of {runs}, slowest {max(timings):.1f} ms; "
                    + ("; ".join(problems[:3]) if problems else "all values masked and restored")
                ),
            )
        ]
    )
    report.details["spec"] = {"ms": [round(t, 3) for t in timings], "problems": problems}


async def _measure(
    proxy_url: str, upstream_url: str, api_key: str, runs: int
) -> tuple[list[float], list[str]]:
    timings: list[float] = []
    problems: list[str] = []
    loop = asyncio.get_running_loop()
    async with client(api_key) as http, httpx.AsyncClient(timeout=10.0) as fake:
        for index in range(runs + 1):
            text, values = resources_text(seed=3000 + index)
            started = loop.time()
            response = await post(http, proxy_url, messages_body(text))
            elapsed = (loop.time() - started) * 1e3
            if index == 0:
                continue  # a warm-up: first request on this connection
            timings.append(elapsed)
            seen = (await fake.get(f"{upstream_url}/bench/last-request")).text
            leaked = [v for v in values if v in seen or json.dumps(v)[1:-1] in seen]
            answer = "".join(block.get("text", "") for block in response.json().get("content", []))
            lost = [v for v in values if v not in answer]
            if leaked:
                problems.append(f"run {index}: {len(leaked)} values reached the upstream")
            if lost:
                problems.append(f"run {index}: {len(lost)} values not restored")
            if answer != text:
                problems.append(f"run {index}: the answer is not the text sent")
    return timings, problems
