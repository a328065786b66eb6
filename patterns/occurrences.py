"""Every occurrence of a value already found: what the rules found at one place of a request
is masked wherever else it stands in that request.

Pure: the standard library, the engine and an Aho-Corasick automaton (pyahocorasick: every
value searched for at once in one pass, linear in the text, where an RE2 alternation of
thousands of literals outgrows its DFA memory and falls back to a slow NFA). Security
assumption: the rules decide what a value is; this module spreads that decision to the
value's other occurrences (a bare account ID after the rule found it in `"Account": ...`, a
bucket name in a later turn after "bucket:" named it in an earlier one), so that masking a
value at one place never leaves it readable at another; KnownValues does the same for what a
namespace learned from its earlier requests (patterns.memory). An occurrence counts where the value
stands as a word of its own (engine.stands_alone: delimited by punctuation, spaces or
non-ASCII letters, never inside a longer ASCII identifier). Values that could be ordinary
words are not spread (engine.is_distinctive): their other occurrences are most likely prose
or code.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Collection, Iterable, Mapping, Sequence

import ahocorasick

from patterns.engine import (
    PLACEHOLDER_LITERAL_PATTERN,
    Finding,
    FindingBudget,
    is_distinctive,
    stands_alone,
)
from patterns.scan_cache import ScopedCache

Findings = tuple[tuple[Finding, ...], ...]


# A namespace's newest learned values get a level of their own, which grows a level at a
# time as they come (each new level searches only what it adds, see _Level); they are folded
# into the main one once they are more than RECENT_MIN values and more than the square root
# of the main one's. With n values known, a value learned then costs about sqrt(n) values
# built into automata (the main one every sqrt(n) values), and a text is read twice whatever
# n is, a text already read once only for the values learned since.
RECENT_MIN = 256


def learnable(finding: Finding) -> bool:
    """Whether a found value is worth masking wherever it stands (in this request and, once
    learned, in its namespace's later ones): not a placeholder-shaped literal, and not
    something that could be an ordinary word."""
    return finding.pattern != PLACEHOLDER_LITERAL_PATTERN and is_distinctive(finding.value)


def spreadable(findings: Iterable[Finding]) -> dict[str, Finding]:
    """The values worth masking wherever they stand, each with the first finding of it
    (whose rule names its other occurrences too)."""
    known: dict[str, Finding] = {}
    for finding in findings:
        if finding.value not in known and learnable(finding):
            known[finding.value] = finding
    return known


_LEVELS = itertools.count()


# Up to this many values are looked for with str's own search (one pass per value, in C)
# before an automaton is run: a conversation's newest values are usually in a few texts only.
FEW_VALUES = 16

Match = tuple[int, int, str]  # start, end, value: where a value stands alone


class _Level:
    """Values to find wherever they stand alone, and what they are found as.

    A level made by adding values to another (parent) searches only the added ones and takes
    the parent's matches from the scan cache, so that a namespace's newest values, learned
    turn after turn, do not send every turn through the whole history again."""

    def __init__(
        self,
        origins: Mapping[str, Finding],
        parent: _Level | None = None,
        added: Mapping[str, Finding] | None = None,
        *,
        growing: bool = False,
    ) -> None:
        self.origins = origins
        # Only the parent's name: its matches are in the scan cache, or searched afresh.
        self._parent: str | None = parent.token if parent is not None else None
        # A namespace's recent values grow a level at a time (KnownValues.with_added).
        self.growing = growing
        self._searched = origins if parent is None or added is None else added
        self._automaton = _automaton(self._searched)
        self._all: ahocorasick.Automaton | None = None  # over every value, when needed
        self._asked = False
        # Names this level's values in scan cache keys: a level never changes.
        self.token: str = str(next(_LEVELS))

    def occurrences(
        self, text: str, budget: FindingBudget | None, cache: ScopedCache | None = None
    ) -> tuple[Finding, ...]:
        if cache is None or self.growing:
            # A growing level lasts until the namespace learns again (often the next turn):
            # only its matches are kept, for its child.
            return tuple(_chosen(self.matches(text, cache), self.origins, budget))
        found: tuple[Finding, ...] | None = cache.get("known", (self.token, text))
        if found is None:
            found = tuple(_chosen(self.matches(text, cache), self.origins, budget))
            cache.put("known", (self.token, text), found, len(found))
        elif budget is not None:
            budget.spend(len(found))
        return found  # the cache's own tuple: a caller that finds it again can tell (is)

    def matches(self, text: str, cache: ScopedCache | None = None) -> list[Match]:
        """Every place where one of this level's values stands alone in text: the parent's
        matches from the cache and the added values' own, else all values searched afresh.
        Kept in the cache for a growing level (its child asks for them)."""
        if cache is None or not self.growing:
            return _matches(text, self._automaton_of_all(), self.origins)
        # A level's first request finds nothing of its own in the cache: it does not ask.
        kept: tuple[Match, ...] | None = (
            cache.get("matches", (self.token, text)) if self._asked else None
        )
        if kept is None:
            inherited = cache.get("matches", (self._parent, text)) if self._parent else None
            if inherited is None:
                kept = tuple(_matches(text, self._automaton_of_all(), self.origins))
            else:
                kept = inherited + tuple(_matches(text, self._automaton, self._searched))
            cache.put("matches", (self.token, text), kept, len(kept))
        return list(kept)

    def done(self) -> None:
        """A request has asked for this level's matches: later ones look in the cache."""
        self._asked = True

    def _automaton_of_all(self) -> ahocorasick.Automaton:
        if self._all is None:
            self._all = (
                self._automaton if self._searched is self.origins else _automaton(self.origins)
            )
        return self._all


class KnownValues:
    """Values known before a request is read (what its namespace learned from earlier ones),
    each with the finding that first named it, to be found wherever they stand alone.

    Immutable: with_added() returns another, so a request keeps what it started with.
    """

    def __init__(self, main: _Level | None = None, recent: _Level | None = None) -> None:
        self._main = main
        self._recent = recent

    def __len__(self) -> int:
        return sum(len(level.origins) for level in self._levels())

    def __contains__(self, value: object) -> bool:
        return any(value in level.origins for level in self._levels())

    def unknown(self, values: Iterable[str]) -> set[str]:
        """Those of the values not known here."""
        fresh = set(values)
        for level in self._levels():
            fresh -= level.origins.keys()
        return fresh

    def with_added(self, origins: Iterable[Finding]) -> KnownValues:
        """These values and those (each value keeps its first origin)."""
        main = self._main.origins if self._main else {}
        recent = dict(self._recent.origins) if self._recent else {}
        count = len(recent)
        for origin in origins:
            if origin.value not in main and learnable(origin):
                recent.setdefault(origin.value, origin)
        if len(recent) == count:
            return self
        if len(recent) > max(RECENT_MIN, math.isqrt(len(main))):
            return KnownValues(_Level({**main, **recent}))
        if self._recent is None:
            return KnownValues(self._main, _Level(recent, growing=True))
        added = {v: o for v, o in recent.items() if v not in self._recent.origins}
        return KnownValues(self._main, _Level(recent, self._recent, added, growing=True))

    def rebuild_size(self, added: int) -> int:
        """How many values with_added() of `added` new values builds into automata at most."""
        main = len(self._main.origins) if self._main else 0
        recent = (len(self._recent.origins) if self._recent else 0) + added
        return main + recent if recent > max(RECENT_MIN, math.isqrt(main)) else recent

    @property
    def main_token(self) -> str | None:
        """The main level's name (a new one whenever the main level is rebuilt)."""
        return self._main.token if self._main else None

    @property
    def recent_values(self) -> Mapping[str, Finding]:
        """The recent level's values, each with its origin (with_added only adds to them while
        the main level stays the same)."""
        return self._recent.origins if self._recent else {}

    def find(
        self,
        texts: Sequence[str],
        budget: FindingBudget | None = None,
        cache: ScopedCache | None = None,
        spent: list[int] | None = None,
    ) -> Findings:
        """Per text, where these values stand alone in it (sorted, not overlapping).

        cache: where this process keeps what each level found in each text (the main level
        lasts many requests, so a conversation's history is searched once). spent: gets what
        each text cost the budget."""
        levels = self._levels()
        found: list[tuple[Finding, ...]] = []
        for text in texts:
            occurrences: tuple[Finding, ...] = ()
            cost = 0
            for level in levels:
                at_level = level.occurrences(text, budget, cache)
                cost += len(at_level)
                occurrences = merged(occurrences, at_level)
            found.append(occurrences)
            if spent is not None:
                spent.append(cost)
        if cache is not None:
            for level in levels:
                level.done()
        return tuple(found)

    def _levels(self) -> list[_Level]:
        return [level for level in (self._main, self._recent) if level is not None]


def _automaton(values: Iterable[str]) -> ahocorasick.Automaton:
    automaton = ahocorasick.Automaton()
    for value in values:
        automaton.add_word(value, value)
    automaton.make_automaton()
    return automaton


def with_every_occurrence(
    texts: Sequence[str],
    findings: Findings,
    budget: FindingBudget | None = None,
    known: KnownValues | Collection[str] = (),
) -> Findings:
    """findings (one tuple per text) with every other occurrence, in any of the texts, of a
    value found in one of them. A found value keeps its place where it overlaps one of these.
    budget: as for the scan itself, so a value repeated past it refuses the request.
    known: values whose occurrences findings hold already (KnownValues.find found every one
    that stands alone): not searched for again, so a conversation's history is read only for
    the values its newest turn brought."""
    return with_occurrences_of(spread_values(findings, known), texts, findings, budget)


def spread_values(
    findings: Findings, known: KnownValues | Collection[str] = ()
) -> dict[str, Finding]:
    """The values with_every_occurrence looks for: those found and worth masking wherever they
    stand, but for the known ones, each with its first finding."""
    values = {f.value for found in findings for f in found}
    fresh = known.unknown(values) if isinstance(known, KnownValues) else values.difference(known)
    return spreadable(f for found in findings for f in found if f.value in fresh)


def with_occurrences_of(
    spread: Mapping[str, Finding],
    texts: Sequence[str],
    findings: Findings,
    budget: FindingBudget | None = None,
    spent: list[int] | None = None,
) -> Findings:
    """findings with every occurrence of the spread values (spread_values) in each text.
    spent: gets what each text cost the budget."""
    if not spread:
        if spent is not None:
            spent.extend(0 for _ in texts)
        return findings
    automaton = _automaton(spread)
    result = []
    for text, found in zip(texts, findings, strict=True):
        chosen = _chosen(_matches(text, automaton, spread), spread, budget)
        if spent is not None:
            spent.append(len(chosen))
        result.append(merged(found, chosen))
    return tuple(result)


def _matches(text: str, automaton: ahocorasick.Automaton, values: Collection[str]) -> list[Match]:
    """Every place where one of the values stands alone in text."""
    if len(values) <= FEW_VALUES and not any(value in text for value in values):
        return []
    return [
        (last + 1 - len(value), last + 1, value)
        for last, value in automaton.iter(text)
        if stands_alone(text, last + 1 - len(value), last + 1)
    ]


def _chosen(
    matches: Sequence[Match], origins: Mapping[str, Finding], budget: FindingBudget | None
) -> list[Finding]:
    """The matches leftmost-longest first that overlap none chosen before, as findings: a
    longer value glued to an identifier at a place does not hide a shorter one there that
    stands alone."""
    occurrences: list[Finding] = []
    end_of_last = 0
    for start, end, value in sorted(matches, key=lambda match: (match[0], -match[1])):
        if start < end_of_last:
            continue
        if budget is not None:
            budget.spend(1)
        origin = origins[value]
        occurrences.append(
            Finding(start, end, value, origin.pattern, origin.prefix, origin.priority)
        )
        end_of_last = end
    return occurrences


def merged(found: tuple[Finding, ...], extra: Sequence[Finding]) -> tuple[Finding, ...]:
    """found plus the extra findings that overlap none of it (both sorted, non-overlapping)."""
    if not extra:
        return found
    if not found:
        return tuple(extra)
    if len(extra) == len(found) and all(
        a.start == b.start and a.end == b.end for a, b in zip(found, extra, strict=True)
    ):
        return found  # the same places (what the rules and the namespace found, most often)
    ends = [f.end for f in found]
    added = []
    for finding in extra:
        index = bisect.bisect_right(ends, finding.start)
        if index < len(found) and found[index].start < finding.end:
            continue
        added.append(finding)
    if not added:
        return found
    return tuple(sorted((*found, *added), key=lambda f: f.start))


def unglued(found: tuple[Finding, ...]) -> tuple[Finding, ...]:
    """found, with findings that touch (one ends where the next starts: two PEM blocks back
    to back) joined into one: their placeholders would be glued ("KEY_001PRIVATE_KEY_002"),
    and a placeholder glued to a word is not restored. The joined value gets the first one's
    rule and a placeholder of its own."""
    if len(found) < 2 or {f.end for f in found}.isdisjoint([f.start for f in found]):
        return found  # sorted and not overlapping: touching is one's end at another's start
    joined = [found[0]]
    for finding in found[1:]:
        last = joined[-1]
        if last.end == finding.start and not (last.continuation or finding.continuation):
            value = last.value + finding.value
            joined[-1] = Finding(
                last.start, finding.end, value, last.pattern, last.prefix, last.priority
            )
        else:
            joined.append(finding)
    return tuple(joined)
