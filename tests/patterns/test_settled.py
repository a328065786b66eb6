"""A conversation's history settled from the scan cache (patterns.settled): a next turn reads
only what changed, and what changed is never missed.

The property test in test_scan_cache.py compares settled and fresh findings on generated
conversations; these tests pin the cases one by one, with the runs each turn found afresh.
"""

from __future__ import annotations

from collections.abc import Sequence

from patterns.engine import (
    Finding,
    FindingBudget,
    PatternSpec,
    build_snapshot,
    replace_findings,
)
from patterns.occurrences import KnownValues
from patterns.scan_cache import ScanCache, ScopedCache
from patterns.scanner import by_rules, find_in_texts, scan_here
from patterns.services import FoundValues, masked_texts, remember_checked
from patterns.settled import find_settled

RULES = build_snapshot(
    [
        PatternSpec("ec2", r"i-[0-9a-f]{8}", "AWS_EC2"),
        # A bucket only where it is named one: bare, it is found only once learned or spread.
        PatternSpec(
            "bucket",
            r"[a-z][a-z0-9]*-[a-z0-9-]{3,40}",
            "S3_BUCKET",
            context_keywords=("bucket",),
            context_window=12,
        ),
    ]
)


class Turns:
    """One namespace's cache, and what each request had to find afresh."""

    def __init__(self) -> None:
        self.cache = ScopedCache(ScanCache(), "team-a")
        self.fresh: list[list[str]] = []
        self.searched: list[str] = []  # what the settled path looked for (find's searched)

    def find(
        self,
        texts: Sequence[str],
        known: KnownValues | None = None,
        *,
        searched: list[str] | None = None,
    ) -> tuple[tuple[Finding, ...], ...]:
        """The settled findings, checked against the reference; searched: a list to empty
        once the settled path has run (the reference searches the texts too)."""
        scan = scan_here(RULES)

        def rules_of(
            subset: Sequence[str], runs: Sequence[int] | None, budget: FindingBudget | None
        ) -> tuple[tuple[tuple[Finding, ...], ...], int]:
            self.fresh.append(list(subset))
            return by_rules(subset, runs, budget, self.cache, scan)

        found = find_settled(texts, None, None, known, self.cache, scan, rules_of)
        assert found is not None
        self.searched = list(searched or ())
        if searched is not None:
            searched.clear()
        # The reference: everything afresh, without any cache.
        assert found == find_in_texts(
            RULES, texts, known=known.find(texts) if known else None, learned=known or ()
        )
        return found


def _values(found: tuple[Finding, ...]) -> list[str]:
    return [f.value for f in found]


def test_a_next_turn_finds_only_its_own_texts_afresh() -> None:
    turns = Turns()
    history = ["restart i-0000aaaa", "done", "now i-0000bbbb too"]
    turns.find(history)
    turns.find([*history, "and i-0000cccc"])
    assert turns.fresh[-1] == ["and i-0000cccc"]


def test_a_value_new_in_this_turn_is_masked_where_it_stands_bare_in_the_history() -> None:
    turns = Turns()
    history = ["the logs go to acme-logs-archive", "ok"]
    turns.find(history)
    found = turns.find([*history, "bucket acme-logs-archive is full"])
    assert _values(found[0]) == ["acme-logs-archive"]  # spread into the old text
    assert turns.fresh[-1] == ["bucket acme-logs-archive is full"]


def test_a_value_learned_since_is_masked_in_a_block_settled_before() -> None:
    turns = Turns()
    history = ["the logs go to acme-logs-archive", "ok"]
    known = KnownValues()
    turns.find(history, known)
    learned = known.with_added(
        [Finding(0, 17, "acme-logs-archive", "bucket", "S3_BUCKET", 10)]
    )  # from another conversation of the namespace
    found = turns.find([*history, "thanks"], learned)
    assert _values(found[0]) == ["acme-logs-archive"]
    assert "the logs go to acme-logs-archive" in turns.fresh[-1]
    assert "ok" not in turns.fresh[-1]


class SearchedText(str):
    """A text that notes which values were looked for in it with `in`."""

    searched: list[str]

    def __contains__(self, value: object) -> bool:
        self.searched.append(str(value))
        return super().__contains__(value)  # type: ignore[operator]


def test_a_value_spread_in_one_turn_and_known_in_the_next_is_searched_for_once() -> None:
    turns = Turns()
    old = SearchedText("the logs go somewhere else")
    old.searched = []
    history = [old, "ok"]
    known = KnownValues()
    turns.find(history, known)
    bucket = "acme-logs-archive"
    turn = f"bucket {bucket} is full"
    turns.find([*history, turn], known)
    assert bucket in old.searched  # spread: looked for in the history, not found
    old.searched.clear()
    learned = known.with_added([Finding(7, 24, bucket, "bucket", "S3_BUCKET", 10)])
    found = turns.find([*history, turn, "thanks"], learned, searched=old.searched)
    assert bucket not in turns.searched  # known now, and known absent from that text
    assert _values(found[2]) == [bucket]
    assert turns.fresh[-1] == [turn, "thanks"]  # the text that holds it, and the new one


def test_a_value_forgotten_or_named_by_another_rule_is_found_afresh() -> None:
    turns = Turns()
    history = ["the logs go to acme-logs-archive"]
    bucket = Finding(0, 17, "acme-logs-archive", "bucket", "S3_BUCKET", 10)
    turns.find(history, KnownValues().with_added([bucket]))
    # Expired, then learned again from another rule: its findings name that rule now.
    other = Finding(0, 17, "acme-logs-archive", "ec2", "AWS_EC2", 5)
    found = turns.find(history, KnownValues().with_added([other]))
    assert [f.pattern for f in found[0]] == ["ec2"]
    forgotten = turns.find(history, KnownValues())
    assert forgotten == ((),)


def test_a_kept_masked_text_is_reused_only_with_the_same_placeholders() -> None:
    cache = ScopedCache(ScanCache(), "team-a")
    text = "restart i-0000aaaa"
    findings = ((Finding(8, 18, "i-0000aaaa", "ec2", "AWS_EC2", 10),),)
    found = FoundValues(texts=(text,), findings=findings, cache=cache)
    first = {"i-0000aaaa": "AWS_EC2_001"}
    served = masked_texts(found, first)
    assert served.checked == frozenset()
    remember_checked(found, served, first)
    assert masked_texts(found, first).checked == {0}
    # The mapping expired and the value was numbered anew: masked anew, checked anew.
    again = {"i-0000aaaa": "AWS_EC2_002"}
    renumbered = masked_texts(found, again)
    assert renumbered.checked == frozenset()
    assert renumbered.texts == (replace_findings(text, findings[0], again),)


def test_the_budget_is_spent_as_without_entries() -> None:
    turns = Turns()
    history = [f"restart i-0000{n:04x} and i-0000{n:04x}" for n in range(5)]
    turns.find(history)
    settled, fresh = FindingBudget(1_000), FindingBudget(1_000)
    scan = scan_here(RULES)

    def rules_of(
        subset: Sequence[str], runs: Sequence[int] | None, budget: FindingBudget | None
    ) -> tuple[tuple[tuple[Finding, ...], ...], int]:
        return by_rules(subset, runs, budget, turns.cache, scan)

    find_settled(history, None, settled, None, turns.cache, scan, rules_of)
    find_in_texts(RULES, history, budget=fresh, cache=turns.cache)
    assert settled.remaining == fresh.remaining < 1_000
