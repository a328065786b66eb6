"""Rules as code: the masking rules and model routes as one YAML or JSON document.

Builds the document from the database, writes it, and reads one back with the line of every
entry and field, checked as the admin checks a form (each model's full_clean(), plus
uniqueness within the document). Applying a checked document is proxy.rules_sync's job.
Security: a route holds the NAME of its credential variable, never a key, so a document
holds no secret; sensitive terms are in it, as in the database, and error messages point at
a term by its line rather than quote it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import models

from patterns.models import AllowedValue, Pattern, SensitiveTerm
from proxy.models import ModelRoute

SCHEMA_VERSION = 1
FALLBACKS = "fallbacks"  # a route's fallbacks: the model patterns of other routes, in order
FORMATS = ("yaml", "json")


@dataclass(frozen=True)
class Kind:
    """One list of the document: its key, its model and the field naming each entry."""

    key: str
    model: type[models.Model]
    identity: str
    label: str
    # Sensitive terms are named by their line and prefix in messages, never quoted.
    quotable: bool = True
    routes: bool = False  # moves the routes version rather than the rules version

    @property
    def fields(self) -> tuple[models.Field[Any, Any], ...]:
        """Every field an admin edits: no id, no timestamps."""
        return tuple(
            f
            for f in self.model._meta.concrete_fields
            if f.editable and not f.primary_key and not getattr(f, "auto_now_add", False)
        )

    @property
    def keys(self) -> tuple[str, ...]:
        names = tuple(f.name for f in self.fields)
        return (*names, FALLBACKS) if self.routes else names


KINDS = (
    Kind("patterns", Pattern, "name", "pattern"),
    Kind("sensitive_terms", SensitiveTerm, "term", "term", quotable=False),
    Kind("allowed_values", AllowedValue, "value", "allowed value"),
    Kind("model_routes", ModelRoute, "model_pattern", "route", routes=True),
)
KIND_BY_KEY = {kind.key: kind for kind in KINDS}

Entry = dict[str, Any]


# --- export ----------------------------------------------------------------------------------


def entry_from_row(kind: Kind, row: models.Model) -> Entry:
    """A row as the document holds it (a route's fallback links prefetched, ideally)."""
    entry = {f.name: f.value_from_object(row) for f in kind.fields}
    if kind.routes:
        links = row.fallback_links.all()  # type: ignore[attr-defined]
        entry[FALLBACKS] = [link.fallback.model_pattern for link in links]
    return entry


def kind_rows(kind: Kind, queryset: models.QuerySet[Any] | None = None) -> list[models.Model]:
    """The rows of a kind in the document's order: by name, term or value; routes in the
    order they are tried (order, exact names before patterns, then the older first)."""
    rows = queryset if queryset is not None else kind.model._default_manager.all()
    if kind.routes:
        routes = list(rows.prefetch_related("fallback_links__fallback"))
        routes.sort(key=lambda r: (r.order, "*" in r.model_pattern, r.pk))
        return routes
    return list(rows.order_by(kind.identity))


def build_document(selection: Mapping[str, models.QuerySet[Any]] | None = None) -> dict[str, Any]:
    """The document of every kind, or only of the kinds (and rows) a selection names: such a
    document says so (selection: true), and importing it removes nothing."""
    document: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
    if selection is not None:
        document["selection"] = True
    for kind in KINDS:
        if selection is None or kind.key in selection:
            queryset = None if selection is None else selection[kind.key]
            document[kind.key] = [entry_from_row(kind, row) for row in kind_rows(kind, queryset)]
    return document


class _Dumper(yaml.SafeDumper):
    """Multi-line texts (examples, keyword lists) as literal blocks: they diff line by line."""


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _represent_str)
# Unicode line breaks JSON leaves raw, which a YAML reader would fold: escaped instead.
_JSON_BREAKS = {"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"}


def dump_document(document: Mapping[str, Any], *, fmt: str = "yaml") -> str:
    """The document as text, the same for the same rules (for Git diffs)."""
    if fmt == "json":
        text = json.dumps(document, indent=2, ensure_ascii=False)
        for char, escape in _JSON_BREAKS.items():
            text = text.replace(char, escape)
        return text + "\n"
    # No line width: a long regex stays on one line rather than folded where PyYAML likes.
    return yaml.dump(
        dict(document), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1 << 30
    )


# --- import: reading with lines --------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """Why a document cannot be imported, at a line of it (1-based)."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class DocumentInvalid(Exception):
    """The document has problems; nothing was changed."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: p.line)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class ParsedEntry:
    """An entry of the document with the lines it came from, checked and normalised."""

    kind: Kind
    line: int
    values: Entry  # every key of the kind, defaults filled in, as the model normalises them
    lines: Mapping[str, int] = field(default_factory=dict)

    @property
    def identity(self) -> Any:
        return self.values[self.kind.identity]

    def describe(self) -> str:
        """How a message names this entry: never a sensitive term itself."""
        if self.kind.quotable:
            return f"{self.kind.label} {self.identity!r}"
        return f"{self.kind.label} ({self.values.get('placeholder_prefix', '')})"


@dataclass(frozen=True)
class ParsedDocument:
    """A checked document: the kinds it lists (a kind it leaves out is not touched), and
    whether it is a selection (its entries are added or changed, none removed)."""

    entries: Mapping[str, tuple[ParsedEntry, ...]]
    selection: bool = False

    def of(self, kind: Kind) -> tuple[ParsedEntry, ...] | None:
        return self.entries.get(kind.key)


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _compose(text: str) -> tuple[yaml.SafeLoader, yaml.Node | None]:
    loader = yaml.SafeLoader(text)
    try:
        return loader, loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = int(mark.line) + 1 if mark is not None else 1
        raise DocumentInvalid([Problem(line, f"not YAML or JSON: {exc.problem}")]) from None
    except yaml.YAMLError as exc:
        raise DocumentInvalid([Problem(1, f"not YAML or JSON: {exc}")]) from None


def _scalar(loader: yaml.SafeLoader, node: yaml.Node, problems: list[Problem]) -> Any:
    """A scalar's value (or a list of them), through the safe constructor: no Python tags."""
    try:
        return loader.construct_object(node, deep=True)
    except yaml.MarkedYAMLError as exc:
        problems.append(Problem(_line(node), f"cannot be read: {exc.problem}"))
    return None


def _pairs(
    node: yaml.MappingNode, problems: list[Problem], where: str
) -> list[tuple[str, yaml.Node, int]]:
    """A mapping's (key, value node, line) in order; a repeated key is a problem."""
    seen: dict[str, int] = {}
    pairs = []
    for key_node, value_node in node.value:
        line = _line(key_node)
        if not isinstance(key_node, yaml.ScalarNode) or not isinstance(key_node.value, str):
            problems.append(Problem(line, f"{where}: keys must be names"))
            continue
        key = key_node.value
        if key in seen:
            problems.append(Problem(line, f"{where}: {key} is given twice (line {seen[key]})"))
            continue
        seen[key] = line
        pairs.append((key, value_node, line))
    return pairs


def parse_document(text: str) -> ParsedDocument:
    """The checked document, or DocumentInvalid listing every problem with its line."""
    loader, root = _compose(text)
    try:
        return _parse_root(loader, root)
    finally:
        loader.dispose()


def _parse_root(loader: yaml.SafeLoader, root: yaml.Node | None) -> ParsedDocument:
    problems: list[Problem] = []
    if not isinstance(root, yaml.MappingNode):
        line = _line(root) if root is not None else 1
        message = "the document must be a mapping (schema_version: 1, patterns: [...], ...)"
        raise DocumentInvalid([Problem(line, message)])
    version_line = None
    selection = False
    lists: dict[str, tuple[yaml.Node, int]] = {}
    for key, value, line in _pairs(root, problems, "document"):
        if key == "schema_version":
            version_line = line
            version = _scalar(loader, value, problems)
            if version != SCHEMA_VERSION or isinstance(version, bool):
                message = f"schema_version {version!r} is not {SCHEMA_VERSION}, the one read here"
                problems.append(Problem(line, message))
        elif key == "selection":
            selection = _scalar(loader, value, problems)
            if not isinstance(selection, bool):
                problems.append(Problem(line, f"selection {selection!r} is not true or false"))
        elif key in KIND_BY_KEY:
            lists[key] = (value, line)
        else:
            known = ", ".join(["schema_version", "selection", *KIND_BY_KEY])
            problems.append(Problem(line, f"unknown key {key!r} (known: {known})"))
    if version_line is None:
        message = f"schema_version is missing (schema_version: {SCHEMA_VERSION})"
        problems.append(Problem(_line(root), message))
    entries: dict[str, tuple[ParsedEntry, ...]] = {}
    for kind in KINDS:
        if kind.key in lists:
            node, line = lists[kind.key]
            entries[kind.key] = _parse_list(loader, kind, node, line, problems)
    if routes := entries.get("model_routes"):
        problems.extend(_fallback_problems(routes))
    if problems:
        raise DocumentInvalid(problems)
    return ParsedDocument(entries, selection=selection is True)


def _parse_list(
    loader: yaml.SafeLoader, kind: Kind, node: yaml.Node, line: int, problems: list[Problem]
) -> tuple[ParsedEntry, ...]:
    if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
        return ()  # "patterns:" with nothing after it: an empty list
    if not isinstance(node, yaml.SequenceNode):
        problems.append(Problem(line, f"{kind.key} must be a list"))
        return ()
    parsed: list[ParsedEntry] = []
    first: dict[Any, int] = {}
    for position, item in enumerate(node.value):
        where = f"{kind.key}[{position}]"
        entry = _parse_entry(loader, kind, item, where, problems)
        if entry is None:
            continue
        if not isinstance(entry.identity, str):
            continue  # already refused: not a string
        earlier = first.setdefault(entry.identity, entry.line)
        if earlier != entry.line:
            shown = f" {entry.identity!r}" if kind.quotable else ""
            problems.append(
                Problem(
                    entry.lines.get(kind.identity, entry.line),
                    f"{where}: {kind.identity}{shown} is already the {kind.identity} of the "
                    f"entry at line {earlier}",
                )
            )
        parsed.append(entry)
    return tuple(parsed)


def _parse_entry(
    loader: yaml.SafeLoader, kind: Kind, node: yaml.Node, where: str, problems: list[Problem]
) -> ParsedEntry | None:
    line = _line(node)
    if not isinstance(node, yaml.MappingNode):
        problems.append(Problem(line, f"{where}: an entry must be a mapping of fields"))
        return None
    values: Entry = {}
    lines: dict[str, int] = {}
    for key, value_node, key_line in _pairs(node, problems, where):
        if key not in kind.keys:
            known = ", ".join(kind.keys)
            problems.append(Problem(key_line, f"{where}: unknown field {key!r} (known: {known})"))
            continue
        values[key] = _scalar(loader, value_node, problems)
        lines[key] = key_line
    if kind.identity not in values:
        problems.append(Problem(line, f"{where}: {kind.identity} is missing"))
        return None
    entry = ParsedEntry(kind, line, values, lines)
    wrong_types = list(_type_problems(kind, values, lines, where))
    if wrong_types:
        # The model cannot check fields of the wrong type; the entry still counts for the
        # checks across entries (a name given twice), and the document is refused anyway.
        problems.extend(wrong_types)
        return entry
    checked = _full_clean(entry, where, problems)
    return entry if checked is None else ParsedEntry(kind, line, checked, lines)


def _type_problems(
    kind: Kind, values: Entry, lines: Mapping[str, int], where: str
) -> Iterable[Problem]:
    """The YAML type each field needs: no "yes" for a boolean, no "90" for a number."""
    for f in kind.fields:
        if f.name not in values:
            continue
        value = values[f.name]
        if value is None and f.null:
            continue
        if isinstance(f, models.BooleanField):
            wanted, ok = "true or false", isinstance(value, bool)
        elif isinstance(f, models.IntegerField):
            wanted, ok = "a whole number", isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(f, models.FloatField):
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            wanted = "a number" + (" or null" if f.null else "")
        else:
            wanted, ok = "a string", isinstance(value, str)
        if not ok:
            yield Problem(lines[f.name], f"{where}: {f.name} must be {wanted}")
    if kind.routes and FALLBACKS in values:
        fallbacks = values[FALLBACKS]
        if fallbacks is None:
            values[FALLBACKS] = []
        elif not isinstance(fallbacks, list) or not all(isinstance(x, str) for x in fallbacks):
            yield Problem(lines[FALLBACKS], f"{where}: {FALLBACKS} must be a list of routes")


def _full_clean(entry: ParsedEntry, where: str, problems: list[Problem]) -> Entry | None:
    """The admin's checks (the model's full_clean()); the normalised values, or None."""
    kind = entry.kind
    fields = {k: v for k, v in entry.values.items() if k != FALLBACKS}
    row = kind.model(**fields)
    try:
        # Uniqueness is checked within the document instead: the import replaces the rows.
        row.full_clean(validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        for name, messages in exc.message_dict.items():
            line = entry.lines.get(name, entry.line)
            label = "" if name == NON_FIELD_ERRORS else f" {name}:"
            for message in messages:
                problems.append(Problem(line, f"{where} ({entry.describe()}):{label} {message}"))
        return None
    values = {f.name: f.value_from_object(row) for f in kind.fields}
    if kind.routes:
        values[FALLBACKS] = list(entry.values.get(FALLBACKS, []))
    return values


def _fallback_problems(routes: Sequence[ParsedEntry]) -> Iterable[Problem]:
    """What the admin's fallback inline refuses: a route not in the list, itself, twice."""
    names = {route.identity for route in routes if isinstance(route.identity, str)}
    for position, route in enumerate(routes):
        seen: set[str] = set()
        line = route.lines.get(FALLBACKS, route.line)
        fallbacks = route.values.get(FALLBACKS)
        for name in fallbacks if isinstance(fallbacks, list) else ():
            where = f"model_routes[{position}] ({route.describe()}): fallback {name!r}"
            if name == route.identity:
                yield Problem(line, f"{where}: a route cannot fall back to itself")
            elif name not in names:
                yield Problem(line, f"{where}: no route of the document has this model pattern")
            elif name in seen:
                yield Problem(line, f"{where}: named twice")
            seen.add(name)
