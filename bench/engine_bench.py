"""Engine speed: mask and unmask with the full default library vs a `re` floor and Presidio.

The floor is one single-pass scan with Python's `re` over an alternation of the same
regexes: the least any regex-based masker must spend. Presidio (optional, see
bench/presidio_bench.py) runs the same regexes through its analyzer and anonymizer.
Figures are medians of repeated runs measured side by side in one process, so the ratios
hold even on a noisy machine.
"""

from __future__ import annotations

import math
import random
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

from bench import presidio_bench
from bench.presidio_bench import PresidioMasker
from bench.report import Report, Row, RunOptions
from patterns.engine import (
    LocalAllocator,
    MaskResult,
    Snapshot,
    build_snapshot,
    replace_findings,
    unmask,
)
from patterns.library import DEFAULT_PATTERNS
from patterns.scanner import find_in_texts

SIZES = ((1_000, 10), (100_000, 1_000), (1_000_000, 10_000))
DEFAULT_REPEAT = 9
# Presidio takes seconds per megabyte: fewer runs of it (its own median).
PRESIDIO_REPEAT = {1_000: 9, 100_000: 3, 1_000_000: 3}
FLOOR_GOAL = 2.0  # mask within 2x of the floor at 1 MB
PRESIDIO_GOAL = 25.0  # at least 25x faster than Presidio at 1 MB

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
    """The same regexes as one Python `re` alternation (patterns `re` cannot read are left out).

    A value that stands right after its key (context window 0: a secret setting's value) is
    its key and value as one regex: the value's regex alone matches almost any text, which
    would make the floor a scan that finds everything at once."""
    usable = []
    for entry in DEFAULT_PATTERNS:
        regex = entry.regex
        if entry.context_window == 0 and entry.context_regex:
            regex = f"(?:{entry.context_regex})(?:{entry.regex})"
        # A composite's parts are named groups; names repeat across rules, and one match is all
        # the floor needs.
        regex = re.sub(r"\(\?P<[A-Za-z0-9_]+>", "(?:", regex)
        try:
            re.compile(regex)
        except re.error:
            continue
        usable.append(f"(?:{regex})")
    return re.compile("|".join(usable)), len(usable)


def median_seconds(function: Callable[[], object], repeat: int) -> float:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


@dataclass(frozen=True)
class Measurement:
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
    presidio_found: int | None = None
    presidio_mask_ms: float | None = None
    presidio_unmask_ms: float | None = None
    presidio_runs: int = 0

    @property
    def presidio_to_mask(self) -> float | None:
        if self.presidio_mask_ms is None:
            return None
        return round(self.presidio_mask_ms / self.mask_ms, 1)

    @property
    def presidio_to_unmask(self) -> float | None:
        if self.presidio_unmask_ms is None:
            return None
        return round(self.presidio_unmask_ms / self.unmask_ms, 1)


def mask_as_served(snapshot: Snapshot, text: str, allocator: LocalAllocator) -> MaskResult:
    """Mask text with every pass a request's texts go through (rules, every occurrence,
    fixpoint: patterns.scanner.find_in_texts), placeholders from allocator."""
    [findings] = find_in_texts(snapshot, [text])
    return MaskResult(replace_findings(text, findings, allocator(findings)), findings)


def measure(
    snapshot: Snapshot,
    floor: re.Pattern[str],
    size: int,
    values: int,
    repeat: int,
    presidio: PresidioMasker | None = None,
    presidio_repeat: int = 1,
) -> Measurement:
    text = generate_text(size, values)
    allocator = LocalAllocator()
    result = mask_as_served(snapshot, text, allocator)  # warm-up, and the placeholders
    restore = allocator.restore_map
    mask_s = median_seconds(lambda: mask_as_served(snapshot, text, LocalAllocator()), repeat)
    unmask_s = median_seconds(lambda: unmask(result.text, restore), repeat)
    floor_s = median_seconds(lambda: sum(1 for _ in floor.finditer(text)), repeat)
    megabytes = len(text.encode()) / 1e6
    measurement = Measurement(
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
    )
    if presidio is None:
        return measurement
    masked = presidio.mask(text)  # warm-up (compiles its regexes), and the items to restore
    if presidio.unmask(masked) != text:
        raise RuntimeError("Presidio did not restore the text it masked.")
    presidio_mask_s = median_seconds(lambda: presidio.mask(text), presidio_repeat)
    presidio_unmask_s = median_seconds(lambda: presidio.unmask(masked), presidio_repeat)
    return replace(
        measurement,
        presidio_found=len(masked.items),
        presidio_mask_ms=round(presidio_mask_s * 1e3, 1),
        presidio_unmask_ms=round(presidio_unmask_s * 1e3, 1),
        presidio_runs=presidio_repeat,
    )


def run(options: RunOptions, report: Report) -> None:
    """Measure every size, print the detailed table, and add the goal rows to the report."""
    repeat = options.repeat or (3 if options.quick else DEFAULT_REPEAT)
    snapshot = build_snapshot(entry.to_spec() for entry in DEFAULT_PATTERNS)
    floor, floor_patterns = floor_regex()
    presidio, presidio_missing = presidio_bench.load()
    measurements = [
        measure(
            snapshot,
            floor,
            size,
            values,
            repeat,
            presidio,
            1 if options.quick else PRESIDIO_REPEAT[size],
        )
        for size, values in SIZES
    ]
    presidio_label = (
        f"Presidio {presidio.version}, {presidio.patterns} regex recognizers"
        if presidio
        else f"Presidio {presidio_missing}"
    )
    presidio_runs = ", ".join(str(m.presidio_runs) for m in measurements)
    print(
        f"Engine vs Python re floor ({len(snapshot.patterns)} patterns; floor uses "
        f"{floor_patterns}) and {presidio_label}; median of {repeat} runs "
        f"(Presidio: {presidio_runs} by size)"
    )
    _print_details(measurements)
    report.details["engine"] = {
        "patterns": len(snapshot.patterns),
        "floor_patterns": floor_patterns,
        "presidio": presidio.version if presidio else presidio_missing,
        "repeat": repeat,
        "sizes": [{**asdict(m), "presidio_to_mask": m.presidio_to_mask} for m in measurements],
    }
    report.add(_rows(options, measurements, presidio_missing))


def _print_details(measurements: list[Measurement]) -> None:
    header = (
        "size",
        "IDs",
        "found",
        "mask ms",
        "MB/s",
        "unmask ms",
        "MB/s",
        "floor ms",
        "mask/floor",
        "presidio ms",
        "restore ms",
        "presidio/us",
    )
    print("  ".join(f"{h:>11}" for h in header))
    for m in measurements:
        cells = (
            f"{m.size_bytes:,}",
            m.values,
            m.found,
            m.mask_ms,
            m.mask_mb_s,
            m.unmask_ms,
            m.unmask_mb_s,
            m.floor_ms,
            f"{m.mask_to_floor}x",
            "-" if m.presidio_mask_ms is None else m.presidio_mask_ms,
            "-" if m.presidio_unmask_ms is None else m.presidio_unmask_ms,
            "-" if m.presidio_to_mask is None else f"{m.presidio_to_mask}x",
        )
        print("  ".join(f"{c!s:>11}" for c in cells))
    print()


def _label(m: Measurement) -> str:
    kilobytes = 10 ** round(math.log10(m.size_bytes / 1000))  # as asked: 1, 100, 1,000 KB
    size = f"{kilobytes / 1000:g} MB" if kilobytes >= 1000 else f"{kilobytes:g} KB"
    return f"{size}, {m.values:,} IDs"


def _rows(options: RunOptions, measurements: list[Measurement], presidio_missing: str) -> list[Row]:
    command = options.command("engine")
    rows = [
        Row(
            name=f"engine: mask {_label(m)}",
            figure=m.mask_ms,
            unit="ms",
            goal="",
            met=None,
            command=command,
            note=(
                f"unmask {format_ms(m.unmask_ms)}, re floor {format_ms(m.floor_ms)} "
                f"({m.mask_to_floor}x), Presidio "
                + (presidio_missing if m.presidio_to_mask is None else f"{m.presidio_to_mask}x")
            ),
        )
        for m in measurements
    ]
    largest = measurements[-1]
    rows.append(
        Row(
            name=f"engine: mask / re floor, {_label(largest)}",
            figure=largest.mask_to_floor,
            unit="x",
            goal=f"<= {FLOOR_GOAL:g}x",
            met=largest.mask_to_floor <= FLOOR_GOAL,
            command=command,
        )
    )
    ratio = largest.presidio_to_mask
    rows.append(
        Row(
            name=f"engine: Presidio mask / ours, {_label(largest)}",
            figure=ratio,
            unit="x",
            goal=f">= {PRESIDIO_GOAL:g}x",
            met=None if ratio is None else ratio >= PRESIDIO_GOAL,
            command=command,
            note=presidio_missing
            if ratio is None
            else (
                f"Presidio {format_ms(largest.presidio_mask_ms)} to mask, "
                f"{format_ms(largest.presidio_unmask_ms)} to restore "
                f"({largest.presidio_to_unmask}x ours); median of {largest.presidio_runs}"
            ),
        )
    )
    return rows


def format_ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f} ms" if value >= 100 else f"{value:.2f} ms"
