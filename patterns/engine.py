"""The masking engine: finds sensitive values in text and swaps them for placeholders.

Pure by design: the standard library and the RE2 bindings only, no Django and no I/O, so
it can be unit-tested, benchmarked and fuzzed alone. Admin-written patterns run on RE2, a
linear-time engine, so no input can make a scan backtrack catastrophically.
"""

from __future__ import annotations

import bisect
import ipaddress
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import re2

ASCII_WORD_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
PREFIX_RE = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*\Z")
MAX_PREFIX_LENGTH = 32
# Context patterns are scanned only around their keywords; a value longer than this is
# not looked for there (account IDs, secret keys and bucket names are all shorter).
MAX_CONTEXT_VALUE_LENGTH = 256
SENSITIVE_TERM_PATTERN = "sensitive_term"
# Text that already looks like one of our placeholders (a pasted masked answer, a log line)
# is masked like a value: the provider then never sees a token that could be confused with
# a placeholder of this request, and the literal text comes back unchanged.
PLACEHOLDER_LITERAL_PATTERN = "placeholder_literal"
PLACEHOLDER_LITERAL_PREFIX = "LITERAL"

# A placeholder-shaped token: PREFIX_NNN. The pattern has no lookbehind: left boundaries
# are checked in code, because in partial JSON an escape such as "\n" may precede a token.
_TOKEN_RE = re.compile(r"[A-Z][A-Z0-9_]*_[0-9]{3,}")
# Texts up to this size first meet every pattern at once, in one pass of an RE2 Set; only
# the patterns that match somewhere then run on their own (most texts hold a few kinds of
# value, so most of the library is skipped). The Set's DFA needs memory that grows with the
# text: within this size and budget it stays far from the point where it would thrash, so
# larger texts are scanned pattern by pattern, as they would be without the Set.
PREFILTER_MAX_BYTES = 64 * 1024
_PREFILTER_MAX_MEM = 32 << 20
_JSON_SIMPLE_ESCAPES = frozenset("bfnrt")
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
# Zero-width matches hide in odd corners; these probes catch the usual ones at save time.
_EMPTY_MATCH_PROBES = ("", " ", "x", "0", "a b", "-_.:/@", "\n")


class PatternError(ValueError):
    """A pattern (or term, or example) that the engine refuses, with a message for admins."""


def _re2_options(*, case_sensitive: bool = True) -> Any:
    options = re2.Options()
    options.log_errors = False  # errors are reported to the admin, not to stderr
    options.case_sensitive = case_sensitive
    return options


def compile_regex(regex: str) -> Any:
    """Compile an admin-written regex on RE2, refusing what cannot run in linear time.

    Raises PatternError for an empty pattern, a syntax RE2 does not support (lookarounds,
    backreferences: both need backtracking), or a pattern that can match the empty string.
    """
    if not regex.strip():
        raise PatternError("The regular expression is empty.")
    try:
        compiled = re2.compile(regex, _re2_options())
    except re2.error as exc:
        raise PatternError(_explain_re2_error(exc)) from None
    for probe in _EMPTY_MATCH_PROBES:
        for match in compiled.finditer(probe):
            if match.end() == match.start():
                raise PatternError(
                    "The regular expression can match the empty string; "
                    "it must always match at least one character."
                )
    return compiled


def _explain_re2_error(exc: Exception) -> str:
    raw = exc.args[0] if exc.args else ""
    detail = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    if "invalid perl operator: (?<" in detail or "invalid perl operator: (?=" in detail:
        hint = " Lookarounds are not supported: they need a backtracking engine."
    elif "invalid perl operator: (?!" in detail:
        hint = " Negative lookaheads are not supported: they need a backtracking engine."
    elif "invalid escape sequence: \\" in detail and detail.rstrip()[-1:].isdigit():
        hint = " Backreferences are not supported: they need a backtracking engine."
    else:
        hint = ""
    return f"The linear-time regex engine (RE2) cannot compile this pattern: {detail}.{hint}"


def check_prefix(prefix: str) -> None:
    """Raise PatternError unless the placeholder prefix looks like AWS_EC2."""
    if len(prefix) > MAX_PREFIX_LENGTH or not PREFIX_RE.match(prefix):
        raise PatternError(
            "The placeholder prefix must be upper-case letters and digits, optionally joined "
            f"by single underscores, start with a letter, at most {MAX_PREFIX_LENGTH} "
            "characters (for example AWS_EC2)."
        )


def format_placeholder(prefix: str, number: int) -> str:
    """The placeholder for the number-th value of a prefix: AWS_EC2_001, ..., AWS_EC2_1000."""
    return f"{prefix}_{number:03d}"


# --- validators --------------------------------------------------------------------------


def _is_public_ip(value: str) -> bool:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return False
    # is_global already excludes private, loopback, link-local, CGNAT, benchmarking and
    # documentation ranges; multicast groups identify nothing of a customer's.
    return address.is_global and not address.is_multicast


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _passes_luhn(value: str) -> bool:
    digits = [int(ch) for ch in value if ch.isdigit()]
    if not 12 <= len(digits) <= 19:
        return False
    total = 0
    for position, digit in enumerate(reversed(digits)):
        if position % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def shannon_entropy(value: str) -> float:
    """Bits per character of the value's own character distribution."""
    if not value:
        return 0.0
    length = len(value)
    return -sum(n / length * math.log2(n / length) for n in Counter(value).values())


def _is_random_looking(value: str) -> bool:
    return len(value) >= 16 and shannon_entropy(value) >= 3.0


def _is_aws_secret(value: str) -> bool:
    # Secret access keys are base64 noise with both cases; git SHAs and hex digests
    # (one case, 16 symbols) are not, and must pass unchanged.
    has_upper = any(ch.isupper() for ch in value)
    has_lower = any(ch.islower() for ch in value)
    return has_upper and has_lower and shannon_entropy(value) >= 3.5


VALIDATORS: Mapping[str, Callable[[str], bool]] = {
    "public_ip": _is_public_ip,
    "any_ip": _is_ip,
    "luhn": _passes_luhn,
    "entropy": _is_random_looking,
    "aws_secret": _is_aws_secret,
}


# --- value objects ------------------------------------------------------------------------


@dataclass(frozen=True)
class PatternSpec:
    """One masking rule as the engine needs it (a database row, reduced)."""

    name: str
    regex: str
    prefix: str
    priority: int = 100
    category: str = "custom"
    validator: str = ""
    context_keywords: tuple[str, ...] = ()
    context_regex: str = ""
    context_window: int = 48

    @property
    def needs_context(self) -> bool:
        return bool(self.context_keywords or self.context_regex)


@dataclass(frozen=True)
class TermSpec:
    """An exact string that is always masked (a bucket name, a host, a code name)."""

    term: str
    prefix: str = "TERM"
    case_sensitive: bool = False


_ANY_TERM = TermSpec(term="", prefix="TERM")


@dataclass(frozen=True)
class Finding:
    """A sensitive value found in a text: where, what, and which rule found it."""

    start: int
    end: int
    value: str
    pattern: str
    prefix: str
    priority: int


@dataclass(frozen=True)
class MaskResult:
    """A masked text and the findings that were replaced in it."""

    text: str
    findings: tuple[Finding, ...]


@dataclass(frozen=True)
class _CompiledPattern:
    spec: PatternSpec
    regex: Any
    context: Any | None
    validator: Callable[[str], bool] | None


@dataclass(frozen=True)
class _CompiledTerms:
    regex: Any
    specs: Mapping[str, TermSpec]  # keyed by the term, lower-cased when case-insensitive
    case_sensitive: bool


def _compile_for_bytes(regex: str, *, case_sensitive: bool = True) -> Any:
    # Scans run on the UTF-8 bytes of a text: the RE2 bindings would otherwise encode the
    # whole text again for every pattern. In UTF-8 mode RE2 still matches whole characters.
    return re2.compile(regex.encode(), _re2_options(case_sensitive=case_sensitive))


def compile_pattern(spec: PatternSpec) -> _CompiledPattern:
    """Compile one rule, raising PatternError with a message an admin can act on."""
    check_prefix(spec.prefix)
    compile_regex(spec.regex)
    regex = _compile_for_bytes(spec.regex)
    validator = None
    if spec.validator:
        try:
            validator = VALIDATORS[spec.validator]
        except KeyError:
            raise PatternError(f"Unknown validator {spec.validator!r}.") from None
    context = None
    if spec.needs_context:
        if spec.context_window < 1:
            raise PatternError("The context window must be at least one character.")
        parts = [f"(?i:{'|'.join(re2.escape(k) for k in spec.context_keywords if k)})"]
        if spec.context_regex:
            compile_regex(spec.context_regex)  # for its error message
            parts.append(f"(?:{spec.context_regex})")
        context = _compile_for_bytes("|".join(p for p in parts if p != "(?i:)"))
    return _CompiledPattern(spec=spec, regex=regex, context=context, validator=validator)


def _compile_terms(terms: Iterable[TermSpec], *, case_sensitive: bool) -> _CompiledTerms | None:
    specs: dict[str, TermSpec] = {}
    for term in terms:
        if term.case_sensitive != case_sensitive or not term.term:
            continue
        check_prefix(term.prefix)
        specs.setdefault(term.term if case_sensitive else term.term.lower(), term)
    if not specs:
        return None
    # Longest first, so that RE2's leftmost-first choice prefers "prod-db-main" to "prod-db".
    alternation = "|".join(re2.escape(t) for t in sorted(specs, key=len, reverse=True))
    regex = _compile_for_bytes(alternation, case_sensitive=case_sensitive)
    return _CompiledTerms(regex=regex, specs=specs, case_sensitive=case_sensitive)


# --- the snapshot ---------------------------------------------------------------------------


def _is_ascii_word(text: str, index: int) -> bool:
    return 0 <= index < len(text) and text[index] in ASCII_WORD_CHARS


_ASCII_WORD_BYTES = frozenset(ord(ch) for ch in ASCII_WORD_CHARS)
# Lone surrogates (JSON's "\ud800") must not crash a scan; they match nothing.
_ENCODING_ERRORS = "surrogatepass"


@dataclass(frozen=True)
class _Subject:
    """A text being scanned, as UTF-8 bytes; spans are byte offsets until the end."""

    data: bytes
    ascii: bool  # byte offsets are character offsets

    def value(self, start: int, end: int) -> str:
        return self.data[start:end].decode("utf-8", _ENCODING_ERRORS)

    def gap(self, start: int, end: int) -> int:
        """Characters between two byte offsets."""
        return end - start if self.ascii else len(self.value(start, end))

    def at_boundaries(self, start: int, end: int) -> bool:
        # A match must not be part of a longer ASCII identifier; a non-ASCII letter next
        # to it (a Korean particle, say) is a boundary: its UTF-8 bytes are all >= 0x80.
        data = self.data
        if data[start] in _ASCII_WORD_BYTES and start > 0 and data[start - 1] in _ASCII_WORD_BYTES:
            return False
        return not (
            data[end - 1] in _ASCII_WORD_BYTES
            and end < len(data)
            and data[end] in _ASCII_WORD_BYTES
        )


@dataclass(frozen=True)
class Snapshot:
    """An immutable, compiled set of rules; replaced by reference when admins change rules."""

    patterns: tuple[_CompiledPattern, ...]
    terms: tuple[_CompiledTerms, ...] = ()
    allowed: frozenset[str] = frozenset()
    version: str = ""
    prefixes: frozenset[str] = field(default=frozenset())
    placeholder_literals: Any | None = None
    prefilter: Any | None = None  # an RE2 Set of the patterns, and one that matches anything

    def find(self, text: str) -> tuple[Finding, ...]:
        """Every sensitive value in text, non-overlapping, in order of position.

        Overlaps are settled by the longest match, then the lower priority number, then the
        pattern name, so the result never depends on the order rules were defined in.
        """
        if not text:
            return ()
        data = text.encode("utf-8", _ENCODING_ERRORS)
        subject = _Subject(data=data, ascii=len(data) == len(text))
        candidates: list[Finding] = []
        for compiled in self._patterns_for(data):
            candidates.extend(self._find_pattern(compiled, subject))
        for terms in self.terms:
            candidates.extend(self._find_terms(terms, subject))
        candidates.extend(self._find_placeholder_literals(subject))
        resolved = _resolve_overlaps(candidates)
        return resolved if subject.ascii else _to_character_offsets(subject, resolved)

    def mask(
        self, text: str, allocate: Callable[[Sequence[Finding]], Mapping[str, str]]
    ) -> MaskResult:
        """Find values and replace them with the placeholders allocate() gives for them."""
        findings = self.find(text)
        if not findings:
            return MaskResult(text=text, findings=())
        return MaskResult(
            text=replace_findings(text, findings, allocate(findings)), findings=findings
        )

    def _patterns_for(self, data: bytes) -> Sequence[_CompiledPattern]:
        """The patterns that can match in data: all of them, unless the prefilter rules some out."""
        if self.prefilter is None or len(data) > PREFILTER_MAX_BYTES:
            return self.patterns
        hits = self.prefilter.Match(data)
        # The last member of the Set matches every text. Missing, it means RE2 gave up (its
        # DFA ran out of memory) and returned nothing: then every pattern runs.
        if not hits or len(self.patterns) not in hits:
            return self.patterns
        return [self.patterns[i] for i in sorted(hits) if i < len(self.patterns)]

    def _find_pattern(self, compiled: _CompiledPattern, subject: _Subject) -> Iterator[Finding]:
        spec = compiled.spec
        for start, end in self._spans(compiled, subject):
            if end == start or not subject.at_boundaries(start, end):
                continue
            value = subject.value(start, end)
            if value in self.allowed:
                continue
            if compiled.validator is not None and not compiled.validator(value):
                continue
            yield Finding(start, end, value, spec.name, spec.prefix, spec.priority)

    def _spans(self, compiled: _CompiledPattern, subject: _Subject) -> Iterator[tuple[int, int]]:
        data = subject.data
        if compiled.context is None:
            for match in compiled.regex.finditer(data):
                yield match.span()
            return
        keywords = [m.span() for m in compiled.context.finditer(data)]
        if not keywords:
            return
        window = compiled.spec.context_window
        # Up to four bytes a character: scan far enough for the window in characters.
        scale = 1 if subject.ascii else 4
        reach = scale * (window + MAX_CONTEXT_VALUE_LENGTH)
        length = len(data)
        for low, high in _merged_windows(keywords, reach, length):
            # Scan a slice, not the whole text once per window, which would be quadratic.
            endpos = min(length, high + scale * MAX_CONTEXT_VALUE_LENGTH)
            for match in compiled.regex.finditer(data[low:endpos]):
                start, end = match.start() + low, match.end() + low
                if start >= high:
                    break
                if end == endpos < length:
                    # Cut by the slice's end: match again, anchored, on the rest of the text.
                    end = start + compiled.regex.match(data[start:]).end()
                if _near_keyword(subject, keywords, start, end, window):
                    yield start, end

    def _find_terms(self, terms: _CompiledTerms, subject: _Subject) -> Iterator[Finding]:
        for match in terms.regex.finditer(subject.data):
            start, end = match.span()
            if not subject.at_boundaries(start, end):
                continue
            value = subject.value(start, end)
            if value in self.allowed:
                continue
            # RE2's case folding can differ from str.lower() on rare letters: still mask.
            spec = terms.specs.get(value if terms.case_sensitive else value.lower(), _ANY_TERM)
            yield Finding(start, end, value, SENSITIVE_TERM_PATTERN, spec.prefix, 0)

    def _find_placeholder_literals(self, subject: _Subject) -> Iterator[Finding]:
        if self.placeholder_literals is None:
            return
        for match in self.placeholder_literals.finditer(subject.data):
            start, end = match.span()
            if not subject.at_boundaries(start, end):
                continue
            value = subject.value(start, end)
            if value not in self.allowed:
                yield Finding(
                    start, end, value, PLACEHOLDER_LITERAL_PATTERN, PLACEHOLDER_LITERAL_PREFIX, -1
                )


def _to_character_offsets(subject: _Subject, findings: Sequence[Finding]) -> tuple[Finding, ...]:
    converted = []
    byte_position = char_position = 0
    for finding in findings:
        start = char_position + subject.gap(byte_position, finding.start)
        char_position, byte_position = start + len(finding.value), finding.end
        converted.append(replace(finding, start=start, end=char_position))
    return tuple(converted)


def _merged_windows(
    spans: Sequence[tuple[int, int]], reach: int, length: int
) -> Iterator[tuple[int, int]]:
    low, high = max(0, spans[0][0] - reach), min(length, spans[0][1] + reach)
    for start, end in spans[1:]:
        next_low, next_high = max(0, start - reach), min(length, end + reach)
        if next_low <= high:
            high = max(high, next_high)
        else:
            yield low, high
            low, high = next_low, next_high
    yield low, high


def _near_keyword(
    subject: _Subject, keywords: Sequence[tuple[int, int]], start: int, end: int, window: int
) -> bool:
    """Whether a keyword lies within `window` characters of the value (or overlaps it)."""
    reach = window if subject.ascii else 4 * window
    index = bisect.bisect_left(keywords, (start - reach - MAX_CONTEXT_VALUE_LENGTH * 4, 0))
    for kw_start, kw_end in keywords[index:]:
        if kw_start > end + reach:
            return False
        if kw_end <= start:
            gap = (kw_end, start)
        elif kw_start >= end:
            gap = (end, kw_start)
        else:
            return True  # the keyword overlaps the value ("my-logs-bucket")
        if gap[1] - gap[0] <= window or subject.gap(*gap) <= window:
            return True
    return False


def _resolve_overlaps(candidates: list[Finding]) -> tuple[Finding, ...]:
    if not candidates:
        return ()
    candidates.sort(key=lambda f: (f.start, -f.end))
    resolved: list[Finding] = []
    cluster: list[Finding] = [candidates[0]]
    cluster_end = candidates[0].end
    for finding in candidates[1:]:
        if finding.start < cluster_end:
            cluster.append(finding)
            cluster_end = max(cluster_end, finding.end)
            continue
        resolved.extend(_settle_cluster(cluster))
        cluster, cluster_end = [finding], finding.end
    resolved.extend(_settle_cluster(cluster))
    return tuple(resolved)


def _settle_cluster(cluster: list[Finding]) -> list[Finding]:
    if len(cluster) == 1:
        return cluster
    chosen: list[Finding] = []
    for finding in sorted(cluster, key=lambda f: (-len(f.value), f.priority, f.pattern, f.start)):
        if all(finding.end <= c.start or finding.start >= c.end for c in chosen):
            chosen.append(finding)
    chosen.sort(key=lambda f: f.start)
    return chosen


def _compile_prefilter(patterns: Sequence[_CompiledPattern]) -> Any | None:
    """An RE2 Set of the patterns' regexes, plus one member that matches every text."""
    options = _re2_options()
    options.max_mem = _PREFILTER_MAX_MEM
    prefilter = re2.Set.SearchSet(options)
    try:
        for compiled in patterns:
            prefilter.Add(compiled.spec.regex.encode())
        prefilter.Add(b"")
        prefilter.Compile()
    except re2.error:
        return None  # too large a Set: every text is scanned pattern by pattern
    return prefilter


def build_snapshot(
    patterns: Iterable[PatternSpec],
    terms: Iterable[TermSpec] = (),
    allowed: Iterable[str] = (),
    version: str = "",
) -> Snapshot:
    """Compile rules into an immutable Snapshot; raises PatternError on the first bad rule."""
    compiled = []
    for spec in sorted(patterns, key=lambda s: (s.priority, s.name)):
        try:
            compiled.append(compile_pattern(spec))
        except PatternError as exc:
            raise PatternError(f"Pattern {spec.name!r}: {exc}") from None
    term_list = list(terms)
    term_sets = tuple(
        t
        for t in (
            _compile_terms(term_list, case_sensitive=True),
            _compile_terms(term_list, case_sensitive=False),
        )
        if t is not None
    )
    prefixes = frozenset(c.spec.prefix for c in compiled) | frozenset(t.prefix for t in term_list)
    known = sorted(prefixes | {PLACEHOLDER_LITERAL_PREFIX}, key=len, reverse=True)
    literals = _compile_for_bytes(f"(?:{'|'.join(re2.escape(p) for p in known)})_[0-9]{{3,}}")
    return Snapshot(
        prefilter=_compile_prefilter(compiled),
        patterns=tuple(compiled),
        terms=term_sets,
        allowed=frozenset(a for a in allowed if a),
        version=version,
        prefixes=prefixes,
        placeholder_literals=literals,
    )


def check_examples(
    spec: PatternSpec, positives: Iterable[str], negatives: Iterable[str]
) -> list[str]:
    """Problems with a rule's examples: a positive it misses, a negative it masks.

    A positive example without whitespace must be matched whole; one with whitespace (a
    sentence giving context) must have something masked in it.
    """
    snapshot = build_snapshot([spec])
    problems = []
    for example in positives:
        findings = snapshot.find(example)
        if not findings:
            problems.append(f"Positive example not matched: {example!r}")
        elif not any(ch.isspace() for ch in example) and findings[0].value != example:
            problems.append(f"Positive example only partly matched: {example!r}")
    for example in negatives:
        if snapshot.find(example):
            problems.append(f"Negative example matched: {example!r}")
    return problems


# --- replacing and restoring ------------------------------------------------------------


def replace_findings(
    text: str, findings: Sequence[Finding], placeholders: Mapping[str, str]
) -> str:
    """Replace each finding by the placeholder of its value.

    Fails closed: a value with no placeholder raises KeyError rather than pass unmasked.
    """
    parts: list[str] = []
    position = 0
    for finding in findings:
        parts.append(text[position : finding.start])
        parts.append(placeholders[finding.value])
        position = finding.end
    parts.append(text[position:])
    return "".join(parts)


class LocalAllocator:
    """Placeholders numbered in memory: for previews, tests and benchmarks, not for serving."""

    def __init__(self) -> None:
        self.placeholders: dict[str, str] = {}
        self._counters: Counter[str] = Counter()

    def __call__(self, findings: Sequence[Finding]) -> Mapping[str, str]:
        for finding in findings:
            if finding.value not in self.placeholders:
                self._counters[finding.prefix] += 1
                self.placeholders[finding.value] = format_placeholder(
                    finding.prefix, self._counters[finding.prefix]
                )
        return self.placeholders

    @property
    def restore_map(self) -> dict[str, str]:
        return {placeholder: value for value, placeholder in self.placeholders.items()}


def _token_may_start(text: str, index: int, json_mode: bool) -> bool:
    if index == 0 or text[index - 1] not in ASCII_WORD_CHARS:
        return True
    if not json_mode:
        return False
    # In raw JSON, "\n" or "\u00e9" right before a token is a boundary too.
    if text[index - 1] in _JSON_SIMPLE_ESCAPES and _escaping_backslash(text, index - 2):
        return True
    if index >= 6 and text[index - 5] == "u" and _escaping_backslash(text, index - 6):
        hex_digits = text[index - 4 : index]
        if all(ch in _HEX_DIGITS for ch in hex_digits):
            return chr(int(hex_digits, 16)) not in ASCII_WORD_CHARS
    return False


def _escaping_backslash(text: str, index: int) -> bool:
    """Whether text[index] is a backslash that starts an escape (an odd run of them)."""
    run = 0
    while index - run >= 0 and text[index - run] == "\\":
        run += 1
    return run % 2 == 1


def _restore_tokens(
    text: str, start: int, restore: Mapping[str, str], json_mode: bool
) -> tuple[str, int]:
    """text[start:] with whole-token placeholders restored, and how many were restored."""
    parts: list[str] = []
    position = start
    restored = 0
    for match in _TOKEN_RE.finditer(text, start):
        original = restore.get(match.group())
        if original is None:
            continue
        begin, end = match.span()
        if _is_ascii_word(text, end) or not _token_may_start(text, begin, json_mode):
            continue
        parts.append(text[position:begin])
        parts.append(json.dumps(original, ensure_ascii=False)[1:-1] if json_mode else original)
        position = end
        restored += 1
    if not parts:
        return text[start:], 0
    parts.append(text[position:])
    return "".join(parts), restored


def unmask(text: str, restore: Mapping[str, str], *, json_mode: bool = False) -> str:
    """Replace the given placeholders, as whole tokens only, by their original values.

    Security assumption: restore holds only placeholders issued for values the caller sent;
    any other placeholder-shaped string is left as it is.
    """
    return unmask_counted(text, restore, json_mode=json_mode)[0]


def unmask_counted(
    text: str, restore: Mapping[str, str], *, json_mode: bool = False
) -> tuple[str, int]:
    """unmask(), and how many placeholders it restored."""
    if not restore or not text:
        return text, 0
    return _restore_tokens(text, 0, restore, json_mode)


class StreamUnmasker:
    """Restores placeholders in a text (or raw partial JSON) that arrives in pieces.

    Output does not depend on how the input is chunked. Only a tail that is still the
    beginning of an issued placeholder is held back, so nothing waits longer than the
    longest placeholder; flush() releases it at the end of the stream.
    """

    _CONTEXT = 16  # emitted characters kept to judge a boundary, "\u00e9" included

    def __init__(self, restore: Mapping[str, str], *, json_mode: bool = False) -> None:
        self._restore = dict(restore)
        self._sorted = sorted(self._restore)
        self._max_length = max(map(len, self._restore), default=0)
        self._json_mode = json_mode
        self._pending = ""
        self._emitted_tail = ""
        self.restored = 0
        self.max_held = 0

    def feed(self, chunk: str) -> str:
        if not self._restore:
            return chunk
        text = self._emitted_tail + self._pending + chunk
        offset = len(self._emitted_tail)
        hold = self._hold_from(text, offset)
        self._pending = text[hold:]
        self.max_held = max(self.max_held, len(self._pending))
        return self._emit(text[:hold], offset)

    def flush(self) -> str:
        if not self._pending:
            return ""
        text = self._emitted_tail + self._pending
        self._pending = ""
        return self._emit(text, len(self._emitted_tail))

    def _emit(self, text: str, offset: int) -> str:
        restored_text, count = _restore_tokens(text, offset, self._restore, self._json_mode)
        self.restored += count
        self._emitted_tail = text[-self._CONTEXT :]
        return restored_text

    def _hold_from(self, text: str, offset: int) -> int:
        # The earliest position, within one placeholder's length of the end, where a token
        # may begin and the rest is still the beginning of an issued placeholder.
        for candidate in range(max(offset, len(text) - self._max_length), len(text)):
            if (
                "A" <= text[candidate] <= "Z"
                and _token_may_start(text, candidate, self._json_mode)
                and self._could_become(text[candidate:])
            ):
                return candidate
        return len(text)

    def _could_become(self, tail: str) -> bool:
        index = bisect.bisect_left(self._sorted, tail)
        return index < len(self._sorted) and self._sorted[index].startswith(tail)
