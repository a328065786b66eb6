"""Composite values (named groups): each part masked on its own, the rest kept as written,
restored byte for byte; the library's ARNs and S3 URIs (pure: the engine and the library)."""

from __future__ import annotations

import pytest

from patterns.engine import (
    PatternError,
    PatternSpec,
    build_snapshot,
    compile_pattern,
)
from patterns.scanner import find_in_texts
from tests.support.masking import masked

ORDER = PatternSpec("order_ref", r"ord-(?P<ORDER_ID>[0-9]{6})-(?P<CUSTOMER>[a-z]{4,})", "ORDER")


def _masked(spec: PatternSpec, *texts: str) -> list[str]:
    return masked(build_snapshot([spec]), *texts)


def test_each_named_group_is_a_placeholder_of_its_own_and_the_rest_stays() -> None:
    assert _masked(ORDER, "see ord-123456-acme today") == [
        "see ord-ORDER_ID_001-CUSTOMER_001 today"
    ]


def test_a_part_gets_the_same_placeholder_as_the_same_value_elsewhere() -> None:
    [first, second] = _masked(ORDER, "ord-123456-acme", "customer acme, ord-654321-acme")
    assert first == "ord-ORDER_ID_001-CUSTOMER_001"
    assert second.endswith("ord-ORDER_ID_002-CUSTOMER_001")


def test_a_group_suffix_lets_two_groups_share_a_prefix() -> None:
    spec = PatternSpec("pair", r"pair (?P<ITEM>[a-z]+\d)/(?P<ITEM__2>[a-z]+\d)", "PAIR")
    assert _masked(spec, "pair abc1/def2") == ["pair ITEM_001/ITEM_002"]


def test_a_group_that_names_no_prefix_is_refused_with_a_message() -> None:
    with pytest.raises(PatternError, match="names no placeholder prefix"):
        compile_pattern(PatternSpec("bad", r"x-(?P<lower>[0-9]+)", "X"))


def test_a_composite_read_through_the_normalised_view_is_masked_whole() -> None:
    # Percent-encoded, the parts do not stand where the view found them.
    snapshot = build_snapshot([ORDER])
    [found] = find_in_texts(snapshot, ["ord%2D123456%2Dacme"])
    assert [(f.value, f.prefix) for f in found] == [("ord%2D123456%2Dacme", "ORDER")]


def test_a_part_glued_to_a_word_masks_the_value_whole() -> None:
    spec = PatternSpec("glued", r"id(?P<NUM>[0-9]{4})x", "GLUED")
    snapshot = build_snapshot([spec])
    [found] = find_in_texts(snapshot, ["see id1234x"])
    assert [(f.value, f.prefix) for f in found] == [("id1234x", "GLUED")]
