"""The scanning process finds what the serving process would, and fails closed when it dies."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool

import pytest

from patterns.engine import Finding, FindingBudget, TooManyFindings, build_snapshot
from patterns.library import DEFAULT_PATTERNS
from patterns.occurrences import KnownValues, learnable
from patterns.scanner import (
    FINISH_HERE_MAX_CHARS,
    FINISH_HERE_MAX_NEW_VALUES,
    FINISH_HERE_MAX_TEXTS,
    Scanner,
    ScannerUnavailable,
    by_rules,
    find_in_texts,
    holds_values,
    scan_here,
)
from patterns.services import find_values

SNAPSHOT = build_snapshot((entry.to_spec() for entry in DEFAULT_PATTERNS), version="v1")
TEXTS = ["restart i-0123456789abcdef0", "AWS account ", "123456789012 and vpc-0a1b", "2c3d"]
RUNS = [0, 1, 1, 1]


@pytest.fixture(scope="module")
def scanner() -> Iterator[Scanner]:
    scanner = Scanner()
    yield scanner
    scanner.close()


def test_the_child_finds_what_this_process_finds(scanner: Scanner) -> None:
    runs = [(TEXTS[0],), tuple(TEXTS[1:])]
    found, cpu_seconds = scanner.scan_in_child(SNAPSHOT, runs)
    assert found == scan_here(SNAPSHOT)(runs, None)
    assert [f.value for f in found[1][1]] == ["123456789012", "vpc-0a1b2c3d"]
    assert cpu_seconds >= 0


def test_a_scan_through_the_child_masks_as_one_here(scanner: Scanner) -> None:
    spent: list[float] = []
    far = scanner.scans(SNAPSHOT, 0, spent.append)
    here = find_in_texts(SNAPSHOT, TEXTS, RUNS)
    assert find_in_texts(SNAPSHOT, TEXTS, RUNS, scan=far.scan) == here
    assert spent, "every batch went to the child"
    spent.clear()
    near = scanner.scans(SNAPSHOT, 10**9, spent.append)
    assert find_in_texts(SNAPSHOT, TEXTS, RUNS, scan=near.scan) == here
    assert not spent, "batches smaller than the threshold stay here"


def test_the_child_finishes_a_request_as_this_process_would(scanner: Scanner) -> None:
    learned = KnownValues().with_added(
        [Finding(0, 12, "123456789012", "aws_account_id", "AWS_ACCOUNT", 50)]
    )
    texts = [*TEXTS, "bare 123456789012 and i-0123456789abcdef0 again"]
    runs = [*RUNS, 2]
    known = learned.find(texts)
    spent: list[float] = []
    far = scanner.scans(SNAPSHOT, 0, spent.append)
    rules, new_chars = by_rules(texts, runs, None, None, far.scan)
    assert new_chars == sum(len(text) for text in texts)
    budget = FindingBudget(1_000)
    finished = far.finish(texts, runs, budget, rules, known)
    assert finished == find_in_texts(SNAPSHOT, texts, runs, known=known, learned=learned)
    assert budget.remaining < 1_000, "what the child spread is paid for here"
    assert far.finish(texts, runs, None, None, known) == finished  # the child reads the rules
    assert len(spent) == 3
    with pytest.raises(TooManyFindings):
        far.finish(texts, runs, FindingBudget(1), rules, known)


def test_the_turn_after_one_the_child_finished_scans_none_of_its_history_again(
    scanner: Scanner,
) -> None:
    # A conversation's first request here, with more values than this process spreads: the
    # child finishes it, fixpoint included. The next turn settles that history here from the
    # cache, with what the child's fixpoint revealed: only the new turn is scanned, here.
    history = [
        f"restart i-{n:017x} in vpc-{n:08x} for account {123456789000 + n}"
        for n in range(FINISH_HERE_MAX_NEW_VALUES // 2)
    ]
    turn = [*history, "and now i-0fedcba9876543210 too"]
    runs = list(range(len(turn)))
    scope = f"ns-{uuid.uuid4().hex}"
    spent: list[float] = []
    far = scanner.scans(SNAPSHOT, 1_000, spent.append)

    first = find_values(SNAPSHOT, history, runs[:-1], None, None, scope, far)
    assert len(spent) == 2, "the child scanned the history, then finished it"
    assert first.findings == find_in_texts(SNAPSHOT, history, runs[:-1])
    # The namespace learned the values the first request placed (patterns.memory).
    learned = KnownValues().with_added(f for f in first.firsts.values() if learnable(f))
    spent.clear()
    second = find_values(SNAPSHOT, turn, runs, None, learned, scope, far)

    assert spent == [], "nothing of the history was scanned again, in the child or here"
    expected = find_in_texts(SNAPSHOT, turn, runs, known=learned.find(turn), learned=learned)
    assert second.findings == expected


def test_the_child_keeps_to_the_budget(scanner: Scanner) -> None:
    texts = [" ".join(f"i-{n:017x}" for n in range(50))]
    with pytest.raises(TooManyFindings):
        find_in_texts(SNAPSHOT, texts, budget=FindingBudget(10))
    with pytest.raises(TooManyFindings):
        scanner.scan_in_child(SNAPSHOT, [(texts[0],)], FindingBudget(10))
    budget = FindingBudget(200)
    scanner.scan_in_child(SNAPSHOT, [(texts[0],)], budget)
    assert budget.remaining == 150, "what the child found is paid for here"


def test_the_child_tells_whether_texts_still_hold_values(scanner: Scanner) -> None:
    far = scanner.scans(SNAPSHOT, 0, lambda _: None)
    assert holds_values(SNAPSHOT, ["AWS_EC2_001 is fine"], scan=far.scan) is False
    assert holds_values(SNAPSHOT, ["i-0123456789abcdef0"], scan=far.scan) is True
    assert holds_values(SNAPSHOT, ["i-0123456789abcdef0"])


def test_new_rules_reach_the_child_by_their_version(scanner: Scanner) -> None:
    only_vpc = build_snapshot(
        (e.to_spec() for e in DEFAULT_PATTERNS if e.name == "aws_vpc_id"), version="v2"
    )
    found, _ = scanner.scan_in_child(only_vpc, [("i-0123456789abcdef0 vpc-0a1b2c3d",)])
    assert [f.value for f in found[0][0]] == ["vpc-0a1b2c3d"]


def test_a_child_that_dies_fails_the_scan_closed_and_a_new_one_takes_over() -> None:
    scanner = Scanner()
    try:
        dying = scanner._executor().submit(os._exit, 1)
        with pytest.raises(BrokenProcessPool):
            dying.result()
        with pytest.raises(ScannerUnavailable):
            scanner.scan_in_child(SNAPSHOT, [(TEXTS[0],)])
        found, _ = scanner.scan_in_child(SNAPSHOT, [(TEXTS[0],)])
        assert found == scan_here(SNAPSHOT)([(TEXTS[0],)], None)
    finally:
        scanner.close()


def test_what_a_large_request_leaves_to_the_child(scanner: Scanner) -> None:
    far = scanner.scans(SNAPSHOT, 1_000, lambda _: None)
    ids = [f"i-{n:017x}" for n in range(FINISH_HERE_MAX_NEW_VALUES + 1)]
    many = [(Finding(0, 19, value, "aws_ec2_instance_id", "AWS_EC2", 50),) for value in ids]
    learned = KnownValues().with_added(found[0] for found in many)
    assert not far.finishes(["a turn"], ((),), 10, ())  # a known history, a short new turn
    assert far.finishes(["a turn"], ((),), 1_000, ())  # much new text to read
    assert far.finishes(["x"] * (FINISH_HERE_MAX_TEXTS + 1), (), 0, ())
    assert far.finishes(["x" * (FINISH_HERE_MAX_CHARS + 1)], ((),), 0, ())
    assert far.finishes(ids, tuple(many), 0, ())  # thousands of values to spread
    assert not far.finishes(ids, tuple(many), 0, learned)  # ... unless the namespace knows them
