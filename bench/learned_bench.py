"""Namespace memory: what a namespace's learned values cost a process (pure, no server).

For a namespace that has learned LEARNED values: masking 1 MB holding 10,000 IDs with every
pass a request goes through, with and without the learned values (and the `re` floor of
engine_bench, measured side by side); the first read of them all (opening the sealed records
and building the automata); what one more learned value costs once they are held; and the
memory the copy takes. The Redis side (one round trip a request) is in redis_bench.
"""

from __future__ import annotations

import random
import statistics
import time
import tracemalloc
from collections.abc import Callable

from bench.engine_bench import floor_regex, generate_text, median_seconds
from bench.report import Report, Row, RunOptions
from patterns.engine import LocalAllocator, Snapshot, build_snapshot, replace_findings
from patterns.library import DEFAULT_PATTERNS
from patterns.memory import learned_origins
from patterns.occurrences import KnownValues
from patterns.scanner import find_in_texts
from patterns.store import Allocation, LearnedValue, ValueCipher

LEARNED = 100_000
TEXT_SIZE, TEXT_VALUES = 1_000_000, 10_000
FLOOR_GOAL = 2.0
ADDED_ONE_BY_ONE = 2_000
NAMESPACE = "bench"


def run(options: RunOptions, report: Report) -> None:
    command = options.command("learned")
    repeat = 3 if options.quick else 9
    snapshot = build_snapshot(entry.to_spec() for entry in DEFAULT_PATTERNS)
    learned = _learned_values(LEARNED)
    cipher = ValueCipher(b"bench-masking-secret-0123456789")
    records = [cipher.seal_learned(NAMESPACE, item) for item in learned]

    started = time.perf_counter()
    opened = [cipher.open_learned(NAMESPACE, record) for record in records]
    open_s = time.perf_counter() - started
    started = time.perf_counter()
    known = KnownValues().with_added(learned_origins(opened, snapshot))
    build_s = time.perf_counter() - started
    held_bytes = _traced_bytes(lambda: KnownValues().with_added(learned_origins(opened, snapshot)))

    text = generate_text(TEXT_SIZE, TEXT_VALUES)
    floor, _ = floor_regex()
    without = median_seconds(lambda: _mask(snapshot, text, None), repeat)
    with_known = median_seconds(lambda: _mask(snapshot, text, known), repeat)
    floor_s = median_seconds(lambda: sum(1 for _ in floor.finditer(text)), repeat)
    add_s = _added_one_by_one(known, snapshot)

    print(
        f"Namespace memory, {LEARNED:,} learned values: first read {open_s + build_s:.2f} s "
        f"(open {open_s:.2f} s, automata {build_s:.2f} s), {held_bytes / LEARNED:.0f} bytes a "
        f"value; 1 MB/{TEXT_VALUES:,} IDs masked in {with_known * 1e3:.0f} ms with them, "
        f"{without * 1e3:.0f} ms without, re floor {floor_s * 1e3:.0f} ms; one more value "
        f"learned {add_s * 1e3:.2f} ms (mean of {ADDED_ONE_BY_ONE:,} added one by one)"
    )
    ratio = round(with_known / floor_s, 2)
    report.add(
        [
            Row(
                name=f"learned: mask 1 MB, {TEXT_VALUES:,} IDs, {LEARNED:,} values learned",
                figure=round(with_known * 1e3, 1),
                unit="ms",
                goal="",
                met=None,
                command=command,
                note=(
                    f"{round(with_known / without, 2)}x the same without learned values "
                    f"({without * 1e3:.0f} ms); re floor {floor_s * 1e3:.0f} ms"
                ),
            ),
            Row(
                name=f"learned: mask / re floor, 1 MB, {LEARNED:,} values learned",
                figure=ratio,
                unit="x",
                goal=f"<= {FLOOR_GOAL:g}x",
                met=ratio <= FLOOR_GOAL,
                command=command,
            ),
            Row(
                name=f"learned: first read of {LEARNED:,} values by a process",
                figure=round(open_s + build_s, 2),
                unit="s",
                goal="",
                met=None,
                command=command,
                note=(
                    f"opening the sealed records {open_s:.2f} s, automata {build_s:.2f} s; "
                    "off the event loop; once per process and namespace"
                ),
            ),
            Row(
                name=f"learned: one more value learned, {LEARNED:,} held",
                figure=round(add_s * 1e3, 2),
                unit="ms",
                goal="",
                met=None,
                command=command,
                note=f"mean of {ADDED_ONE_BY_ONE:,} values added one by one",
            ),
            Row(
                name="learned: memory a value held",
                figure=round(held_bytes / LEARNED),
                unit="bytes",
                goal="",
                met=None,
                command=command,
                note=f"tracemalloc, {LEARNED:,} values with their automaton",
            ),
        ]
    )


def _learned_values(count: int) -> list[Allocation]:
    rng = random.Random(14)
    kinds = (
        (
            "AWS_S3_BUCKET",
            "aws_s3_bucket_in_context",
            lambda: f"acme-{rng.getrandbits(40):010x}-logs",
        ),
        ("AWS_EC2", "aws_ec2_instance_id", lambda: f"i-{rng.getrandbits(68):017x}"),
        ("AWS_ACCOUNT", "aws_account_id", lambda: str(rng.randrange(10**11, 10**12))),
    )
    values = []
    for n in range(count):
        prefix, pattern, make = kinds[n % len(kinds)]
        values.append(Allocation(make(), prefix, pattern, learn=True))
    return values


def _mask(snapshot: Snapshot, text: str, known: KnownValues | None) -> str:
    texts = [text]
    [findings] = find_in_texts(snapshot, texts, known=known.find(texts) if known else None)
    return replace_findings(text, findings, LocalAllocator()(findings))


def _added_one_by_one(known: KnownValues, snapshot: Snapshot) -> float:
    new = _learned_values(LEARNED + ADDED_ONE_BY_ONE)[LEARNED:]
    origins = learned_origins([LearnedValue(i.value, i.prefix, i.pattern) for i in new], snapshot)
    timings = []
    for origin in origins:
        started = time.perf_counter()
        known = known.with_added([origin])
        timings.append(time.perf_counter() - started)
    return statistics.mean(timings)


def _traced_bytes(build: Callable[[], object]) -> int:
    """What build()'s result holds in memory (traced while it is built, so measured apart)."""
    tracemalloc.start()
    try:
        kept = build()
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del kept
    return held
