"""Masking that reaches a fixpoint: the masked text, scanned again, holds nothing to mask.

Pure: the standard library and the engine. Masking can reveal a value: a placeholder is
usually shorter than the value it replaces, so a word that stood too far from its context
keyword ("S3: company-data-bucket에 올렸고, backup-logs-bucket은") stands within reach of it
once the value between them is masked. The request would then be refused by the final check,
although everything in it can be masked. Here each text is masked with stand-ins (each
finding's placeholder with the lowest number, the shortest one it can get), scanned again, and
what this finds is added, until a scan finds nothing new (FIXPOINT_ROUNDS at most). Security
assumption: this only adds findings; the serving path still scans the real masked text and
refuses what it finds there.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from patterns.engine import (
    Finding,
    FindingBudget,
    Snapshot,
    format_placeholder,
)
from patterns.occurrences import merged
from patterns.scan_cache import ScopedCache, findings_key

Findings = tuple[tuple[Finding, ...], ...]
FIXPOINT_ROUNDS = 3


def found_in_masked(
    snapshot: Snapshot,
    texts: Sequence[str],
    findings: Findings,
    budget: FindingBudget | None = None,
    cache: ScopedCache | None = None,
) -> tuple[Findings, bool]:
    """findings plus what one more scan of each masked text finds outside the placeholders,
    and whether it found anything. cache: what such scans revealed before (the same text
    masked at the same places)."""
    grown = False
    result = []
    for text, found in zip(texts, findings, strict=True):
        extra = _cached_revealed(snapshot, text, found, budget, cache) if found else []
        if extra:
            grown = True
            found = merged(found, extra)
        result.append(found)
    return tuple(result), grown


def _cached_revealed(
    snapshot: Snapshot,
    text: str,
    found: tuple[Finding, ...],
    budget: FindingBudget | None,
    cache: ScopedCache | None,
) -> list[Finding]:
    if cache is None:
        return _revealed(snapshot, text, found, budget)
    key = cache.key("revealed", (text, findings_key(found)))
    cached: tuple[Finding, ...] | None = cache.cache.get(key)
    if cached is None:
        cached = tuple(_revealed(snapshot, text, found, budget))
        cache.cache.put(key, cached, len(cached))
    return list(cached)


def _revealed(
    snapshot: Snapshot, text: str, found: tuple[Finding, ...], budget: FindingBudget | None
) -> list[Finding]:
    parts: list[str] = []
    # (offset in the masked text, offset in text) where each stretch of unmasked text starts
    masked_starts: list[int] = []
    origins: list[int] = []
    lengths: list[int] = []
    position = length = 0
    for finding in (*found, None):
        end = len(text) if finding is None else finding.start
        masked_starts.append(length)
        origins.append(position)
        lengths.append(end - position)
        parts.append(text[position:end])
        length += end - position
        if finding is None:
            break
        stand_in = "" if finding.continuation else format_placeholder(finding.prefix, 1)
        parts.append(stand_in)
        length += len(stand_in)
        position = finding.end
    revealed = []
    for new in snapshot.find("".join(parts), budget):
        index = bisect.bisect_right(masked_starts, new.start) - 1
        offset = new.start - masked_starts[index]
        if new.end - masked_starts[index] > lengths[index]:
            continue  # overlaps a stand-in: the final check decides about it
        start = origins[index] + offset
        revealed.append(
            Finding(start, start + len(new.value), new.value, new.pattern, new.prefix, new.priority)
        )
    return revealed
