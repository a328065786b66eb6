"""The scan cache (patterns.scan_cache): a conversation's history is scanned once per process,
and what is found with the cache is exactly what a fresh scan finds.

The property test plays conversations as a client sends them, every turn the whole history
plus what is new, through one process's cache, with the events that could make a cached
result wrong: the rules change, the namespace learns values in a later turn that stand bare in
an earlier block, the namespace forgets them (their mappings expired), the same text arrives
in another namespace. Each turn is compared with a scan without any cache.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from patterns.engine import (
    Finding,
    FindingBudget,
    LocalAllocator,
    PatternSpec,
    build_snapshot,
    replace_findings,
)
from patterns.library import DEFAULT_PATTERNS
from patterns.occurrences import KnownValues
from patterns.scan_cache import ScanCache, ScopedCache, scan_cache, scoped
from patterns.scanner import find_in_texts, holds_values
from patterns.services import find_values, masked_texts, remember_checked

LIBRARY = build_snapshot(entry.to_spec() for entry in DEFAULT_PATTERNS)
# The same rules and one more: a rules change (a new snapshot, hence a new cache).
TICKETS = PatternSpec("ticket_id", r"TCK-[0-9]{6}", "TICKET")
WITH_TICKETS = build_snapshot([*(entry.to_spec() for entry in DEFAULT_PATTERNS), TICKETS])

FRAGMENTS = (
    "i-0a1b2c3d4e5f60718",
    "vpc-0fedcba9876543210",
    "123456789012",
    "arn:aws:iam::123456789012:role/deploy-bot",
    "s3://acme-prod-logs/2025/",
    "S3: examplebucket, backup-logs-bucket",
    "examplebucket",
    "TCK-123456",
    "password: hunter2-Secret!",
    "52.95.110.17",
    "AWS_EC2_001",
    "now delete ",
    " and ",
    ", then ",
    "\n",
    "버킷 ",
    "i-0a1b2c3d",  # the start of an ID a next piece may finish
    "4e5f60718",
)
pieces = st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=6).map("".join)
# A message: one or more text blocks, read back to back (a run).
messages = st.lists(pieces, min_size=1, max_size=3)


@dataclass(frozen=True)
class Event:
    kind: str  # "turn", "rules", "learn", "forget", "namespace"
    blocks: tuple[str, ...] = ()


events = st.lists(
    st.one_of(
        messages.map(lambda blocks: Event("turn", tuple(blocks))),
        st.just(Event("rules")),
        st.just(Event("learn")),
        st.just(Event("forget")),
        st.just(Event("namespace")),
    ),
    min_size=1,
    max_size=10,
)


def _texts_and_runs(history: list[tuple[str, ...]]) -> tuple[list[str], list[int]]:
    texts: list[str] = []
    runs: list[int] = []
    for number, blocks in enumerate(history):
        texts += blocks
        runs += [number] * len(blocks)
    return texts, runs


def _learned(findings: tuple[tuple[Finding, ...], ...]) -> list[Finding]:
    return [f for found in findings for f in found if not f.continuation]


@settings(max_examples=200, deadline=None)
@given(events)
def test_cached_and_fresh_scans_agree_on_any_conversation(plays: list[Event]) -> None:
    snapshot, namespace, known = LIBRARY, "team-a", KnownValues()
    history: list[tuple[str, ...]] = []
    last: tuple[tuple[Finding, ...], ...] = ()
    for event in plays:
        if event.kind == "rules":
            snapshot = WITH_TICKETS if snapshot is LIBRARY else LIBRARY
        elif event.kind == "learn":
            known = known.with_added(_learned(last))
        elif event.kind == "forget":
            known = KnownValues()
        elif event.kind == "namespace":
            namespace = "team-b" if namespace == "team-a" else "team-a"
        else:
            history.append(event.blocks)
        if not history:
            continue
        texts, runs = _texts_and_runs(history)
        found_known = known.find(texts)
        cache = scoped(snapshot, namespace)
        assert known.find(texts, cache=cache) == found_known
        cached = find_in_texts(snapshot, texts, runs, known=found_known, learned=known, cache=cache)
        fresh = find_in_texts(snapshot, texts, runs, known=found_known, learned=known)
        assert cached == fresh
        # As the proxy finds them: each run's history settled from its entry where it holds
        # (patterns.settled), at the budget the cache's hits spend (what their findings cost).
        hits, spent = FindingBudget(10**9), FindingBudget(10**9)
        by_hits = known.find(texts, hits, cache)
        find_in_texts(snapshot, texts, runs, hits, known=by_hits, learned=known, cache=cache)
        found = find_values(snapshot, texts, runs, spent, known, namespace)
        assert found.findings == fresh
        assert spent.remaining == hits.remaining
        last = fresh
        allocator = LocalAllocator()
        placeholders = allocator(_learned(fresh))
        masked = [replace_findings(t, f, placeholders) for t, f in zip(texts, fresh, strict=True)]
        issued = set(placeholders.values())
        clean = holds_values(snapshot, masked, issued)
        assert holds_values(snapshot, masked, issued, namespace) == clean
        # Masked texts kept from an earlier turn that passed the final check: the same text.
        served = masked_texts(found, placeholders)
        assert list(served.texts) == masked
        if not clean:
            remember_checked(found, served, placeholders)


def test_a_turn_scans_only_what_is_new() -> None:
    snapshot = build_snapshot([PatternSpec("ec2", r"i-[0-9a-f]{8}", "AWS_EC2")])
    cache = scan_cache(snapshot)
    history = [f"turn {n}: restart i-0000000{n}" for n in range(5)]
    find_in_texts(snapshot, history[:4], scope="team-a")
    misses = cache.misses
    find_in_texts(snapshot, history, scope="team-a")
    assert cache.misses - misses == 2  # the new text: its scan, and its masked form's
    find_in_texts(snapshot, history, scope="team-b")
    assert cache.misses - misses == 2 + 10  # another namespace has a cache of its own


def test_new_rules_start_an_empty_cache() -> None:
    first = build_snapshot([PatternSpec("ec2", r"i-[0-9a-f]{8}", "AWS_EC2")])
    second = build_snapshot([PatternSpec("ec2", r"i-[0-9a-f]{8}", "AWS_EC2")])
    find_in_texts(first, ["i-01234567"], scope="team-a")
    assert len(scan_cache(second)) == 0


def test_the_cache_stays_within_its_bound_and_drops_the_oldest() -> None:
    cache = ScanCache(max_bytes=2_000)
    scoped_cache = ScopedCache(cache, "team-a")
    for number in range(100):
        scoped_cache.put("rules", [str(number)], (), findings=1)
    assert cache.size <= 2_000
    assert scoped_cache.get("rules", ["0"]) is None
    assert scoped_cache.get("rules", ["99"]) == ()


def test_keys_do_not_collide_when_a_boundary_moves_and_hold_no_text() -> None:
    team_a = ScopedCache(ScanCache(), "team-a")
    assert team_a.key("rules", ["ab", "c"]) != team_a.key("rules", ["a", "bc"])
    assert team_a.key("rules", ["x"]) != ScopedCache(ScanCache(), "team-ax").key("rules", [""])
    assert "i-0123456789abcdef0" not in repr(team_a.key("rules", ["i-0123456789abcdef0"]))
