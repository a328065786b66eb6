"""Loading the rules: the compiled snapshot every process uses, refreshed when admins edit rules."""

from __future__ import annotations

import functools
import logging
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.db import DatabaseError

from config.db import releasing_connections
from patterns.engine import (
    Finding,
    FindingBudget,
    PatternError,
    RunScan,
    Snapshot,
    build_snapshot,
    replace_findings,
)
from patterns.models import AllowedValue, Pattern, SensitiveTerm
from patterns.occurrences import KnownValues, learnable
from patterns.scan_cache import ScopedCache, scoped
from patterns.scanner import Elsewhere, by_rules, find_in_texts, scan_here
from patterns.settled import find_settled
from patterns.store import (
    Allocation,
    AsyncControlStore,
    AsyncMappingStore,
    ControlStoreUnavailable,
    get_control_store,
)

logger = logging.getLogger(__name__)
# The scan cache's kind for masked texts that passed the final check.
MASKED = "masked"


class RulesUnavailable(Exception):
    """The rules could not be loaded or compiled: callers must fail closed."""


_current: Snapshot | None = None


async def arules_snapshot(control: AsyncControlStore, version: str | None = None) -> Snapshot:
    """The compiled rules, rebuilt when the version token in Redis has moved.

    The snapshot is immutable and swapped by reference, so a request keeps the rules it
    started with. version: the token this request already read from Redis (with the keys
    version), if any; else it is read from the control store. Raises RulesUnavailable or
    ControlStoreUnavailable (fail closed).
    """
    global _current
    if version is None:
        version = await control.rules_version()
    current = _current
    if current is not None and current.version == version:
        return current
    snapshot = await sync_to_async(releasing_connections(load_snapshot))(version)
    _current = snapshot
    return snapshot


def loaded_snapshot() -> Snapshot | None:
    """The rules this process holds now, without asking Redis (None before the first load)."""
    return _current


def load_snapshot(version: str = "") -> Snapshot:
    """Compile the enabled rules from the database."""
    try:
        enabled = list(Pattern.objects.filter(enabled=True))
        patterns = [p.to_spec() for p in enabled if not p.trial]
        trial = [p.to_spec() for p in enabled if p.trial]
        terms = [t.to_spec() for t in SensitiveTerm.objects.filter(enabled=True)]
        allowed = list(AllowedValue.objects.filter(enabled=True).values_list("value", flat=True))
    except DatabaseError as exc:
        logger.error("masking rules could not be read: %s", type(exc).__name__)
        raise RulesUnavailable("The masking rules could not be loaded.") from None
    if not patterns and not terms:
        # A masking proxy with nothing to mask is misconfigured, not permissive.
        logger.error("no masking rule is enabled; refusing to serve")
        raise RulesUnavailable("No masking rule is enabled.")
    try:
        snapshot = build_snapshot(patterns, terms, allowed, version=version, trial=trial)
    except PatternError as exc:
        # The message names the pattern and the problem, never a value.
        logger.error("masking rules could not be compiled: %s", exc)
        raise RulesUnavailable("The masking rules could not be compiled.") from None
    logger.info(
        "masking rules loaded: version=%s patterns=%d terms=%d allowed=%d trial=%d",
        version,
        len(snapshot.patterns),
        len(terms),
        len(allowed),
        len(trial),
    )
    return snapshot


def rules_changed() -> None:
    """Bump the rules version so that every process reloads its snapshot."""
    try:
        get_control_store().bump_rules_version()
    except ControlStoreUnavailable:
        # Processes cannot serve without Redis either; they reload once it is back only if
        # the token moved, so say loudly that this change may not have been seen.
        logger.error("rules changed but the version could not be bumped; re-save to retry")


@dataclass(frozen=True)
class MaskedTexts:
    """Texts with their values replaced, what restores them, and how many were masked."""

    texts: tuple[str, ...]
    restore: Mapping[str, str]  # placeholder -> original, only for values in these texts
    counts: Mapping[str, int]  # pattern name -> occurrences masked
    # Texts that held no value, hence went out unchanged: scanning them again finds nothing.
    clean: frozenset[str] = frozenset()
    # The indexes of the texts masked as in an earlier request whose final check found
    # nothing in them (remember_checked): the same masked text, under the same rules.
    checked: frozenset[int] = frozenset()


@dataclass(frozen=True)
class FoundValues:
    """The values found in each of a batch of texts, before any placeholder is given."""

    texts: tuple[str, ...]
    findings: tuple[tuple[Finding, ...], ...]
    # The namespace's scan cache they were found with (masked_texts keeps their masked forms).
    cache: ScopedCache | None = field(default=None, compare=False, repr=False)

    @functools.cached_property
    def firsts(self) -> dict[str, Finding]:
        """Each distinct value with its first finding, in order of first occurrence."""
        firsts: dict[str, Finding] = {}
        for findings in self.findings:
            for f in findings:
                firsts.setdefault(f.value, f)
        return firsts

    @property
    def distinct(self) -> int:
        """How many different values were found."""
        return len(self.firsts)

    def allocations(self, *, learn: bool = False) -> list[Allocation]:
        """One allocation per distinct value, in order of first occurrence.

        learn: the namespace learns the values worth masking wherever they stand."""
        return [allocation(f, learn=learn) for f in self.firsts.values()]


def allocation(first: Finding, *, learn: bool = False) -> Allocation:
    """What to place for a value, from its first finding (learn: as for allocations())."""
    return Allocation(first.value, first.prefix, first.pattern, learn=learn and learnable(first))


def find_values(
    snapshot: Snapshot,
    texts: Sequence[str],
    runs: Sequence[int] | None = None,
    budget: FindingBudget | None = None,
    known: KnownValues | None = None,
    scope: str | None = None,
    elsewhere: Elsewhere | None = None,
) -> FoundValues:
    """Every value in each text (CPU here, and blocking on `elsewhere`: the caller decides
    on which thread).

    runs, budget and scope: as patterns.scanner.find_in_texts takes them; known: what the
    namespace learned from its earlier requests. elsewhere: for a large request, what its
    scanning process does (patterns.scanner.Elsewhere): when the rules had much new text to
    read, it also does the passes whose work grows with the findings; a conversation's next
    turns, whose history the cache knows, are finished here.
    """
    cache = scoped(snapshot, scope)
    found = FoundValues(
        texts=tuple(texts),
        findings=_findings(snapshot, texts, runs, budget, known, cache, elsewhere),
        cache=cache,
    )
    _ = found.firsts  # on this thread too, not on the caller's event loop
    return found


def _findings(
    snapshot: Snapshot,
    texts: Sequence[str],
    runs: Sequence[int] | None,
    budget: FindingBudget | None,
    known: KnownValues | None,
    cache: ScopedCache | None,
    elsewhere: Elsewhere | None,
) -> tuple[tuple[Finding, ...], ...]:
    learned = known or ()
    if elsewhere is not None and elsewhere.too_large(texts):
        found_known = known.find(texts, budget, cache) if known else None
        return elsewhere.finish(texts, runs, budget, None, found_known, cache)
    scan = elsewhere.scan if elsewhere is not None else scan_here(snapshot)
    if cache is not None:
        settled = _find_settled(texts, runs, budget, known, cache, scan, elsewhere)
        if settled is not None:
            return settled
    found_known = known.find(texts, budget, cache) if known else None
    rules, new_chars = by_rules(texts, runs, budget, cache, scan)
    if elsewhere is not None and elsewhere.finishes(texts, rules, new_chars, learned):
        findings = elsewhere.finish(texts, runs, budget, rules, found_known, cache)
    else:
        findings = find_in_texts(
            snapshot,
            texts,
            runs,
            budget,
            found_known,
            learned=learned,
            cache=cache,
            scan=scan,
            rules=rules,
        )
    return findings


def _find_settled(
    texts: Sequence[str],
    runs: Sequence[int] | None,
    budget: FindingBudget | None,
    known: KnownValues | None,
    cache: ScopedCache,
    scan: RunScan,
    elsewhere: Elsewhere | None,
) -> tuple[tuple[Finding, ...], ...] | None:
    """find_values from what the cache settled of the texts' runs (patterns.settled); None
    when what is left is for the scanning process (then it does all of the work)."""
    rules_of = functools.partial(by_rules, cache=cache, scan=scan)
    finishes = functools.partial(elsewhere.finishes, learned=known or ()) if elsewhere else None
    return find_settled(texts, runs, budget, known, cache, scan, rules_of, finishes)


def masked_texts(found: FoundValues, placeholders: Mapping[str, str]) -> MaskedTexts:
    """The texts with each value replaced by its placeholder (CPU only): a text masked as in
    an earlier request that passed the final check is taken from the scan cache (the same
    text, findings and placeholders give the same masked text)."""
    texts: list[str] = []
    checked: set[int] = set()
    for index, (text, findings) in enumerate(zip(found.texts, found.findings, strict=True)):
        if not findings:
            texts.append(text)
            continue
        kept = found.cache.get(MASKED, (text,)) if found.cache is not None else None
        if kept is not None and kept[0] == findings and kept[1] == _placed(findings, placeholders):
            texts.append(kept[2])
            checked.add(index)
            if kept[0] is not findings and found.cache is not None:
                # Equal findings made anew (by the scanning process, say): keep these, which
                # the next turn compares by identity.
                found.cache.put(
                    MASKED, (text,), (findings, *kept[1:]), len(findings), sys.getsizeof(kept[2])
                )
        else:
            texts.append(replace_findings(text, findings, placeholders))
    return MaskedTexts(
        texts=tuple(texts),
        restore={placeholder: value for value, placeholder in placeholders.items()},
        # A value split between pieces is one occurrence, counted where it starts.
        counts=Counter(
            f.pattern for findings in found.findings for f in findings if not f.continuation
        ),
        clean=frozenset(t for t, f in zip(found.texts, found.findings, strict=True) if not f),
        checked=frozenset(checked),
    )


def remember_checked(
    found: FoundValues, masked: MaskedTexts, placeholders: Mapping[str, str]
) -> None:
    """The final check found no value in the masked texts: keep each new one (in the scan
    cache, under its text's digest) for the next turn to send again unchecked. The masked
    text is what the provider was sent, never a value."""
    if found.cache is None:
        return
    for index, (text, findings, out) in enumerate(
        zip(found.texts, found.findings, masked.texts, strict=True)
    ):
        if findings and index not in masked.checked:
            kept = (findings, _placed(findings, placeholders), out)
            found.cache.put(MASKED, (text,), kept, len(findings), sys.getsizeof(out))


def _placed(findings: tuple[Finding, ...], placeholders: Mapping[str, str]) -> tuple[str, ...]:
    # A value with no placeholder raises KeyError rather than pass unmasked.
    return tuple(placeholders[f.value] for f in findings)


async def amask_texts(
    *, namespace: str, texts: Sequence[str], snapshot: Snapshot, store: AsyncMappingStore
) -> MaskedTexts:
    """Mask every text with the request's snapshot, placing all values in one store round
    trip."""
    found = find_values(snapshot, texts)
    return masked_texts(found, await store.allocate(namespace, found.allocations()))
