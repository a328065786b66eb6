"""Evasion at engine level: a value hidden by invisible characters, look-alike letters,
full-width forms, percent-encoding, base64, or a split across text blocks is still found,
with the client's exact characters, and masking it still restores the exact text.

Pure: the engine with small rule sets, no services. The default library meets the same
evasions in tests/security/test_evasion.py.
"""

from __future__ import annotations

import base64
import itertools
import unicodedata
import urllib.parse
from collections.abc import Sequence
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patterns import evasion
from patterns.engine import (
    ENCODED_PATTERN,
    PLACEHOLDER_LITERAL_PATTERN,
    SEAM_REACH,
    Finding,
    FindingBudget,
    LocalAllocator,
    PatternSpec,
    Snapshot,
    StreamUnmasker,
    TermSpec,
    build_snapshot,
    replace_findings,
    unmask,
)
from patterns.evasion import (
    FOLDS,
    INVISIBLE,
    LOOKALIKES,
    MAX_BASE64_LENGTH,
    decode_base64_text,
    needs_view,
    normalised_view,
)

EC2 = PatternSpec("ec2_instance", r"(?i:i-[0-9a-f]{8}(?:[0-9a-f]{9})?)", "AWS_EC2", priority=10)
VPC = PatternSpec("vpc", r"(?i:vpc-[0-9a-f]{8}(?:[0-9a-f]{9})?)", "AWS_VPC", priority=10)
ACCESS_KEY = PatternSpec("access_key", r"AKIA[A-Z0-9]{16}", "AWS_ACCESS_KEY", priority=5)
ARN = PatternSpec(
    "arn", r"arn:aws:[a-z0-9-]+:[a-z0-9-]*:[0-9]{12}?:[A-Za-z0-9_/.-]+", "AWS_ARN", priority=5
)
ACCOUNT = PatternSpec(
    "account_id",
    r"[0-9]{12}",
    "AWS_ACCOUNT",
    priority=50,
    context_keywords=("account",),
    context_window=20,
)
EMAIL = PatternSpec("email", r"[a-z0-9._]+@[a-z0-9-]+\.[a-z]{2,}", "EMAIL", priority=40)
SNAPSHOT = build_snapshot([EC2, VPC, ACCESS_KEY, ARN, ACCOUNT, EMAIL])

INSTANCE = "i-0a1b2c3d4e5f6a7b8"
ZWSP, SOFT_HYPHEN, WORD_JOINER, BOM = "\u200b", "\u00ad", "\u2060", "\ufeff"


def values(text: str, snapshot: Snapshot = SNAPSHOT) -> list[str]:
    return [finding.value for finding in snapshot.find(text)]


def mask(text: str, snapshot: Snapshot = SNAPSHOT) -> tuple[str, LocalAllocator]:
    allocator = LocalAllocator()
    return snapshot.mask(text, allocator).text, allocator


def assert_masked_and_restored(text: str, masked_form: str, snapshot: Snapshot = SNAPSHOT) -> None:
    masked, allocator = mask(text, snapshot)
    assert masked == masked_form
    assert unmask(masked, allocator.restore_map) == text
    unmasker = StreamUnmasker(allocator.restore_map)
    assert "".join(unmasker.feed(ch) for ch in masked) + unmasker.flush() == text


def fullwidth(text: str) -> str:
    return "".join(chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" else ch for ch in text)


def percent_encoded(text: str) -> str:
    return "".join(f"%{byte:02X}" for byte in text.encode())


def b64(text: str, *, urlsafe: bool = False, padded: bool = True) -> str:
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    encoded = encode(text.encode()).decode()
    return encoded if padded else encoded.rstrip("=")


# --- the normalised view ---------------------------------------------------------------


class TestInvisibleCharacters:
    @pytest.mark.parametrize("invisible", [ZWSP, SOFT_HYPHEN, WORD_JOINER, BOM, "\u200d\u2063"])
    def test_an_invisible_character_inside_an_id_does_not_hide_it(self, invisible: str) -> None:
        text = f"restart i-0a1b{invisible}2c3d4e5f6a7b8 now"
        assert values(text) == [f"i-0a1b{invisible}2c3d4e5f6a7b8"]
        assert_masked_and_restored(text, "restart AWS_EC2_001 now")

    def test_invisible_characters_at_the_edges_stay_outside_the_value(self) -> None:
        text = f"{ZWSP}{INSTANCE}{ZWSP}"
        assert values(text) == [INSTANCE]
        assert_masked_and_restored(text, f"{ZWSP}AWS_EC2_001{ZWSP}")

    def test_every_listed_invisible_character_is_a_format_or_joining_character(self) -> None:
        for char in INVISIBLE:
            assert unicodedata.category(char) in {"Cf", "Mn"}, hex(ord(char))

    def test_the_same_id_with_and_without_invisible_characters_gets_two_placeholders(
        self,
    ) -> None:
        # Each is restored to exactly what the client wrote.
        masked, allocator = mask(f"{INSTANCE} and i-0a1b{ZWSP}2c3d4e5f6a7b8")
        assert masked == "AWS_EC2_001 and AWS_EC2_002"
        assert allocator.restore_map["AWS_EC2_002"] == f"i-0a1b{ZWSP}2c3d4e5f6a7b8"


class TestFolding:
    def test_a_full_width_id_is_found_with_its_full_width_characters(self) -> None:
        text = f"인스턴스 {fullwidth(INSTANCE)}에서"
        assert values(text) == [fullwidth(INSTANCE)]
        assert_masked_and_restored(text, "인스턴스 AWS_EC2_001에서")

    def test_full_width_forms_fold_to_the_ascii_character_at_the_same_place(self) -> None:
        assert FOLDS[0xFF01] == "!" and FOLDS[0xFF10] == "0" and FOLDS[0xFF5E] == "~"
        assert all(0xFF01 <= code <= 0xFF5E for code in FOLDS if 0xFF00 <= code <= 0xFFFF)

    @pytest.mark.parametrize("letter", sorted(LOOKALIKES), ids=lambda ch: unicodedata.name(ch))
    def test_a_look_alike_letter_folds_to_the_latin_letter_it_looks_like(self, letter: str) -> None:
        latin = LOOKALIKES[letter]
        assert len(latin) == 1 and latin.isascii() and latin.isalpha()
        # The table is for letters of other scripts only.
        assert unicodedata.name(letter).split()[0] in {"CYRILLIC", "GREEK"}
        view = normalised_view(f"x{letter}y")
        assert view is not None and view.text == f"x{latin}y"

    def test_the_look_alike_table_stays_small(self) -> None:
        assert len(LOOKALIKES) <= 64

    def test_an_id_spelled_with_cyrillic_and_greek_letters_is_found(self) -> None:
        # Cyrillic i, e, a, es and Greek alpha in place of the Latin letters.
        spoofed = "\u0456-0\u03b11b2\u04413d4\u04355f6\u04307b8"
        assert values(f"see {spoofed}") == [spoofed]
        assert_masked_and_restored(f"see {spoofed}", "see AWS_EC2_001")

    def test_tag_characters_smuggling_ascii_are_read_as_ascii(self) -> None:
        smuggled = "".join(chr(0xE0000 + ord(ch)) for ch in f" {INSTANCE}")
        assert values(f"note{smuggled}") == [smuggled[1:]]

    def test_russian_text_next_to_an_id_is_a_boundary_as_before(self) -> None:
        # Cyrillic "es" folds to "c", a hex digit, in the view; the text as written still
        # shows the ID.
        again = "\u0441\u043d\u043e\u0432\u0430"  # Russian "again"
        assert values(f"{INSTANCE}{again}") == [INSTANCE]
        assert_masked_and_restored(f"{INSTANCE}{again}", f"AWS_EC2_001{again}")

    def test_boundaries_are_judged_on_the_view(self) -> None:
        # Full-width "xi-..." reads as "xi-...": the tail of a longer identifier.
        assert values(fullwidth("xi-0a1b2c3d")) == []
        assert values(fullwidth("i-0a1b2c3d") + "\uff58") == []


class TestPercentEncoding:
    def test_a_percent_encoded_arn_is_found_whole(self) -> None:
        arn = "arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fdeploy"
        text = f"GET /v1/roles?arn={arn}&x=1"
        assert values(text) == [arn]
        assert_masked_and_restored(text, "GET /v1/roles?arn=AWS_ARN_001&x=1")

    def test_a_value_in_a_query_string_is_found_near_its_encoded_keyword(self) -> None:
        text = "https://example.com/search?q=account%3D123456789012"
        assert values(text) == ["123456789012"]

    def test_every_character_percent_encoded_is_still_found(self) -> None:
        encoded = percent_encoded(INSTANCE)
        assert values(f"x {encoded} y") == [encoded]

    def test_an_encoded_invisible_character_is_dropped_like_a_literal_one(self) -> None:
        text = "i-0a1b%E2%80%8B2c3d4e5f6a7b8"
        assert values(text) == [text]

    def test_escapes_that_are_not_utf8_stay_as_written(self) -> None:
        for text in ("50% off", "%ZZ", "caf%C3", "%C3%C3", "%ED%A0%80", "100%"):
            view = normalised_view(text)
            assert view is None, text

    def test_percent_encoding_is_decoded_one_level(self) -> None:
        view = normalised_view("arn%253Aaws")
        assert view is not None and view.text == "arn%3Aaws"


class TestTheView:
    def test_ascii_text_without_percent_takes_the_fast_path(self) -> None:
        text = f"plain ascii text with {INSTANCE}"
        assert needs_view(text, text.encode()) is False

    def test_text_that_reads_as_written_has_no_view(self) -> None:
        for text in ("인스턴스를 재시작했습니다", "50% done", "emoji 😀 and é"):
            assert normalised_view(text) is None, text

    def test_offsets_map_back_to_the_original_characters(self) -> None:
        text = f"{BOM}a%3Ab{ZWSP}c\uff44"
        view = normalised_view(text)
        assert view is not None and view.text == "a:bcd"
        assert [view.original_span(i, i + 1) for i in range(5)] == [
            (1, 2),
            (2, 5),
            (5, 6),
            (7, 8),
            (8, 9),
        ]
        assert view.original_span(0, 5) == (1, 9)

    def test_a_text_of_invisible_characters_only_has_an_empty_view(self) -> None:
        view = normalised_view(ZWSP * 3)
        assert view is not None and view.text == ""
        assert SNAPSHOT.find(ZWSP * 3) == ()

    def test_allowed_values_are_compared_in_their_normalised_form(self) -> None:
        snapshot = build_snapshot([EC2], allowed=[INSTANCE])
        assert values(f"i-0a1b{ZWSP}2c3d4e5f6a7b8", snapshot) == []

    def test_a_sensitive_term_written_with_look_alikes_is_found(self) -> None:
        snapshot = build_snapshot([], terms=[TermSpec("project-falcon", "CODE_NAME")])
        spoofed = "pr\u043eject-f\u0430lc\u043en"
        assert values(f"about {spoofed} today", snapshot) == [spoofed]

    def test_a_pattern_that_matches_only_the_written_form_still_matches(self) -> None:
        # An admin rule with a Cyrillic literal: folding must not hide what it matches.
        project = "\u043f\u0440\u043e\u0435\u043a\u0442"  # Russian "project"
        spec = PatternSpec("code", project + "-[0-9]{4}", "CODE")
        assert values(f"see {project}-1234", build_snapshot([spec])) == [f"{project}-1234"]

    def test_a_lone_surrogate_next_to_an_evasion_does_not_break_a_scan(self) -> None:
        text = f"\ud800 i-0a1b{ZWSP}2c3d4e5f6a7b8 \udfff"
        assert values(text) == [f"i-0a1b{ZWSP}2c3d4e5f6a7b8"]


# --- base64 ------------------------------------------------------------------------------


class TestBase64:
    def test_base64_text_holding_a_value_is_masked_whole(self) -> None:
        encoded = b64(f"instance {INSTANCE} is down")
        assert_masked_and_restored(f"payload: {encoded}", "payload: ENCODED_001")
        assert [f.pattern for f in SNAPSHOT.find(encoded)] == [ENCODED_PATTERN]

    def test_urlsafe_unpadded_base64_is_decoded(self) -> None:
        encoded = b64(f"{INSTANCE}??>>", urlsafe=True, padded=False)
        assert "-" in encoded or "_" in encoded
        assert values(f"token={encoded}&x=1") == [encoded]

    def test_a_standard_run_right_after_a_dash_is_decoded(self) -> None:
        encoded = b64(f"id {INSTANCE}")
        assert values(f"key-{encoded}") == [encoded]

    def test_a_run_glued_to_an_identifier_is_masked_with_it(self) -> None:
        # Its placeholder would otherwise be glued to "token_", and not restored.
        encoded = b64(f"id {INSTANCE}")
        assert values(f"token_{encoded} ok") == [f"token_{encoded}"]
        assert_masked_and_restored(f"token_{encoded} ok", "ENCODED_001 ok")

    def test_base64_without_a_value_is_left_alone(self) -> None:
        assert values(b64("hello world, nothing to see here")) == []

    def test_binary_base64_is_not_decoded(self) -> None:
        assert decode_base64_text(base64.b64encode(bytes(range(0, 256, 7)))) is None

    def test_base64_of_an_allowed_value_is_left_alone(self) -> None:
        snapshot = build_snapshot([EC2], allowed=[INSTANCE])
        assert values(b64(f"id {INSTANCE}"), snapshot) == []

    def test_an_allowed_base64_run_is_left_alone(self) -> None:
        encoded = b64(f"id {INSTANCE}")
        assert values(encoded, build_snapshot([EC2], allowed=[encoded])) == []

    def test_base64_inside_base64_is_decoded_two_levels_deep(self) -> None:
        twice = b64(b64(f"id {INSTANCE}"))
        assert values(twice) == [twice]
        assert values(b64(twice)) == []  # a third level is not followed

    def test_a_pattern_matching_the_same_run_names_it_better(self) -> None:
        encoded = b64("vpc-0a1b2c3d4e5f6a7b8 ok")
        secret = PatternSpec("secret", r"[A-Za-z0-9+/]{32}", "SECRET", priority=3)
        snapshot = build_snapshot([VPC, secret])
        assert len(encoded) == 32
        assert [(f.value, f.pattern) for f in snapshot.find(encoded)] == [(encoded, "secret")]

    def test_runs_beyond_the_size_cap_are_not_decoded(self) -> None:
        filler = "lorem ipsum " * (MAX_BASE64_LENGTH // 12)
        assert values(b64(f"{filler} {INSTANCE}")) == []

    def test_runs_shorter_than_twelve_characters_are_not_decoded(self) -> None:
        assert b64("i-0123456") == "aS0wMTIzNDU2"
        assert [run[2] for run in evasion.base64_runs(b"aS0wMTIzNDU2")] == ["i-0123456"]
        assert list(evasion.base64_runs(b"aS0wMTIzNDU")) == []

    def test_text_shaped_like_an_encoded_placeholder_is_masked_as_a_literal(self) -> None:
        findings = SNAPSHOT.find("see ENCODED_001")
        assert [(f.value, f.pattern) for f in findings] == [
            ("ENCODED_001", PLACEHOLDER_LITERAL_PATTERN)
        ]

    @pytest.mark.parametrize(
        "run",
        [
            b"subnet-0b304efadaf384b21",  # an ID: "s" cannot start base64 of text
            b"0123456789abcdef0",  # 17 characters: not base64
            b"aGVsbG8gd29ybGQ===",  # too much padding
            b"aGVsbG8=d29ybGQ",  # padding inside
        ],
    )
    def test_runs_that_cannot_be_base64_of_text_are_not_decoded(self, run: bytes) -> None:
        assert list(evasion.base64_runs(run)) == []


# --- values split across pieces -----------------------------------------------------------


def masked_pieces(pieces: Sequence[str], snapshot: Snapshot = SNAPSHOT) -> list[str]:
    allocator = LocalAllocator()
    found = snapshot.find_run(pieces)
    return [
        replace_findings(piece, findings, allocator(findings))
        for piece, findings in zip(pieces, found, strict=True)
    ]


class TestFindRun:
    def test_a_value_split_across_two_pieces_gets_one_placeholder(self) -> None:
        pieces = ["restart i-0a1b2c", "3d4e5f6a7b8 now"]
        first, second = SNAPSHOT.find_run(pieces)
        assert first == (Finding(8, 16, INSTANCE, "ec2_instance", "AWS_EC2", 10),)
        assert second == (Finding(0, 11, INSTANCE, "ec2_instance", "AWS_EC2", 10, True),)
        assert masked_pieces(pieces) == ["restart AWS_EC2_001", " now"]

    def test_a_value_across_many_tiny_pieces_is_masked_in_the_first(self) -> None:
        pieces = ["id ", *INSTANCE, "."]
        masked = masked_pieces(pieces)
        assert masked == ["id ", "AWS_EC2_001", *[""] * (len(INSTANCE) - 1), "."]

    def test_each_piece_keeps_what_find_finds_in_it(self) -> None:
        pieces = [f"{INSTANCE} " + "x" * 2000, "y" * 2000 + " vpc-0a1b2c3d"]
        assert SNAPSHOT.find_run(pieces) == tuple(SNAPSHOT.find(p) for p in pieces)

    def test_a_value_a_piece_holds_alone_is_kept_however_the_run_reads_joined(self) -> None:
        # "x" and "i-..." may be two turns the model reads apart: joining must not hide it.
        assert SNAPSHOT.find_run(["x", INSTANCE]) == ((), SNAPSHOT.find(INSTANCE))
        assert SNAPSHOT.find_run(["0", INSTANCE]) == ((), SNAPSHOT.find(INSTANCE))

    def test_a_keyword_in_the_previous_piece_gives_context(self) -> None:
        assert masked_pieces(["AWS account", " 123456789012"]) == [
            "AWS account",
            " AWS_ACCOUNT_001",
        ]

    def test_a_value_split_inside_an_evasion_is_found(self) -> None:
        pieces = ["arn%3Aaws%3Aiam%3A%3A1234567890", "12%3Arole%2Fx"]
        assert "".join(masked_pieces(pieces)) == "AWS_ARN_001"

    def test_empty_pieces_and_no_pieces_are_harmless(self) -> None:
        assert SNAPSHOT.find_run([]) == ()
        assert SNAPSHOT.find_run(["", INSTANCE[:5], "", INSTANCE[5:], ""])[1][0].value == INSTANCE

    def test_a_value_that_crosses_a_boundary_far_inside_long_pieces_is_found(self) -> None:
        pieces = ["a " * 5000 + INSTANCE[:9], INSTANCE[9:] + " b" * 5000]
        assert "".join(masked_pieces(pieces)) == "a " * 5000 + "AWS_EC2_001" + " b" * 5000

    def test_find_run_scans_each_character_a_bounded_number_of_times(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        scanned: list[int] = []
        original = Snapshot.find

        def counting(
            self: Snapshot, text: str, budget: FindingBudget | None = None
        ) -> tuple[Finding, ...]:
            scanned.append(len(text))
            return original(self, text, budget)

        monkeypatch.setattr(Snapshot, "find", counting)
        text = (f"see {INSTANCE} and vpc-0a1b2c3d. " * 10_000)[:300_000]
        for size in (1, 7, 1000, 5000):
            pieces = [text[i : i + size] for i in range(0, len(text), size)]
            scanned.clear()
            found = SNAPSHOT.find_run(pieces)
            # Linear: each character is scanned at most twice (alone, and in one seam).
            assert sum(scanned) <= 2 * len(text) + 4 * SEAM_REACH
            assert sum(1 for per_piece in found for f in per_piece if not f.continuation) >= (
                len(original(SNAPSHOT, text))
            )


# --- properties --------------------------------------------------------------------------

hex_digits = st.text(alphabet="0123456789abcdef", min_size=8, max_size=8)
long_hex = st.text(alphabet="0123456789abcdef", min_size=17, max_size=17)
key_body = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", min_size=16, max_size=16)
plain_values = st.one_of(
    st.builds(lambda h: f"i-{h}", hex_digits),
    st.builds(lambda h: f"i-{h}", long_hex),
    st.builds(lambda h: f"vpc-{h}", hex_digits),
    st.builds(lambda s: f"AKIA{s}", key_body),
    st.sampled_from(["arn:aws:iam::123456789012:role/deploy", "ops@example.com", "AWS_EC2_001"]),
)
invisibles = st.sampled_from(sorted(INVISIBLE))
filler = st.text(
    alphabet=st.sampled_from(list("abc xyz-_.,:;/%\"'\\\n0123AZ에서é😀\u0441\u200b\uff41")),
    max_size=12,
)


@st.composite
def with_invisibles(draw: st.DrawFn, value: str) -> str:
    """value with invisible characters inserted between some of its characters."""
    cuts = draw(st.lists(st.integers(1, len(value) - 1), max_size=4))
    chars = list(value)
    for cut in sorted(cuts, reverse=True):
        chars.insert(cut, draw(invisibles))
    return "".join(chars)


@st.composite
def evaded(draw: st.DrawFn) -> tuple[str, str]:
    """A value and one way of writing it that a model reads as the same value."""
    value = draw(plain_values)
    how = draw(st.sampled_from(["plain", "invisible", "percent", "fullwidth", "some percent"]))
    if how == "invisible":
        return value, draw(with_invisibles(value))
    if how == "percent":
        return value, percent_encoded(value)
    if how == "some percent":
        return value, urllib.parse.quote(value, safe="")
    if how == "fullwidth":
        return value, fullwidth(value)
    return value, value


texts = st.lists(st.one_of(filler, evaded().map(lambda pair: f" {pair[1]} ")), max_size=8).map(
    "".join
)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=8).filter(lambda s: not s or not s[-1].isalnum()), evaded(), filler)
def test_an_evaded_value_between_separators_is_still_found(
    before: str, pair: tuple[str, str], after: str
) -> None:
    _, written = pair
    text = f"{before} {written} {after}"
    start = len(before) + 1
    assert any(f.start <= start and start + len(written) <= f.end for f in SNAPSHOT.find(text))


@settings(max_examples=300, deadline=None)
@given(plain_values.flatmap(lambda value: st.tuples(st.just(value), with_invisibles(value))))
def test_invisible_characters_anywhere_inside_a_value_do_not_hide_it(pair: tuple[str, str]) -> None:
    _, written = pair
    assert values(f"see {written} now") == [written]


@settings(max_examples=300, deadline=None)
@given(plain_values, st.booleans())
def test_percent_encoding_a_value_does_not_hide_it(value: str, every_character: bool) -> None:
    written = percent_encoded(value) if every_character else urllib.parse.quote(value, safe="")
    assert values(f"q={written}&x") == [written]


@settings(max_examples=300, deadline=None)
@given(texts)
def test_offsets_and_values_are_exactly_the_original_text(text: str) -> None:
    findings = SNAPSHOT.find(text)
    assert [text[f.start : f.end] for f in findings] == [f.value for f in findings]
    assert all(a.end <= b.start for a, b in itertools.pairwise(findings))


@settings(max_examples=300, deadline=None)
@given(texts)
def test_unmask_of_mask_is_identity_for_evaded_values(text: str) -> None:
    masked, allocator = mask(text)
    assert unmask(masked, allocator.restore_map) == text


@settings(max_examples=300, deadline=None)
@given(texts)
def test_masking_evaded_values_reaches_a_fixpoint(text: str) -> None:
    masked, _ = mask(text)
    again = [f for f in SNAPSHOT.find(masked) if f.pattern != PLACEHOLDER_LITERAL_PATTERN]
    assert again == []


@settings(max_examples=300, deadline=None)
@given(texts)
def test_the_prefilter_never_changes_what_is_found_in_evaded_text(text: str) -> None:
    assert SNAPSHOT.find(text) == replace(SNAPSHOT, prefilter=None).find(text)


@settings(max_examples=300, deadline=None)
@given(texts, st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_a_masked_run_holds_no_value_read_piece_by_piece_or_joined(
    text: str, cuts: list[int]
) -> None:
    points = sorted({cut % (len(text) + 1) for cut in cuts})
    pieces = [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]
    masked = masked_pieces(pieces)
    for reading in [*masked, "".join(masked)]:
        assert all(f.pattern == PLACEHOLDER_LITERAL_PATTERN for f in SNAPSHOT.find(reading))


@settings(max_examples=300, deadline=None)
@given(texts, st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_a_run_cut_only_between_words_masks_like_the_joined_text(
    text: str, cuts: list[int]
) -> None:
    # Cut only where the text has a space: no piece then ends or starts inside a word, and
    # what the pieces hold alone is what the joined text holds.
    spaces = [i for i, ch in enumerate(text) if ch == " "]
    points = sorted({spaces[c % len(spaces)] for c in cuts}) if spaces else []
    pieces = [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]
    joined, _ = mask(text)
    assert "".join(masked_pieces(pieces)) == joined
