"""The masking engine: finds sensitive values in text and swaps them for placeholders.

Pure by design: the standard library and the RE2 bindings only, no Django and no I/O, so
it can be unit-tested, benchmarked and fuzzed alone. Admin-written patterns run on RE2, a
linear-time engine, so no input can make a scan backtrack catastrophically.

Evasion (security assumption: whatever a model would read as a value is masked as one):
- a text is scanned as written and, when they differ, as its normalised view (invisible
  characters dropped; full-width forms, tag characters and look-alike letters folded to
  ASCII; percent-encoding decoded: see patterns/evasion.py). A value found in either is
  masked with the exact characters the client sent, so restoring gives them back.
- a run of base64 (12 characters or more, either alphabet, at most 64 KiB) whose bytes are
  printable UTF-8 text is decoded and scanned, two levels deep; if anything is found in it,
  the whole run is masked as one value (pattern "encoded_value", placeholder ENCODED_001),
  so restoring gives back the exact base64. A pattern that matches the same run whole
  (a secret key, a session token) names it better and wins the tie.
- find_run() scans texts the model reads back to back (adjacent text blocks) as one, so a
  value split across them is masked too: see SEAM_REACH.
Not undone: other encodings (hex, ROT13, HTML entities, escapes, base64 split over lines or
nested more than two levels), letters outside the look-alike table, values spelled out in
words, and values split across texts the caller does not pass to find_run together.
"""

from __future__ import annotations

import bisect
import itertools
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import re2

from patterns.evasion import BASE64_RUN_REGEXES, base64_runs, needs_view, normalised_view
from patterns.validators import SURROUNDINGS, VALIDATORS, Validator

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
# Base64 text with a value inside is masked whole under this name and prefix. The priority
# is the weakest: a pattern that matches the same run (a secret key) names it better.
ENCODED_PATTERN = "encoded_value"
ENCODED_PREFIX = "ENCODED"
ENCODED_PRIORITY = 1000
# Base64 inside decoded base64 is decoded once more; deeper nesting is not followed.
MAX_ENCODED_DEPTH = 2
# find_run: a seam scan covers twice this many characters on each side of a boundary between
# two pieces, and decides the values that start within this many characters of it. A value
# shorter than this, with its context, is found exactly as in the joined text.
SEAM_REACH = 256

# A placeholder-shaped token: PREFIX_NNN. The pattern has no lookbehind: left boundaries
# are checked in code, because in partial JSON an escape such as "\n" may precede a token.
_TOKEN_RE = PLACEHOLDER_TOKEN = re.compile(r"[A-Z][A-Z0-9_]*_[0-9]{3,}")
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
    """A sensitive value found in a text: where, what, and which rule found it.

    value is the exact original text of the value, start and end its original offsets.
    From find_run(), a value that crosses into the next piece has a finding in each piece
    it covers, all with the whole value: the first is replaced by the placeholder, the
    following ones (continuation=True) by nothing.
    """

    start: int
    end: int
    value: str
    pattern: str
    prefix: str
    priority: int
    continuation: bool = False
    # A composite value (an ARN, an S3 URI): the parts masked each with a placeholder of its
    # own, as (offset in value, length, prefix); the rest of it stays as written.
    parts: tuple[tuple[int, int, str], ...] = ()


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
    validator: Validator | None
    # Named groups: (group number, placeholder prefix) of a composite value's parts.
    groups: tuple[tuple[int, str], ...] = ()


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
        if spec.context_window < 0:
            raise PatternError("The context window cannot be negative.")
        parts = [f"(?i:{'|'.join(re2.escape(k) for k in spec.context_keywords if k)})"]
        if spec.context_regex:
            compile_regex(spec.context_regex)  # for its error message
            parts.append(f"(?:{spec.context_regex})")
        context = _compile_for_bytes("|".join(p for p in parts if p != "(?i:)"))
    return _CompiledPattern(
        spec=spec, regex=regex, context=context, validator=validator, groups=_part_groups(regex)
    )


def part_prefix(group_name: str) -> str:
    """The placeholder prefix a named group stands for: its name, less a "__suffix" that lets
    two groups of one regex share a prefix (AWS_NAME, AWS_NAME__2)."""
    return group_name.split("__", 1)[0]


def _part_groups(regex: Any) -> tuple[tuple[int, str], ...]:
    groups = []
    for name, number in sorted(regex.groupindex.items(), key=lambda item: item[1]):
        prefix = part_prefix(name.decode() if isinstance(name, bytes) else name)
        try:
            check_prefix(prefix)
        except PatternError as exc:
            raise PatternError(f"Group {prefix!r} names no placeholder prefix: {exc}") from None
        groups.append((number, prefix))
    return tuple(groups)


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
_HEX_BYTES = frozenset(b"0123456789abcdefABCDEF")
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

    def bounded(self, start: int, end: int) -> tuple[int, int] | None:
        """The match as a value of its own, or None if it continues an ASCII identifier.

        A non-ASCII letter next to a match (a Korean particle, say) is a boundary: its
        UTF-8 bytes are all >= 0x80. Punctuation at the edge of a match, next to an ASCII
        identifier character (the "." of "_.ops@example.com"), is left out of the value:
        its placeholder would otherwise be glued to that character, and not restored.
        """
        data = self.data
        if start > 0 and data[start - 1] in _ASCII_WORD_BYTES and not _escape_before(data, start):
            if data[start] in _ASCII_WORD_BYTES:
                return None
            while start < end and data[start] not in _ASCII_WORD_BYTES:
                start += 1
        if end < len(data) and data[end] in _ASCII_WORD_BYTES:
            if data[end - 1] in _ASCII_WORD_BYTES:
                return None
            while end > start and data[end - 1] not in _ASCII_WORD_BYTES:
                end -= 1
        return (start, end) if end > start else None


def _escape_before(data: bytes, index: int) -> bool:
    """Whether data[:index] ends with a %XX escape of a byte that is not a word character.

    A boundary, as for unmask(): "%2Fi-0123..." holds an ID, whose placeholder is restored.
    """
    if index < 3 or data[index - 3] != 0x25:  # '%'
        return False
    digits = data[index - 2 : index]
    return all(d in _HEX_BYTES for d in digits) and int(digits, 16) not in _ASCII_WORD_BYTES


class TooManyFindings(Exception):
    """A batch of scans found more matches than its budget allows."""


class FindingBudget:
    """How many more matches a batch of scans (a request's texts) may produce.

    A text dense with values costs time in proportion to its matches; a budget stops such a
    scan early instead of finishing work whose request will be refused anyway.
    """

    def __init__(self, limit: int) -> None:
        self.remaining = limit

    def taker(self, into: list[Finding]) -> Callable[[Iterable[Finding]], None]:
        """An extend() for `into` that spends the budget, raising TooManyFindings past it."""

        def take(found: Iterable[Finding]) -> None:
            before = len(into)
            into.extend(itertools.islice(found, self.remaining + 1))
            self.remaining -= len(into) - before
            if self.remaining < 0:
                raise TooManyFindings()

        return take

    def spend(self, count: int) -> None:
        self.remaining -= count
        if self.remaining < 0:
            raise TooManyFindings()


@dataclass(frozen=True)
class RulesSource:
    """The rules a snapshot was compiled from: plain data, to build the same snapshot in
    another process (compiled RE2 objects cannot be sent there)."""

    version: str
    patterns: tuple[PatternSpec, ...]
    terms: tuple[TermSpec, ...] = ()
    allowed: tuple[str, ...] = ()

    def build(self) -> Snapshot:
        return build_snapshot(self.patterns, self.terms, self.allowed, version=self.version)


# Runs of texts a model reads back to back (a run of one: one text), and how a batch of them
# is scanned: per run, per piece, what Snapshot.find_run finds (Snapshot.find for one piece).
# patterns.scanner sends large batches to a process of its own.
Runs = Sequence[tuple[str, ...]]
RunScan = Callable[[Runs, "FindingBudget | None"], list[tuple[tuple["Finding", ...], ...]]]


@dataclass(frozen=True)
class Snapshot:
    """An immutable, compiled set of rules; replaced by reference when admins change rules."""

    patterns: tuple[_CompiledPattern, ...]
    terms: tuple[_CompiledTerms, ...] = ()
    allowed: frozenset[str] = frozenset()
    version: str = ""
    prefixes: frozenset[str] = field(default=frozenset())
    placeholder_literals: Any | None = None
    prefilter: Any | None = None  # an RE2 Set: see _compile_prefilter()
    source: RulesSource | None = field(default=None, compare=False, repr=False)
    # Rules on trial: they mask nothing; what they find is only counted (trial_counts).
    trial: Snapshot | None = field(default=None, compare=False, repr=False)

    def trial_counts(self, texts: Iterable[str]) -> dict[str, int]:
        """How many matches each rule on trial finds in the texts (none without such rules)."""
        if self.trial is None:
            return {}
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(f.pattern for f in self.trial.find(text) if not f.continuation)
        return dict(counts)

    def find(self, text: str, budget: FindingBudget | None = None) -> tuple[Finding, ...]:
        """Every sensitive value in text, non-overlapping, in order of position.

        Overlaps are settled by the longest match, then the lower priority number, then the
        pattern name, so the result never depends on the order rules were defined in. The
        text is scanned as written and as its normalised view: normalising can reveal a
        value, never hide one. Offsets and values are those of the text as given.
        budget: matches this scan may still produce (TooManyFindings past it).
        """
        return self._find(text, 0, budget)

    def _find(
        self, text: str, depth: int, budget: FindingBudget | None, *, expand: bool = True
    ) -> tuple[Finding, ...]:
        resolved = self._find_whole(text, depth, budget)
        return _expanded(text, resolved) if expand else resolved

    def _find_whole(
        self, text: str, depth: int, budget: FindingBudget | None
    ) -> tuple[Finding, ...]:
        """find(), composite values kept whole (with their parts)."""
        if not text:
            return ()
        data = text.encode("utf-8", _ENCODING_ERRORS)
        subject = _Subject(data=data, ascii=len(data) == len(text))
        candidates = self._candidates(subject, depth, budget)
        view = normalised_view(text, data) if needs_view(text, data) else None
        if view is None:
            resolved = _resolve_overlaps(candidates)
            return resolved if subject.ascii else _to_character_offsets(subject, resolved)
        found = _in_characters(subject, candidates)
        seen = {(f.start, f.end, f.pattern) for f in found}
        view_subject = _Subject(data=view.data, ascii=len(view.data) == view.length)
        view_candidates = self._candidates(view_subject, depth, budget)
        for finding in _in_characters(view_subject, view_candidates):
            start, end = view.original_span(finding.start, finding.end)
            if (start, end, finding.pattern) not in seen:  # most are found in both
                found.append(_moved(finding, start, end, text[start:end]))
        return _resolve_overlaps(found)

    def _candidates(
        self, subject: _Subject, depth: int, budget: FindingBudget | None
    ) -> list[Finding]:
        """Every match of every rule in subject, overlapping, in byte offsets."""
        candidates: list[Finding] = []
        hits = self._prefilter_hits(subject.data)
        count = len(self.patterns)
        patterns = self.patterns if hits is None else [self.patterns[i] for i in hits if i < count]
        take = candidates.extend if budget is None else budget.taker(candidates)
        for compiled in patterns:
            take(self._find_pattern(compiled, subject))
        for terms in self.terms:
            take(self._find_terms(terms, subject))
        take(self._find_placeholder_literals(subject))
        # The members after the one that matches every text search for base64 runs.
        if depth < MAX_ENCODED_DEPTH and (hits is None or hits[-1] > count):
            take(self._find_encoded(subject, depth, budget))
        return candidates

    def find_run(
        self, pieces: Sequence[str], budget: FindingBudget | None = None
    ) -> tuple[tuple[Finding, ...], ...]:
        """The findings of texts a model reads back to back, per piece: what find() finds in
        each piece alone, and what the pieces hold together.

        The caller decides which pieces form a run (adjacent text blocks). Offsets are within
        each piece. Values that cross a boundary, or take their context from another piece,
        are found in a seam around each boundary (SEAM_REACH on each side, across as many
        pieces as it spans), when shorter than SEAM_REACH with their context. A crossing value
        is a finding in the piece where it starts (its whole value, for one placeholder) and a
        continuation finding in each following piece it covers, which replace_findings()
        removes. Security assumption: joining never hides a value a piece holds alone (pieces
        may be read apart: "0" and "i-..." as two turns), it only adds what needs both.
        Linear in the total length, however many pieces.
        """
        # Composite values whole until the run is settled: one that crosses a boundary is
        # masked whole (its parts would be cut), the others in parts.
        alone = [self._find(piece, 0, budget, expand=False) for piece in pieces]
        starts = list(itertools.accumulate((len(p) for p in pieces), initial=0))
        total = starts[-1]
        boundaries = sorted({b for b in starts[1:-1] if 0 < b < total})
        if not boundaries:
            return tuple(
                _expanded(piece, found) for piece, found in zip(pieces, alone, strict=True)
            )
        joined = "".join(pieces)
        found = [
            _moved(f, f.start + offset, f.end + offset)
            for findings, offset in zip(alone, starts, strict=False)
            for f in findings
        ]
        for low, high in _merged_windows([(b, b) for b in boundaries], 2 * SEAM_REACH, total):
            # A seam's own cuts may clip a value near its edges: only values starting well
            # inside it count (they cross a boundary, or take their context across one).
            trusted_low = low + SEAM_REACH if low > 0 else 0
            trusted_high = high - SEAM_REACH if high < total else total
            found.extend(
                _moved(f, f.start + low, f.end + low)
                for f in self._find(joined[low:high], 0, budget, expand=False)
                if trusted_low <= f.start + low < trusted_high
            )
        settled = _expanded(joined, _resolve_overlaps(found), boundaries)
        return _split_by_piece(settled, starts)

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

    def _prefilter_hits(self, data: bytes) -> list[int] | None:
        """The members of the prefilter that match in data, sorted; None: run everything.

        Members: each pattern, then one that matches every text, then the base64 searches.
        """
        if self.prefilter is None or len(data) > PREFILTER_MAX_BYTES:
            return None
        hits = self.prefilter.Match(data)
        # The member after the patterns matches every text. Missing, it means RE2 gave up
        # (its DFA ran out of memory) and returned nothing: then everything runs.
        if not hits or len(self.patterns) not in hits:
            return None
        return sorted(hits)

    def _find_pattern(self, compiled: _CompiledPattern, subject: _Subject) -> Iterator[Finding]:
        spec = compiled.spec
        for span in self._spans(compiled, subject):
            bounded = subject.bounded(*span) if span[1] > span[0] else None
            if bounded is None:
                continue
            # A composite value keeps its own edges (the "@" that ends a URL's password): its
            # parts, not its edges, are where placeholders go, and each part is checked for a
            # word it would be glued to (_expanded).
            start, end = span if compiled.groups else bounded
            value = subject.value(start, end)
            if value in self.allowed:
                continue
            if compiled.validator is not None and not compiled.validator.accepts(
                value,
                subject.data[max(0, start - SURROUNDINGS) : start],
                subject.data[end : end + SURROUNDINGS],
            ):
                continue
            parts = _parts(compiled, subject.data, start, end) if compiled.groups else None
            if parts == ():
                continue  # a composite value that names nothing ("arn:aws:s3:::*")
            yield Finding(
                start, end, value, spec.name, spec.prefix, spec.priority, parts=parts or ()
            )

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
        if window == 0:
            yield from _keyed_values(compiled.regex, data, keywords)
            return
        # Up to four bytes a character: scan far enough for the window in characters.
        scale = 1 if subject.ascii else 4
        reach = scale * (window + MAX_CONTEXT_VALUE_LENGTH)
        length = len(data)
        listed: set[tuple[int, int]] = set()
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
                if (start, end) in listed:
                    continue  # already taken as an item of a list (and its list walked)
                if _near_keyword(subject, keywords, start, end, window):
                    yield start, end
                    for item in _listed_after(compiled.regex, data, end):
                        listed.add(item)
                        yield item

    def _find_terms(self, terms: _CompiledTerms, subject: _Subject) -> Iterator[Finding]:
        for match in terms.regex.finditer(subject.data):
            bounded = subject.bounded(*match.span())
            if bounded is None:
                continue
            start, end = bounded
            value = subject.value(start, end)
            if value in self.allowed:
                continue
            # RE2's case folding can differ from str.lower() on rare letters: still mask.
            spec = terms.specs.get(value if terms.case_sensitive else value.lower(), _ANY_TERM)
            yield Finding(start, end, value, SENSITIVE_TERM_PATTERN, spec.prefix, 0)

    def _find_encoded(
        self, subject: _Subject, depth: int, budget: FindingBudget | None
    ) -> Iterator[Finding]:
        data = subject.data
        for start, end, decoded in base64_runs(data):
            if subject.value(start, end) in self.allowed:
                continue
            if not self._find(decoded, depth + 1, budget):
                continue
            # A run glued to an identifier by "_" ("token_aGVsbG8=") takes the identifier
            # along: its placeholder must not be glued to a word, or it is not restored.
            while start > 0 and data[start - 1] in _ASCII_WORD_BYTES:
                start -= 1
            while end < len(data) and data[end] in _ASCII_WORD_BYTES:
                end += 1
            value = subject.value(start, end)
            if value not in self.allowed:
                yield Finding(start, end, value, ENCODED_PATTERN, ENCODED_PREFIX, ENCODED_PRIORITY)

    def _find_placeholder_literals(self, subject: _Subject) -> Iterator[Finding]:
        if self.placeholder_literals is None:
            return
        for match in self.placeholder_literals.finditer(subject.data):
            start, end = match.span()
            if subject.bounded(start, end) != (start, end):
                continue
            value = subject.value(start, end)
            if value not in self.allowed:
                yield Finding(
                    start, end, value, PLACEHOLDER_LITERAL_PATTERN, PLACEHOLDER_LITERAL_PREFIX, -1
                )


def _parts(
    compiled: _CompiledPattern, data: bytes, start: int, end: int
) -> tuple[tuple[int, int, str], ...] | None:
    """The named groups' spans in a match, as (character offset in the value, length, prefix):
    () when no group names anything, None when the match cannot be split (mask it whole)."""
    match = compiled.regex.match(data[start:end])
    if match is None or match.end() != end - start:
        return None
    parts = []
    for number, prefix in compiled.groups:
        low, high = match.span(number)
        # A part with no letter or digit ("arn:aws:s3:::*") names nothing.
        if 0 <= low < high and any(chr(b).isalnum() for b in data[start + low : start + high]):
            offset = len(data[start : start + low].decode("utf-8", _ENCODING_ERRORS))
            length = len(data[start + low : start + high].decode("utf-8", _ENCODING_ERRORS))
            parts.append((offset, length, prefix))
    return tuple(parts)


def _expanded(
    text: str, findings: Sequence[Finding], boundaries: Sequence[int] = ()
) -> tuple[Finding, ...]:
    """Findings with each composite value replaced by its parts (character offsets). A part
    whose placeholder would be glued to a word keeps the value whole: it would not be
    restored; so does a value that crosses one of boundaries (pieces of a run)."""
    if not any(f.parts for f in findings):
        return tuple(findings)
    expanded: list[Finding] = []
    for finding in findings:
        if any(finding.start < b < finding.end for b in boundaries):
            expanded.append(_whole(finding))
            continue
        parts = [
            Finding(
                finding.start + offset,
                finding.start + offset + length,
                finding.value[offset : offset + length],
                finding.pattern,
                prefix,
                finding.priority,
            )
            for offset, length, prefix in finding.parts
        ]
        if parts and all(stands_alone(text, p.start, p.end) for p in parts):
            expanded.extend(parts)
        else:
            expanded.append(_whole(finding))
    return tuple(expanded)


def _whole(finding: Finding) -> Finding:
    """The composite value as one value, under its rule's own prefix."""
    if not finding.parts:
        return finding
    return Finding(
        finding.start,
        finding.end,
        finding.value,
        finding.pattern,
        finding.prefix,
        finding.priority,
        finding.continuation,
    )


def _moved(
    finding: Finding,
    start: int,
    end: int,
    value: str | None = None,
    *,
    continuation: bool | None = None,
) -> Finding:
    # dataclasses.replace() costs several times more, and scans move many findings. A value
    # read through the normalised view ("arn%3Aaws%3A...") has no parts where it stands: it
    # is masked whole.
    return Finding(
        start,
        end,
        finding.value if value is None else value,
        finding.pattern,
        finding.prefix,
        finding.priority,
        finding.continuation if continuation is None else continuation,
        finding.parts if value is None or value == finding.value else (),
    )


def _to_character_offsets(subject: _Subject, findings: Sequence[Finding]) -> tuple[Finding, ...]:
    converted = []
    byte_position = char_position = 0
    for finding in findings:
        start = char_position + subject.gap(byte_position, finding.start)
        char_position, byte_position = start + len(finding.value), finding.end
        converted.append(_moved(finding, start, char_position))
    return tuple(converted)


def _in_characters(subject: _Subject, findings: Sequence[Finding]) -> list[Finding]:
    """Findings with byte offsets in subject, in any order and overlapping, in characters."""
    if subject.ascii:
        return list(findings)
    points = sorted({f.start for f in findings} | {f.end for f in findings})
    characters: dict[int, int] = {}
    byte_position = char_position = 0
    for point in points:
        char_position += subject.gap(byte_position, point)
        byte_position = point
        characters[point] = char_position
    return [_moved(f, characters[f.start], characters[f.end]) for f in findings]


def _split_by_piece(
    findings: Sequence[Finding], starts: Sequence[int]
) -> tuple[tuple[Finding, ...], ...]:
    """Findings in joined offsets, cut into each piece's part (starts: piece offsets + total)."""
    per_piece: list[list[Finding]] = [[] for _ in starts[:-1]]
    piece = 0
    for finding in findings:
        while starts[piece + 1] <= finding.start:
            piece += 1
        index, continuation = piece, False
        while True:
            low, high = starts[index], starts[index + 1]
            start, end = max(finding.start, low), min(finding.end, high)
            if end > start:
                per_piece[index].append(
                    _moved(finding, start - low, end - low, continuation=continuation)
                )
                continuation = True
            if high >= finding.end:
                break
            index += 1
    return tuple(tuple(findings) for findings in per_piece)


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


def _keyed_values(
    regex: Any, data: bytes, keywords: Sequence[tuple[int, int]]
) -> Iterator[tuple[int, int]]:
    """Context window 0: the value is the regex matched right where a keyword ends (a
    setting's value after its name and separator), never before it nor inside it.

    A keyword inside a value already taken is skipped, so each byte is matched once."""
    length = len(data)
    taken_until = 0
    for _, start in keywords:
        if start < taken_until or start >= length:
            continue
        endpos = min(length, start + MAX_CONTEXT_VALUE_LENGTH * 4)
        match = regex.match(data[start:endpos])
        if match is None or match.end() == 0:
            continue
        end = start + match.end()
        if end == endpos < length:
            end = start + regex.match(data[start:]).end()  # a long value: whole
        taken_until = end
        yield start, end


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


# A list after a context label ("S3: a-bucket, b-bucket and c-bucket", "버킷: a, b"): items
# are separated by a comma (ASCII, ideographic or full-width), ';', '|', '&', "and" or "or",
# and may carry a glued non-ASCII particle ("a-bucket와 b-bucket").
_LIST_SEPARATOR = re.compile(
    rb"[\x80-\xff]{2,9}[ \t]+"
    rb"|(?:[\x80-\xff]{2,9})?"
    rb"(?:[ \t]*(?:[,;|&]|\xe3\x80\x81|\xef\xbc\x8c)[ \t]*(?:(?:and|or)[ \t]+)?"
    rb"|[ \t]+(?:and|or)[ \t]+)"
)
# What may follow the last character of a list item: the end of the text or line, another
# separator, closing punctuation, or a non-ASCII letter (a particle). Not ":" or "=": an item
# followed by one is the next key ("bucket: a, region: us-east-1").
_ITEM_END = re.compile(rb"[ \t]*(?:\Z|[\r\n,;|&)\]}\"'\x80-\xff]|\.(?:\s|\Z))")
_KEY_AFTER = re.compile(rb"[ \t]*[:=]")


def _listed_after(regex: Any, data: bytes, end: int) -> Iterator[tuple[int, int]]:
    """The spans of the items listed after a value that ends at `end` (see _LIST_SEPARATOR).

    An item is the rule's own regex matched right after a separator. One that is not
    distinctive (letters only, or short: "then" in "bucket: logs, then ...") must also end a
    clause. Each step is anchored and moves forward, so a list costs its own length.
    """
    length = len(data)
    while True:
        separator = _LIST_SEPARATOR.match(data, end)
        if separator is None:
            return
        start = separator.end()
        item = regex.match(data, start, min(length, start + MAX_CONTEXT_VALUE_LENGTH))
        if item is None or item.end() <= start or _KEY_AFTER.match(data, item.end()):
            return
        end = item.end()
        if not (is_distinctive(data[start:end]) or _ITEM_END.match(data, end)):
            return
        yield start, end


def is_distinctive(value: str | bytes) -> bool:
    """Whether a value cannot be an ordinary word: at least five characters with a digit or
    punctuation in them, or twelve letters or more ("examplebucket"). "logs", "backups" or
    "database" are not, however they were found."""
    text = value if isinstance(value, str) else value.decode("utf-8", _ENCODING_ERRORS)
    if len(text) >= 12:
        return True
    return len(text) >= 5 and not text.isalpha()


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
    """An RE2 Set of the patterns' regexes, one member that matches every text, and the
    searches for base64 runs."""
    options = _re2_options()
    options.max_mem = _PREFILTER_MAX_MEM
    prefilter = re2.Set.SearchSet(options)
    try:
        for compiled in patterns:
            prefilter.Add(compiled.spec.regex.encode())
        prefilter.Add(b"")
        for regex in BASE64_RUN_REGEXES:
            prefilter.Add(regex.encode())
        prefilter.Compile()
    except re2.error:
        return None  # too large a Set: every text is scanned pattern by pattern
    return prefilter


def build_snapshot(
    patterns: Iterable[PatternSpec],
    terms: Iterable[TermSpec] = (),
    allowed: Iterable[str] = (),
    version: str = "",
    trial: Iterable[PatternSpec] = (),
) -> Snapshot:
    """Compile rules into an immutable Snapshot; raises PatternError on the first bad rule.

    trial: rules on trial, compiled apart: they mask nothing (Snapshot.trial_counts)."""
    trial_list = tuple(trial)
    trial_snapshot = build_snapshot(trial_list, allowed=allowed) if trial_list else None
    pattern_list, allowed_list = tuple(patterns), tuple(allowed)
    compiled = []
    for spec in sorted(pattern_list, key=lambda s: (s.priority, s.name)):
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
    prefixes = (
        frozenset(c.spec.prefix for c in compiled)
        | frozenset(prefix for c in compiled for _, prefix in c.groups)
        | frozenset(t.prefix for t in term_list)
    )
    known = sorted(prefixes | {PLACEHOLDER_LITERAL_PREFIX, ENCODED_PREFIX}, key=len, reverse=True)
    literals = _compile_for_bytes(f"(?:{'|'.join(re2.escape(p) for p in known)})_[0-9]{{3,}}")
    return Snapshot(
        prefilter=_compile_prefilter(compiled),
        patterns=tuple(compiled),
        terms=term_sets,
        allowed=frozenset(a for a in allowed_list if a),
        version=version,
        prefixes=prefixes,
        placeholder_literals=literals,
        source=RulesSource(version, pattern_list, tuple(term_list), allowed_list),
        trial=trial_snapshot,
    )


def check_examples(
    spec: PatternSpec, positives: Iterable[str], negatives: Iterable[str]
) -> list[str]:
    """Problems with a rule's examples: a positive it misses, a negative it masks.

    A positive example without whitespace must be matched whole; one with whitespace (a
    sentence giving context) must have something masked in it. For a value after a key
    (context window 0) every example holds its key, and a composite value is masked in
    parts: something masked is enough.
    """
    snapshot = build_snapshot([spec])
    # A value after its key, or a composite value masked in parts (named groups): matched
    # whole is not what it shows, so something masked is enough.
    keyed = spec.needs_context and spec.context_window == 0
    keyed = keyed or "(?P<" in spec.regex
    problems = []
    for example in positives:
        findings = snapshot.find(example)
        if not findings:
            problems.append(f"Positive example not matched: {example!r}")
        elif not keyed and not any(ch.isspace() for ch in example) and findings[0].value != example:
            problems.append(f"Positive example only partly matched: {example!r}")
    for example in negatives:
        if snapshot.find(example):
            problems.append(f"Negative example matched: {example!r}")
    return problems


# --- replacing and restoring ------------------------------------------------------------


def replace_findings(
    text: str, findings: Sequence[Finding], placeholders: Mapping[str, str]
) -> str:
    """Replace each finding by the placeholder of its value (a continuation by nothing).

    Fails closed: a value with no placeholder raises KeyError rather than pass unmasked.
    """
    parts: list[str] = []
    position = 0
    for finding in findings:
        parts.append(text[position : finding.start])
        parts.append("" if finding.continuation else placeholders[finding.value])
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


def stands_alone(text: str, start: int, end: int) -> bool:
    """Whether a placeholder put in place of text[start:end] would be restored where it
    stands: no ASCII identifier character right before it (a "%2F" escape is a boundary) or
    right after it. So never inside a longer identifier, and never glued to a word."""
    if not _token_may_start(text, start, json_mode=False):
        return False
    return end == len(text) or text[end] not in ASCII_WORD_CHARS


def _token_may_start(text: str, index: int, json_mode: bool) -> bool:
    if index == 0 or text[index - 1] not in ASCII_WORD_CHARS:
        return True
    # In URL-encoded text, "%2F" right before a token is a boundary too, as for the scan,
    # which masks a value after it (its placeholder then follows the "F").
    if index >= 3 and text[index - 3] == "%":
        hex_digits = text[index - 2 : index]
        if all(ch in _HEX_DIGITS for ch in hex_digits):
            return chr(int(hex_digits, 16)) not in ASCII_WORD_CHARS
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
        begin, end = match.span()
        original = restore.get(match.group())
        if original is None and "%" in text[max(0, begin - 2) : begin]:
            # "%2FAWS_EC2_001", "%C3AWS_EC2_001": the token found starts inside the escape.
            begin += 2 if text[begin - 1] == "%" else 1
            original = restore.get(text[begin:end])
        if original is None:
            continue
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
