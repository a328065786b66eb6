"""Recall on AWS's own API examples and damaging false positives on real code, documentation
and configuration (tests/corpus), with every pass a request's texts go through.

The figures are printed (run with -s to see them) and go into docs/masking.md (Measuring);
the test fails below the goals: recall of 99.5% of every occurrence of every value in scope,
and at most 0.5 damaging false positives per MB.
"""

from __future__ import annotations

from collections import Counter

import pytest

from patterns.engine import Snapshot, build_snapshot
from patterns.library import DEFAULT_PATTERNS
from patterns.scanner import find_in_texts
from tests.corpus import aws_examples, code

RECALL_GOAL = 0.995
DAMAGING_PER_MB_GOAL = 0.5


@pytest.fixture(scope="module")
def library() -> Snapshot:
    return build_snapshot([entry.to_spec() for entry in DEFAULT_PATTERNS])


def test_recall_on_aws_examples_counting_every_occurrence(library: Snapshot) -> None:
    total: Counter[str] = Counter()
    masked: Counter[str] = Counter()
    missed: dict[str, set[str]] = {}
    for example in aws_examples.examples():
        if not example.values:
            continue
        [found] = find_in_texts(library, [example.text])
        covered = bytearray(len(example.text))
        for finding in found:
            covered[finding.start : finding.end] = b"\x01" * (finding.end - finding.start)
        for kind, value, within in example.values:
            for start in aws_examples.occurrences(example.text, value, within):
                total[kind] += 1
                if all(covered[start : start + len(value)]):
                    masked[kind] += 1
                else:
                    missed.setdefault(kind, set()).add(value)
    recall = sum(masked.values()) / sum(total.values())
    print(f"\n[corpus] AWS API examples from botocore {aws_examples.botocore_version()}:")
    for kind in sorted(total, key=lambda k: -total[k]):
        print(f"  {kind:18} {masked[kind]:5}/{total[kind]:<5} {masked[kind] / total[kind]:.2%}")
    print(f"  {'all':18} {sum(masked.values()):5}/{sum(total.values()):<5} {recall:.2%}")
    assert sum(total.values()) > 2000  # the corpus is there
    assert recall >= RECALL_GOAL, {kind: sorted(values) for kind, values in missed.items()}


def test_damaging_false_positives_on_code_docs_and_configuration(library: Snapshot) -> None:
    size = 0
    damaging: list[tuple[str, str, str]] = []
    by_rule: Counter[str] = Counter()
    for source in code.source_files():
        size += len(source.text.encode())
        [found] = find_in_texts(library, [source.text])
        for finding in found:
            by_rule[finding.pattern] += 1
            if code.is_damaging(finding.pattern, finding.value):
                damaging.append((source.name, finding.pattern, finding.value))
    megabytes = size / 1e6
    rate = len(damaging) / megabytes
    versions = ", ".join(f"{p} {code.package_version(p)}" for p in code.PACKAGES)
    print(f"\n[corpus] code and docs ({versions}): {megabytes:.1f} MB")
    print(f"  all findings {sum(by_rule.values())} ({sum(by_rule.values()) / megabytes:.2f}/MB)")
    print(f"  damaging {len(damaging)} ({rate:.2f}/MB):")
    for name, pattern, value in damaging:
        print(f"    {pattern:28} {value[:40]!r:44} {name}")
    assert megabytes > 30  # the corpus is there
    assert rate <= DAMAGING_PER_MB_GOAL
