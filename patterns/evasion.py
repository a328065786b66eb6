"""Undoing the usual ways of hiding a value from a scan: the normalised view, and base64 text.

Pure: the standard library and the RE2 bindings only. The engine scans a text as written
and, when it differs, as this module's view of it: invisible characters dropped, full-width
forms, tag characters and a small table of look-alike letters folded to ASCII, and
percent-encoded bytes decoded. Security assumption: a model reads a value spelled in any
of these ways as the value itself, so the scan must too; every character of the view maps
back to the exact characters the client sent, so masking and restoring stay exact.
"""

from __future__ import annotations

import binascii
import bisect
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import re2

# Characters that render as nothing (or change only direction or shape), so that one can
# sit inside an ID unseen: zero-width space, non-joiner and joiner, soft hyphen, word
# joiner, invisible operators, bidirectional marks and isolates, variation selectors, the
# byte-order mark, and the begin/cancel tag characters. None of them can be part of a value.
INVISIBLE_RANGES: tuple[tuple[int, int], ...] = (
    (0x00AD, 0x00AD),  # soft hyphen
    (0x034F, 0x034F),  # combining grapheme joiner
    (0x061C, 0x061C),  # Arabic letter mark
    (0x180B, 0x180F),  # Mongolian variation selectors and vowel separator
    (0x200B, 0x200F),  # zero-width space, non-joiner, joiner; LRM, RLM
    (0x202A, 0x202E),  # bidirectional embeddings and overrides
    (0x2060, 0x2064),  # word joiner, invisible operators
    (0x2066, 0x206F),  # bidirectional isolates, deprecated format characters
    (0xFE00, 0xFE0F),  # variation selectors
    (0xFEFF, 0xFEFF),  # zero-width no-break space (byte-order mark)
    (0xE0001, 0xE0001),  # language tag
    (0xE007F, 0xE007F),  # cancel tag
)
# Full-width ASCII (U+FF01-U+FF5E, common in CJK text) and tag characters (U+E0020-U+E007E,
# invisible yet read by models: "ASCII smuggling") stand for the ASCII character at the
# same place in their block.
_SHIFTED_ASCII_BLOCKS = ((0xFF01, 0xFF5E, 0xFEE0), (0xE0020, 0xE007E, 0xE0000))

# Letters of other scripts that render like a Latin letter in common fonts (Unicode's
# confusables, reduced to Cyrillic and Greek letters that stand for one Latin letter on
# their own). Kept small on purpose: each entry makes ordinary Russian or Greek text look a
# little more Latin to the scan, which is harmless only because values need ASCII shapes.
LOOKALIKE_NAMES: Mapping[str, str] = {
    "CYRILLIC SMALL LETTER A": "a",
    "CYRILLIC SMALL LETTER ES": "c",
    "CYRILLIC SMALL LETTER KOMI DE": "d",
    "CYRILLIC SMALL LETTER IE": "e",
    "CYRILLIC SMALL LETTER SHHA": "h",
    "CYRILLIC SMALL LETTER BYELORUSSIAN-UKRAINIAN I": "i",
    "CYRILLIC SMALL LETTER JE": "j",
    "CYRILLIC SMALL LETTER PALOCHKA": "l",
    "CYRILLIC SMALL LETTER O": "o",
    "CYRILLIC SMALL LETTER ER": "p",
    "CYRILLIC SMALL LETTER QA": "q",
    "CYRILLIC SMALL LETTER DZE": "s",
    "CYRILLIC SMALL LETTER WE": "w",
    "CYRILLIC SMALL LETTER HA": "x",
    "CYRILLIC SMALL LETTER U": "y",
    "CYRILLIC CAPITAL LETTER A": "A",
    "CYRILLIC CAPITAL LETTER VE": "B",
    "CYRILLIC CAPITAL LETTER ES": "C",
    "CYRILLIC CAPITAL LETTER IE": "E",
    "CYRILLIC CAPITAL LETTER EN": "H",
    "CYRILLIC CAPITAL LETTER BYELORUSSIAN-UKRAINIAN I": "I",
    "CYRILLIC LETTER PALOCHKA": "I",
    "CYRILLIC CAPITAL LETTER JE": "J",
    "CYRILLIC CAPITAL LETTER KA": "K",
    "CYRILLIC CAPITAL LETTER EM": "M",
    "CYRILLIC CAPITAL LETTER O": "O",
    "CYRILLIC CAPITAL LETTER ER": "P",
    "CYRILLIC CAPITAL LETTER DZE": "S",
    "CYRILLIC CAPITAL LETTER TE": "T",
    "CYRILLIC CAPITAL LETTER HA": "X",
    "CYRILLIC CAPITAL LETTER STRAIGHT U": "Y",
    "GREEK SMALL LETTER ALPHA": "a",
    "GREEK SMALL LETTER IOTA": "i",
    "GREEK SMALL LETTER KAPPA": "k",
    "GREEK SMALL LETTER NU": "v",
    "GREEK SMALL LETTER OMICRON": "o",
    "GREEK SMALL LETTER RHO": "p",
    "GREEK SMALL LETTER UPSILON": "u",
    "GREEK SMALL LETTER CHI": "x",
    "GREEK SMALL LETTER GAMMA": "y",
    "GREEK CAPITAL LETTER ALPHA": "A",
    "GREEK CAPITAL LETTER BETA": "B",
    "GREEK CAPITAL LETTER EPSILON": "E",
    "GREEK CAPITAL LETTER ZETA": "Z",
    "GREEK CAPITAL LETTER ETA": "H",
    "GREEK CAPITAL LETTER IOTA": "I",
    "GREEK CAPITAL LETTER KAPPA": "K",
    "GREEK CAPITAL LETTER MU": "M",
    "GREEK CAPITAL LETTER NU": "N",
    "GREEK CAPITAL LETTER OMICRON": "O",
    "GREEK CAPITAL LETTER RHO": "P",
    "GREEK CAPITAL LETTER TAU": "T",
    "GREEK CAPITAL LETTER UPSILON": "Y",
    "GREEK CAPITAL LETTER CHI": "X",
}
LOOKALIKES: Mapping[str, str] = {
    unicodedata.lookup(name): latin for name, latin in LOOKALIKE_NAMES.items()
}


def _folds() -> dict[int, str]:
    table = {ord(letter): latin for letter, latin in LOOKALIKES.items()}
    for first, last, shift in _SHIFTED_ASCII_BLOCKS:
        table.update({code: chr(code - shift) for code in range(first, last + 1)})
    return table


# Lone surrogates (JSON's "\ud800") pass through, as in the engine.
_ENCODING_ERRORS = "surrogatepass"
# One character to one character: folding never moves an offset.
FOLDS: Mapping[int, str] = _folds()
INVISIBLE: frozenset[str] = frozenset(
    chr(code) for first, last in INVISIBLE_RANGES for code in range(first, last + 1)
)


def _char_class(codes: Iterable[int]) -> str:
    """An RE character class of code points, written as ranges with \\x{...} escapes."""
    ranges: list[list[int]] = []
    for code in sorted(set(codes)):
        if ranges and code == ranges[-1][1] + 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    return "".join(f"\\x{{{a:x}}}" if a == b else f"\\x{{{a:x}}}-\\x{{{b:x}}}" for a, b in ranges)


def _compile_for_bytes(regex: str) -> Any:
    options = re2.Options()
    options.log_errors = False
    return re2.compile(regex.encode(), options)


_INVISIBLE_CODES = frozenset(ord(ch) for ch in INVISIBLE)
_EDITS = _compile_for_bytes(f"[{_char_class(_INVISIBLE_CODES)}]+|(?:%[0-9A-Fa-f]{{2}})+")
# Searched with RE2 on a text's UTF-8 bytes, which the engine has anyway: finding nothing
# is the fast path, and one pass of RE2 over bytes is the cheapest way to know.
_SPECIAL = _compile_for_bytes(f"[{_char_class(_INVISIBLE_CODES | set(FOLDS) | {ord('%')})}]")
# Folding works on UTF-8 bytes too: str.translate() would look every character up.
_LATIN: Mapping[bytes, bytes] = {
    chr(code).encode(): latin.encode() for code, latin in FOLDS.items()
}
_FOLDABLE = _compile_for_bytes(f"[{_char_class(FOLDS)}]")


@dataclass(frozen=True)
class View:
    """A text as the scan sees it, and where each of the view's characters came from.

    The view is cut into runs, each starting at a view offset: a run copied character for
    character (folding keeps lengths) from an original offset on, or a single character
    decoded from `width` original characters (%3A). Original characters that are in no
    run (invisible ones) were dropped.
    """

    data: bytes  # the view, encoded in UTF-8 (lone surrogates passed through)
    length: int  # in characters
    starts: tuple[int, ...]  # view offset where each run begins, ascending
    origins: tuple[int, ...]  # original offset of each run's first character
    widths: tuple[int, ...]  # 0: copied run; n: one character decoded from n characters

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", _ENCODING_ERRORS)

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """The original characters behind view[start:end] (end > start), dropped ones within."""
        return self._original_start(start), self._original_end(end - 1)

    def _original_start(self, index: int) -> int:
        run = bisect.bisect_right(self.starts, index) - 1
        if self.widths[run]:
            return self.origins[run]
        return self.origins[run] + index - self.starts[run]

    def _original_end(self, index: int) -> int:
        run = bisect.bisect_right(self.starts, index) - 1
        if self.widths[run]:
            return self.origins[run] + self.widths[run]
        return self.origins[run] + index - self.starts[run] + 1


def needs_view(text: str, data: bytes) -> bool:
    """Whether text may read differently once normalised; data is its UTF-8 encoding.

    False is the fast path: an ASCII text without '%' costs a length comparison and one
    search for a byte; any other text, one RE2 pass over its bytes.
    """
    if len(data) == len(text):  # ASCII: only percent-encoding can hide anything
        return b"%" in data
    return _SPECIAL.search(data) is not None


def normalised_view(text: str, data: bytes | None = None) -> View | None:
    """The text as a model reads it, or None when that is the text itself.

    Invisible characters are dropped; percent-encoded bytes that form valid UTF-8 are
    decoded (one level: %253A reads as %3A); full-width forms, tag characters and the
    look-alike letters are folded to ASCII. Decoded characters are folded or dropped too.
    data: the text's UTF-8 encoding, if the caller has it.
    """
    if data is None:
        data = text.encode("utf-8", _ENCODING_ERRORS)
    view = View(data=data, length=len(text), starts=(0,), origins=(0,), widths=(0,))
    if _EDITS.search(data) is not None:
        builder = _ViewBuilder(text)
        ascii_text = len(data) == len(text)
        byte_position = char_position = 0
        for match in _EDITS.finditer(data):
            start, end = match.span()
            if not ascii_text:  # byte offsets to character offsets, gap by gap
                char_position += len(data[byte_position:start].decode("utf-8", _ENCODING_ERRORS))
                byte_position = start
                start, end = char_position, char_position + len(match.group().decode())
            if match.group()[0] == 0x25:  # '%'
                builder.decode(start, end)
            else:
                builder.drop(start, end)
        view = builder.finish()
    if _FOLDABLE.search(view.data) is not None:
        view = View(_fold(view.data), view.length, view.starts, view.origins, view.widths)
    return None if view.data == data else view


def _fold(data: bytes) -> bytes:
    # One search and one replace per distinct character: Russian text holds a few dozen.
    position = 0
    while (match := _FOLDABLE.search(data, position)) is not None:
        position = match.start()
        foldable = data[position : match.end()]
        data = data.replace(foldable, _LATIN[foldable])  # none is left before position
    return data


class _ViewBuilder:
    def __init__(self, text: str) -> None:
        self._text = text
        self._parts: list[str] = []
        self._starts: list[int] = []
        self._origins: list[int] = []
        self._widths: list[int] = []
        self._length = 0  # of the view so far
        self._copied = 0  # original characters consumed so far

    def _copy_to(self, end: int) -> None:
        if end > self._copied:
            self._add(self._text[self._copied : end], self._copied, 0)
            self._copied = end

    def _add(self, part: str, origin: int, width: int) -> None:
        self._starts.append(self._length)
        self._origins.append(origin)
        self._widths.append(width)
        self._parts.append(part)
        self._length += len(part)

    def drop(self, start: int, end: int) -> None:
        self._copy_to(start)
        self._copied = end

    def decode(self, start: int, end: int) -> None:
        # Escapes that are not valid UTF-8 stay as they are: they are copied later.
        raw = bytes.fromhex(self._text[start:end].replace("%", ""))
        index = 0
        while index < len(raw):
            char = _utf8_char(raw, index)
            if char is None:
                index += 1
                continue
            size = len(char.encode("utf-8"))
            origin = start + 3 * index
            self._copy_to(origin)
            if char not in INVISIBLE:
                self._add(char, origin, 3 * size)
            self._copied = origin + 3 * size
            index += size

    def finish(self) -> View:
        self._copy_to(len(self._text))
        if not self._starts:  # everything was dropped: an empty view
            self._add("", 0, 0)
        return View(
            data="".join(self._parts).encode("utf-8", _ENCODING_ERRORS),
            length=self._length,
            starts=tuple(self._starts),
            origins=tuple(self._origins),
            widths=tuple(self._widths),
        )


def _utf8_char(raw: bytes, index: int) -> str | None:
    """The character whose UTF-8 encoding starts at raw[index], if it is valid there."""
    lead = raw[index]
    if lead < 0x80:
        size = 1
    elif 0xC2 <= lead <= 0xDF:
        size = 2
    elif 0xE0 <= lead <= 0xEF:
        size = 3
    elif 0xF0 <= lead <= 0xF4:
        size = 4
    else:
        return None
    try:
        # Strict decoding refuses overlong forms, surrogates and short sequences.
        return raw[index : index + size].decode("utf-8")
    except UnicodeDecodeError:
        return None


# --- base64 text ---------------------------------------------------------------------------

# A run shorter than this is not decoded: 12 characters are 9 bytes, enough for "8.8.8.8".
MIN_BASE64_LENGTH = 12
# Longer runs are files rather than text (an attacker would need a model to decode tens of
# kilobytes of base64 in its head); leaving them undecoded bounds the cost of a scan.
MAX_BASE64_LENGTH = 64 * 1024


# The first character of base64 that encodes text: the top six bits of a tab, line break,
# printable ASCII character or UTF-8 lead byte.
_TEXT_FIRST_CLASS = "[CDI-Za-fw-z0-9]"


def _base64_run(alphabet: str) -> str:
    """RE2: maximal runs of an alphabet that may encode text, the run as group 1.

    Only runs that decoding could accept: a first character in _TEXT_FIRST_CLASS, at least
    MIN_BASE64_LENGTH characters, and a length (padding aside) that is not one more than a
    multiple of four. The characters either side are matched too, since RE2 has no
    lookaround. Most runs of a text (IDs, hashes, words) fail inside RE2, at no cost per run.
    """
    char = f"[{alphabet}]"
    groups = (MIN_BASE64_LENGTH - 4) // 4
    return (
        f"(?:^|[^{alphabet}])"
        f"({_TEXT_FIRST_CLASS}{char}{{3}}(?:{char}{{4}}){{{groups},}}(?:{char}{{2,3}})?={{0,2}})"
        f"(?:[^={alphabet}]|$)"
    )


# Each alphabet is searched on its own: "key-aGVsbG8gd29ybGQ=" holds a standard run after
# the '-', which a search for both alphabets at once would glue to "key" and misalign.
BASE64_RUN_REGEXES = (_base64_run("A-Za-z0-9+/"), _base64_run("A-Za-z0-9_-"))
_BASE64_RUNS = tuple(_compile_for_bytes(regex) for regex in BASE64_RUN_REGEXES)
_URLSAFE_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
# Decoded text must be text: no control character but tab and line breaks.
_CONTROL_BYTES = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_C1_CONTROL = re.compile(r"[\x80-\x9f]")


def base64_runs(data: bytes) -> Iterator[tuple[int, int, str]]:
    """(start, end, decoded text) of each base64 run in data that decodes to text."""
    urlsafe = _BASE64_RUNS[1]
    for regex in _BASE64_RUNS:
        position = 0
        while (match := regex.search(data, position)) is not None:
            start, end = match.span(1)
            # The character after the run may start the next one: search again from it.
            position = end
            run = data[start:end]
            if regex is urlsafe and b"-" not in run and b"_" not in run:
                continue  # a standard run too: decoded once already
            decoded = decode_base64_text(run)
            if decoded is not None:
                yield start, end, decoded


def decode_base64_text(run: bytes) -> str | None:
    """The text a run of base64 (either alphabet, padded or not) encodes, if it is text.

    None unless the run is valid base64 of at most MAX_BASE64_LENGTH characters whose bytes
    are valid UTF-8 without control characters (tab and line breaks allowed).
    """
    body = run.rstrip(b"=")
    if len(body) % 4 == 1 or len(run) > MAX_BASE64_LENGTH:
        return None
    if len(body) < len(run) and len(run) % 4:
        return None  # padding that does not complete a group
    if b"-" in body or b"_" in body:
        body = body.translate(_URLSAFE_TO_STANDARD)
    try:
        raw = binascii.a2b_base64(body + b"=" * (-len(body) % 4), strict_mode=True)
    except binascii.Error:
        return None
    # Most candidates are IDs and hashes whose bytes are noise: a control byte rules them
    # out before the costlier UTF-8 decoding.
    if _CONTROL_BYTES.search(raw):
        return None
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if _C1_CONTROL.search(decoded):
        return None
    return decoded
