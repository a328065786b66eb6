"""Admin for masking rules, with a page to try the rules on pasted text."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path

from patterns.engine import LocalAllocator
from patterns.library import CATEGORIES
from patterns.models import AllowedValue, Pattern, SensitiveTerm
from patterns.services import RulesUnavailable, load_snapshot, rules_changed

MAX_TEST_TEXT = 200_000
# Being staff is not enough: the page answers "would this be masked?" for any text, so it
# confirms guessed sensitive terms. Superusers hold it; others are granted it on purpose.
TRY_RULES = "patterns.try_rules"


class RulesTestForm(forms.Form):
    text = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 12, "cols": 100, "spellcheck": "false"}),
        max_length=MAX_TEST_TEXT,
        strip=False,
        help_text="Nothing you paste here is stored or logged.",
    )


def _update(request: HttpRequest, queryset: QuerySet[Any], state: str, **fields: bool) -> None:
    changed = queryset.update(**fields)
    # update() sends no signals: tell the other processes ourselves.
    transaction.on_commit(rules_changed)
    messages.success(request, f"{changed} rule(s) {state}.")


@admin.action(description="Enable selected")
def enable_selected(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Any]) -> None:
    _update(request, queryset, "enabled", enabled=True)


@admin.action(description="Disable selected")
def disable_selected(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Any]) -> None:
    _update(request, queryset, "disabled", enabled=False)


@admin.action(description="Put selected on trial (count, do not mask)")
def put_on_trial(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Any]) -> None:
    _update(request, queryset, "on trial: counted, not masked", trial=True)


@admin.action(description="Enforce selected (end their trial)")
def enforce(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Any]) -> None:
    _update(request, queryset, "enforced", trial=False)


@admin.register(Pattern)
class PatternAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "category",
        "placeholder_prefix",
        "priority",
        "validator",
        "enabled",
        "trial",
    )
    list_editable = ("enabled", "trial")
    list_filter = ("enabled", "trial", "category", "validator")
    search_fields = ("name", "description", "placeholder_prefix")
    ordering = ("priority", "name")
    readonly_fields = ("created_at", "updated_at")
    actions = (enable_selected, disable_selected, put_on_trial, enforce)
    fieldsets = (
        (None, {"fields": ("name", "category", "description", "enabled", "trial")}),
        ("Matching", {"fields": ("regex", "validator", "priority", "placeholder_prefix")}),
        ("Context", {"fields": ("context_keywords", "context_regex", "context_window")}),
        ("Examples", {"fields": ("positive_examples", "negative_examples")}),
        ("History", {"fields": ("created_at", "updated_at")}),
    )

    def get_urls(self) -> list[URLPattern]:
        test_page = path(
            "test/",
            self.admin_site.admin_view(self.test_view),
            name="patterns_pattern_test",
        )
        return [test_page, *super().get_urls()]

    def test_view(self, request: HttpRequest) -> HttpResponse:
        if not request.user.has_perm(TRY_RULES):
            raise PermissionDenied
        form = RulesTestForm(request.POST or None)
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "title": "Try the masking rules",
            "opts": self.model._meta,
            "form": form,
        }
        if request.method == "POST" and form.is_valid():
            context.update(_preview(form.cleaned_data["text"]))
        response = TemplateResponse(request, "admin/patterns/pattern/test_page.html", context)
        response["Cache-Control"] = "no-store"  # the page shows the pasted values
        return response


def _preview(text: str) -> dict[str, Any]:
    try:
        snapshot = load_snapshot()
    except RulesUnavailable as exc:
        return {"error": str(exc)}
    allocator = LocalAllocator()
    result = snapshot.mask(text, allocator)
    categories = {c.spec.name: CATEGORIES.get(c.spec.category, "") for c in snapshot.patterns}
    rows = [
        {
            "pattern": f.pattern,
            "category": categories.get(f.pattern, "Sensitive term"),
            "start": f.start,
            "end": f.end,
            "value": f.value,
            "placeholder": allocator.placeholders[f.value],
        }
        for f in result.findings
    ]
    # Rules on trial mask nothing: the page shows what they would take, as the audit counts it.
    trial = snapshot.trial.find(text) if snapshot.trial is not None else ()
    trial_rows = [
        {"pattern": f.pattern, "start": f.start, "end": f.end, "value": f.value, "prefix": f.prefix}
        for f in trial
        if not f.continuation
    ]
    return {"findings": rows, "trial": trial_rows, "masked": result.text, "searched": True}


@admin.register(SensitiveTerm)
class SensitiveTermAdmin(admin.ModelAdmin):
    list_display = ("term", "placeholder_prefix", "case_sensitive", "enabled", "note")
    list_editable = ("enabled",)
    list_filter = ("enabled", "case_sensitive", "placeholder_prefix")
    search_fields = ("term", "note")
    ordering = ("term",)
    readonly_fields = ("created_at", "updated_at")
    actions = (enable_selected, disable_selected)


@admin.register(AllowedValue)
class AllowedValueAdmin(admin.ModelAdmin):
    list_display = ("value", "enabled", "note", "created_at")
    list_editable = ("enabled",)
    list_filter = ("enabled",)
    search_fields = ("value", "note")
    ordering = ("value",)
    readonly_fields = ("created_at",)
    actions = (enable_selected, disable_selected)
