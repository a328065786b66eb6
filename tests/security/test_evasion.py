"""Penetration test, evasion: values the default library missed when written to dodge it.

Invisible characters inside an ID, full-width forms, look-alike letters, upper case,
percent-encoding, a value split across two text blocks, and base64: each is now found by
the engine with the default library, masked, and restored to the client's exact text.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

import pytest

from patterns.engine import LocalAllocator, Snapshot, build_snapshot, replace_findings, unmask
from patterns.library import DEFAULT_PATTERNS

INSTANCE = "i-0a1b2c3d4e5f6a7b8"
ACCOUNT = "123456789012"


@pytest.fixture(scope="module")
def library() -> Snapshot:
    return build_snapshot(entry.to_spec() for entry in DEFAULT_PATTERNS)


def assert_hidden_and_restored(library: Snapshot, text: str, written: str, *plain: str) -> str:
    """Mask text; written (the evasive spelling) and plain (what it reads as) must be gone."""
    allocator = LocalAllocator()
    masked = library.mask(text, allocator).text
    for value in (written, *plain):
        assert value not in masked, f"{value!r} reached the provider: {masked!r}"
    assert written in allocator.placeholders, "the client's exact spelling is what is restored"
    assert unmask(masked, allocator.restore_map) == text
    return masked


def fullwidth(text: str) -> str:
    return "".join(chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" else ch for ch in text)


@pytest.mark.parametrize(
    "invisible",
    ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u180e", "\u2062"],
    ids=["zwsp", "zwnj", "zwj", "word-joiner", "bom", "soft-hyphen", "mongolian-vs", "times"],
)
def test_an_invisible_character_inside_an_instance_id_does_not_hide_it(
    library: Snapshot, invisible: str
) -> None:
    written = f"i-0a1b{invisible}2c3d4e5f6a7b8"
    masked = assert_hidden_and_restored(library, f"restart {written} now", written, INSTANCE)
    assert masked == "restart AWS_EC2_001 now"


def test_a_full_width_instance_id_does_not_hide_it(library: Snapshot) -> None:
    written = fullwidth(INSTANCE)
    masked = assert_hidden_and_restored(library, f"인스턴스 {written}에서 장애", written)
    assert masked == "인스턴스 AWS_EC2_001에서 장애"


def test_a_full_width_account_id_near_its_keyword_does_not_hide_it(library: Snapshot) -> None:
    written = fullwidth(ACCOUNT)
    assert_hidden_and_restored(library, f"AWS account {written}", written)


@pytest.mark.parametrize(
    "written",
    [
        "\u0456-0\u04301b2\u04413d4\u04355f6\u04307b8",  # Cyrillic i, a, es, ie
        "i-0\u03b11b2c3d4e5f6\u03b17b8",  # Greek alpha
        "v\u0440\u0441-0a1b2c3d",  # Cyrillic er, es in "vpc"
        "\u0455g-0a1b2c3d4e5f6a7b8",  # Cyrillic dze in "sg"
        "subn\u0435t-0a1b2c3d4e5f6a7b8",  # Cyrillic ie in "subnet"
    ],
)
def test_look_alike_letters_do_not_hide_a_resource_id(library: Snapshot, written: str) -> None:
    masked = assert_hidden_and_restored(library, f"id: {written}.", written)
    assert masked.startswith("id: AWS_") and masked.endswith("_001.")


@pytest.mark.parametrize(
    ("written", "placeholder"),
    [
        ("I-0A1B2C3D4E5F6A7B8", "AWS_EC2_001"),
        ("VPC-0A1B2C3D", "AWS_VPC_001"),
        ("Subnet-0A1b2C3d4E5f6A7b8", "AWS_SUBNET_001"),
        ("SG-0123456789ABCDEF0", "AWS_SG_001"),
        ("AMI-0ABCDEF1234567890", "AWS_AMI_001"),
        ("MRK-1234ABCD12AB34CD56EF1234567890AB", "AWS_KMS_KEY_001"),
    ],
)
def test_an_upper_or_mixed_case_resource_id_is_masked(
    library: Snapshot, written: str, placeholder: str
) -> None:
    masked = assert_hidden_and_restored(library, f"check {written} today", written)
    assert masked == f"check {placeholder} today"


def test_upper_case_kms_key_id_near_kms_is_masked(library: Snapshot) -> None:
    written = "1234ABCD-12AB-34CD-56EF-1234567890AB"
    assert_hidden_and_restored(library, f"KMS key {written} is disabled", written)


def test_access_key_ids_stay_case_significant(library: Snapshot) -> None:
    # AWS access key IDs are upper case; "akia..." is not one (and not worth masking).
    assert library.find("akiaiosfodnn7example") == ()
    assert [f.value for f in library.find("AKIAIOSFODNN7EXAMPLE")] == ["AKIAIOSFODNN7EXAMPLE"]


@pytest.mark.parametrize(
    "text",
    [
        "arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fx",
        "https://x.test/login?redirect=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2FAdmin&r=1",
        "arn:aws:iam::123456789012%3Arole%2Fdeploy",
    ],
)
def test_a_percent_encoded_arn_is_masked_whole(library: Snapshot, text: str) -> None:
    written = text.split("redirect=")[-1].split("&")[0]
    masked = assert_hidden_and_restored(library, text, written, ACCOUNT)
    assert "AWS_ARN_001" in masked


@pytest.mark.parametrize(
    "text",
    [
        "https://example.com/cb?next=%2Fhome%3Faccount%3D123456789012",
        "https://example.com/?q=aws%20account%20123456789012",
        "https://console.aws.amazon.com/billing/home?account=123456789012",
    ],
)
def test_an_account_id_in_a_query_string_is_masked(library: Snapshot, text: str) -> None:
    assert_hidden_and_restored(library, text, ACCOUNT)


def test_an_instance_id_after_an_encoded_slash_is_masked_and_restored(library: Snapshot) -> None:
    text = f"GET /ec2/instances%2F{INSTANCE}%2Fstatus"
    masked = assert_hidden_and_restored(library, text, INSTANCE)
    assert masked == "GET /ec2/instances%2FAWS_EC2_001%2Fstatus"


def _mask_run(library: Snapshot, pieces: Sequence[str]) -> tuple[list[str], LocalAllocator]:
    allocator = LocalAllocator()
    masked = [
        replace_findings(piece, findings, allocator(findings))
        for piece, findings in zip(pieces, library.find_run(pieces), strict=True)
    ]
    return masked, allocator


@pytest.mark.parametrize(
    "pieces",
    [
        ["the instance i-0a1b2c3d", "4e5f6a7b8 keeps restarting"],
        ["AWS account ", "1234", "5678", "9012 pays for it"],
        ["key AKIAIOSFOD", "NN7EXAMPLE leaked"],
        ["arn:aws:iam::123456789012:ro", "le/Admin"],
    ],
)
def test_a_value_split_across_text_blocks_is_masked(library: Snapshot, pieces: list[str]) -> None:
    masked, allocator = _mask_run(library, pieces)
    joined = "".join(pieces)
    found = [f.value for f in library.find(joined)]
    assert found, "test data: the joined text holds a value"
    for value in found:
        fragments = {value[i : i + 4] for i in range(len(value) - 3)}
        for block in masked:
            assert not any(fragment in block for fragment in fragments), (value, block)
    assert unmask("".join(masked), allocator.restore_map) == joined


def test_base64_text_holding_an_instance_id_is_masked_whole(library: Snapshot) -> None:
    written = base64.b64encode(f"restart {INSTANCE} please".encode()).decode()
    masked = assert_hidden_and_restored(library, f"decode this: {written}", written)
    assert masked == "decode this: ENCODED_001"


def test_base64_of_credentials_is_masked_whole(library: Snapshot) -> None:
    credentials = "aws_access_key_id=AKIAIOSFODNN7EXAMPLE\n"
    written = base64.urlsafe_b64encode(credentials.encode()).decode().rstrip("=")
    assert_hidden_and_restored(library, f'{{"blob": "{written}"}}', written)


def test_base64_of_a_kubernetes_tls_key_is_masked_whole(library: Snapshot) -> None:
    key = (
        "-----BEGIN RSA PRIVATE KEY-----\n"
        "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
        "-----END RSA PRIVATE KEY-----\n"
    )
    written = base64.b64encode(key.encode()).decode()
    assert_hidden_and_restored(library, f"data:\n  tls.key: {written}\n", written)


def test_base64_without_a_value_passes_unchanged(library: Snapshot) -> None:
    text = "ca.crt: " + base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIC").decode()
    assert library.find(text) == ()
