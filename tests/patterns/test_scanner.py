"""The scanning process finds what the serving process would, and fails closed when it dies."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest

from patterns.engine import FindingBudget, TooManyFindings, build_snapshot
from patterns.library import DEFAULT_PATTERNS
from patterns.scanner import Scanner, ScannerUnavailable, find_in_texts, holds_values

SNAPSHOT = build_snapshot((entry.to_spec() for entry in DEFAULT_PATTERNS), version="v1")
TEXTS = ["restart i-0123456789abcdef0", "AWS account ", "123456789012 and vpc-0a1b", "2c3d"]
RUNS = [0, 1, 1, 1]


@pytest.fixture(scope="module")
def scanner() -> Iterator[Scanner]:
    scanner = Scanner()
    yield scanner
    scanner.close()


def test_the_child_finds_what_this_process_finds(scanner: Scanner) -> None:
    scanned = asyncio.run(scanner.find(SNAPSHOT, TEXTS, RUNS, limit=100))
    assert scanned.findings == find_in_texts(SNAPSHOT, TEXTS, RUNS)
    assert [f.value for f in scanned.findings[2]] == ["123456789012", "vpc-0a1b2c3d"]
    assert scanned.cpu_seconds >= 0


def test_the_child_keeps_to_the_budget(scanner: Scanner) -> None:
    texts = [" ".join(f"i-{n:017x}" for n in range(50))]
    with pytest.raises(TooManyFindings):
        find_in_texts(SNAPSHOT, texts, budget=FindingBudget(10))
    with pytest.raises(TooManyFindings):
        asyncio.run(scanner.find(SNAPSHOT, texts, limit=10))


def test_the_child_tells_whether_texts_still_hold_values(scanner: Scanner) -> None:
    assert asyncio.run(scanner.holds_values(SNAPSHOT, ["AWS_EC2_001 is fine"]))[0] is False
    assert asyncio.run(scanner.holds_values(SNAPSHOT, ["i-0123456789abcdef0"]))[0] is True
    assert holds_values(SNAPSHOT, ["i-0123456789abcdef0"])


def test_new_rules_reach_the_child_by_their_version(scanner: Scanner) -> None:
    only_vpc = build_snapshot(
        (e.to_spec() for e in DEFAULT_PATTERNS if e.name == "aws_vpc_id"), version="v2"
    )
    scanned = asyncio.run(scanner.find(only_vpc, ["i-0123456789abcdef0 vpc-0a1b2c3d"]))
    assert [f.value for f in scanned.findings[0]] == ["vpc-0a1b2c3d"]


def test_a_child_that_dies_fails_the_scan_closed_and_a_new_one_takes_over() -> None:
    scanner = Scanner()
    try:
        with pytest.raises(ScannerUnavailable):
            asyncio.run(scanner._run(os._exit, 1))
        scanned = asyncio.run(scanner.find(SNAPSHOT, TEXTS))
        assert scanned.findings == find_in_texts(SNAPSHOT, TEXTS)
    finally:
        scanner.close()
