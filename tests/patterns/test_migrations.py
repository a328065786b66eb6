"""Data migrations of the shipped library: they change shipped rows only, and go both ways."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest
from django.apps import apps as django_apps

from patterns.library import DEFAULT_PATTERNS
from patterns.models import Pattern

pytestmark = pytest.mark.django_db

ANY_CASE: ModuleType = importlib.import_module(
    "patterns.migrations.0004_match_resource_ids_in_any_case"
)
CHANGED = [change.name for change in ANY_CASE.CHANGES]


def _fields(name: str) -> tuple[str, str, str, str]:
    row = Pattern.objects.get(name=name)
    return row.regex, row.description, row.positive_examples, row.negative_examples


def test_a_fresh_database_is_seeded_with_the_any_case_library_already() -> None:
    ANY_CASE.match_any_case(django_apps, None)  # nothing left to change
    for entry in DEFAULT_PATTERNS:
        assert Pattern.objects.get(name=entry.name).regex == entry.regex


def test_the_migration_changes_every_resource_id_and_kms_key_pattern() -> None:
    library = {entry.name: entry for entry in DEFAULT_PATTERNS}
    assert set(CHANGED) <= set(library)
    added_later = {
        fields["name"]
        for fields in importlib.import_module(
            "patterns.migrations.0005_secret_settings_and_validators"
        ).ADDED
    }
    any_case = {name for name, entry in library.items() if entry.regex.startswith("(?i:")}
    assert any_case - added_later == set(CHANGED)


def test_reverse_puts_back_the_lower_case_regexes_that_were_shipped() -> None:
    ANY_CASE.match_lower_case_only(django_apps, None)
    regex, description, positive, negative = _fields("aws_ec2_instance_id")
    assert regex == "i-(?:[0-9a-f]{17}|[0-9a-f]{8})"
    assert description.endswith("(i- followed by 17 hex digits, or 8 for older resources).")
    assert "I-0123456789ABCDEF0" in negative.splitlines()
    assert "I-0123456789ABCDEF0" not in positive.splitlines()
    assert _fields("aws_kms_multi_region_key_id")[0] == "mrk-[0-9a-f]{32}"


def test_forward_after_reverse_gives_the_rows_a_fresh_seed_gives() -> None:
    seeded = {name: _fields(name) for name in CHANGED}
    ANY_CASE.match_lower_case_only(django_apps, None)
    assert all(_fields(name) != seeded[name] for name in CHANGED)
    ANY_CASE.match_any_case(django_apps, None)
    assert {name: _fields(name) for name in CHANGED} == seeded


def test_migrated_rows_pass_their_own_examples() -> None:
    ANY_CASE.match_lower_case_only(django_apps, None)
    ANY_CASE.match_any_case(django_apps, None)
    for name in CHANGED:
        Pattern.objects.get(name=name).full_clean()


def test_a_pattern_an_admin_edited_is_left_alone() -> None:
    ANY_CASE.match_lower_case_only(django_apps, None)
    Pattern.objects.filter(name="aws_vpc_id").update(regex="vpc-[0-9a-f]{17}")
    ANY_CASE.match_any_case(django_apps, None)
    assert _fields("aws_vpc_id")[0] == "vpc-[0-9a-f]{17}"
    assert _fields("aws_subnet_id")[0] == "(?i:subnet-(?:[0-9a-f]{17}|[0-9a-f]{8}))"
    ANY_CASE.match_lower_case_only(django_apps, None)
    assert _fields("aws_vpc_id")[0] == "vpc-[0-9a-f]{17}"


def test_examples_an_admin_added_are_kept() -> None:
    ANY_CASE.match_lower_case_only(django_apps, None)
    row = Pattern.objects.get(name="aws_ami_id")
    row.positive_examples += "\nour golden image ami-0fedcba9876543210"
    row.save()
    ANY_CASE.match_any_case(django_apps, None)
    positive = _fields("aws_ami_id")[2].splitlines()
    assert positive[-2:] == ["our golden image ami-0fedcba9876543210", "AMI-0123456789ABCDEF0"]


SECRETS: ModuleType = importlib.import_module(
    "patterns.migrations.0005_secret_settings_and_validators"
)
CHANGED_HERE = [change.name for change in SECRETS.CHANGES]
ADDED_HERE = [fields["name"] for fields in SECRETS.ADDED]


def _rule(name: str) -> tuple[str, str, str, str, str]:
    row = Pattern.objects.get(name=name)
    return row.regex, row.validator, row.description, row.positive_examples, row.negative_examples


def test_a_fresh_database_holds_the_new_and_changed_rules_already() -> None:
    seeded = {name: _rule(name) for name in CHANGED_HERE + ADDED_HERE}
    SECRETS.forward(django_apps, None)
    assert {name: _rule(name) for name in CHANGED_HERE + ADDED_HERE} == seeded
    library = {entry.name: entry for entry in DEFAULT_PATTERNS}
    for change in SECRETS.CHANGES:
        assert (library[change.name].regex, library[change.name].validator) == (
            change.new_regex,
            change.new_validator,
        )


def test_reverse_then_forward_gives_back_the_seeded_rules_that_pass_their_examples() -> None:
    seeded = {name: _rule(name) for name in CHANGED_HERE + ADDED_HERE}
    SECRETS.backward(django_apps, None)
    assert not Pattern.objects.filter(name__in=ADDED_HERE).exists()
    _, validator, _, positive, _ = _rule("password_assignment")
    assert validator == ""
    assert '"MasterUserPassword": "Sup3r#Secret"' in positive.splitlines()
    assert "rds|docdb|neptune" in _rule("aws_rds_endpoint")[0]
    SECRETS.forward(django_apps, None)
    assert {name: _rule(name) for name in CHANGED_HERE + ADDED_HERE} == seeded
    for name in CHANGED_HERE + ADDED_HERE:
        Pattern.objects.get(name=name).full_clean()


def test_a_rule_an_admin_changed_or_named_is_left_alone() -> None:
    SECRETS.backward(django_apps, None)
    Pattern.objects.filter(name="aws_s3_url").update(validator="entropy")
    Pattern.objects.create(
        name="secret_named_argument", regex="--token [a-z]+", placeholder_prefix="MINE"
    )
    SECRETS.forward(django_apps, None)
    assert _rule("aws_s3_url")[1] == "entropy"
    assert _rule("aws_s3_bucket_assignment")[1] == "bucket_name"
    assert _rule("secret_named_argument")[0] == "--token [a-z]+"
    SECRETS.backward(django_apps, None)
    assert _rule("secret_named_argument")[0] == "--token [a-z]+"
