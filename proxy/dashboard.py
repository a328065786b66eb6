"""The operators' dashboard: counts from the audit trail and the mapping store, never values.

The page needs VIEW_AUDIT (staff without it get 403); its per-key parts need VIEW_KEYS as well
and are neither shown nor computed without it (see proxy.permissions).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from proxy import charts
from proxy.models import ApiKey
from proxy.permissions import VIEW_AUDIT, may_view_keys
from proxy.selectors import DashboardOverview, dashboard_overview

DEFAULT_DAYS = 14
MAX_DAYS = 366  # one column per day must stay legible, and the scan bounded


@dataclass(frozen=True)
class DashboardFilter:
    """What the page shows: an inclusive range of days and optionally one API key."""

    start: date
    end: date
    key_id: int | None = None
    key_label: str = "All keys"

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


def default_filter(today: date) -> DashboardFilter:
    return DashboardFilter(start=today - timedelta(days=DEFAULT_DAYS - 1), end=today)


def _date_input() -> forms.DateInput:
    return forms.DateInput(format="%Y-%m-%d", attrs={"type": "date"})


class DashboardFilterForm(forms.Form):
    # ISO only: what <input type="date"> sends, whatever the browser's locale.
    start = forms.DateField(required=False, input_formats=["%Y-%m-%d"], widget=_date_input())
    end = forms.DateField(required=False, input_formats=["%Y-%m-%d"], widget=_date_input())
    key = forms.ModelChoiceField(
        queryset=ApiKey.objects.order_by("name"), required=False, empty_label="All keys"
    )

    def __init__(self, *args: Any, today: date, show_keys: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.today = today
        if not show_keys:
            # Even the list of key names is for those who may view keys; a ?key= is ignored.
            del self.fields["key"]
        if not self.is_bound:
            default = default_filter(today)
            self.initial = {"start": default.start, "end": default.end}

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        end = cleaned.get("end") or self.today
        start = cleaned.get("start") or end - timedelta(days=DEFAULT_DAYS - 1)
        if start > end:
            raise forms.ValidationError("The start date is after the end date.")
        if (end - start).days + 1 > MAX_DAYS:
            raise forms.ValidationError(f"Choose a range of at most {MAX_DAYS} days.")
        cleaned["start"], cleaned["end"] = start, end
        return cleaned

    def to_filter(self) -> DashboardFilter:
        """The requested filter, or the default one when the input was not valid."""
        if not self.is_bound or not self.is_valid():
            return default_filter(self.today)
        key = self.cleaned_data.get("key")
        return DashboardFilter(
            start=self.cleaned_data["start"],
            end=self.cleaned_data["end"],
            key_id=key.pk if key is not None else None,
            key_label=str(key) if key is not None else "All keys",
        )


def _charts(overview: DashboardOverview) -> dict[str, SafeString]:
    labels = [day.day.isoformat() for day in overview.daily]
    daily = charts.daily_chart(
        labels,
        [
            charts.Series("Requests", tuple(d.requests for d in overview.daily), charts.PALETTE[0]),
            charts.Series(
                "Values masked", tuple(d.masked for d in overview.daily), charts.PALETTE[1]
            ),
            charts.Series("Errors", tuple(d.errors for d in overview.daily), charts.PALETTE[3]),
        ],
        title="Requests, values masked and errors per day",
    )
    by_pattern = charts.bar_chart(overview.by_pattern[:20], title="Values masked per pattern")
    by_category = charts.donut_chart(overview.by_category, title="Values masked per category")
    # charts.py escapes every label it draws: its SVG, and only its SVG, is marked safe.
    return {
        "daily": mark_safe(daily),  # noqa: S308
        "by_pattern": mark_safe(by_pattern),  # noqa: S308
        "by_category": mark_safe(by_category),  # noqa: S308
    }


@never_cache
@require_GET
@staff_member_required  # anonymous and non-staff visitors: to the admin login
@permission_required(VIEW_AUDIT, raise_exception=True)  # staff without it: 403
def dashboard(request: HttpRequest) -> HttpResponse:
    show_keys = may_view_keys(request.user)
    form = DashboardFilterForm(request.GET or None, today=timezone.localdate(), show_keys=show_keys)
    selected = form.to_filter()
    overview = dashboard_overview(
        start=selected.start, end=selected.end, key_id=selected.key_id, with_keys=show_keys
    )
    context = {
        **admin.site.each_context(request),
        "is_nav_sidebar_enabled": False,  # the page needs its full width for the charts
        "title": "Dashboard",
        "form": form,
        "filter": selected,
        "show_keys": show_keys,
        "overview": overview,
        "charts": _charts(overview),
        "error_percent": overview.totals.error_rate * 100,
        "latency_rows": [
            ("Total", "total", overview.latency.total),
            ("Upstream", "upstream", overview.latency.upstream),
        ],
        "default_days": DEFAULT_DAYS,
        "time_zone": timezone.get_current_timezone_name(),
    }
    return TemplateResponse(request, "dashboard/index.html", context)
