"""Making the database equal to a checked rules document: the plan (a diff) and applying it.

A kind the document lists is replaced by it: entries are created, changed or deleted so that
the next export gives the same list. A kind the document leaves out is not touched, and a
selection (the admin's export of chosen rows, selection: true) only adds and changes entries. The
whole change is one transaction, and each version token (rules, routes) moves once, after
commit, rather than once per row.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from patterns.models import Pattern, SensitiveTerm
from patterns.services import rules_changed
from patterns.signals import version_bumps_muted
from proxy.models import ModelRoute, RouteFallback
from proxy.routes import routes_changed
from proxy.rules_document import (
    FALLBACKS,
    KIND_BY_KEY,
    KINDS,
    DocumentInvalid,
    Entry,
    Kind,
    ParsedDocument,
    ParsedEntry,
    Problem,
    entry_from_row,
    kind_rows,
)

logger = logging.getLogger(__name__)
# A changed text longer than this is said to have changed, not quoted, in a diff.
_SHOWN_LENGTH = 60


@dataclass(frozen=True)
class Change:
    """One entry added, changed or removed; the changed fields with before and after."""

    kind: Kind
    action: str  # "+", "~" or "-"
    name: str  # how the diff names it: never a sensitive term itself
    fields: tuple[tuple[str, Any, Any], ...] = ()
    entry: ParsedEntry | None = None  # what the document says (None for a removal)
    pk: Any = None  # the row's id (None for an addition)


@dataclass(frozen=True)
class Plan:
    """What an import would do, kind by kind."""

    changes: tuple[Change, ...]

    def of(self, kind: Kind) -> list[Change]:
        return [change for change in self.changes if change.kind is kind]

    @property
    def rules_change(self) -> bool:
        return any(not change.kind.routes for change in self.changes)

    @property
    def routes_change(self) -> bool:
        return any(change.kind.routes for change in self.changes)


def plan_import(document: ParsedDocument) -> Plan:
    """The changes that make the database equal to the document; DocumentInvalid when the
    result would leave the proxy nothing to mask (it refuses to serve then)."""
    changes: list[Change] = []
    for kind in KINDS:
        entries = document.of(kind)
        if entries is not None:
            changes.extend(_kind_changes(kind, entries, remove=not document.selection))
    _check_something_masks(document)
    return Plan(tuple(changes))


def _kind_changes(kind: Kind, entries: Iterable[ParsedEntry], *, remove: bool) -> Iterable[Change]:
    current = {getattr(row, kind.identity): row for row in kind_rows(kind)}
    wanted = {entry.identity: entry for entry in entries}
    for identity, entry in wanted.items():
        row = current.get(identity)
        if row is None:
            yield Change(kind, "+", _name(entry), entry=entry)
            continue
        before = entry_from_row(kind, row)
        changed = tuple(
            (key, before[key], entry.values[key])
            for key in kind.keys
            if before[key] != entry.values[key]
        )
        if changed:
            yield Change(kind, "~", _name(entry), changed, entry=entry, pk=row.pk)
    for identity, row in current.items():
        if remove and identity not in wanted:
            # A row's str: SensitiveTerm's names its prefix and id, never the term.
            yield Change(kind, "-", str(row), pk=row.pk)


def _name(entry: ParsedEntry) -> str:
    return f"{entry.describe()} (line {entry.line})"


def _check_something_masks(document: ParsedDocument) -> None:
    # What the proxy loads (patterns.services.load_snapshot): enabled patterns not on trial
    # and enabled terms. With neither it fails closed and every request is refused.
    problems: list[Problem] = []
    patterns = document.of(KIND_BY_KEY["patterns"])
    terms = document.of(KIND_BY_KEY["sensitive_terms"])
    masking = _kept_masking(document, "patterns", Pattern.objects.filter(enabled=True, trial=False))
    masking = masking or _kept_masking(
        document, "sensitive_terms", SensitiveTerm.objects.filter(enabled=True)
    )
    if patterns is not None:
        masking = masking or any(e.values["enabled"] and not e.values["trial"] for e in patterns)
    if terms is not None:
        masking = masking or any(e.values["enabled"] for e in terms)
    if not masking:
        problems.append(
            Problem(
                1,
                "no enabled pattern (off trial) or sensitive term would be left: the proxy "
                "refuses every request without a rule to mask with",
            )
        )
        raise DocumentInvalid(problems)


def _kept_masking(document: ParsedDocument, key: str, enabled: Any) -> bool:
    """Whether enabled rows of this kind stay that the document does not name: all of them
    when it leaves the kind out, those it does not list when it is a selection."""
    kind = KIND_BY_KEY[key]
    entries = document.of(kind)
    if entries is None:
        return bool(enabled.exists())
    if not document.selection:
        return False
    named = [entry.identity for entry in entries]
    return bool(enabled.exclude(**{f"{kind.identity}__in": named}).exists())


# --- the diff --------------------------------------------------------------------------------


def _shown(value: Any) -> str:
    if isinstance(value, str) and (len(value) > _SHOWN_LENGTH or "\n" in value):
        return f"({len(value)} characters)"
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    return repr(value) if isinstance(value, str | list) else str(value)


def diff_lines(plan: Plan) -> list[str]:
    """The plan as a reviewer reads it: per kind, + added, ~ changed (field: old -> new),
    - removed. Sensitive terms are named by line, prefix or id, never quoted."""
    lines: list[str] = []
    for kind in KINDS:
        changes = plan.of(kind)
        counts = {action: sum(c.action == action for c in changes) for action in "+~-"}
        lines.append(
            f"{kind.key}: {counts['+']} added, {counts['~']} changed, {counts['-']} removed"
        )
        for change in changes:
            lines.append(f"  {change.action} {change.name}")
            for key, old, new in change.fields:
                if key == "term":
                    continue  # the identity: a changed term is a removal and an addition
                lines.append(f"      {key}: {_shown(old)} -> {_shown(new)}")
    return lines


# --- applying --------------------------------------------------------------------------------


def apply_import(plan: Plan) -> None:
    """Apply the plan in one transaction; move the rules and routes versions once each,
    after commit, and only when that kind of thing changed."""
    with transaction.atomic(), version_bumps_muted():
        for kind in KINDS:
            if not kind.routes:
                _apply_rules(kind, plan.of(kind))
        _apply_routes(plan.of(KIND_BY_KEY["model_routes"]))
        if plan.rules_change:
            transaction.on_commit(rules_changed)
        if plan.routes_change:
            transaction.on_commit(routes_changed)
    logger.info(
        "rules imported: %s",
        " ".join(
            f"{kind.key}=+{sum(c.action == '+' for c in plan.of(kind))}"
            f"~{sum(c.action == '~' for c in plan.of(kind))}"
            f"-{sum(c.action == '-' for c in plan.of(kind))}"
            for kind in KINDS
        ),
    )


def _fields(kind: Kind, entry: ParsedEntry) -> Entry:
    return {key: value for key, value in entry.values.items() if key != FALLBACKS}


def _apply_rules(kind: Kind, changes: list[Change]) -> None:
    manager = kind.model._default_manager
    removed = [c.pk for c in changes if c.action == "-"]
    if removed:
        manager.filter(pk__in=removed).delete()
    for change in changes:
        if change.entry is None:
            continue
        if change.action == "+":
            manager.create(**_fields(kind, change.entry))
        else:
            row = manager.get(pk=change.pk)
            for key, value in _fields(kind, change.entry).items():
                setattr(row, key, value)
            row.save()


def _apply_routes(changes: list[Change]) -> None:
    kind = KIND_BY_KEY["model_routes"]
    # Links first: a route another one falls back to is protected from deletion.
    relinked = [c for c in changes if c.action == "-" or _fallbacks_changed(c)]
    RouteFallback.objects.filter(route_id__in=[c.pk for c in relinked if c.pk]).delete()
    ModelRoute.objects.filter(pk__in=[c.pk for c in changes if c.action == "-"]).delete()
    routes: dict[str, ModelRoute] = {}
    for change in changes:
        if change.entry is None:
            continue
        if change.action == "+":
            row = ModelRoute.objects.create(**_fields(kind, change.entry))
        else:
            row = ModelRoute.objects.get(pk=change.pk)
            for key, value in _fields(kind, change.entry).items():
                setattr(row, key, value)
            row.save()
        routes[row.model_pattern] = row
    for change in changes:
        if change.entry is None or not (change.action == "+" or _fallbacks_changed(change)):
            continue
        route = routes[change.entry.identity]
        for position, name in enumerate(change.entry.values[FALLBACKS]):
            fallback = routes.get(name) or ModelRoute.objects.get(model_pattern=name)
            RouteFallback.objects.create(route=route, fallback=fallback, position=position)


def _fallbacks_changed(change: Change) -> bool:
    return any(key == FALLBACKS for key, _, _ in change.fields)
