"""A conversation's history settled in one look-up per message: what was found in each run of
texts, kept with what it depended on, so that a next turn reads only what changed.

Pure: the standard library and the engine. What is found in a run of texts depends on the
texts, the rules (the scan cache is per rules snapshot), the namespace's known values
(KnownValues) and the values the request spreads (occurrences.spread_values), each value with
the finding that names it. A value that does not occur in a text cannot be found in it, so a
run's entry stays exact while the known and spread values differ from those it was found with
only by values that occur nowhere in it. The check is exact, not a guess: an entry whose main
level of known values was rebuilt since (the namespace forgot values, or folded its recent
ones into the main level), or whose recent values are not all still known, is not used; the
values added or changed since are searched for in the run's texts (str's own search), and the
run is found afresh where one occurs.

An entry saves, for every message of the history, the known values' look-ups, merging them
with the rules' findings, spreading the request's values and what masking revealed. A hit
spends the budget a fresh scan of the run would spend, so a request is refused exactly when it
would be without the cache. patterns.scanner.find_in_texts is the reference: the property test
in tests/patterns/test_scan_cache.py compares the two on generated conversations.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from patterns.engine import Finding, FindingBudget, RunScan
from patterns.fixpoint import FIXPOINT_ROUNDS, found_in_masked, masked_until_settled
from patterns.occurrences import (
    KnownValues,
    merged,
    spread_values,
    unglued,
    with_occurrences_of,
)
from patterns.scan_cache import ScopedCache

Findings = tuple[tuple[Finding, ...], ...]
KIND = "settled"
# More changed values than this are not searched for one by one: the runs are found afresh
# (a namespace that learned hundreds of values since its last request, say).
MAX_CHANGED = 64
# Values, each with what its finding names it: value, pattern, prefix, priority.
Named = frozenset[tuple[str, str, str, int]]
# What the rules find in texts (patterns.scanner.by_rules), and how many characters they read.
RulesOf = Callable[
    [Sequence[str], Sequence[int] | None, FindingBudget | None], tuple[Findings, int]
]
# Whether the rest of the work goes elsewhere (patterns.scanner.Elsewhere.finishes).
Finishes = Callable[[Sequence[str], Findings, int], bool]


@dataclass(frozen=True)
class Context:
    """What a request's findings depended on besides its texts and the rules."""

    main: str | None  # the main level of known values (KnownValues.main_token)
    recent: Named  # the recent level's values
    spread: Named  # the values the request spread


@dataclass(slots=True)
class SettledRun:
    """What was found in one run of texts, per text, and what it cost the budget.

    Only the context (and what is known absent) changes once the entry is kept: a run found
    to hold none of the values changed since is valid under the new context too, so the entry
    takes it in place (one entry per message of a conversation, every turn, is not made and
    kept again). A request reading it meanwhile sees one context or the other, both true of
    its findings."""

    context: Context
    before: Findings  # what the rules and the known values found
    after: Findings  # with the spread values' occurrences and what masking revealed
    grew: tuple[bool, ...]  # masking the text revealed something
    cost_before: int  # the budget the rules' and the known values' findings cost
    cost_after: int  # the budget the spread values' occurrences cost
    final: Findings  # after, with touching findings joined (occurrences.unglued)
    # Values last searched for in the run's texts and not found: true of the texts whatever
    # the context, so a value spread in one turn and known in the next is searched for once.
    absent: frozenset[str] = frozenset()


def groups(count: int, runs: Sequence[int] | None) -> list[list[int]]:
    """The indexes of the texts of each run (each text a run of its own without runs)."""
    if runs is None:
        return [[index] for index in range(count)]
    members: dict[int, list[int]] = {}
    for index, run in enumerate(runs):
        members.setdefault(run, []).append(index)
    return list(members.values())


class _Request:
    """One request's runs, their entries, and what each text was found to hold."""

    def __init__(self, texts: Sequence[str], runs: Sequence[int] | None, cache: ScopedCache):
        self.texts = texts
        self.runs = runs
        self.groups = groups(len(texts), runs)
        self.pieces = [tuple(texts[index] for index in members) for members in self.groups]
        self.entries: list[SettledRun | None] = [cache.get(KIND, run) for run in self.pieces]
        self.before: list[tuple[Finding, ...]] = [()] * len(texts)
        self.after: list[tuple[Finding, ...]] = [()] * len(texts)
        self.grew = [False] * len(texts)
        self.cost_before = [0] * len(texts)
        self.cost_after = [0] * len(texts)
        self.settled: set[int] = set()  # the runs whose entry holds as it is

    def valid(
        self, check: Callable[[SettledRun, tuple[str, ...]], bool], among: list[bool] | None = None
    ) -> list[bool]:
        """Per run: whether it has an entry that passes check (and is valid among)."""
        return [
            entry is not None and (among is None or among[number]) and check(entry, pieces)
            for number, (entry, pieces) in enumerate(zip(self.entries, self.pieces, strict=True))
        ]

    def unglued(self) -> Findings:
        """After the first round, touching findings joined: from the entries where settled."""
        final: list[tuple[Finding, ...] | None] = [None] * len(self.texts)
        for number in self.settled:
            entry = self.entries[number]
            if entry is not None:
                for index, found in zip(self.groups[number], entry.final, strict=True):
                    final[index] = found
        return tuple(
            unglued(self.after[index]) if found is None else found
            for index, found in enumerate(final)
        )

    def indexes(self, numbers: Sequence[int]) -> list[int]:
        return [index for number in numbers for index in self.groups[number]]


def find_settled(
    texts: Sequence[str],
    runs: Sequence[int] | None,
    budget: FindingBudget | None,
    known: KnownValues | None,
    cache: ScopedCache,
    scan: RunScan,
    rules_of: RulesOf,
    finishes: Finishes | None = None,
) -> Findings | None:
    """What patterns.scanner.find_in_texts finds with the known values' findings, from the
    runs' entries where they still hold and afresh elsewhere; the entries are updated.

    None, having spent no budget, when finishes says the texts not settled are for elsewhere
    (the caller then does all of the work as without entries)."""
    request = _Request(texts, runs, cache)
    main = known.main_token if known else None
    recent = _named(known.recent_values if known else {})
    still_known = _ChangedSince(lambda context: _known_since(context, main, recent))
    known_ok = request.valid(still_known.absent)
    trial = FindingBudget(budget.remaining) if budget is not None else None
    if not _find_before(request, known_ok, known, trial, cache, rules_of, finishes):
        return None
    spread = spread_values(tuple(request.before), known or ())
    spread_key = _named(spread)
    # A value searched for already (learned since, most often spread then) is not again.
    still_spread = _ChangedSince(
        lambda context: _spread_since(context, spread_key) - (still_known.changed(context) or set())
    )
    settled = request.valid(still_spread.absent, among=known_ok)
    request.settled = {number for number, ok in enumerate(settled) if ok}
    _from_entries(request, settled, trial, after=True)
    _first_round(request, [n for n, ok in enumerate(settled) if not ok], spread, trial, cache, scan)
    first = final = request.unglued()
    if any(request.grew):
        # Masking revealed a value somewhere: the later rounds, over every text.
        later = FIXPOINT_ROUNDS - 1
        findings = masked_until_settled(
            texts, tuple(request.after), scan, trial, known or (), cache, rounds=later
        )
        final = tuple(unglued(found) for found in findings)
    searched = functools.partial(_searched_for, still_known, still_spread)
    _remember(request, Context(main, recent, spread_key), first, cache, searched)
    if budget is not None and trial is not None:
        budget.spend(budget.remaining - trial.remaining)
    return final


def _find_before(
    request: _Request,
    known_ok: list[bool],
    known: KnownValues | None,
    budget: FindingBudget | None,
    cache: ScopedCache,
    rules_of: RulesOf,
    finishes: Finishes | None,
) -> bool:
    """What the rules and the known values find in each text: from the entries of the runs
    in which no value known since occurs, afresh in the others; False (and nothing found)
    when finishes says those are for elsewhere."""
    fresh = request.indexes([number for number, ok in enumerate(known_ok) if not ok])
    subset = [request.texts[index] for index in fresh]
    runs = [request.runs[index] for index in fresh] if request.runs is not None else None
    rules, scanned = rules_of(subset, runs, budget)
    if finishes is not None and finishes(subset, rules, scanned):
        return False
    spent: list[int] = []
    found_known = known.find(subset, budget, cache, spent) if known else None
    for k, index in enumerate(fresh):
        request.before[index] = merged(rules[k], found_known[k]) if found_known else rules[k]
        request.cost_before[index] = len(rules[k]) + (spent[k] if spent else 0)
    _from_entries(request, known_ok, budget, after=False)
    return True


class _ChangedSince:
    """Whether any value changed since an entry's context occurs in a run (the changed values
    worked out once per context: most of a request's runs share their last request's)."""

    def __init__(self, changed: Callable[[Context], frozenset[str] | None]) -> None:
        self._changed = changed
        self._seen: dict[int, tuple[Context, frozenset[str] | None]] = {}

    def changed(self, context: Context) -> frozenset[str] | None:
        seen = self._seen.get(id(context))
        if seen is None or seen[0] is not context:
            seen = self._seen[id(context)] = (context, self._changed(context))
        return seen[1]

    def absent(self, entry: SettledRun, pieces: tuple[str, ...]) -> bool:
        values = self.changed(entry.context)
        if values is None or len(values) > MAX_CHANGED:
            return False
        unsearched = values - entry.absent
        return not any(value in piece for piece in pieces for value in unsearched)


def _searched_for(known: _ChangedSince, spread: _ChangedSince, context: Context) -> frozenset[str]:
    """The values a run valid under context was searched for (or known absent from)."""
    return (known.changed(context) or frozenset()) | (spread.changed(context) or frozenset())


def _named(values: Mapping[str, Finding]) -> Named:
    return frozenset((v, f.pattern, f.prefix, f.priority) for v, f in values.items())


def _known_since(context: Context, main: str | None, recent: Named) -> frozenset[str] | None:
    """The known values added since context (None: the entry cannot be used: values were
    forgotten, or are known by another finding now)."""
    if main != context.main or not context.recent <= recent:
        return None
    return frozenset(item[0] for item in recent - context.recent)


def _spread_since(context: Context, spread: Named) -> frozenset[str]:
    """The values spread now or then but not both, or with another finding naming them."""
    return frozenset(item[0] for item in context.spread.symmetric_difference(spread))


def _from_entries(
    request: _Request, valid: list[bool], budget: FindingBudget | None, *, after: bool
) -> None:
    """What the valid runs' entries hold, before or after the first round, with its cost."""
    for number, ok in enumerate(valid):
        entry = request.entries[number]
        if not ok or entry is None:
            continue
        members = request.groups[number]
        if after:
            for index, found, grown in zip(members, entry.after, entry.grew, strict=True):
                request.after[index], request.grew[index] = found, grown
            request.cost_after[members[0]] = entry.cost_after
            _spend(budget, entry.cost_after)
        else:
            for index, found in zip(members, entry.before, strict=True):
                request.before[index] = found
            request.cost_before[members[0]] = entry.cost_before
            _spend(budget, entry.cost_before)


def _first_round(
    request: _Request,
    numbers: list[int],
    spread: Mapping[str, Finding],
    budget: FindingBudget | None,
    cache: ScopedCache,
    scan: RunScan,
) -> None:
    """find_in_texts's first round for the runs not settled: every occurrence of the spread
    values, and what masking them reveals."""
    todo = request.indexes(numbers)
    if not todo:
        return
    subset = [request.texts[index] for index in todo]
    spent: list[int] = []
    spreading = with_occurrences_of(
        spread, subset, tuple(request.before[i] for i in todo), budget, spent
    )
    grew: list[bool] = []
    revealed, _ = found_in_masked(subset, spreading, scan, cache=cache, grew=grew)
    for k, index in enumerate(todo):
        request.after[index] = revealed[k]
        request.grew[index] = grew[k]
        request.cost_after[index] = spent[k]


def _remember(
    request: _Request,
    context: Context,
    first: Findings,
    cache: ScopedCache,
    searched: Callable[[Context], frozenset[str]],
) -> None:
    for number, (members, pieces) in enumerate(zip(request.groups, request.pieces, strict=True)):
        entry = request.entries[number]
        if entry is not None and number in request.settled:
            # In the cache already (see SettledRun); absent: what this request searched for.
            entry.absent = searched(entry.context)
            entry.context = context
        else:
            entry = SettledRun(
                context=context,
                before=tuple(request.before[index] for index in members),
                after=tuple(request.after[index] for index in members),
                grew=tuple(request.grew[index] for index in members),
                cost_before=sum(request.cost_before[index] for index in members),
                cost_after=sum(request.cost_after[index] for index in members),
                final=tuple(first[index] for index in members),
            )
            cache.put(KIND, pieces, entry, sum(map(len, entry.after)))


def _spend(budget: FindingBudget | None, count: int) -> None:
    if budget is not None and count:
        budget.spend(count)
