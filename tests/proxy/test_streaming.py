"""Parsing the provider's SSE bytes and restoring placeholders in them, however they are cut."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.masking import restore_response
from proxy.streaming import SSEEvent, SSEParser, StreamRestorer, encode_sse

RESTORE = {
    "AWS_EC2_001": "i-0123456789abcdef0",
    "AWS_VPC_001": "vpc-0a1b2c3d4e5f67890",
    # A value that needs escaping inside partial JSON.
    "TERM_001": 'C:\\ops\\키 "prod"',
}
LONGEST_PLACEHOLDER = max(map(len, RESTORE))
PLACEHOLDER_SHAPE = re.compile(r"[A-Z][A-Z0-9_]*_[0-9]{3,}")

# What the client must end up with. AWS_EC2_0012 and AWS_S3_001 are placeholder-shaped but not
# in the restore map: they stay as they are. The text ends on a placeholder, so its last
# characters are held back until the block stops.
TEXT = (
    "인스턴스 i-0123456789abcdef0는 vpc-0a1b2c3d4e5f67890에 있습니다. "
    "AWS_EC2_0012와 AWS_S3_001은 그대로 두고, 마지막은 i-0123456789abcdef0"
)
TOOL_INPUT = {
    "command": (
        "aws ec2 describe-instances --instance-ids\ni-0123456789abcdef0\n"
        'echo "vpc-0a1b2c3d4e5f67890"'
    ),
    "path": 'C:\\ops\\키 "prod"',
    "region": "ap-northeast-2",
    "note": "서울 리전",
}
# Thinking passes byte for byte, placeholders included: its signature must stay valid.
THINKING = "The user asks about AWS_EC2_001 in AWS_VPC_001; 확인해 보자."
SIGNATURE = "EqQBCkYIBhgCKkDs0nW3AWS_EC2_001Zk+q/8Jd9V=="
RESTORABLE_DELTAS = {"text_delta": "text", "input_json_delta": "partial_json"}
DELTA_FIELDS = {**RESTORABLE_DELTAS, "thinking_delta": "thinking", "signature_delta": "signature"}


def mask(text: str, *, json_mode: bool = False) -> str:
    for placeholder, value in RESTORE.items():
        if json_mode:
            value = json.dumps(value, ensure_ascii=False)[1:-1]
        text = text.replace(value, placeholder)
    return text


MASKED_TEXT = mask(TEXT)
MASKED_JSON = json.dumps(
    {key: mask(value) for key, value in TOOL_INPUT.items()}, ensure_ascii=False
)


# --- building a provider stream, and reading it as a client would ------------------------------


def sse(name: str, payload: dict[str, Any]) -> bytes:
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return f"event: {name}\ndata: {data}\n\n".encode()


def delta(index: int, kind: str, field: str, text: str) -> bytes:
    payload = {"type": "content_block_delta", "index": index, "delta": {"type": kind, field: text}}
    return sse("content_block_delta", payload)


def text_delta(index: int, text: str) -> bytes:
    return delta(index, "text_delta", "text", text)


def start(index: int, block: dict[str, Any]) -> bytes:
    payload = {"type": "content_block_start", "index": index, "content_block": block}
    return sse("content_block_start", payload)


def stop(index: int) -> bytes:
    return sse("content_block_stop", {"type": "content_block_stop", "index": index})


MESSAGE_START = sse(
    "message_start",
    {
        "type": "message_start",
        "message": {
            "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 472, "output_tokens": 2},
        },
    },
)
PING = sse("ping", {"type": "ping"})
MESSAGE_DELTA = sse(
    "message_delta",
    {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"output_tokens": 89},
    },
)
MESSAGE_STOP = sse("message_stop", {"type": "message_stop"})


def pieces(text: str, sizes: Sequence[int]) -> list[str]:
    """text cut into pieces of the given sizes, repeated as needed."""
    result: list[str] = []
    position = 0
    while position < len(text):
        size = sizes[len(result) % len(sizes)]
        result.append(text[position : position + size])
        position += size
    return result


def provider_events(
    text_pieces: Iterable[str] | None = None, json_pieces: Iterable[str] | None = None
) -> list[bytes]:
    """A masked Anthropic stream: a thinking block, a text block, a tool_use block."""
    text_pieces = pieces(MASKED_TEXT, (1, 2, 3)) if text_pieces is None else text_pieces
    json_pieces = pieces(MASKED_JSON, (1, 2, 3)) if json_pieces is None else json_pieces
    return [
        MESSAGE_START,
        start(0, {"type": "thinking", "thinking": "", "signature": ""}),
        *(delta(0, "thinking_delta", "thinking", p) for p in pieces(THINKING, (7,))),
        delta(0, "signature_delta", "signature", SIGNATURE),
        stop(0),
        start(1, {"type": "text", "text": ""}),
        PING,
        *(text_delta(1, p) for p in text_pieces),
        stop(1),
        start(
            2, {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835", "name": "bash", "input": {}}
        ),
        *(delta(2, "input_json_delta", "partial_json", p) for p in json_pieces),
        stop(2),
        MESSAGE_DELTA,
        MESSAGE_STOP,
    ]


def split_events(data: bytes) -> list[bytes]:
    """Events of a stream written with LF line ends and one data line each, raw."""
    assert data.endswith(b"\n\n") or not data
    return [block + b"\n\n" for block in data.split(b"\n\n")[:-1]]


def read_event(raw: bytes) -> tuple[str, dict[str, Any]]:
    """The event name and JSON data of one event, read independently of the code under test."""
    lines = raw.decode().rstrip("\n").split("\n")
    assert len(lines) == 2, raw
    assert lines[0].startswith("event: ") and lines[1].startswith("data: "), raw
    payload = json.loads(lines[1].removeprefix("data: "))
    assert isinstance(payload, dict)
    return lines[0].removeprefix("event: "), payload


def restorable_text(payload: dict[str, Any]) -> str | None:
    """The text of a text or input_json delta, None for any other event."""
    if payload.get("type") != "content_block_delta":
        return None
    field = RESTORABLE_DELTAS.get(payload["delta"]["type"])
    return None if field is None else str(payload["delta"][field])


def accumulate(data: bytes) -> dict[tuple[int, str], str]:
    """What a client builds from the deltas: per block and delta type, the text joined."""
    built: dict[tuple[int, str], str] = {}
    for raw in split_events(data):
        _, payload = read_event(raw)
        if payload["type"] == "content_block_delta":
            kind = payload["delta"]["type"]
            key = (payload["index"], kind)
            built[key] = built.get(key, "") + payload["delta"][DELTA_FIELDS[kind]]
    return built


def assert_held_at_most_one_placeholder(provider: bytes, client: bytes) -> None:
    """In every block, what the client got, masked again, is the text of the provider's whole
    events so far less a held tail no longer than a placeholder."""
    end = provider.rfind(b"\n\n")
    received = accumulate(provider[: end + 2] if end >= 0 else b"")
    sent = accumulate(client)
    for (index, kind), masked in received.items():
        if kind in RESTORABLE_DELTAS:
            emitted = mask(sent.get((index, kind), ""), json_mode=kind == "input_json_delta")
            assert masked.startswith(emitted)
            assert len(masked) - len(emitted) <= LONGEST_PLACEHOLDER


def cut(data: bytes, points: Iterable[int]) -> list[bytes]:
    bounds = sorted({point % (len(data) + 1) for point in points})
    return [data[a:b] for a, b in zip([0, *bounds], [*bounds, len(data)], strict=True)]


def restore_stream(chunks: Iterable[bytes]) -> bytes:
    restorer = StreamRestorer(RESTORE)
    out = [restorer.feed(chunk) for chunk in chunks]
    out.append(restorer.close())
    return b"".join(out)


def parse_all(chunks: Iterable[bytes]) -> tuple[list[SSEEvent], bool]:
    parser = SSEParser()
    events = [event for chunk in chunks for event in parser.feed(chunk)]
    events.extend(parser.close())
    return events, parser.truncated


def fields(events: Iterable[SSEEvent]) -> list[tuple[str | None, str]]:
    return [(event.event, event.data) for event in events]


# --- the parser --------------------------------------------------------------------------------

SMALL_STREAM = b"".join(provider_events(pieces(MASKED_TEXT, (30,)), pieces(MASKED_JSON, (40,))))


def test_stream_cut_at_any_byte_parses_to_the_same_events() -> None:
    expected = [read_event(raw) for raw in split_events(SMALL_STREAM)]
    for point in range(len(SMALL_STREAM) + 1):
        events, truncated = parse_all(cut(SMALL_STREAM, [point]))
        assert [(e.event, json.loads(e.data)) for e in events] == expected, point
        assert b"".join(e.raw for e in events) == SMALL_STREAM, point
        assert not truncated


def test_stream_fed_byte_by_byte_parses_to_the_same_events() -> None:
    whole, _ = parse_all([SMALL_STREAM])
    events, _ = parse_all(SMALL_STREAM[i : i + 1] for i in range(len(SMALL_STREAM)))
    assert events == whole
    assert [e.raw for e in events] == split_events(SMALL_STREAM)


def test_one_chunk_may_hold_several_events() -> None:
    parser = SSEParser()
    events = parser.feed(MESSAGE_START + PING + text_delta(0, "hi") + b"event: pi")
    assert [e.event for e in events] == ["message_start", "ping", "content_block_delta"]
    assert [e.raw for e in events] == [MESSAGE_START, PING, text_delta(0, "hi")]
    assert [e.raw for e in parser.feed(b'ng\ndata: {"type":"ping"}\n\n')] == [PING]


@pytest.mark.parametrize("newline", ["\r\n", "\r"], ids=["crlf", "cr"])
def test_crlf_and_cr_line_ends_parse_like_lf(newline: str) -> None:
    lf = b"event: a\ndata: 1\n\n: note\ndata: 2\ndata: 3\n\nevent: b\ndata: \n\n"
    other = lf.replace(b"\n", newline.encode())
    expected, _ = parse_all([lf])
    assert fields(expected) == [("a", "1"), (None, "2\n3"), ("b", "")]
    for point in range(len(other) + 1):
        events, truncated = parse_all(cut(other, [point]))
        assert fields(events) == fields(expected), point
        # Dispatched at the last CR, as browsers do: the LF read after it carries nothing.
        whole = other[:-1] if newline == "\r\n" and point == len(other) - 1 else other
        assert b"".join(e.raw for e in events) == whole, point
        assert not truncated, point


def test_mixed_line_ends_in_one_stream() -> None:
    events, _ = parse_all([b"data: a\r\ndata: b\rdata: c\n\r\nevent: x\r\rdata: d\n\n"])
    assert fields(events) == [(None, "a\nb\nc"), ("x", ""), (None, "d")]


def test_comment_lines_are_ignored() -> None:
    events, _ = parse_all([b": hello\nevent: ping\n: in between\ndata: {}\n\n"])
    assert fields(events) == [("ping", "{}")]


def test_comment_only_block_is_returned_without_data_for_the_relay() -> None:
    events, _ = parse_all([b": keep-alive\n\n"])
    assert events == [SSEEvent(event=None, data="", raw=b": keep-alive\n\n")]


def test_multi_line_data_is_joined_with_newlines() -> None:
    events, _ = parse_all([b"event: note\ndata: first\ndata:\ndata: third\n\n"])
    assert fields(events) == [("note", "first\n\nthird")]


def test_only_one_space_after_the_colon_is_removed() -> None:
    events, _ = parse_all([b"event:x\ndata:a\n\ndata: b\n\ndata:  c\n\ndata\n\n"])
    assert fields(events) == [("x", "a"), (None, "b"), (None, " c"), (None, "")]


def test_utf8_character_split_across_chunks_is_decoded_whole() -> None:
    raw = text_delta(0, "서울 😀")
    events, _ = parse_all(raw[i : i + 1] for i in range(len(raw)))
    assert json.loads(events[0].data)["delta"]["text"] == "서울 😀"
    assert events[0].raw == raw


def test_blank_lines_between_events_dispatch_nothing() -> None:
    events, truncated = parse_all([b"\n\ndata: a\n\n\n\ndata: b\n\n\n"])
    assert fields(events) == [(None, "a"), (None, "b")]
    assert not truncated


def test_byte_order_mark_at_stream_start_is_ignored() -> None:
    events, _ = parse_all([b"\xef\xbb", b"\xbfevent: ping\ndata: {}\n\n"])
    assert fields(events) == [("ping", "{}")]


def test_trailing_event_without_blank_line_is_returned_on_close_and_marked_truncated() -> None:
    parser = SSEParser()
    assert parser.feed(PING + b'event: ping\ndata: {"type":"ping"}\n') == [
        SSEEvent(event="ping", data='{"type":"ping"}', raw=PING)
    ]
    assert not parser.truncated
    assert parser.close() == [
        SSEEvent(event="ping", data='{"type":"ping"}', raw=b'event: ping\ndata: {"type":"ping"}\n')
    ]
    assert parser.truncated


def test_trailing_bytes_without_data_are_dropped_but_marked_truncated() -> None:
    events, truncated = parse_all([PING, b"event: content_block_delta\n"])
    assert [e.raw for e in events] == [PING]
    assert truncated


def test_stream_ending_on_its_blank_line_is_not_truncated() -> None:
    events, truncated = parse_all([PING, MESSAGE_STOP])
    assert len(events) == 2
    assert not truncated


# --- the restorer --------------------------------------------------------------------------


def assert_client_sees_the_originals(provider: bytes, client: bytes) -> None:
    built = accumulate(client)
    assert built[1, "text_delta"] == TEXT
    assert json.loads(built[2, "input_json_delta"]) == TOOL_INPUT
    assert built[0, "thinking_delta"] == THINKING
    assert built[0, "signature_delta"] == SIGNATURE

    events = [(raw, *read_event(raw)) for raw in split_events(client)]
    # Everything but text and tool-input deltas is relayed byte for byte, in order.
    untouched_in = [
        raw for raw in split_events(provider) if restorable_text(read_event(raw)[1]) is None
    ]
    assert [raw for raw, _, payload in events if restorable_text(payload) is None] == untouched_in
    for _, _, payload in events:
        text = restorable_text(payload)
        if text is not None:
            assert text, "an empty delta was sent"
            assert not set(PLACEHOLDER_SHAPE.findall(text)) & set(RESTORE), text
    # Per block: start, deltas, stop; blocks one after another; the message ends last.
    order = [(int(p["index"]), name) for _, name, p in events if "index" in p]
    assert [index for index, _ in order] == sorted(index for index, _ in order)
    for block in (0, 1, 2):
        names = [name for index, name in order if index == block]
        assert names[0] == "content_block_start" and names[-1] == "content_block_stop"
        assert set(names[1:-1]) == {"content_block_delta"}
    assert [name for _, name, _ in events][-2:] == ["message_delta", "message_stop"]


@settings(max_examples=300, deadline=None)
@given(
    text_sizes=st.lists(st.integers(min_value=1, max_value=3), min_size=1, max_size=8),
    json_sizes=st.lists(st.integers(min_value=1, max_value=6), min_size=1, max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=20_000), max_size=40),
)
def test_client_sees_original_values_whatever_the_chunking(
    text_sizes: list[int], json_sizes: list[int], cuts: list[int]
) -> None:
    provider = b"".join(
        provider_events(pieces(MASKED_TEXT, text_sizes), pieces(MASKED_JSON, json_sizes))
    )
    restorer = StreamRestorer(RESTORE)
    received = client = b""
    for chunk in cut(provider, cuts):
        received += chunk
        client += restorer.feed(chunk)
        assert_held_at_most_one_placeholder(received, client)
    client += restorer.close()
    assert_client_sees_the_originals(provider, client)
    assert not restorer.truncated


def test_partial_json_cut_at_every_position_restores_the_tool_input() -> None:
    # Every position: inside each placeholder, across the escaped \n and \", between the
    # backslash of an escape and its letter.
    for point in range(1, len(MASKED_JSON)):
        json_pieces = [MASKED_JSON[:point], MASKED_JSON[point:]]
        provider = b"".join(provider_events(json_pieces=json_pieces))
        assert_client_sees_the_originals(provider, restore_stream([provider]))


def test_partial_json_one_character_at_a_time_restores_the_tool_input() -> None:
    provider = b"".join(provider_events(json_pieces=list(MASKED_JSON)))
    assert_client_sees_the_originals(provider, restore_stream([provider]))


def test_text_cut_at_every_position_restores_placeholders() -> None:
    for point in range(1, len(MASKED_TEXT)):
        text_pieces = [MASKED_TEXT[:point], MASKED_TEXT[point:]]
        provider = b"".join(provider_events(text_pieces=text_pieces))
        assert_client_sees_the_originals(provider, restore_stream([provider]))


def test_longer_placeholder_not_in_the_map_is_not_touched() -> None:
    provider = [start(0, {"type": "text", "text": ""})]
    provider += [
        text_delta(0, p) for p in ("AWS_EC2_0012 and AWS_EC2", "_001", "2 vs AWS_EC2_001.")
    ]
    client = restore_stream([*provider, stop(0)])
    expected = "AWS_EC2_0012 and AWS_EC2_0012 vs i-0123456789abcdef0."
    assert accumulate(client)[0, "text_delta"] == expected


def test_placeholder_not_in_the_restore_map_passes_unchanged() -> None:
    provider = text_delta(0, "AWS_S3_001 and AWS_EC2_002 ")
    restorer = StreamRestorer(RESTORE)
    assert restorer.feed(provider) == provider
    assert restorer.restored == 0


def test_held_text_is_flushed_just_before_content_block_stop() -> None:
    restorer = StreamRestorer(RESTORE)
    assert restorer.feed(text_delta(3, "see AWS_VPC_001")) == text_delta(3, "see ")
    out = split_events(restorer.feed(stop(3)))
    assert out == [
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":3,'
        b'"delta":{"type":"text_delta","text":"vpc-0a1b2c3d4e5f67890"}}\n\n',
        stop(3),
    ]


def test_stop_of_another_block_does_not_flush_held_text() -> None:
    restorer = StreamRestorer(RESTORE)
    restorer.feed(text_delta(0, "see AWS_VPC_0"))
    assert restorer.feed(stop(1)) == stop(1)
    assert accumulate(restorer.feed(text_delta(0, "01!")))[0, "text_delta"] == (
        "vpc-0a1b2c3d4e5f67890!"
    )


def test_upstream_error_event_is_relayed_unchanged() -> None:
    error = sse(
        "error",
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    )
    restorer = StreamRestorer(RESTORE)
    restorer.feed(text_delta(0, "partial AWS_EC"))
    out = split_events(restorer.feed(error))
    # What the provider sent before the error reaches the client first, then the error as is.
    assert out[-1] == error
    assert accumulate(b"".join(out[:-1]))[0, "text_delta"] == "AWS_EC"


def test_stream_cut_mid_block_flushes_held_text_on_close() -> None:
    restorer = StreamRestorer(RESTORE)
    sent = restorer.feed(start(0, {"type": "text", "text": ""}) + text_delta(0, "at AWS_EC2_001"))
    sent += restorer.feed(b'event: content_block_delta\ndata: {"type":')
    sent += restorer.close()
    assert accumulate(sent)[0, "text_delta"] == "at i-0123456789abcdef0"
    assert restorer.truncated
    # The event cut inside its data is dropped: the client got whole events, each read.
    assert [read_event(raw)[0] for raw in split_events(sent)] == [
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
    ]


def test_whole_trailing_event_without_blank_line_is_completed_on_close() -> None:
    restorer = StreamRestorer(RESTORE)
    sent = restorer.feed(text_delta(0, "a") + text_delta(0, "b AWS_EC2_001").rstrip(b"\n"))
    sent += restorer.close()
    assert accumulate(sent)[0, "text_delta"] == "ab i-0123456789abcdef0"
    assert restorer.truncated


def test_thinking_and_signature_deltas_pass_byte_for_byte() -> None:
    thinking = delta(0, "thinking_delta", "thinking", "AWS_EC2_001 은 무엇인가")
    signature = delta(0, "signature_delta", "signature", "AWS_EC2_001")
    block = start(0, {"type": "thinking", "thinking": "AWS_EC2_001", "signature": ""})
    provider = block + thinking + signature + stop(0)
    assert restore_stream([provider]) == provider


def test_tool_use_start_input_is_restored_in_every_string_leaf() -> None:
    block = {
        "type": "tool_use",
        "id": "toolu_01",
        "name": "describe",
        "input": {"ids": ["AWS_EC2_001", {"vpc": "AWS_VPC_001"}], "n": 1, "ok": True},
    }
    (raw,) = split_events(restore_stream([start(0, block)]))
    name, payload = read_event(raw)
    assert name == "content_block_start"
    assert payload["content_block"]["input"] == {
        "ids": ["i-0123456789abcdef0", {"vpc": "vpc-0a1b2c3d4e5f67890"}],
        "n": 1,
        "ok": True,
    }
    assert payload["content_block"]["name"] == "describe"


def test_text_block_start_text_is_restored() -> None:
    (raw,) = split_events(restore_stream([start(0, {"type": "text", "text": "id AWS_EC2_001"})]))
    assert read_event(raw)[1]["content_block"] == {"type": "text", "text": "id i-0123456789abcdef0"}


def test_block_start_without_placeholders_is_relayed_as_received() -> None:
    # Not compact, so a re-serialised event would differ.
    provider = (
        b'event: content_block_start\ndata: {"type": "content_block_start", "index": 0, '
        b'"content_block": {"type": "text", "text": ""}}\n\n'
    )
    assert restore_stream([provider]) == provider


@pytest.mark.parametrize(
    "provider",
    [
        b"event: content_block_delta\ndata: {not json AWS_EC2_001\n\n",
        b'event: future_event\ndata: {"type":"future_event","text":"AWS_EC2_001"}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"future_delta","future":{"text":"AWS_EC2_001"}}}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":["text_delta"],"text":"AWS_EC2_001"}}\n\n',
        b": keep-alive\n\n",
        b"data: [DONE]\n\n",
        text_delta(0, ""),
    ],
    ids=[
        "invalid-json",
        "unknown-event",
        "unknown-delta",
        "malformed-delta",
        "comment",
        "not-an-object",
        "empty",
    ],
)
def test_events_we_do_not_restore_are_relayed_unchanged(provider: bytes) -> None:
    restorer = StreamRestorer(RESTORE)
    assert restorer.feed(provider) == provider


def test_a_citation_is_restored_as_in_a_whole_reply_but_not_its_type() -> None:
    provider = (
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"citations_delta","citation":{"type":"char_location",'
        b'"cited_text":"AWS_EC2_001"}}}\n\n'
    )
    [event] = SSEParser().feed(StreamRestorer(RESTORE).feed(provider))
    citation = json.loads(event.data)["delta"]["citation"]
    assert citation == {"type": "char_location", "cited_text": RESTORE["AWS_EC2_001"]}


def test_a_tool_name_is_restored_in_neither_path() -> None:
    block = {"type": "tool_use", "id": "t", "name": "AWS_EC2_001", "input": {}}
    provider = encode_sse(
        "content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}
    )
    assert StreamRestorer(RESTORE).feed(provider) == provider
    restored, _ = restore_response({"content": [block]}, RESTORE)
    assert restored["content"][0]["name"] == "AWS_EC2_001"


def test_without_restore_map_whole_events_pass_through_byte_for_byte() -> None:
    provider = b"".join(provider_events()).replace(b"\n", b"\r\n") + b": keep-alive\r\n\r\n"
    restorer = StreamRestorer({})
    half = len(provider) // 2
    first = restorer.feed(provider[:half])
    assert first == provider[: len(first)]
    assert first.endswith(b"\r\n\r\n")  # whole events only
    assert first + restorer.feed(provider[half:]) + restorer.close() == provider


def test_restorations_are_counted_and_held_text_goes_out_before_the_stop() -> None:
    restorer = StreamRestorer(RESTORE)
    provider = [
        start(0, {"type": "text", "text": "AWS_VPC_001 "}),
        text_delta(0, "AWS_EC2_"),
        text_delta(0, "001 and AWS_EC2_001"),
        stop(0),
    ]
    restore_output = b"".join(restorer.feed(raw) for raw in provider) + restorer.close()
    assert accumulate(restore_output)[0, "text_delta"] == (
        "i-0123456789abcdef0 and i-0123456789abcdef0"
    )
    assert restorer.restored == 3
    # "AWS_EC2_" was all held back (no event); then "AWS_EC2_001", held until the stop.
    assert split_events(restore_output) == [
        start(0, {"type": "text", "text": "vpc-0a1b2c3d4e5f67890 "}),
        text_delta(0, "i-0123456789abcdef0 and "),
        text_delta(0, "i-0123456789abcdef0"),
        stop(0),
    ]


# --- incremental delivery ---------------------------------------------------------------------


def test_each_event_is_relayed_as_soon_as_it_arrives() -> None:
    restorer = StreamRestorer(RESTORE)
    for raw in (MESSAGE_START, start(0, {"type": "text", "text": ""}), text_delta(0, "인스턴스 ")):
        assert restorer.feed(raw) == raw
    assert restorer.feed(text_delta(0, "AWS_EC")) == b""  # may become a placeholder: held
    assert restorer.feed(PING) == PING  # not held behind the text
    assert restorer.feed(text_delta(0, "2_001는 ")) == text_delta(0, "i-0123456789abcdef0는 ")
    # Complete, but AWS_EC2_0012 would be another placeholder: held until the next character.
    assert restorer.feed(text_delta(0, "AWS_EC2_001")) == b""
    assert restorer.feed(text_delta(0, "!")) == text_delta(0, "i-0123456789abcdef0!")
    assert restorer.feed(text_delta(0, "AWS_S")) == text_delta(0, "AWS_S")  # cannot become one
    assert restorer.feed(stop(0)) == stop(0)


def test_realistic_stream_fed_event_by_event_holds_at_most_one_placeholder() -> None:
    restorer = StreamRestorer(RESTORE)
    masked_in: dict[int, str] = {}
    restored_out: dict[int, str] = {}
    for raw in provider_events():
        out = restorer.feed(raw)
        _, payload = read_event(raw)
        text = restorable_text(payload)
        if text is None:
            assert out.endswith(raw)  # relayed at once, after any text flushed for its block
        index = payload.get("index", -1)
        masked_in[index] = masked_in.get(index, "") + (text or "")
        for sent in split_events(out):
            sent_text = restorable_text(read_event(sent)[1])
            restored_out[index] = restored_out.get(index, "") + (sent_text or "")
        # What went out, masked again, is what came in minus a held tail shorter than a placeholder.
        emitted = mask(restored_out.get(index, ""), json_mode=index == 2)
        assert masked_in[index].startswith(emitted)
        assert len(masked_in[index]) - len(emitted) <= LONGEST_PLACEHOLDER
    assert restorer.close() == b""


# --- encoding ----------------------------------------------------------------------------------


def test_encode_sse_writes_one_compact_event() -> None:
    raw = encode_sse("error", {"type": "error", "error": {"type": "api_error", "message": "é"}})
    assert raw == (
        b"event: error\n"
        b'data: {"type":"error","error":{"type":"api_error","message":"\xc3\xa9"}}\n\n'
    )


def test_encode_sse_refuses_a_line_break_in_the_event_name() -> None:
    with pytest.raises(ValueError, match="line break"):
        encode_sse("error\ndata: {}", {})


def test_encode_sse_escapes_a_lone_surrogate() -> None:
    raw = encode_sse("content_block_delta", {"text": "\ud83d"})
    assert raw == b'event: content_block_delta\ndata: {"text":"\\ud83d"}\n\n'
