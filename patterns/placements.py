"""Placeholders a process had confirmed by Redis a moment ago, so that a long conversation's
values are not placed again every turn.

Pure: the standard library. Every turn of a conversation resends
values whose placeholders Redis gave a moment before; placing them again costs a keyed hash,
an encryption and a script call each, in proportion to the whole history. A value whose
placement Redis confirmed within the trust window keeps that placeholder without asking:

- Redis stays the source of truth. A confirmation refreshed the mapping's TTL, so the mapping
  lives at least TTL - window longer than the cache trusts it (the window is a tenth of the
  TTL at most); values still in use go to Redis again once their window has passed, which
  refreshes their TTL.
- A mapping deleted from Redis meanwhile (by an operator, or lost by Redis) could let Redis
  number a new value with a placeholder the cache still gives another value. The caller
  checks every request for that (collides()) and then places all its values in Redis again,
  after forgetting what the cache held for the namespace: a request never gives one
  placeholder to two values.
- Each process has its own: a miss only costs the Redis call it would have made anyway.

Bounded: at most `max_values` values over all namespaces, the longest confirmed first out (an
entry is of use only within its window, and a value still in use is confirmed again once its
window has passed). It holds values in memory, as the process does while it serves the
request.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol, TypeVar

TRUST_SECONDS_MAX = 300.0


class Valued(Protocol):
    """What the cache reads of an allocation (patterns.store.Allocation)."""

    @property
    def value(self) -> str: ...


A = TypeVar("A", bound=Valued)


class PlacementCache:
    """value -> placeholder per namespace, each trusted for `trust_seconds` after Redis gave it."""

    def __init__(
        self,
        max_values: int,
        trust_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_values = max_values
        self.trust_seconds = trust_seconds
        self._clock = clock
        # namespace -> value -> (placeholder, when Redis confirmed it), and every entry in
        # the order it was confirmed (for the bound). A hit does not reorder anything: a
        # long conversation's thousands of values are looked up every turn.
        self._namespaces: dict[str, dict[str, tuple[str, float]]] = {}
        self._confirmed: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._confirmed)

    @property
    def enabled(self) -> bool:
        return self.max_values > 0 and self.trust_seconds > 0

    def split(self, namespace: str, allocations: Iterable[A]) -> tuple[dict[str, str], list[A]]:
        """(value -> placeholder confirmed within the window, the allocations to place)."""
        trusted: dict[str, str] = {}
        missing: list[A] = []
        oldest = self._clock() - self.trust_seconds
        with self._lock:
            entries = self._namespaces.get(namespace, {})
            for item in allocations:
                value = item.value
                entry = entries.get(value)
                if entry is not None and entry[1] >= oldest:
                    trusted[value] = entry[0]
                else:
                    missing.append(item)
        return trusted, missing

    def remember(self, namespace: str, placed: Mapping[str, str]) -> None:
        """What Redis just gave: trusted from now on, for the window."""
        if not self.enabled or not placed:
            return
        now = self._clock()
        with self._lock:
            entries = self._namespaces.setdefault(namespace, {})
            for value, placeholder in placed.items():
                entries[value] = (placeholder, now)
                key = (namespace, value)
                self._confirmed[key] = None
                self._confirmed.move_to_end(key)
            while len(self._confirmed) > self.max_values:
                (old_namespace, old_value), _ = self._confirmed.popitem(last=False)
                self._drop(old_namespace, old_value)

    def forget(self, namespace: str) -> None:
        with self._lock:
            for value in self._namespaces.pop(namespace, {}):
                del self._confirmed[(namespace, value)]

    def _drop(self, namespace: str, value: str) -> None:
        entries = self._namespaces[namespace]
        del entries[value]
        if not entries:
            del self._namespaces[namespace]


def collides(trusted: Mapping[str, str], placed: Mapping[str, str]) -> bool:
    """Whether Redis gave a new value a placeholder the cache gives another value (a mapping
    was deleted from Redis while the cache trusted it)."""
    return bool(placed) and not set(placed.values()).isdisjoint(trusted.values())


def trust_seconds(ttl_seconds: int) -> float:
    """How long a confirmed placement is trusted: a tenth of the mappings' TTL, at most
    TRUST_SECONDS_MAX."""
    return min(TRUST_SECONDS_MAX, ttl_seconds / 10)
