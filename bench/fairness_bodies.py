"""The fairness benchmark's attacker requests: the worst the per-request limits allow, as bytes.

Built once per scenario, in the attacker's process; a body with new IDs is a join of
prepared segments, a few milliseconds even near the body limit.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass

from bench.engine_bench import FILLER_WORDS

# The attacker's model: routed to a fake upstream of its own (see fairness_bench).
ATTACK_MODEL = "bench-attacker"

PEN_TEST_IDS = 600_000
SPRINKLED_IDS = 5_000  # in scenario (d): one every ~6 KB of text
CLOSING_QUESTION = "Summarise the above in one line."


@dataclass(frozen=True)
class Template:
    """A request body with `len(segments) - 1` EC2 IDs between its segments (JSON bytes).

    fresh: each body gets IDs no request had before (`tag` keeps scenarios apart);
    otherwise every body is the same.
    """

    segments: tuple[bytes, ...]
    tag: int
    fresh: bool

    @property
    def values(self) -> int:
        return len(self.segments) - 1

    def body(self, number: int) -> bytes:
        # 17 hex digits: the tag, the request's number and the ID's index within it.
        base = (self.tag << 56) | ((number if self.fresh else 0) << 24)
        parts: list[bytes] = [b""] * (2 * self.values + 1)
        parts[0::2] = self.segments
        parts[1::2] = [b"i-%017x" % (base | index) for index in range(self.values)]
        return b"".join(parts)


def _json_text(text: str) -> bytes:
    return json.dumps(text, ensure_ascii=False)[1:-1].encode()


def _conversation(first_turn: bytes) -> tuple[bytes, bytes]:
    """The body's bytes before and after the first user turn's content (a JSON value)."""
    head = json.dumps({"model": ATTACK_MODEL, "max_tokens": 1024})[:-1] + ', "messages": [{"role": '
    head += '"user", "content": '
    tail = json.dumps(
        [{"role": "assistant", "content": "Noted."}, {"role": "user", "content": CLOSING_QUESTION}]
    )
    return head.encode() + first_turn, b"}, " + tail[1:].encode() + b"}"


def ids_text(values: int, *, tag: int, fresh: bool) -> Template:
    """One text of `values` IDs separated by spaces."""
    head, tail = _conversation(b'"')
    return Template((head, *([b" "] * (values - 1)), b'"' + tail), tag=tag, fresh=fresh)


def tiny_blocks(blocks: int, *, tag: int) -> Template:
    """A first user turn of `blocks` text blocks of two characters each, no value."""
    block = json.dumps({"type": "text", "text": "ok"}).encode()
    head, tail = _conversation(b"[" + b", ".join([block] * blocks) + b"]")
    return Template((head + tail,), tag=tag, fresh=False)


def large_text(size: int, values: int, *, tag: int) -> Template:
    """A body of about `size` bytes: prose (some of it Korean) with `values` IDs sprinkled in."""
    head, tail = _conversation(b'"')
    tail = b'"' + tail
    id_bytes = len(b"i-%017x" % 0) + 2  # with the spaces around it
    per_gap = (size - len(head) - len(tail)) // values - id_bytes
    rng = random.Random(tag)
    pool = [_json_text(_filler(rng, per_gap)) for _ in range(64)]
    gaps = [pool[index % len(pool)] + b" " for index in range(values - 1)]
    segments = (head + pool[0] + b" ", *(b" " + gap for gap in gaps), b" " + tail)
    return Template(segments, tag=tag, fresh=True)


def _filler(rng: random.Random, size: int) -> str:
    """Words of the engine benchmark's prose, `size` bytes once UTF-8 encoded."""
    words: list[str] = []
    length = 0
    while True:
        word = rng.choice(FILLER_WORDS)
        if length + len(word.encode()) + 1 > size:
            break
        words.append(word)
        length += len(word.encode()) + 1
    text = " ".join(words)
    return text + "." * (size - len(text.encode()))


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    expected: int  # the status the request should get
    build: Callable[[dict[str, int], int], Template]


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "a",
        "max distinct IDs",
        200,
        lambda lim, tag: ids_text(lim["PROXY_MAX_VALUES_PER_REQUEST"], tag=tag, fresh=True),
    ),
    Scenario(
        "b",
        "max distinct IDs + 1",
        413,
        lambda lim, tag: ids_text(lim["PROXY_MAX_VALUES_PER_REQUEST"] + 1, tag=tag, fresh=False),
    ),
    Scenario(
        "c",
        "max tiny text blocks",
        200,
        lambda lim, tag: tiny_blocks(lim["PROXY_MAX_CONTENT_BLOCKS"], tag=tag),
    ),
    Scenario(
        "d",
        "body near max bytes",
        200,
        lambda lim, tag: large_text(
            lim["PROXY_MAX_BODY_BYTES"] - 64 * 1024,
            min(SPRINKLED_IDS, lim["PROXY_MAX_VALUES_PER_REQUEST"]),
            tag=tag,
        ),
    ),
    Scenario(
        "e",
        "pen test: 600,000 IDs",
        413,
        lambda lim, tag: ids_text(PEN_TEST_IDS, tag=tag, fresh=False),
    ),
)
