"""What a process scanned already, so that a conversation's history is not scanned again.

Pure: the standard library and the engine. Claude Code and agent loops resend the whole
conversation every turn; only the last turn is new. The scans whose results depend on nothing
but the rules and their input are kept here, keyed by digests of that input:

- what the rules find in a run of texts (Snapshot.find / find_run);
- what scanning a text masked with stand-ins reveals (patterns.fixpoint), with the findings
  it was masked with: the next request's equal findings reveal the same;
- where a namespace's learned values stand in a text, per automaton level (a level never
  changes: a new value makes a new level, which takes its parent's matches from here);
- that a masked text holds no value (the final check; only that verdict is kept);
- what was found in a run of texts with what it depended on (patterns.settled), so that a
  conversation's next turn settles its history in one look-up per message;
- a text's masked form that passed the final check, with the findings and placeholders it
  was masked with (patterns.services.masked_texts): what the provider was sent, never a value.

Everything else is computed again every time: every other occurrence of the values the
request brought, the placeholders (from Redis). A hit gives the result a fresh scan would
give, so a cache is an optimisation, never a source of truth: a cache in one process knows
nothing of another's, and a miss only costs time.

Keys hold a scope (the namespace), so that how fast a text is served never tells one tenant
what another sent. One cache per rules snapshot: new rules start an empty one. Its size is
bounded by an estimate of the memory its entries hold (SCAN_CACHE_BYTES), least recently used
entries first out. It holds digests and findings, and masked texts, never a request's own
texts; findings hold the values they found, as the process's memory does while it serves a
request.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from patterns.engine import Finding, Snapshot

SCAN_CACHE_BYTES = 64 * 1024 * 1024
# A rough size of an entry and of each finding it holds (the objects and their strings).
ENTRY_BYTES = 200
FINDING_BYTES = 250

Findings = tuple[Finding, ...]
# What an entry is found by: its kind, its scope and the digests of its parts.
Key = tuple[str | bytes, ...]


def text_digest(text: str) -> bytes:
    """One text's digest, the part of a key that stands for it (SHA-256: collision
    resistant, and where the CPU computes it, about three times as fast as BLAKE2b)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


class ScanCache:
    """Scan results for one rules snapshot: an LRU bounded by an estimate of its memory."""

    def __init__(self, max_bytes: int = SCAN_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[Key, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Key) -> Any | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[0]

    def put(self, key: Key, value: Any, findings: int = 0, size: int = 0) -> None:
        """Keep value under key; its cost is estimated from the findings it holds, and size:
        the bytes of anything else it holds (a masked text)."""
        cost = ENTRY_BYTES + FINDING_BYTES * findings + size
        if cost > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.size -= old[1]
            self._entries[key] = (value, cost)
            self.size += cost
            while self.size > self.max_bytes:
                _, (_, evicted) = self._entries.popitem(last=False)
                self.size -= evicted


class ScopedCache:
    """A cache and the scope (namespace) its keys are made in, for one request: each text is
    digested once, however many of its scans are looked up."""

    def __init__(self, cache: ScanCache, scope: str) -> None:
        self.cache = cache
        self.scope = scope
        # By the text's identity: a request's texts are its own objects, and hashing a long
        # new string (for a dict keyed by it) costs as much as reading it again. Each entry
        # holds its text, so an id is not reused while the entry lives.
        self._digests: dict[int, tuple[str, bytes]] = {}

    def key(self, kind: str, parts: Sequence[str]) -> Key:
        """The key of `parts` scanned as `kind`: a tuple of the scope and the parts' digests
        (each text digested once per request), never the texts themselves."""
        return (kind, self.scope, *map(self.digest, parts))

    def digest(self, text: str) -> bytes:
        """text_digest(text), computed once per request."""
        found = self._digests.get(id(text))
        if found is None or found[0] is not text:
            found = self._digests[id(text)] = (text, text_digest(text))
        return found[1]

    def get(self, kind: str, parts: Sequence[str]) -> Any | None:
        return self.cache.get(self.key(kind, parts))

    def put(
        self, kind: str, parts: Sequence[str], value: Any, findings: int = 0, size: int = 0
    ) -> None:
        self.cache.put(self.key(kind, parts), value, findings, size)


_lock = threading.Lock()
_current: tuple[Snapshot, ScanCache] | None = None
_max_bytes = SCAN_CACHE_BYTES


def configure(max_bytes: int) -> None:
    """This process's bound (PROXY_SCAN_CACHE_MB); 0 turns the cache off."""
    global _current, _max_bytes
    with _lock:
        _max_bytes, _current = max_bytes, None


def scan_cache(snapshot: Snapshot) -> ScanCache:
    """This process's cache for these rules (a new, empty one when the rules changed)."""
    global _current
    with _lock:
        if _current is None or _current[0] is not snapshot:
            _current = (snapshot, ScanCache(_max_bytes))
        return _current[1]


def scoped(snapshot: Snapshot, scope: str | None) -> ScopedCache | None:
    """The cache to use for a scan in `scope`; None (no cache) without a scope, or when the
    cache is off."""
    if scope is None or _max_bytes == 0:
        return None
    return ScopedCache(scan_cache(snapshot), scope)
