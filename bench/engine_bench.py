"""Engine speed: mask and unmask with the full default library vs a plain Python `re` floor.

The floor is one single-pass scan with Python's `re` over an alternation of the same
regexes: the least any regex-based masker must spend. Figures are medians of repeated runs
measured side by side in one process, so the ratio holds even on a noisy machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from patterns.engine import LocalAllocator, Snapshot, build_snapshot, unmask
from patterns.library import DEFAULT_PATTERNS

SIZES = ((1_000, 10), (100_000, 1_000), (1_000_000, 10_000))
COMMAND = "make bench  (or: .venv/bin/python -m bench --repeat N)"
RESULTS = Path(__file__).resolve().parent / "results-engine.json"

FILLER_TEXT = (
    "the instance in region was restarted after the health check failed and traffic "
    "moved to the standby while we looked at the logs 로그를 확인했습니다 에서 장애가 발생"
)
FILLER_WORDS = tuple(FILLER_TEXT.split())


def _hex(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def _upper(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(n))


VALUE_MAKERS: tuple[Callable[[random.Random], str], ...] = (
    lambda r: f"i-{_hex(r, 17)}",
    lambda r: f"vpc-{_hex(r, 8)}",
    lambda r: f"subnet-{_hex(r, 17)}",
    lambda r: f"sg-{_hex(r, 17)}",
    lambda r: f"AKIA{_upper(r, 16)}",
    lambda r: f"arn:aws:iam::{r.randrange(10**11, 10**12)}:role/app-{_hex(r, 6)}",
    lambda r: f"{r.randrange(1, 223)}.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}",
    lambda r: f"s3://logs-{_hex(r, 8)}/2025/08/",
)


def generate_text(size: int, values: int, seed: int = 7) -> str:
    """About `size` characters of prose holding `values` sensitive values, evenly spread."""
    rng = random.Random(seed)
    per_value = size // values
    parts: list[str] = []
    for index in range(values):
        words: list[str] = []
        length = 0
        while length < per_value - 40:
            word = rng.choice(FILLER_WORDS)
            words.append(word)
            length += len(word) + 1
        parts.append(" ".join(words))
        parts.append(f" {VALUE_MAKERS[index % len(VALUE_MAKERS)](rng)} ")
    return "".join(parts)


def floor_regex() -> tuple[re.Pattern[str], int]:
    """The same regexes as one Python `re` alternation (patterns `re` cannot read are left out)."""
    usable = []
    for entry in DEFAULT_PATTERNS:
        try:
            re.compile(entry.regex)
        except re.error:
            continue
        usable.append(f"(?:{entry.regex})")
    return re.compile("|".join(usable)), len(usable)


def _median_seconds(function: Callable[[], object], repeat: int) -> float:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


@dataclass(frozen=True)
class Row:
    size_bytes: int
    values: int
    found: int
    mask_ms: float
    unmask_ms: float
    floor_ms: float
    mask_mb_s: float
    unmask_mb_s: float
    floor_mb_s: float
    mask_to_floor: float
    command: str


def measure(snapshot: Snapshot, floor: re.Pattern[str], size: int, values: int, repeat: int) -> Row:
    text = generate_text(size, values)
    allocator = LocalAllocator()
    result = snapshot.mask(text, allocator)  # warm-up, and the placeholders for unmask
    restore = allocator.restore_map
    mask_s = _median_seconds(lambda: snapshot.mask(text, LocalAllocator()), repeat)
    unmask_s = _median_seconds(lambda: unmask(result.text, restore), repeat)
    floor_s = _median_seconds(lambda: sum(1 for _ in floor.finditer(text)), repeat)
    megabytes = len(text.encode()) / 1e6
    return Row(
        size_bytes=len(text.encode()),
        values=values,
        found=len(result.findings),
        mask_ms=round(mask_s * 1e3, 3),
        unmask_ms=round(unmask_s * 1e3, 3),
        floor_ms=round(floor_s * 1e3, 3),
        mask_mb_s=round(megabytes / mask_s, 1),
        unmask_mb_s=round(megabytes / unmask_s, 1),
        floor_mb_s=round(megabytes / floor_s, 1),
        mask_to_floor=round(mask_s / floor_s, 2),
        command=COMMAND,
    )


def main(argv: list[str]) -> list[Row]:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--repeat", type=int, default=9, help="runs per figure (median)")
    args = parser.parse_args(argv)
    snapshot = build_snapshot(entry.to_spec() for entry in DEFAULT_PATTERNS)
    floor, floor_patterns = floor_regex()
    rows = [measure(snapshot, floor, size, values, args.repeat) for size, values in SIZES]
    print(
        f"Engine vs Python re floor ({len(snapshot.patterns)} patterns; floor uses "
        f"{floor_patterns}); median of {args.repeat} runs; Python {platform.python_version()}"
    )
    header = (
        "size",
        "IDs",
        "found",
        "mask ms",
        "MB/s",
        "unmask ms",
        "MB/s",
        "floor ms",
        "MB/s",
        "mask/floor",
    )
    print("  ".join(f"{h:>10}" for h in header))
    for row in rows:
        cells = (
            f"{row.size_bytes:,}",
            row.values,
            row.found,
            row.mask_ms,
            row.mask_mb_s,
            row.unmask_ms,
            row.unmask_mb_s,
            row.floor_ms,
            row.floor_mb_s,
            f"{row.mask_to_floor}x",
        )
        print("  ".join(f"{c!s:>10}" for c in cells))
    print(f"target: mask within 2x of the floor at 1 MB; reproduce with: {COMMAND}")
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "engine",
                "machine": platform.platform(),
                "rows": [asdict(r) for r in rows],
            },
            indent=2,
        )
    )
    print(f"written: {RESULTS.name}")
    return rows
