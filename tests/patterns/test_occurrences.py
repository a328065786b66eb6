"""A value the rules find once is masked at every other place it stands in a request, and
lists after a context label are masked item by item (pure: the engine and the library)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patterns.engine import (
    Finding,
    FindingBudget,
    LocalAllocator,
    PatternSpec,
    Snapshot,
    TooManyFindings,
    build_snapshot,
    is_distinctive,
    replace_findings,
    stands_alone,
    unmask,
)
from patterns.library import DEFAULT_PATTERNS
from patterns.occurrences import RECENT_MIN, KnownValues, with_every_occurrence
from patterns.scanner import find_in_texts
from tests.support.masking import masked


@pytest.fixture(scope="module")
def library() -> Snapshot:
    return build_snapshot([entry.to_spec() for entry in DEFAULT_PATTERNS])


def test_a_value_found_once_is_masked_at_its_other_occurrences_in_every_text(
    library: Snapshot,
) -> None:
    texts = (
        '{"Account": "123456789012", "Bucket": "examplebucket"}',
        '"UserId": "123456789012:my-user", "ImageLocation": "123456789012/My server"',
        'name-123456789012-us-east-1 and s3.upload_file(path, "examplebucket", key)',
        "/examplebucket, https://examplebucket.example.org and (examplebucket)",
    )
    out = masked(library, *texts)
    for text in out:
        assert "123456789012" not in text
        assert "examplebucket" not in text
    assert out[1] == (
        '"UserId": "AWS_ACCOUNT_001:my-user", "ImageLocation": "AWS_ACCOUNT_001/My server"'
    )


def test_an_occurrence_is_a_word_of_its_own_never_part_of_a_longer_identifier(
    library: Snapshot,
) -> None:
    [_, other] = masked(
        library,
        '"Account": "123456789012"',
        "x123456789012 1234567890123 a_123456789012 123456789012_b 123456789012에서",
    )
    assert other == "x123456789012 1234567890123 a_123456789012 123456789012_b AWS_ACCOUNT_001에서"


def test_a_later_turn_names_the_value_bare(library: Snapshot) -> None:
    turns = (
        's3.put_object(Bucket="acme-prod-logs-2025", Key="a.txt")',
        "Done.",
        "now delete acme-prod-logs-2025 and tell me when it is gone",
    )
    assert masked(library, *turns)[2] == "now delete AWS_S3_001 and tell me when it is gone"


def test_values_that_could_be_ordinary_words_are_not_spread(library: Snapshot) -> None:
    out = masked(library, 'bucket = "backups"', "copy the backups tonight")
    assert out == ['bucket = "AWS_S3_001"', "copy the backups tonight"]


@pytest.mark.parametrize(
    ("value", "distinctive"),
    [
        ("logs", False),
        ("backups", False),
        ("database", False),
        ("examplebucket", True),
        ("a-b-c", True),
        ("a-b", False),
        ("123456789012", True),
        ("my.bucket", True),
        ("10.0.0", True),
    ],
)
def test_distinctive_values(value: str, distinctive: bool) -> None:
    assert is_distinctive(value) is distinctive


WEBHOOK = "https://hooks.slack.com/services/T0A1B2C3D/B0A1B2C3D/123456789012-abcdef"


def test_a_value_inside_a_longer_finding_keeps_that_finding_whole(library: Snapshot) -> None:
    [first, second] = masked(library, f'"Account": "123456789012" {WEBHOOK}', WEBHOOK)
    assert first.count("AWS_ACCOUNT_001") == 1
    assert "123456789012" not in first + second
    assert second == "SLACK_WEBHOOK_001"


def test_an_account_inside_an_arn_is_the_same_value_as_alone(library: Snapshot) -> None:
    arn = "arn:aws:iam::123456789012:role/deploy"
    [first, second] = masked(library, '"Account": "123456789012"', arn)
    assert first == '"Account": "AWS_ACCOUNT_001"'
    assert second == "arn:aws:iam::AWS_ACCOUNT_001:role/AWS_IAM_ROLE_001"


def test_placeholder_shaped_text_is_not_spread_as_a_value() -> None:
    snapshot = build_snapshot([PatternSpec("ec2", r"i-[0-9a-f]{8}", "AWS_EC2")])
    texts = ("see AWS_EC2_001 and i-0123abcd", "AWS_EC2_001 again")
    findings = find_in_texts(snapshot, texts)
    assert [f.value for f in findings[1]] == ["AWS_EC2_001"]  # a literal, masked where it is
    assert {f.pattern for f in findings[1]} == {"placeholder_literal"}


def test_every_repetition_spends_the_budget() -> None:
    snapshot = build_snapshot([PatternSpec("ec2", r"i-[0-9a-f]{8}", "AWS_EC2")])
    texts = ("id i-0123abcd", " i-0123abcd," * 50)
    with pytest.raises(TooManyFindings):
        find_in_texts(snapshot, texts, budget=FindingBudget(20))


def test_thousands_of_values_are_spread_in_groups() -> None:
    snapshot = build_snapshot([PatternSpec("id", r"id-[0-9]{6}\b", "ID")])
    values = [f"id-{n:06d}" for n in range(4500)]
    texts = (" ".join(values), " / ".join(reversed(values)))
    findings = find_in_texts(snapshot, texts)
    assert [len(f) for f in findings] == [4500, 4500]
    spread = with_every_occurrence(("x", "id-000001"), ((), ()))
    assert spread == ((), ())  # nothing found: nothing to spread


@pytest.mark.parametrize(
    ("text", "items", "left"),
    [
        ("S3: a-bucket, b-bucket, c-bucket, d-bucket", ("a-bucket", "d-bucket"), ()),
        (
            "the buckets: alpha-one, beta-two and gamma-three are full",
            ("alpha-one", "beta-two", "gamma-three"),
            ("full",),
        ),
        (
            "S3: company-data-bucket에, backup-logs-bucket에 업로드",
            ("company-data-bucket", "backup-logs-bucket"),
            (),
        ),
        (
            "버킷: kt-prod-logs, kt-dev-logs와 kt-qa-logs",
            ("kt-prod-logs", "kt-dev-logs", "kt-qa-logs"),
            (),
        ),
        # Full-width colon and ideographic and full-width commas.
        ("S3\uff1a a-bucket\u3001b-bucket\uff0cc-bucket", ("a-bucket", "b-bucket", "c-bucket"), ()),
        ("bucket: my-logs, region: us-east-1", ("my-logs",), ("region", "us-east-1")),
        ('bucket: "x-1", then the rest', ("x-1",), ("then",)),
    ],
)
def test_every_item_of_a_list_after_a_label_is_masked(
    library: Snapshot, text: str, items: tuple[str, ...], left: tuple[str, ...]
) -> None:
    [out] = masked(library, text)
    for item in items:
        assert item not in out, out
    for word in left:
        assert word in out, out


def test_a_list_does_not_run_into_the_next_key_or_prose(library: Snapshot) -> None:
    [out] = masked(library, "bucket: logs, then region: us-east-1 and more")
    assert out == "bucket: AWS_S3_001, then region: us-east-1 and more"


def test_values_back_to_back_become_one_so_their_placeholders_are_not_glued(
    library: Snapshot,
) -> None:
    pem = next(e for e in DEFAULT_PATTERNS if e.name == "pem_private_key").positive[0]
    [out] = masked(library, pem + pem + "tail")  # masked() also checks the round trip
    assert out.count("PRIVATE_KEY_") == 1


def test_an_occurrence_glued_to_a_word_is_left_to_the_rules(library: Snapshot) -> None:
    [_, other] = masked(library, '"Account": "123456789012"', "see 123456789012x, 123456789012.")
    assert other == "see 123456789012x, AWS_ACCOUNT_001."


# --- values a namespace learned earlier (KnownValues) ----------------------------------------


def _origin(value: str, pattern: str = "s3_bucket", prefix: str = "AWS_S3") -> Finding:
    return Finding(0, len(value), value, pattern, prefix, 50)


def test_learned_values_are_found_bare_where_they_stand_alone(library: Snapshot) -> None:
    known = KnownValues().with_added([_origin("examplebucket"), _origin("acme-prod-logs")])
    texts = ("now delete examplebucket", "copy to acme-prod-logs/x, not xacme-prod-logs", "none")
    found = find_in_texts(library, texts, known=known.find(texts))
    assert [[f.value for f in text] for text in found] == [
        ["examplebucket"],
        ["acme-prod-logs"],  # its other occurrence is glued to an identifier
        [],
    ]
    assert found[0][0].prefix == "AWS_S3"


def test_a_rules_match_wins_over_a_learned_value_inside_it(library: Snapshot) -> None:
    known = KnownValues().with_added([_origin("123456789012", "aws_account_id", "AWS_ACCOUNT")])
    found = find_in_texts(library, (WEBHOOK,), known=known.find((WEBHOOK,)))
    assert [f.value for f in found[0]] == [WEBHOOK]


def test_ordinary_words_and_placeholder_literals_are_never_learned() -> None:
    known = KnownValues().with_added(
        [_origin("logs"), _origin("backups"), _origin("AWS_EC2_001", "placeholder_literal")]
    )
    assert len(known) == 0
    assert known.find(("logs backups AWS_EC2_001",)) == ((),)


def test_learned_values_fold_into_one_automaton_as_they_grow() -> None:
    known = KnownValues()
    values = [f"bucket-{n:05d}" for n in range(3 * RECENT_MIN)]
    for value in values:  # one at a time, as requests learn them
        known = known.with_added([_origin(value)])
    assert len(known) == len(values)
    assert known.with_added([_origin(values[0])]) is known  # nothing new: the same copy
    text = " ".join(reversed(values))
    assert [f.value for f in known.find((text,))[0]] == list(reversed(values))


def test_the_longest_learned_value_at_a_place_wins_across_the_copys_parts() -> None:
    known = KnownValues().with_added([_origin("acme-logs")])
    known = known.with_added([_origin("acme-logs-archive")])
    text = "copy acme-logs-archive to acme-logs"
    assert [f.value for f in known.find((text,))[0]] == ["acme-logs-archive", "acme-logs"]


def test_a_longer_value_glued_at_a_place_does_not_hide_a_shorter_one_standing_alone() -> None:
    known = KnownValues().with_added([_origin("acme-logs"), _origin("acme-logs-archive")])
    text = "acme-logs-archive2 and xacme-logs-archive"
    assert [(f.start, f.value) for f in known.find((text,))[0]] == [(0, "acme-logs")]


# --- no value found or learned stays readable where it stands alone ---------------------------

POOL = ("acme-7f3a", "acme-7f3a-logs", "acme-7f3a-logs-91", "data-9c2e1", "9c2e1-data")
GLUE = ("bucket ", " ", "-", "/", "_", "x", "2", ", ", "bucket=")
CONTEXT_RULE = PatternSpec(
    "bucket", r"[a-z0-9][a-z0-9-]{7,}[a-z0-9]", "AWS_S3", context_keywords=("bucket",)
)


@given(
    texts=st.lists(
        st.lists(st.sampled_from(POOL + GLUE), max_size=12).map("".join), min_size=1, max_size=4
    ),
    learned=st.sets(st.sampled_from(POOL)),
)
@settings(max_examples=300, deadline=None)
def test_no_found_or_learned_value_stays_readable_where_it_stands_alone(
    texts: list[str], learned: set[str]
) -> None:
    snapshot = build_snapshot([CONTEXT_RULE])
    known = KnownValues().with_added([_origin(value) for value in sorted(learned)])
    findings = find_in_texts(snapshot, texts, known=known.find(texts), learned=known)
    allocator = LocalAllocator()
    placeholders = allocator([f for found in findings for f in found])
    values = set(learned) | {
        f.value for found in findings for f in found if is_distinctive(f.value)
    }
    for text, found in zip(texts, findings, strict=True):
        out = replace_findings(text, found, placeholders)
        assert unmask(out, allocator.restore_map) == text
        for value in values:
            for start in _starts(out, value):
                assert not stands_alone(out, start, start + len(value)), (text, out, value)


def _starts(text: str, value: str) -> list[int]:
    starts, start = [], text.find(value)
    while start != -1:
        starts.append(start)
        start = text.find(value, start + 1)
    return starts
