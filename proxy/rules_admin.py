"""The admin's "Export selected rules" action: the selected rows as a rules document.

In the proxy app because the document covers both apps' models (patterns never imports
proxy); proxy.admin adds the action to the rules' admins and its own route admin.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from proxy.rules_document import KINDS, build_document, dump_document


@admin.action(description="Export selected rules (YAML document)", permissions=["view"])
def export_selected_rules(
    modeladmin: admin.ModelAdmin[Any], request: HttpRequest, queryset: QuerySet[Any]
) -> HttpResponse:
    """A download of the selected rows as a selection document (selection: true): importing
    it adds or changes those rows and removes none (docs/rules.md)."""
    kind = next(kind for kind in KINDS if kind.model is modeladmin.model)
    text = dump_document(build_document({kind.key: queryset}))
    response = HttpResponse(text, content_type="application/yaml; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{kind.key}.yaml"'
    response["Cache-Control"] = "no-store"  # it may hold sensitive terms
    return response


def add_export_action(*admins: type[admin.ModelAdmin[Any]]) -> None:
    """Offer the export beside each admin's own actions."""
    for model_admin in admins:
        actions = tuple(model_admin.actions or ())
        if export_selected_rules not in actions:
            model_admin.actions = (*actions, export_selected_rules)
