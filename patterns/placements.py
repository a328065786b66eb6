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

Bounded: at most `max_values` values over all namespaces, least recently used first out. It
holds values in memory, as the process does while it serves the request.
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
        self._entries: OrderedDict[tuple[str, str], tuple[str, float]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def enabled(self) -> bool:
        return self.max_values > 0 and self.trust_seconds > 0

    def split(self, namespace: str, allocations: Iterable[A]) -> tuple[dict[str, str], list[A]]:
        """(value -> placeholder confirmed within the window, the allocations to place)."""
        trusted: dict[str, str] = {}
        missing: list[A] = []
        oldest = self._clock() - self.trust_seconds
        with self._lock:
            for item in allocations:
                key = (namespace, item.value)
                entry = self._entries.get(key)
                if entry is not None and entry[1] >= oldest:
                    self._entries.move_to_end(key)
                    trusted[item.value] = entry[0]
                else:
                    missing.append(item)
        return trusted, missing

    def remember(self, namespace: str, placed: Mapping[str, str]) -> None:
        """What Redis just gave: trusted from now on, for the window."""
        if not self.enabled:
            return
        now = self._clock()
        with self._lock:
            for value, placeholder in placed.items():
                key = (namespace, value)
                self._entries[key] = (placeholder, now)
                self._entries.move_to_end(key)
            while len(self._entries) > self.max_values:
                self._entries.popitem(last=False)

    def forget(self, namespace: str) -> None:
        with self._lock:
            for key in [key for key in self._entries if key[0] == namespace]:
                del self._entries[key]


def collides(trusted: Mapping[str, str], placed: Mapping[str, str]) -> bool:
    """Whether Redis gave a new value a placeholder the cache gives another value (a mapping
    was deleted from Redis while the cache trusted it)."""
    return not set(trusted.values()).isdisjoint(placed.values())


def trust_seconds(ttl_seconds: int) -> float:
    """How long a confirmed placement is trusted: a tenth of the mappings' TTL, at most
    TRUST_SECONDS_MAX."""
    return min(TRUST_SECONDS_MAX, ttl_seconds / 10)
