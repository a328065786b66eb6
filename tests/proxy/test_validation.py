"""proxy.validation.parse_json_body reads every body exactly as json.loads does (it reads
with orjson first, for speed), and refuses what json refuses with json's messages.

Pure: no database, no Redis, no server.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.errors import InvalidRequest
from proxy.validation import MAX_NESTING, parse_json_body

# Integers on both sides of 64 bits, floats of every size, and strings with any code point
# (lone surrogates included: json.dumps escapes them, as some clients send them).
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**62, max_value=2**70)
    | st.integers(min_value=-(2**70), max_value=-(2**62))
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF))
)
DOCUMENTS = st.dictionaries(
    st.text(max_size=8),
    st.recursive(
        SCALARS,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
        max_leaves=20,
    ),
    max_size=6,
)


def _exact(value: Any) -> str:
    # Types and key order count: 1 and 1.0 differ, as json.dumps writes them.
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


@settings(max_examples=400, deadline=None)
@given(document=DOCUMENTS, ascii_only=st.booleans())
def test_a_body_reads_exactly_as_json_reads_it(document: dict[str, Any], ascii_only: bool) -> None:
    raw = json.dumps(document, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")

    assert _exact(parse_json_body(raw)) == _exact(json.loads(raw))


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (b'{"n": 18446744073709551616}', 18446744073709551616),  # 2**64: past orjson's range
        (b'{"n": -9223372036854775809}', -9223372036854775809),
        (b'{"n": 123456789012345678901234567890}', 123456789012345678901234567890),
        (b'{"n": 18446744073709551615}', 18446744073709551615),  # 2**64 - 1: orjson's own
        (b'{"n": 1e19}', 1e19),  # a large float written as one stays a float
        (b'{"n": "\\ud800"}', "\ud800"),  # a lone surrogate, which orjson refuses
        (b'\xef\xbb\xbf{"n": 1}', 1),  # a byte order mark, which orjson refuses
        (b'{"n": 1, "n": 2}', 2),  # the last of repeated names
    ],
)
def test_values_orjson_reads_otherwise_are_read_as_json_reads_them(raw: bytes, value: Any) -> None:
    body = parse_json_body(raw)

    assert body == {"n": value}
    assert type(body["n"]) is type(value)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"n": NaN}', "NaN is not a JSON value"),
        (b'{"n": -Infinity}', "-Infinity is not a JSON value"),
        (b"{not json", "not valid JSON: Expecting property name enclosed in double quotes"),
        (b'{"n": 1', "not valid JSON: Expecting ',' delimiter at position 7"),
        (b'{"n": "\xff"}', "not valid UTF-8"),
        (b"\xff\xfe", "not valid JSON: Expecting value at position 0"),  # read as UTF-16
        (b"   ", "empty"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"n":' * (MAX_NESTING + 1) + b"1" + b"}" * (MAX_NESTING + 1), "nested deeper"),
        (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
    ],
)
def test_refusals_keep_json_s_reasons(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_json_body(raw)

    assert message in refused.value.message
