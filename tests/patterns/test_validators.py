"""Validators that look at a match's surroundings: code, service principals and versions are
not values, and the values next to them still are (pure: the engine and the library)."""

from __future__ import annotations

import pytest

from patterns.engine import Snapshot, build_snapshot
from patterns.library import DEFAULT_PATTERNS
from patterns.scanner import find_in_texts


@pytest.fixture(scope="module")
def library() -> Snapshot:
    return build_snapshot([entry.to_spec() for entry in DEFAULT_PATTERNS])


def _values(snapshot: Snapshot, text: str) -> list[str]:
    [found] = find_in_texts(snapshot, [text])
    return [f.value for f in found]


@pytest.mark.parametrize(
    "text",
    [
        'blob = bucket.blob("reports/2024.csv")',
        "self.bucket = self.client.bucket(self.name)",
        "this.bucket = props.bucket;",
        "kubectl apply -f bucket.yaml",
        "the bucket config lives in bucket-policy.json",
        '"repository": "bitbucket:user/repo"',
        '_("Change password: %s") % user',
        "password = get_random_string(30)",
        'password = "%(pw)s" % values',
        "password: ${DB_PASSWORD}",
        '"Principal": {"Service": "logging.s3.amazonaws.com"}',
        '"Service": ["delivery.logs.amazonaws.com", "logging.s3.amazonaws.com"]',
        "Principal:\n  Service:\n    - logging.s3.amazonaws.com",
        '"Service": "monitoring.rds.amazonaws.com"',
        "Section 24.1.1.2",
        "requests>=3.7.4.2",
    ],
)
def test_code_principals_and_versions_are_not_values(library: Snapshot, text: str) -> None:
    assert _values(library, text) == []


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("the bucket acme-prod-assets: 3 objects", "acme-prod-assets"),
        ("bucket: logs.example.com", "logs.example.com"),
        ('"Resource": "https://acme-logs.s3.amazonaws.com/x"', "acme-logs.s3.amazonaws.com"),
        ('"Bucket": "acme-prod-logs", "Service": "s3"', "acme-prod-logs"),
        ("DB_PASSWORD=hunter2", "DB_PASSWORD=hunter2"),
        ("password: Abc(123)x", "password: Abc(123)x"),
        ("ssh admin@52.95.110.1", "52.95.110.1"),
        (
            "orders.cluster-c9akciq32xyz.us-east-1.rds.amazonaws.com",
            "orders.cluster-c9akciq32xyz",  # the endpoint's own label; the region stays
        ),
    ],
)
def test_values_next_to_such_text_are_still_masked(
    library: Snapshot, text: str, value: str
) -> None:
    assert value in _values(library, text)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('"SecretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEYX"', None),
        ('"MasterUserPassword": "mypassword"', "mypassword"),
        ('"OldPassword": "3s0K_;xh4~8XXI"', "3s0K_;xh4~8XXI"),
        ('"client_secret": "6da8e2b1c4f0a9d7e3b5c1f8a2d4e6b0"', None),
        ("DB_PASSWORD=correcthorsebatterystaple", "correcthorsebatterystaple"),
        ("password: correct horse battery staple", "correct horse battery staple"),
        ("api_key: 'Abc1-def2'", "Abc1-def2"),
        ("X-Api-Key: 3f9a1c7e5b2d4f6a8c0e", "3f9a1c7e5b2d4f6a8c0e"),
        ("mysql --password Sup3rSecret -h db", "Sup3rSecret"),
        ("GET /items?token=abc123def&page=2", "abc123def"),
        ("Server=db;User Id=sa;Password=Sup3rSecret;Encrypt=true", "Sup3rSecret"),
    ],
)
def test_the_whole_value_under_a_secret_named_key_is_masked(
    library: Snapshot, text: str, value: str | None
) -> None:
    [found] = find_in_texts(library, [text])
    assert found, text
    quoted = text.split('": "', 1)[1].rstrip('"') if '": "' in text else None
    expected = value or quoted
    assert expected is not None
    assert any(f.value == expected or expected in f.value for f in found), found


@pytest.mark.parametrize(
    "text",
    [
        '"max_tokens": 1024, "token_type": "Bearer", "tokenizer": "cl100k"',
        "token = Token.objects.create(user=user)",
        "api_key = API_KEY",
        "password = request.POST['password']",
        "secret: !Sub '{{resolve:secretsmanager:db}}'",
        "password: null",
        "--password-file /run/secrets/db",
        "the password: it must be long",
    ],
)
def test_code_and_references_under_a_secret_named_key_are_not_masked(
    library: Snapshot, text: str
) -> None:
    assert _values(library, text) == []
