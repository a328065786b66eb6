"""Properties of the engine that must hold for any text and any chunking (hypothesis)."""

from __future__ import annotations

import json
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from patterns.engine import (
    PLACEHOLDER_LITERAL_PATTERN,
    LocalAllocator,
    PatternSpec,
    StreamUnmasker,
    build_snapshot,
    replace_findings,
    unmask,
)
from patterns.library import DEFAULT_PATTERNS
from patterns.scanner import find_in_texts, holds_values

SNAPSHOT = build_snapshot(
    [
        PatternSpec("ec2_instance", r"i-[0-9a-f]{8}(?:[0-9a-f]{9})?", "AWS_EC2", priority=10),
        PatternSpec("vpc", r"vpc-[0-9a-f]{8}(?:[0-9a-f]{9})?", "AWS_VPC", priority=10),
        PatternSpec("access_key", r"AKIA[A-Z0-9]{16}", "AWS_ACCESS_KEY", priority=5),
        PatternSpec(
            "public_ipv4", r"(?:[0-9]{1,3}\.){3}[0-9]{1,3}", "PUBLIC_IP", validator="public_ip"
        ),
        PatternSpec("email", r"[a-z0-9.]+@[a-z0-9-]+\.[a-z]{2,}", "EMAIL", priority=40),
    ]
)

hex_digits = st.text(alphabet="0123456789abcdef", min_size=8, max_size=8)
sensitive_values = st.one_of(
    st.builds(lambda h: f"i-{h}", hex_digits),
    st.builds(
        lambda h, t: f"i-{h}{t}", hex_digits, st.text("0123456789abcdef", min_size=9, max_size=9)
    ),
    st.builds(lambda h: f"vpc-{h}", hex_digits),
    st.builds(
        lambda s: f"AKIA{s}", st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", min_size=16, max_size=16)
    ),
    st.sampled_from(["8.8.8.8", "52.95.110.1", "ops@example.com", "10.1.2.3"]),
    # Text that already looks like our placeholders (a pasted masked answer).
    st.sampled_from(["AWS_EC2_001", "AWS_VPC_0012", "LITERAL_001", "PUBLIC_IP_999", "FOO_123"]),
)
filler = st.text(
    alphabet=st.sampled_from(list("abc xyz-_.,:;/\"'\\\n\t0123AZ에서를버킷é😀")), max_size=20
)
texts = st.lists(st.one_of(filler, sensitive_values), max_size=12).map("".join)


def _mask(text: str) -> tuple[str, LocalAllocator, set[str]]:
    allocator = LocalAllocator()
    result = SNAPSHOT.mask(text, allocator)
    return result.text, allocator, {f.value for f in result.findings}


def _chunks(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts})
    return [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]


@settings(max_examples=300, deadline=None)
@given(texts)
def test_unmask_of_mask_is_identity(text: str) -> None:
    masked, allocator, _ = _mask(text)
    assert unmask(masked, allocator.restore_map) == text


@settings(max_examples=300, deadline=None)
@given(texts)
def test_no_matched_value_survives_masking(text: str) -> None:
    masked, _, _ = _mask(text)
    found = {f.value for f in SNAPSHOT.find(text) if f.pattern != PLACEHOLDER_LITERAL_PATTERN}
    # Found again means still there as a value; as part of a longer identifier it never was.
    # (A placeholder-shaped literal is replaced by a placeholder, which looks like one.)
    assert not {f.value for f in SNAPSHOT.find(masked)} & found


@settings(max_examples=300, deadline=None)
@given(texts, st.lists(st.integers(min_value=0, max_value=10_000), max_size=20))
def test_stream_output_does_not_depend_on_chunking(text: str, cuts: list[int]) -> None:
    masked, allocator, _ = _mask(text)
    unmasker = StreamUnmasker(allocator.restore_map)
    pieces = [unmasker.feed(chunk) for chunk in _chunks(masked, cuts)]
    pieces.append(unmasker.flush())
    assert "".join(pieces) == text
    assert unmasker.max_held <= max(map(len, allocator.restore_map), default=0)


@settings(max_examples=300, deadline=None)
@given(texts, st.lists(st.integers(min_value=0, max_value=10_000), max_size=20))
def test_partial_json_stream_restores_and_escapes(text: str, cuts: list[int]) -> None:
    masked, allocator, _ = _mask(text)
    raw = json.dumps({"input": masked}, ensure_ascii=False)
    unmasker = StreamUnmasker(allocator.restore_map, json_mode=True)
    pieces = [unmasker.feed(chunk) for chunk in _chunks(raw, cuts)]
    pieces.append(unmasker.flush())
    assert json.loads("".join(pieces)) == {"input": text}


# The whole default library, with and without its one-pass prefilter.
LIBRARY = build_snapshot(entry.to_spec() for entry in DEFAULT_PATTERNS)
LIBRARY_WITHOUT_PREFILTER = replace(LIBRARY, prefilter=None)
library_values = st.sampled_from(
    [example for entry in DEFAULT_PATTERNS for example in entry.positive]
    + [example for entry in DEFAULT_PATTERNS for example in entry.negative]
)
library_texts = st.lists(st.one_of(filler, library_values), max_size=16).map("".join)


@settings(max_examples=500, deadline=None)
@given(library_texts)
def test_the_prefilter_never_changes_what_is_found(text: str) -> None:
    assert LIBRARY.find(text) == LIBRARY_WITHOUT_PREFILTER.find(text)


@settings(max_examples=500, deadline=None)
@given(st.lists(library_texts, min_size=1, max_size=4))
def test_a_masked_request_scanned_again_holds_nothing_to_mask(texts: list[str]) -> None:
    findings = find_in_texts(LIBRARY, texts)
    allocator = LocalAllocator()
    placeholders = allocator([f for found in findings for f in found])
    for text, found in zip(texts, findings, strict=True):
        masked = replace_findings(text, found, placeholders)
        assert unmask(masked, allocator.restore_map) == text
        # As the serving path checks it before anything is sent.
        assert not holds_values(LIBRARY, [masked], set(placeholders.values())), (text, masked)
