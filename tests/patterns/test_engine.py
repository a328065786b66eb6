"""The pure engine: finding, overlaps, boundaries, validators, restoring, streaming."""

from __future__ import annotations

import json
from typing import ClassVar

import pytest

from patterns.engine import (
    LocalAllocator,
    PatternError,
    PatternSpec,
    StreamUnmasker,
    TermSpec,
    build_snapshot,
    check_examples,
    check_prefix,
    compile_regex,
    format_placeholder,
    replace_findings,
    unmask,
)

EC2 = PatternSpec("ec2_instance", r"i-[0-9a-f]{8}(?:[0-9a-f]{9})?", "AWS_EC2", priority=10)
VPC = PatternSpec("vpc", r"vpc-[0-9a-f]{8}(?:[0-9a-f]{9})?", "AWS_VPC", priority=10)
ACCESS_KEY = PatternSpec("access_key", r"(?:AKIA|ASIA)[A-Z0-9]{16}", "AWS_ACCESS_KEY", priority=5)
PUBLIC_IP = PatternSpec(
    "public_ipv4", r"(?:[0-9]{1,3}\.){3}[0-9]{1,3}", "PUBLIC_IP", priority=60, validator="public_ip"
)
ACCOUNT = PatternSpec(
    "account_id",
    r"[0-9]{12}",
    "AWS_ACCOUNT",
    priority=50,
    context_keywords=("account", "계정"),
    context_window=20,
)


def mask(text: str, *specs: PatternSpec, **kwargs: object) -> tuple[str, LocalAllocator]:
    snapshot = build_snapshot(specs or (EC2, VPC, ACCESS_KEY, PUBLIC_IP, ACCOUNT), **kwargs)  # type: ignore[arg-type]
    allocator = LocalAllocator()
    return snapshot.mask(text, allocator).text, allocator


def assert_round_trip(text: str, masked_form: str, *specs: PatternSpec) -> None:
    masked, allocator = mask(text, *specs)
    assert masked == masked_form
    assert unmask(masked, allocator.restore_map) == text
    unmasker = StreamUnmasker(allocator.restore_map)
    assert "".join(unmasker.feed(ch) for ch in masked) + unmasker.flush() == text


class TestFinding:
    def test_korean_particle_is_a_boundary(self) -> None:
        masked, _ = mask("i-0123456789abcdef0에서 재시작")
        assert masked == "AWS_EC2_001에서 재시작"

    def test_id_inside_a_longer_identifier_is_left_alone(self) -> None:
        text = "xi-0123456789abcdef0 and i-0123456789abcdef0abc and vpc-12345678_old"
        masked, _ = mask(text)
        assert masked == text

    def test_seventeen_hex_form_wins_over_eight(self) -> None:
        masked, allocator = mask("i-0123456789abcdef0")
        assert masked == "AWS_EC2_001"
        assert list(allocator.placeholders) == ["i-0123456789abcdef0"]

    def test_same_value_gets_the_same_placeholder(self) -> None:
        masked, _ = mask("i-0123456789abcdef0, i-abcdef1234567890a, i-0123456789abcdef0")
        assert masked == "AWS_EC2_001, AWS_EC2_002, AWS_EC2_001"

    def test_longest_overlapping_match_wins(self) -> None:
        short = PatternSpec("short", r"ab-[0-9]{4}", "SHORT", priority=1)
        long = PatternSpec("long", r"ab-[0-9]{4}-[0-9]{4}", "LONG", priority=99)
        masked, _ = mask("id ab-1234-5678 end", short, long)
        assert masked == "id LONG_001 end"

    def test_equal_length_overlap_goes_to_lower_priority_number(self) -> None:
        first = PatternSpec("zeta", r"ab-[0-9]{4}", "ZETA", priority=1)
        second = PatternSpec("alpha", r"ab-[0-9]{4}", "ALPHA", priority=2)
        masked, _ = mask("ab-1234", first, second)
        assert masked == "ZETA_001"

    def test_equal_length_and_priority_goes_to_pattern_name(self) -> None:
        first = PatternSpec("zeta", r"ab-[0-9]{4}", "ZETA", priority=1)
        second = PatternSpec("alpha", r"ab-[0-9]{4}", "ALPHA", priority=1)
        assert mask("ab-1234", first, second)[0] == "ALPHA_001"
        assert mask("ab-1234", second, first)[0] == "ALPHA_001"

    def test_public_ip_is_masked_and_private_ranges_pass(self) -> None:
        text = "8.8.8.8 10.0.0.1 192.168.1.1 100.64.0.1 127.0.0.1 169.254.169.254 192.0.2.10"
        masked, _ = mask(text)
        assert masked == "PUBLIC_IP_001 " + text.split(" ", 1)[1]

    def test_context_pattern_needs_its_keyword_nearby(self) -> None:
        masked, _ = mask("account 123456789012, order 210987654321")
        assert masked == "account AWS_ACCOUNT_001, order 210987654321"

    def test_context_keyword_may_follow_the_value(self) -> None:
        assert mask("123456789012 계정")[0] == "AWS_ACCOUNT_001 계정"

    def test_context_value_straddling_the_scan_window_is_found_whole(self) -> None:
        spec = PatternSpec(
            "token", r"tok_[a-z]{300}", "TOKEN", context_keywords=("token",), context_window=5
        )
        value = "tok_" + "q" * 300
        assert mask(f"token {value}", spec)[0] == "token TOKEN_001"

    def test_context_window_counts_characters_not_bytes(self) -> None:
        # 18 Korean characters are 54 UTF-8 bytes: still within a 20-character window.
        text = "계정" + "가" * 18 + "123456789012"
        assert mask(text)[0] == "계정" + "가" * 18 + "AWS_ACCOUNT_001"
        assert mask("계정" + "가" * 21 + "123456789012")[0].endswith("123456789012")

    def test_offsets_are_characters_in_non_ascii_text(self) -> None:
        text = "😀 인스턴스 i-0123456789abcdef0 와 vpc-12345678"
        findings = build_snapshot([EC2, VPC]).find(text)
        assert [text[f.start : f.end] for f in findings] == [f.value for f in findings]
        assert [f.value for f in findings] == ["i-0123456789abcdef0", "vpc-12345678"]

    def test_lone_surrogates_do_not_break_a_scan(self) -> None:
        assert mask("\ud800 i-12345678 \udfff")[0] == "\ud800 AWS_EC2_001 \udfff"

    def test_allowed_value_is_never_masked(self) -> None:
        masked, _ = mask("i-00000000 i-11111111", allowed=["i-00000000"])
        assert masked == "i-00000000 AWS_EC2_001"

    def test_sensitive_terms_are_masked_whole_and_case_insensitively(self) -> None:
        terms = [TermSpec("project-falcon", "CODE_NAME"), TermSpec("Prod", "ENV", True)]
        masked, _ = mask("Project-Falcon in Prod, not prod or products", terms=terms)
        assert masked == "CODE_NAME_001 in ENV_001, not prod or products"

    def test_longer_term_wins_over_its_prefix(self) -> None:
        terms = [TermSpec("prod-db", "DB"), TermSpec("prod-db-main", "DB")]
        masked, allocator = mask("prod-db-main prod-db", terms=terms)
        assert masked == "DB_001 DB_002"
        assert allocator.restore_map == {"DB_001": "prod-db-main", "DB_002": "prod-db"}

    def test_empty_text_finds_nothing(self) -> None:
        assert build_snapshot([EC2]).find("") == ()

    def test_punctuation_glued_to_an_identifier_is_left_out_of_the_value(self) -> None:
        # ".ops@example.com" would put its placeholder right after "_", where it could not
        # be restored.
        email = PatternSpec("email", r"[a-z.]+@[a-z]+\.[a-z]{2,}", "EMAIL")
        assert [f.value for f in build_snapshot([email]).find("_.ops@example.com")] == [
            "ops@example.com"
        ]
        assert_round_trip("_.ops@example.com", "_.EMAIL_001", email)
        assert_round_trip(
            "tk-1234._x", "TICKET_001._x", PatternSpec("t", r"tk-[0-9]{4}\.?", "TICKET")
        )

    @pytest.mark.parametrize(
        ("text", "masked"),
        [
            ("path%2Fi-0123456789abcdef0", "path%2FAWS_EC2_001"),
            ("q=id%3Di-0123456789abcdef0%26x", "q=id%3DAWS_EC2_001%26x"),
            ("a%20i-0123456789abcdef0%0A", "a%20AWS_EC2_001%0A"),
            ("caf%C3i-0123456789abcdef0", "caf%C3AWS_EC2_001"),  # not UTF-8, not a letter
        ],
    )
    def test_an_id_after_a_percent_escape_is_masked_and_restored(
        self, text: str, masked: str
    ) -> None:
        # Such an escape is a separator, no part of an identifier.
        assert_round_trip(text, masked, EC2)


class TestPlaceholderLiterals:
    def test_text_shaped_like_our_placeholders_is_masked_and_comes_back_unchanged(self) -> None:
        text = "Earlier answer: AWS_EC2_001 runs; now i-0123456789abcdef0. LITERAL_001 too."
        masked, allocator = mask(text)
        assert masked == "Earlier answer: LITERAL_001 runs; now AWS_EC2_001. LITERAL_002 too."
        assert unmask(masked, allocator.restore_map) == text

    def test_only_our_prefixes_count_as_placeholders(self) -> None:
        text = "ISO_8601 and HTTP_500 and XAWS_EC2_001 stay"
        assert mask(text)[0] == text


class TestCompiling:
    @pytest.mark.parametrize(
        ("regex", "message"),
        [
            (r"(?<=x)a", "Lookarounds are not supported"),
            (r"(a)\1", "Backreferences are not supported"),
            (r"x(?!y)", "Negative lookaheads are not supported"),
            (r"[a-", "cannot compile"),
            (r"x*", "can match the empty string"),
            (r"a|", "can match the empty string"),
            (r"\b", "can match the empty string"),
            ("  ", "is empty"),
        ],
    )
    def test_unsupported_or_empty_matching_patterns_are_refused(
        self, regex: str, message: str
    ) -> None:
        with pytest.raises(PatternError, match=message):
            compile_regex(regex)

    def test_catastrophic_backtracking_pattern_runs_in_linear_time(self) -> None:
        # On a backtracking engine this input takes longer than the universe's age.
        spec = PatternSpec("evil", r"(a+)+$", "EVIL")
        text = "a" * 200_000 + "!"
        assert build_snapshot([spec]).find(text) == ()

    @pytest.mark.parametrize("prefix", ["aws_ec2", "AWS__EC2", "_AWS", "AWS_", "1AWS", "A" * 33])
    def test_bad_placeholder_prefixes_are_refused(self, prefix: str) -> None:
        with pytest.raises(PatternError, match="placeholder prefix"):
            check_prefix(prefix)

    def test_unknown_validator_is_refused(self) -> None:
        with pytest.raises(PatternError, match="Unknown validator"):
            build_snapshot([PatternSpec("x", "x", "X", validator="nope")])

    def test_snapshot_error_names_the_pattern(self) -> None:
        with pytest.raises(PatternError, match="'broken'"):
            build_snapshot([EC2, PatternSpec("broken", "(", "X")])

    def test_examples_are_checked(self) -> None:
        problems = check_examples(EC2, ["i-0123456789abcdef0", "i-0123456789"], ["vpc-12345678"])
        assert problems == ["Positive example not matched: 'i-0123456789'"]
        problems = check_examples(EC2, ["x i-12345678 y"], ["i-12345678"])
        assert problems == ["Negative example matched: 'i-12345678'"]


class TestRestoring:
    def test_placeholders_are_formatted_with_at_least_three_digits(self) -> None:
        assert format_placeholder("AWS_EC2", 7) == "AWS_EC2_007"
        assert format_placeholder("AWS_EC2", 1234) == "AWS_EC2_1234"

    def test_replace_fails_closed_when_a_value_has_no_placeholder(self) -> None:
        findings = build_snapshot([EC2]).find("i-12345678")
        with pytest.raises(KeyError):
            replace_findings("i-12345678", findings, {})

    def test_unmask_replaces_whole_tokens_only(self) -> None:
        restore = {"AWS_EC2_001": "i-12345678"}
        text = "AWS_EC2_001, AWS_EC2_0012, XAWS_EC2_001, AWS_EC2_001x, AWS_EC2_001에서"
        assert unmask(text, restore) == (
            "i-12345678, AWS_EC2_0012, XAWS_EC2_001, AWS_EC2_001x, i-12345678에서"
        )

    def test_a_placeholder_after_an_escaped_letter_is_left_alone(self) -> None:
        # "%41" is "A": "xAAWS_EC2_001" would not be a token of its own.
        assert unmask("x%41AWS_EC2_001", {"AWS_EC2_001": "v"}) == "x%41AWS_EC2_001"
        assert unmask("x%2FAWS_EC2_001", {"AWS_EC2_001": "v"}) == "x%2Fv"

    def test_unmask_leaves_placeholders_it_was_not_given(self) -> None:
        assert unmask("AWS_EC2_002 AWS_EC2_001", {"AWS_EC2_001": "v"}) == "AWS_EC2_002 v"

    def test_json_mode_escapes_the_restored_value(self) -> None:
        restore = {"SECRET_001": 'pa"ss\\word'}
        raw = json.dumps({"cmd": "login\nSECRET_001"})
        assert json.loads(unmask(raw, restore, json_mode=True)) == {"cmd": 'login\npa"ss\\word'}

    def test_json_mode_sees_unicode_escape_as_boundary(self) -> None:
        raw = '"caf\\u00e9SECRET_001"'
        assert json.loads(unmask(raw, {"SECRET_001": "x"}, json_mode=True)) == "caféx"


class TestStreaming:
    RESTORE: ClassVar[dict[str, str]] = {
        "AWS_EC2_001": "i-0123456789abcdef0",
        "AWS_EC2_0012": "i-0000000000000000b",
    }

    def run(self, chunks: list[str], *, json_mode: bool = False) -> tuple[list[str], int]:
        unmasker = StreamUnmasker(self.RESTORE, json_mode=json_mode)
        out = [unmasker.feed(chunk) for chunk in chunks]
        out.append(unmasker.flush())
        return out, unmasker.max_held

    def test_placeholder_split_across_deltas_is_restored(self) -> None:
        out, _ = self.run(["see AWS_E", "C2_0", "01 now"])
        assert "".join(out) == "see i-0123456789abcdef0 now"

    def test_complete_placeholder_is_held_until_the_next_character(self) -> None:
        unmasker = StreamUnmasker(self.RESTORE)
        assert unmasker.feed("id AWS_EC2_001") == "id "
        assert unmasker.feed("2.") == "i-0000000000000000b."

    def test_text_that_cannot_become_a_placeholder_is_not_held(self) -> None:
        unmasker = StreamUnmasker(self.RESTORE)
        assert unmasker.feed("Hello AWS_S") == "Hello AWS_S"
        assert unmasker.feed("tuff, the") == "tuff, the"

    def test_nothing_is_held_longer_than_the_longest_placeholder(self) -> None:
        text = "AWS_EC2_001 " * 50
        _, max_held = self.run(list(text))
        assert max_held <= max(map(len, self.RESTORE))

    def test_flush_releases_a_placeholder_at_the_end_of_the_stream(self) -> None:
        assert "".join(self.run(["end AWS_EC2_001"])[0]) == "end i-0123456789abcdef0"

    def test_json_escape_split_before_a_placeholder(self) -> None:
        raw = json.dumps({"command": "echo\nAWS_EC2_001"})
        for cut in range(len(raw)):
            out, _ = self.run([raw[:cut], raw[cut:]], json_mode=True)
            assert json.loads("".join(out)) == {"command": "echo\ni-0123456789abcdef0"}, cut

    def test_without_restore_map_text_passes_through(self) -> None:
        unmasker = StreamUnmasker({})
        assert unmasker.feed("AWS_EC2_00") == "AWS_EC2_00"
        assert unmasker.flush() == ""
