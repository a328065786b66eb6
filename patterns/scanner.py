"""Finding values in a batch of texts, here or in a process of its own for large batches.

Pure: the standard library and the engine. A worker serves every tenant's requests on one
event loop, and threads of a process share one GIL: scanning a large request on a thread
still takes the GIL from the loop, so other tenants' small requests wait. A child process
scans without it. The child compiles the rules from their source (plain data) once per
rules version and keeps them.

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

from patterns import scan_cache
from patterns.engine import (
    PLACEHOLDER_LITERAL_PATTERN,
    PLACEHOLDER_TOKEN,
    Finding,
    FindingBudget,
    RulesSource,
    Snapshot,
)
from patterns.fixpoint import FIXPOINT_ROUNDS, found_in_masked
from patterns.occurrences import merged, unglued, with_every_occurrence
from patterns.scan_cache import ScopedCache, scoped

Findings = tuple[tuple[Finding, ...], ...]
T = TypeVar("T")
PARENT_CHECK_SECONDS = 1.0


class ScannerUnavailable(Exception):
    """The scanning process could not be started or died: callers must fail closed."""


def find_in_texts(
    snapshot: Snapshot,
    texts: Sequence[str],
    runs: Sequence[int] | None = None,
    budget: FindingBudget | None = None,
    known: Findings | None = None,
    scope: str | None = None,
) -> Findings:
    """Every value in each text: what the rules find, every other occurrence of the values
    they found (patterns.occurrences), and what masking them reveals (patterns.fixpoint).

    runs: a number per text; texts with the same number are read back to back by the model
    and scanned as one (Snapshot.find_run), so a value split between them is found.
    budget: raises TooManyFindings once the texts hold more matches than it allows.
    known: per text, values found already (KnownValues.find: what the namespace learned);
    where a rule's match overlaps one, the rule's match wins.
    scope: the namespace, to reuse what this process scanned before in it
    (patterns.scan_cache); None scans everything.
    """
    cache = scoped(snapshot, scope)
    findings = _by_rules(snapshot, texts, runs, budget, cache)
    if known is not None:
        findings = tuple(merged(f, k) for f, k in zip(findings, known, strict=True))
    for _ in range(FIXPOINT_ROUNDS):
        findings = with_every_occurrence(texts, findings, budget)
        # No budget: the masked texts hold fewer matches than the texts the budget paid for.
        findings, grown = found_in_masked(snapshot, texts, findings, cache=cache)
        if not grown:
            break
    return tuple(unglued(found) for found in findings)


def _by_rules(
    snapshot: Snapshot,
    texts: Sequence[str],
    runs: Sequence[int] | None,
    budget: FindingBudget | None,
    cache: ScopedCache | None = None,
) -> Findings:
    if runs is None:
        return tuple(_run_found(snapshot, [text], budget, cache)[0] for text in texts)
    members: dict[int, list[int]] = {}
    for index, run in enumerate(runs):
        members.setdefault(run, []).append(index)
    findings: list[tuple[Finding, ...]] = [()] * len(texts)
    for indices in members.values():
        pieces = [texts[i] for i in indices]
        for index, found in zip(indices, _run_found(snapshot, pieces, budget, cache), strict=True):
            findings[index] = found
    return tuple(findings)


def _run_found(
    snapshot: Snapshot,
    pieces: Sequence[str],
    budget: FindingBudget | None,
    cache: ScopedCache | None,
) -> Findings:
    """What the rules find in a run of pieces (one text: a run of one), from the cache when
    this process scanned the same run before; a hit spends the budget its findings cost."""
    key = cache.key("rules", pieces) if cache is not None else None
    if cache is not None and key is not None:
        found: Findings | None = cache.cache.get(key)
        if found is not None:
            if budget is not None:
                budget.spend(sum(len(f) for f in found))
            return found
    if len(pieces) == 1:
        found = (snapshot.find(pieces[0], budget),)
    else:
        found = tuple(snapshot.find_run(pieces, budget))
    if cache is not None and key is not None:
        cache.cache.put(key, found, sum(len(f) for f in found))
    return found


def holds_values(
    snapshot: Snapshot,
    texts: Sequence[str],
    placeholders: Collection[str] = (),
    scope: str | None = None,
) -> bool:
    """Whether any text holds a value. Neither a placeholder-shaped literal nor a match that
    takes in one of `placeholders` (those the texts were masked with) is one: a rule that
    takes a key with its value ("password: PASSWORD_001") matches its own placeholder, and
    what it matched of the value is that placeholder.

    scope: the namespace, to skip texts this process found clean before in it (every
    placeholder in a masked text is one the request was masked with)."""
    cache = scoped(snapshot, scope)
    return any(_holds_value(snapshot, text, placeholders, cache) for text in texts)


def _holds_value(
    snapshot: Snapshot, text: str, placeholders: Collection[str], cache: ScopedCache | None
) -> bool:
    key = cache.key("clean", (text,)) if cache is not None else None
    if cache is not None and key is not None and cache.cache.get(key) is not None:
        return False
    held = any(
        f.pattern != PLACEHOLDER_LITERAL_PATTERN and not _takes_in(f.value, placeholders)
        for f in snapshot.find(text)
    )
    if not held and cache is not None and key is not None:
        cache.cache.put(key, True)
    return held


def _takes_in(value: str, placeholders: Collection[str]) -> bool:
    return bool(placeholders) and any(
        token in placeholders for token in PLACEHOLDER_TOKEN.findall(value)
    )


@dataclass(frozen=True)
class Scanned:
    """What a job in the child found, and the CPU time it took there."""

    findings: Findings
    cpu_seconds: float


# --- in the child -------------------------------------------------------------------------

_built: dict[str, Snapshot] = {}


def _snapshot(source: RulesSource) -> Snapshot:
    snapshot = _built.get(source.version)
    if snapshot is None:
        _built.clear()  # one rules version at a time: the newest
        snapshot = _built[source.version] = source.build()
    return snapshot


def _find_job(
    source: RulesSource,
    texts: Sequence[str],
    runs: Sequence[int] | None,
    limit: int | None,
    known: Findings | None,
    scope: str | None,
) -> Scanned:
    started = time.process_time()
    budget = FindingBudget(limit) if limit is not None else None
    findings = find_in_texts(_snapshot(source), texts, runs, budget, known, scope)
    return Scanned(findings, time.process_time() - started)


def _holds_job(
    source: RulesSource, texts: Sequence[str], placeholders: Collection[str], scope: str | None
) -> tuple[bool, float]:
    started = time.process_time()
    found = holds_values(_snapshot(source), texts, placeholders, scope)
    return found, time.process_time() - started


def _ready() -> bool:
    return True


def _start_child(parent: int, scan_cache_bytes: int) -> None:
    """In the child: its scan cache as large as the serving process's, and an exit as soon
    as the serving process is gone."""
    scan_cache.configure(scan_cache_bytes)
    _exit_with_parent(parent)


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
    """One child process that scans, started on first use (or by start()) and kept."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None

    def start(self) -> None:
        """Start the child now, in the background, so the first large request need not."""
        self._executor().submit(_ready)

    async def find(
        self,
        snapshot: Snapshot,
        texts: Sequence[str],
        runs: Sequence[int] | None = None,
        limit: int | None = None,
        known: Findings | None = None,
        scope: str | None = None,
    ) -> Scanned:
        """find_in_texts() in the child, with a budget of `limit` matches (and the child's
        scan cache in `scope`)."""
        return await self._run(_find_job, _source(snapshot), texts, runs, limit, known, scope)

    async def holds_values(
        self,
        snapshot: Snapshot,
        texts: Sequence[str],
        placeholders: Collection[str] = (),
        scope: str | None = None,
    ) -> tuple[bool, float]:
        """holds_values() in the child, and the CPU time it took there."""
        return await self._run(_holds_job, _source(snapshot), texts, frozenset(placeholders), scope)

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

    async def _run(self, job: Callable[..., T], *args: Any) -> T:
        executor = self._executor()
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, job, *args)
        except BrokenProcessPool:
            self._discard(executor)
            raise ScannerUnavailable("The scanning process stopped.") from None

    def _executor(self) -> Executor:
        with self._lock:
            if self._pool is None:
                # spawn: the serving process has threads, which fork would copy half-way.
                context = multiprocessing.get_context("spawn")
                self._pool = ProcessPoolExecutor(
                    max_workers=1,
                    mp_context=context,
                    initializer=_start_child,
                    initargs=(os.getpid(), scan_cache.configured_bytes()),
                )
            return self._pool

    def _discard(self, executor: Executor) -> None:
        with self._lock:
            if self._pool is executor:
                self._pool = None
        executor.shutdown(wait=False, cancel_futures=True)


def _source(snapshot: Snapshot) -> RulesSource:
    if snapshot.source is None:
        raise ScannerUnavailable("These rules cannot be sent to the scanning process.")
    return snapshot.source
