"""Rules on trial in the engine: compiled apart, they mask nothing and are counted."""

from __future__ import annotations

from patterns.engine import PatternSpec, build_snapshot
from patterns.scanner import find_in_texts

EC2 = PatternSpec("ec2", r"i-[0-9a-f]{8}", "AWS_EC2")
TICKET = PatternSpec("ticket_id", r"TCK-[0-9]{6}", "TICKET")


def test_a_rule_on_trial_masks_nothing_and_counts_its_matches() -> None:
    snapshot = build_snapshot([EC2], trial=[TICKET], allowed=["TCK-000000"])
    texts = ["TCK-123456 on i-0a1b2c3d", "TCK-654321, TCK-123456 and TCK-000000"]
    found = find_in_texts(snapshot, texts)
    assert [[f.value for f in text] for text in found] == [["i-0a1b2c3d"], []]
    assert snapshot.trial_counts(texts) == {"ticket_id": 3}  # the allowed value is not one


def test_without_rules_on_trial_nothing_is_counted() -> None:
    assert build_snapshot([EC2]).trial_counts(["TCK-123456"]) == {}
