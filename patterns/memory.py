"""Namespace memory: a value masked in one request of a namespace is masked wherever it stands
in the namespace's later requests, context or not ("now delete examplebucket" in turn 5,
after turn 1 named it a bucket).

Redis holds what each namespace learned (patterns.store: a list of sealed records, written by
the allocation script that placed them, so any process's learning is every process's). Each
process keeps a copy of the namespaces it serves, in memory, and asks Redis only for what is
new: one round trip a request, which in the steady state brings nothing. The copy is bounded
(PROXY_LEARNED_VALUES_IN_MEMORY over all namespaces; the least recently served namespaces
are dropped and read again when they return).

Security assumption: only values a rule found are learned, and only those that cannot be an
ordinary word (patterns.occurrences.learnable); the copy lives in this process's memory only,
never in a log or an error.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache

from patterns.engine import ENCODED_PATTERN, SENSITIVE_TERM_PATTERN, Finding, Snapshot
from patterns.occurrences import KnownValues
from patterns.store import AsyncMappingStore, LearnedNews, LearnedValue

# The list's first entry is its starting token: a reader that has read nothing has read it.
_NOTHING_READ = 1
# Records opened, and values built into automata, on the event loop at most; more (a
# namespace read for the first time, a large request's news, the fold of a namespace's
# recent values into its main automaton) go to a thread, once per process: other requests
# of the namespace wait for that thread rather than do the same work.
INLINE_RECORDS = 200
INLINE_VALUES = 2_000
# Where a learned value overlaps a rule's match, the rule's match wins; among learned values
# the priority is not used.
_LEARNED_PRIORITY = 1_000_000
# Findings named by the engine rather than by a pattern row: kept while they are not allowed.
_BUILT_IN = frozenset({SENSITIVE_TERM_PATTERN, ENCODED_PATTERN})


@dataclass(frozen=True)
class _Held:
    """One namespace's copy: the list's token, how many of its entries were read, the values
    (those the rules of version `rules` still mask)."""

    token: str = ""
    read: int = _NOTHING_READ
    values: KnownValues = field(default_factory=KnownValues)
    rules: str = ""


_EMPTY = _Held()


class NamespaceMemory:
    """This process's copies of what namespaces learned."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._held: OrderedDict[str, _Held] = OrderedDict()
        self._lock = threading.Lock()
        # (event loop, namespace) -> the update running on a thread for it.
        self._updating: dict[tuple[int, str], asyncio.Future[KnownValues]] = {}

    async def known(
        self, store: AsyncMappingStore, namespace: str, snapshot: Snapshot
    ) -> KnownValues:
        """What the namespace learned, up to date (one Redis round trip; fail closed:
        MappingStoreUnavailable)."""
        if self._capacity == 0:
            return _EMPTY.values
        loop = asyncio.get_running_loop()
        running = self._updating.get((id(loop), namespace))
        if running is not None:
            await asyncio.wait([running])  # its outcome is installed (or not) by itself
        with self._lock:
            base = self._held.get(namespace, _EMPTY)
        if base.rules != snapshot.version:
            base = _EMPTY  # the rules changed: read it all again, under the new rules
        news = await store.learned_since(namespace, base.token, base.read)
        if not news.records and news.token == base.token:
            self._touch(namespace, base)
            return base.values
        update = functools.partial(self._update, store, namespace, snapshot, base, news)
        heavy = len(news.records) > INLINE_RECORDS
        if not heavy and base.values.rebuild_size(len(news.records)) <= INLINE_VALUES:
            return update()
        key = (id(loop), namespace)
        future = self._updating[key] = loop.run_in_executor(None, update)
        try:
            return await asyncio.shield(future)
        finally:
            if self._updating.get(key) is future:
                del self._updating[key]

    def values_held(self) -> int:
        """How many learned values this process holds now, over all namespaces."""
        with self._lock:
            return sum(len(held.values) for held in self._held.values())

    def forget(self) -> None:
        """Drop every copy (tests; a process that must read everything again)."""
        with self._lock:
            self._held.clear()

    def _touch(self, namespace: str, held: _Held) -> None:
        with self._lock:
            if self._held.get(namespace) is held and held is not _EMPTY:
                self._held.move_to_end(namespace)

    def _update(
        self,
        store: AsyncMappingStore,
        namespace: str,
        snapshot: Snapshot,
        base: _Held,
        news: LearnedNews,
    ) -> KnownValues:
        return self._install(namespace, base, _updated(store, namespace, snapshot, base, news))

    def _install(self, namespace: str, base: _Held, update: _Held) -> KnownValues:
        with self._lock:
            current = self._held.get(namespace, _EMPTY)
            # Another request of this namespace may have installed news meanwhile: the copy
            # that read further wins (both are the same list, read to different lengths).
            if (
                current is base
                or (current.token, current.rules) != (update.token, update.rules)
                or current.read < update.read
            ):
                self._held[namespace] = update
                self._held.move_to_end(namespace)
                self._evict(keep=namespace)
        return update.values

    def _evict(self, keep: str) -> None:
        total = sum(len(held.values) for held in self._held.values())
        while total > self._capacity and len(self._held) > 1:
            namespace, held = next(iter(self._held.items()))
            if namespace == keep:
                self._held.move_to_end(namespace)
                continue
            del self._held[namespace]
            total -= len(held.values)


def _updated(
    store: AsyncMappingStore, namespace: str, snapshot: Snapshot, base: _Held, news: LearnedNews
) -> _Held:
    learned = store.open_learned(namespace, news.records)
    if news.token != base.token:
        # The list is not the one this copy read (it expired and began again): start over.
        base = _Held(token=news.token)
    return _Held(
        token=news.token,
        read=base.read + len(news.records),
        values=base.values.with_added(learned_origins(learned, snapshot)),
        rules=snapshot.version,
    )


def learned_origins(learned: Sequence[LearnedValue], snapshot: Snapshot) -> list[Finding]:
    """The learned values the rules still mask, as the findings that name them: a value an
    admin has since allowed, or learned from a pattern since disabled or deleted, is not."""
    priorities = {p.spec.name: p.spec.priority for p in snapshot.patterns}
    origins = []
    for item in learned:
        priority = priorities.get(item.pattern)
        if priority is None and item.pattern in _BUILT_IN:
            priority = _LEARNED_PRIORITY
        if priority is None or item.value in snapshot.allowed:
            continue
        origins.append(Finding(0, len(item.value), item.value, item.pattern, item.prefix, priority))
    return origins


@cache
def process_memory() -> NamespaceMemory:
    """This process's namespace memory, sized by the settings (none when nothing is learned)."""
    from django.conf import settings

    learning = settings.PROXY_LEARNED_VALUES_MAX > 0
    return NamespaceMemory(settings.PROXY_LEARNED_VALUES_IN_MEMORY if learning else 0)


def learning() -> bool:
    """Whether namespaces learn the values found in their requests."""
    from django.conf import settings

    return bool(settings.PROXY_LEARNED_VALUES_MAX > 0)
