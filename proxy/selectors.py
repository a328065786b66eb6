"""Read-only queries behind the dashboard: counts from the audit trail and the mapping store.

Every function takes an inclusive date range (days in the current time zone) and an optional
API key id. Nothing here returns an original value: audit rows and store counters hold none.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from patterns.engine import SENSITIVE_TERM_PATTERN
from patterns.library import CATEGORIES
from patterns.models import Pattern
from patterns.store import MappingStoreUnavailable, get_store
from proxy.auth import MASTER_NAMESPACE
from proxy.models import ApiKey, AuditRecord

logger = logging.getLogger(__name__)

# Percentiles are computed in Python: bound the rows read, newest first.
LATENCY_SAMPLE_LIMIT = 50_000
OTHER_CATEGORY = "Other"
SENSITIVE_TERM_CATEGORY = "Sensitive term"
_ERROR = Q(status__gte=400)


@dataclass(frozen=True)
class AuditTotals:
    requests: int
    masked: int
    restored: int
    errors: int

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class DayCounts:
    day: date
    requests: int
    masked: int
    errors: int


@dataclass(frozen=True)
class ModelUsage:
    """Requests per model the client asked for and the provider model that served it."""

    model: str
    upstream_model: str
    requests: int
    errors: int


@dataclass(frozen=True)
class KeyUsage:
    key_id: int | None
    prefix: str
    name: str
    requests: int
    masked: int
    restored: int
    errors: int
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class Percentiles:
    p50: int | None
    p90: int | None
    p99: int | None
    samples: int


@dataclass(frozen=True)
class LatencySummary:
    total: Percentiles
    upstream: Percentiles
    sample_limit: int
    capped: bool  # True when only the newest sample_limit rows were read


@dataclass(frozen=True)
class ErrorCount:
    status: int
    error_type: str
    count: int


@dataclass(frozen=True)
class NamespaceCounts:
    namespace: str
    key_names: tuple[str, ...]
    counts: Mapping[str, int] | None  # None: the mapping store could not be read

    @property
    def total(self) -> int:
        return sum(self.counts.values()) if self.counts else 0


def _records(*, start: date, end: date, key_id: int | None) -> QuerySet[AuditRecord]:
    zone = timezone.get_current_timezone()
    since = datetime.combine(start, time.min, tzinfo=zone)
    until = datetime.combine(end + timedelta(days=1), time.min, tzinfo=zone)
    records = AuditRecord.objects.filter(created_at__gte=since, created_at__lt=until)
    return records if key_id is None else records.filter(api_key_id=key_id)


def audit_totals(*, start: date, end: date, key_id: int | None = None) -> AuditTotals:
    row = _records(start=start, end=end, key_id=key_id).aggregate(
        requests=Count("id"),
        masked=Coalesce(Sum("masked_total"), 0),
        restored=Coalesce(Sum("restored_total"), 0),
        errors=Count("id", filter=_ERROR),
    )
    return AuditTotals(**row)


def audit_daily_series(*, start: date, end: date, key_id: int | None = None) -> list[DayCounts]:
    """One entry per day of the range, days without requests included as zeros."""
    rows = (
        _records(start=start, end=end, key_id=key_id)
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(
            requests=Count("id"),
            masked=Coalesce(Sum("masked_total"), 0),
            errors=Count("id", filter=_ERROR),
        )
        .order_by("day")
    )
    by_day = {row["day"]: row for row in rows}
    series = []
    for offset in range((end - start).days + 1):
        day = start + timedelta(days=offset)
        row = by_day.get(day, {})
        series.append(
            DayCounts(
                day=day,
                requests=row.get("requests", 0),
                masked=row.get("masked", 0),
                errors=row.get("errors", 0),
            )
        )
    return series


def masked_by_pattern(
    *, start: date, end: date, key_id: int | None = None
) -> list[tuple[str, int]]:
    """(pattern, values masked), most first. Summed in Python: JSON sums are not portable."""
    return _summed_counts("masked_by_pattern", start=start, end=end, key_id=key_id)


def trial_by_pattern(*, start: date, end: date, key_id: int | None = None) -> list[tuple[str, int]]:
    """(rule on trial, matches it would have masked), most first."""
    return _summed_counts("trial_by_pattern", start=start, end=end, key_id=key_id)


def _summed_counts(
    column: str, *, start: date, end: date, key_id: int | None
) -> list[tuple[str, int]]:
    totals: Counter[str] = Counter()
    rows = _records(start=start, end=end, key_id=key_id).values_list(column, flat=True)
    for counts in rows.iterator(chunk_size=2000):
        if isinstance(counts, dict):
            totals.update({k: v for k, v in counts.items() if isinstance(v, int) and v > 0})
    return sorted(totals.items(), key=lambda item: (-item[1], item[0]))


def masked_by_category(*, pattern_counts: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    """(category label, values masked), most first, for counts from masked_by_pattern."""
    names = [name for name, _ in pattern_counts]
    categories = dict(Pattern.objects.filter(name__in=names).values_list("name", "category"))
    totals: Counter[str] = Counter()
    for name, count in pattern_counts:
        if name == SENSITIVE_TERM_PATTERN:
            label = SENSITIVE_TERM_CATEGORY
        else:
            # A pattern deleted since the request was made has no category any more.
            label = CATEGORIES.get(categories.get(name, ""), OTHER_CATEGORY)
        totals[label] += count
    return sorted(totals.items(), key=lambda item: (-item[1], item[0]))


def usage_by_key(*, start: date, end: date, key_id: int | None = None) -> list[KeyUsage]:
    """Per key, most requests first; grouped on the audit row's copy of the key's name and
    prefix, so the master key and deleted keys are listed too."""
    rows = (
        _records(start=start, end=end, key_id=key_id)
        .values("api_key_id", "key_prefix", "key_name")
        .annotate(
            requests=Count("id"),
            masked=Coalesce(Sum("masked_total"), 0),
            restored=Coalesce(Sum("restored_total"), 0),
            errors=Count("id", filter=_ERROR),
            input_tokens=Coalesce(Sum("input_tokens"), 0),
            output_tokens=Coalesce(Sum("output_tokens"), 0),
        )
        .order_by("-requests", "key_prefix")
    )
    return [
        KeyUsage(
            key_id=row["api_key_id"],
            prefix=row["key_prefix"],
            name=row["key_name"],
            requests=row["requests"],
            masked=row["masked"],
            restored=row["restored"],
            errors=row["errors"],
            input_tokens=row["input_tokens"],
            output_tokens=row["output_tokens"],
        )
        for row in rows
    ]


def usage_by_model(*, start: date, end: date, key_id: int | None = None) -> list[ModelUsage]:
    """Per requested model and the provider model that answered (model routes), busiest first."""
    rows = (
        _records(start=start, end=end, key_id=key_id)
        .values("model", "upstream_model")
        .annotate(requests=Count("id"), errors=Count("id", filter=_ERROR))
        .order_by("-requests", "model", "upstream_model")
    )
    return [
        ModelUsage(
            model=row["model"],
            upstream_model=row["upstream_model"],
            requests=row["requests"],
            errors=row["errors"],
        )
        for row in rows
    ]


def _percentiles(values: list[int]) -> Percentiles:
    """Nearest-rank percentiles: always a latency that was actually observed."""
    if not values:
        return Percentiles(p50=None, p90=None, p99=None, samples=0)
    ordered = sorted(values)

    def rank(q: int) -> int:
        return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]

    return Percentiles(p50=rank(50), p90=rank(90), p99=rank(99), samples=len(ordered))


def latency_percentiles(*, start: date, end: date, key_id: int | None = None) -> LatencySummary:
    """p50/p90/p99 of total and upstream latency over the newest rows of the range."""
    limit = LATENCY_SAMPLE_LIMIT
    rows = list(
        _records(start=start, end=end, key_id=key_id)
        .order_by("-created_at")
        .values_list("latency_ms", "upstream_latency_ms")[: limit + 1]
    )
    capped = len(rows) > limit
    rows = rows[:limit]
    return LatencySummary(
        total=_percentiles([total for total, _ in rows]),
        upstream=_percentiles([upstream for _, upstream in rows if upstream is not None]),
        sample_limit=limit,
        capped=capped,
    )


def error_breakdown(*, start: date, end: date, key_id: int | None = None) -> list[ErrorCount]:
    rows = (
        _records(start=start, end=end, key_id=key_id)
        .filter(_ERROR)
        .values("status", "error_type")
        .annotate(count=Count("id"))
        .order_by("-count", "status", "error_type")
    )
    return [ErrorCount(row["status"], row["error_type"], row["count"]) for row in rows]


def live_mapping_counts(*, key_id: int | None = None) -> list[NamespaceCounts]:
    """Distinct values each namespace holds now, per pattern, from the store's counters.

    The namespaces are those of the API keys (and the master key's, unless one key is
    asked for). If Redis cannot be read the namespaces are listed as unavailable: the
    dashboard must still load when the store is down.
    """
    keys = ApiKey.objects.order_by("name")
    if key_id is not None:
        keys = keys.filter(pk=key_id)
    names: dict[str, list[str]] = {}
    for key in keys.only("name", "prefix", "namespace"):
        names.setdefault(key.effective_namespace, []).append(key.name)
    if key_id is None:
        names.setdefault(MASTER_NAMESPACE, []).append("master key")
    store = get_store()
    result = []
    reachable = True
    for namespace in sorted(names):
        counts: dict[str, int] | None = None
        if reachable:
            try:
                raw = store.counts(namespace)
                counts = dict(sorted(raw.items(), key=lambda item: (-item[1], item[0])))
            except MappingStoreUnavailable:
                reachable = False  # one timeout is enough: do not wait once per namespace
            except ValueError:
                logger.warning("dashboard: skipped an invalid namespace")
        result.append(NamespaceCounts(namespace, tuple(names[namespace]), counts))
    return result


@dataclass(frozen=True)
class DashboardOverview:
    totals: AuditTotals
    daily: list[DayCounts]
    by_pattern: list[tuple[str, int]]
    by_category: list[tuple[str, int]]
    on_trial: list[tuple[str, int]]
    by_key: list[KeyUsage]  # empty unless asked for with_keys
    by_model: list[ModelUsage]
    latency: LatencySummary
    errors: list[ErrorCount]
    namespaces: list[NamespaceCounts]  # empty unless asked for with_keys


def dashboard_overview(
    *, start: date, end: date, key_id: int | None = None, with_keys: bool
) -> DashboardOverview:
    """Everything the dashboard shows, for one range and key: the view's single call.

    Without with_keys, nothing that names or counts per API key is read (usage per key, live
    mappings per namespace): what a user may not see is not computed either.
    """
    by_pattern = masked_by_pattern(start=start, end=end, key_id=key_id)
    return DashboardOverview(
        totals=audit_totals(start=start, end=end, key_id=key_id),
        daily=audit_daily_series(start=start, end=end, key_id=key_id),
        by_pattern=by_pattern,
        by_category=masked_by_category(pattern_counts=by_pattern),
        on_trial=trial_by_pattern(start=start, end=end, key_id=key_id),
        by_key=usage_by_key(start=start, end=end, key_id=key_id) if with_keys else [],
        by_model=usage_by_model(start=start, end=end, key_id=key_id),
        latency=latency_percentiles(start=start, end=end, key_id=key_id),
        errors=error_breakdown(start=start, end=end, key_id=key_id),
        namespaces=live_mapping_counts(key_id=key_id) if with_keys else [],
    )
