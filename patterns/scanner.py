"""Finding values in a batch of texts, here or in a process of its own for large batches.

Pure: the standard library and the engine. A worker serves every tenant's requests on one
event loop, and threads of a process share one GIL: scanning a large request on a thread
still takes the GIL from the loop, so other tenants' small requests wait. A child process
scans without it. The child compiles the rules from their source (plain data) once per
rules version and keeps them. It is sent only what this process's scan cache does not know
(patterns.scan_cache): a conversation's history crosses to it once, its new turns each time.

Security assumption: the child only finds; placeholders, Redis and the decision to forward
stay in the serving process. A child that dies fails the request closed (ScannerUnavailable).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, TypeVar

from patterns.engine import (
    PLACEHOLDER_LITERAL_PATTERN,
    PLACEHOLDER_TOKEN,
    Finding,
    FindingBudget,
    RulesSource,
    Runs,
    RunScan,
    Snapshot,
    is_distinctive,
)
from patterns.fixpoint import REVEALED, masked_until_settled
from patterns.occurrences import KnownValues, merged, unglued
from patterns.scan_cache import ScanCache, ScopedCache, scoped
from patterns.settled import groups as run_groups

Findings = tuple[tuple[Finding, ...], ...]
# Per text (by index): the findings it was first masked with, and what scanning it masked
# revealed (patterns.fixpoint, the scan cache's "revealed" entries).
Revealed = list[tuple[int, tuple[Finding, ...], tuple[Finding, ...]]]
T = TypeVar("T")
PARENT_CHECK_SECONDS = 1.0


class ScannerUnavailable(Exception):
    """The scanning process could not be started or died: callers must fail closed."""


def scan_here(snapshot: Snapshot) -> RunScan:
    """A RunScan in this process."""

    def scan(runs: Runs, budget: FindingBudget | None) -> list[Findings]:
        return [_scan_run(snapshot, pieces, budget) for pieces in runs]

    return scan


def _scan_run(snapshot: Snapshot, pieces: Sequence[str], budget: FindingBudget | None) -> Findings:
    if len(pieces) == 1:
        return (snapshot.find(pieces[0], budget),)
    return tuple(snapshot.find_run(pieces, budget))


def find_in_texts(
    snapshot: Snapshot,
    texts: Sequence[str],
    runs: Sequence[int] | None = None,
    budget: FindingBudget | None = None,
    known: Findings | None = None,
    scope: str | None = None,
    *,
    learned: KnownValues | Collection[str] = (),
    cache: ScopedCache | None = None,
    scan: RunScan | None = None,
    rules: Findings | None = None,
) -> Findings:
    """Every value in each text: what the rules find, every other occurrence of the values
    they found (patterns.occurrences), and what masking them reveals (patterns.fixpoint).

    runs: a number per text; texts with the same number are read back to back by the model
    and scanned as one (Snapshot.find_run), so a value split between them is found.
    budget: raises TooManyFindings once the texts hold more matches than it allows.
    known: per text, values found already (KnownValues.find: what the namespace learned);
    where a rule's match overlaps one, the rule's match wins. learned: the values `known`
    was searched for (their occurrences are not searched for again).
    scope: the namespace, to reuse what this process scanned before in it
    (patterns.scan_cache); None scans everything. cache: that scope's cache, if the caller
    holds it already.
    scan: where the texts the cache does not know are scanned (scan_here by default; the
    serving process sends large batches to its scanning process).
    rules: what the rules found in each text, when the caller has it already (by_rules).
    """
    cache = cache if cache is not None else scoped(snapshot, scope)
    scan = scan if scan is not None else scan_here(snapshot)
    findings = rules if rules is not None else by_rules(texts, runs, budget, cache, scan)[0]
    if known is not None:
        findings = tuple(merged(f, k) for f, k in zip(findings, known, strict=True))
    findings = masked_until_settled(texts, findings, scan, budget, learned, cache)
    return tuple(unglued(found) for found in findings)


def by_rules(
    texts: Sequence[str],
    runs: Sequence[int] | None,
    budget: FindingBudget | None,
    cache: ScopedCache | None,
    scan: RunScan,
) -> tuple[Findings, int]:
    """What the rules find in each text, scanning each run of them once: from the cache when
    this process scanned the same run before (a hit spends the budget its findings cost),
    the others in one batch; and how many characters that batch held (what was new)."""
    groups = run_groups(len(texts), runs)
    found: list[Findings] = [()] * len(groups)
    missing: dict[tuple[str, ...], list[int]] = {}
    for number, members in enumerate(groups):
        pieces = tuple(texts[i] for i in members)
        hit = cache.get("rules", pieces) if cache is not None else None
        if hit is not None:
            found[number] = hit
            _spend(budget, hit)
        elif pieces in missing:
            missing[pieces].append(number)
        else:
            missing[pieces] = [number]
    batch = list(missing)
    for pieces, scanned in zip(batch, scan(batch, budget) if batch else [], strict=True):
        numbers = missing[pieces]
        if cache is not None:
            cache.put("rules", pieces, scanned, sum(len(f) for f in scanned))
        for number in numbers:
            found[number] = scanned
        for _ in numbers[1:]:
            _spend(budget, scanned)  # the same run again costs what it did the first time
    findings: list[tuple[Finding, ...]] = [()] * len(texts)
    for members, run_found in zip(groups, found, strict=True):
        for index, piece_found in zip(members, run_found, strict=True):
            findings[index] = piece_found
    return tuple(findings), sum(len(piece) for pieces in batch for piece in pieces)


def _spend(budget: FindingBudget | None, found: Findings) -> None:
    if budget is not None:
        budget.spend(sum(map(len, found)))


def holds_values(
    snapshot: Snapshot,
    texts: Sequence[str],
    placeholders: Collection[str] = (),
    scope: str | None = None,
    *,
    scan: RunScan | None = None,
) -> bool:
    """Whether any text holds a value. Neither a placeholder-shaped literal nor a match that
    takes in one of `placeholders` (those the texts were masked with) is one: a rule that
    takes a key with its value ("password: PASSWORD_001") matches its own placeholder, and
    what it matched of the value is that placeholder.

    scope: the namespace, to skip texts this process found clean before in it (every
    placeholder in a masked text is one the request was masked with). scan: as for
    find_in_texts."""
    cache = scoped(snapshot, scope)
    scan = scan if scan is not None else scan_here(snapshot)
    unknown = list(
        dict.fromkeys(
            text for text in texts if cache is None or cache.get("clean", (text,)) is None
        )
    )
    if not unknown:
        return False
    held = False
    for text, (found,) in zip(unknown, scan([(text,) for text in unknown], None), strict=True):
        if any(
            f.pattern != PLACEHOLDER_LITERAL_PATTERN and not _takes_in(f.value, placeholders)
            for f in found
        ):
            held = True
        elif cache is not None:
            cache.put("clean", (text,), True)
    return held


def _takes_in(value: str, placeholders: Collection[str]) -> bool:
    return bool(placeholders) and any(
        token in placeholders for token in PLACEHOLDER_TOKEN.findall(value)
    )


# --- in the child -------------------------------------------------------------------------

_built: dict[str, Snapshot] = {}


def _snapshot(source: RulesSource) -> Snapshot:
    snapshot = _built.get(source.version)
    if snapshot is None:
        _built.clear()  # one rules version at a time: the newest
        snapshot = _built[source.version] = source.build()
    return snapshot


def _scan_job(source: RulesSource, runs: Runs, limit: int | None) -> tuple[list[Findings], float]:
    started = time.process_time()
    budget = FindingBudget(limit) if limit is not None else None
    found = scan_here(_snapshot(source))(runs, budget)
    return found, time.process_time() - started


def _finish_job(
    source: RulesSource,
    texts: Sequence[str],
    runs: Sequence[int] | None,
    limit: int | None,
    rules: Findings | None,
    known: Findings | None,
    learned: frozenset[str],
) -> tuple[Findings, Revealed, int, float]:
    started = time.process_time()
    budget = FindingBudget(limit) if limit is not None else None
    revealing = _Revealing()
    findings = find_in_texts(
        _snapshot(source),
        texts,
        runs,
        budget,
        known,
        learned=learned,
        rules=rules,
        cache=revealing,
    )
    spent = limit - budget.remaining if budget is not None and limit is not None else 0
    return findings, revealing.first_of(texts), spent, time.process_time() - started


class _Revealing(ScopedCache):
    """No cache (every look-up misses, as without one), but it keeps what the fixpoint's
    first scan of each masked text revealed, with the findings it was masked with."""

    def __init__(self) -> None:
        super().__init__(ScanCache(max_bytes=0), scope="")
        self._first: dict[int, tuple[str, Any]] = {}

    def get(self, kind: str, parts: Sequence[str]) -> Any | None:
        return None

    def put(
        self, kind: str, parts: Sequence[str], value: Any, findings: int = 0, size: int = 0
    ) -> None:
        if kind == REVEALED and id(parts[0]) not in self._first:
            self._first[id(parts[0])] = (parts[0], value)

    def first_of(self, texts: Sequence[str]) -> Revealed:
        revealed: Revealed = []
        for index, text in enumerate(texts):
            kept = self._first.get(id(text))
            if kept is not None and kept[0] is text:
                found, extra = kept[1]
                revealed.append((index, found, extra))
        return revealed


def _ready() -> bool:
    return True


def _exit_with_parent(parent: int) -> None:
    """In the child: leave as soon as the serving process is gone (killed, say), rather
    than wait for work that will never come."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


# --- in the serving process -----------------------------------------------------------------


class Scanner:
    """One child process that scans, started on first use (or by start()) and kept.

    The child only runs the rules over the texts it is sent; what was scanned before is
    known here (patterns.scan_cache), so a conversation's history is not sent again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None

    def start(self) -> None:
        """Start the child now, in the background, so the first large request need not."""
        self._executor().submit(_ready)

    def scans(
        self, snapshot: Snapshot, min_bytes: int, spent: Callable[[float], None]
    ) -> Elsewhere:
        """How a large request is scanned with this child: see Elsewhere. spent is told the
        CPU seconds each job took there."""
        return Elsewhere(self, snapshot, min_bytes, spent)

    def scan_in_child(
        self, snapshot: Snapshot, runs: Runs, budget: FindingBudget | None = None
    ) -> tuple[list[Findings], float]:
        """What the rules find in runs, found in the child (blocking), and the CPU seconds it
        took there; the budget pays for what it found."""
        executor = self._executor()
        limit = budget.remaining if budget is not None else None
        try:
            found, cpu_seconds = executor.submit(
                _scan_job, _source(snapshot), list(runs), limit
            ).result()
        except BrokenProcessPool:
            self._discard(executor)
            raise ScannerUnavailable("The scanning process stopped.") from None
        for run_found in found:
            _spend(budget, run_found)
        return found, cpu_seconds

    def finish_in_child(
        self,
        snapshot: Snapshot,
        texts: Sequence[str],
        runs: Sequence[int] | None,
        budget: FindingBudget | None,
        rules: Findings | None,
        known: Findings | None,
    ) -> tuple[Findings, Revealed, float]:
        """find_in_texts with what the rules found already (None: the child finds it), in the
        child (blocking): every other occurrence and the fixpoint, whose work grows with the
        findings, away from the serving process's GIL; what the fixpoint's first scan of
        each masked text revealed (for this process's scan cache), and the CPU seconds it
        took there."""
        # The namespace's values that stand in the texts: those the child need not spread
        # again (a learned value that stands nowhere has no occurrence to spread).
        learned = frozenset(f.value for found in known or () for f in found)
        executor = self._executor()
        limit = budget.remaining if budget is not None else None
        try:
            findings, revealed, spent, cpu_seconds = executor.submit(
                _finish_job, _source(snapshot), list(texts), runs, limit, rules, known, learned
            ).result()
        except BrokenProcessPool:
            self._discard(executor)
            raise ScannerUnavailable("The scanning process stopped.") from None
        if budget is not None:
            budget.spend(spent)
        return findings, revealed, cpu_seconds

    async def aclose(self) -> None:
        """Stop the child (at shutdown): pending scans are cancelled, a running one ends."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)

    def close(self) -> None:
        """aclose() for callers without an event loop (tests)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def _executor(self) -> Executor:
        with self._lock:
            if self._pool is None:
                # spawn: the serving process has threads, which fork would copy half-way.
                context = multiprocessing.get_context("spawn")
                self._pool = ProcessPoolExecutor(
                    max_workers=1,
                    mp_context=context,
                    initializer=_exit_with_parent,
                    initargs=(os.getpid(),),
                )
            return self._pool

    def _discard(self, executor: Executor) -> None:
        with self._lock:
            if self._pool is executor:
                self._pool = None
        executor.shutdown(wait=False, cancel_futures=True)


# What a large request may leave to be finished in the serving process (Elsewhere.finishes).
FINISH_HERE_MAX_TEXTS = 4_000
FINISH_HERE_MAX_CHARS = 2_000_000
FINISH_HERE_MAX_NEW_VALUES = 1_000


@dataclass(frozen=True)
class Elsewhere:
    """A large request's scans: batches of at least min_bytes in the scanning process,
    smaller ones here; and, when the rules had that much new text to read (a history's first
    request, a flood of new values), the rest of the work too (finish). Blocking: call it
    from a thread, not from the event loop."""

    scanner: Scanner
    snapshot: Snapshot
    min_bytes: int
    spent: Callable[[float], None]

    def scan(self, runs: Runs, budget: FindingBudget | None) -> list[Findings]:
        if sum(len(piece) for pieces in runs for piece in pieces) < self.min_bytes:
            return scan_here(self.snapshot)(runs, budget)
        found, cpu_seconds = self.scanner.scan_in_child(self.snapshot, runs, budget)
        self.spent(cpu_seconds)
        return found

    def finishes(
        self,
        texts: Sequence[str],
        rules: Findings,
        new_chars: int,
        learned: KnownValues | Collection[str],
    ) -> bool:
        """Whether the rest of the work goes to the child: when the rules had much new text
        to read, or when what is left would hold this process's GIL long (a very large
        text read in one call, thousands of texts, or thousands of values to spread). A
        conversation's next turn (its history known, few new values) stays here."""
        if new_chars >= self.min_bytes or self.too_large(texts):
            return True
        if sum(map(len, rules)) <= FINISH_HERE_MAX_NEW_VALUES:
            return False  # fewer findings than that: fewer values too
        values = {f.value for found in rules for f in found}
        if len(values) <= FINISH_HERE_MAX_NEW_VALUES:
            return False
        fresh = learned.unknown(values) if isinstance(learned, KnownValues) else values
        # Only values that could not be ordinary words are spread (occurrences.spreadable).
        spread = sum(1 for value in fresh if is_distinctive(value))
        return spread > FINISH_HERE_MAX_NEW_VALUES

    def too_large(self, texts: Sequence[str]) -> bool:
        """Whether even looking the texts up in the cache would hold this process's GIL
        long: all of their work goes to the child (finish with no rules)."""
        if len(texts) > FINISH_HERE_MAX_TEXTS:
            return True
        return sum(len(text) for text in texts) > FINISH_HERE_MAX_CHARS

    def finish(
        self,
        texts: Sequence[str],
        runs: Sequence[int] | None,
        budget: FindingBudget | None,
        rules: Findings | None,
        known: Findings | None,
        cache: ScopedCache | None = None,
    ) -> Findings:
        """The texts' findings, found in the child. cache: gets what the child's fixpoint
        revealed in each masked text, so that the conversation's next turn, which settles
        its history here, does not scan the whole history masked again."""
        findings, revealed, cpu_seconds = self.scanner.finish_in_child(
            self.snapshot, texts, runs, budget, rules, known
        )
        self.spent(cpu_seconds)
        if cache is not None:
            for index, found, extra in revealed:
                cache.put(REVEALED, (texts[index],), (found, extra), len(found) + len(extra))
        return findings


def _source(snapshot: Snapshot) -> RulesSource:
    if snapshot.source is None:
        raise ScannerUnavailable("These rules cannot be sent to the scanning process.")
    return snapshot.source
