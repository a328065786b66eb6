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
from collections.abc import Collection, Sequence

from patterns.engine import Finding, FindingBudget, RunScan, format_placeholder
from patterns.occurrences import KnownValues, merged, with_every_occurrence
from patterns.scan_cache import ScopedCache

Findings = tuple[tuple[Finding, ...], ...]
FIXPOINT_ROUNDS = 3
# The scan cache's kind for what scanning a text masked with stand-ins revealed.
REVEALED = "revealed"


def masked_until_settled(
    texts: Sequence[str],
    findings: Findings,
    scan: RunScan,
    budget: FindingBudget | None = None,
    learned: KnownValues | Collection[str] = (),
    cache: ScopedCache | None = None,
    rounds: int = FIXPOINT_ROUNDS,
) -> Findings:
    """Up to `rounds` rounds of every occurrence of the values found (the budget pays for
    them) and of what masking them reveals, until a round reveals nothing."""
    for _ in range(rounds):
        findings = with_every_occurrence(texts, findings, budget, learned)
        # No budget: the masked texts hold fewer matches than the texts the budget paid for.
        findings, grown = found_in_masked(texts, findings, scan, cache=cache)
        if not grown:
            break
    return findings


def found_in_masked(
    texts: Sequence[str],
    findings: Findings,
    scan: RunScan,
    budget: FindingBudget | None = None,
    cache: ScopedCache | None = None,
    grew: list[bool] | None = None,
) -> tuple[Findings, bool]:
    """findings plus what one more scan of each masked text finds outside the placeholders,
    and whether it found anything. scan: how the masked texts are scanned (all in one
    batch); cache: what such scans revealed before (the same text masked at the same
    places); grew: gets, per text, whether it found anything there."""
    revealed: list[tuple[Finding, ...]] = [()] * len(texts)
    missing: list[tuple[int, _StandIns]] = []
    for index, (text, found) in enumerate(zip(texts, findings, strict=True)):
        if not found:
            continue
        # The text's last masking and what it revealed: equal findings (most often the very
        # objects the cache gave for the text) reveal the same.
        cached = cache.get(REVEALED, (text,)) if cache is not None else None
        if cached is not None and cached[0] == found:
            revealed[index] = cached[1]
        else:
            missing.append((index, _StandIns(text, found)))
    if missing:
        scanned = scan([(stand_ins.masked,) for _, stand_ins in missing], budget)
        for (index, stand_ins), (new,) in zip(missing, scanned, strict=True):
            revealed[index] = extra = stand_ins.outside(new)
            if cache is not None:
                found = findings[index]
                cache.put(REVEALED, (texts[index],), (found, extra), len(found) + len(extra))
    result = tuple(
        merged(found, extra) if extra else found
        for found, extra in zip(findings, revealed, strict=True)
    )
    if grew is not None:
        grew.extend(bool(extra) for extra in revealed)
    return result, any(revealed)


class _StandIns:
    """A text masked with stand-ins, and where each unmasked stretch of it came from."""

    def __init__(self, text: str, found: tuple[Finding, ...]) -> None:
        parts: list[str] = []
        # (offset in the masked text, offset in text) where each stretch of unmasked text starts
        self.masked_starts: list[int] = []
        self.origins: list[int] = []
        self.lengths: list[int] = []
        position = length = 0
        for finding in (*found, None):
            end = len(text) if finding is None else finding.start
            self.masked_starts.append(length)
            self.origins.append(position)
            self.lengths.append(end - position)
            parts.append(text[position:end])
            length += end - position
            if finding is None:
                break
            stand_in = "" if finding.continuation else format_placeholder(finding.prefix, 1)
            parts.append(stand_in)
            length += len(stand_in)
            position = finding.end
        self.masked = "".join(parts)

    def outside(self, found: Sequence[Finding]) -> tuple[Finding, ...]:
        """What was found in the masked text, at its places in the text, but for what
        overlaps a stand-in (the final check decides about it)."""
        revealed = []
        for new in found:
            index = bisect.bisect_right(self.masked_starts, new.start) - 1
            offset = new.start - self.masked_starts[index]
            if new.end - self.masked_starts[index] > self.lengths[index]:
                continue
            start = self.origins[index] + offset
            revealed.append(
                Finding(
                    start, start + len(new.value), new.value, new.pattern, new.prefix, new.priority
                )
            )
        return tuple(revealed)
