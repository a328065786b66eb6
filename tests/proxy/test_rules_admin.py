"""The admin's "Export selected rules" action: a download of the selected rows as a rules
document that the import reads, offered only to users who may view those rows."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from patterns.models import Pattern, SensitiveTerm
from proxy.models import ModelRoute
from proxy.rules_document import parse_document

pytestmark = pytest.mark.django_db

ACTION = "export_selected_rules"


def export_selected(client: Client, changelist: str, ids: list[int]) -> Any:
    """The changelist's response to the export action (a download, or a refusal)."""
    return client.post(
        reverse(changelist), {"action": ACTION, "_selected_action": [str(i) for i in ids]}
    )


def test_selected_patterns_download_as_a_document_of_those_patterns(admin_client: Client) -> None:
    chosen = list(Pattern.objects.order_by("name")[:3])

    response = export_selected(
        admin_client, "admin:patterns_pattern_changelist", [p.pk for p in chosen]
    )

    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="patterns.yaml"'
    text = response.content.decode()
    document = yaml.safe_load(text)
    assert list(document) == ["schema_version", "selection", "patterns"]
    assert document["selection"] is True  # importing it removes no other pattern
    assert [p["name"] for p in document["patterns"]] == [p.name for p in chosen]
    assert len(parse_document(text).entries["patterns"]) == 3  # the import reads it


def test_terms_and_routes_export_from_their_own_admins(admin_client: Client) -> None:
    term = SensitiveTerm.objects.create(term="Project Nightingale")
    route = ModelRoute.objects.create(model_pattern="gpt-4o", litellm_model="openai/gpt-4o")

    terms = export_selected(admin_client, "admin:patterns_sensitiveterm_changelist", [term.pk])
    routes = export_selected(admin_client, "admin:proxy_modelroute_changelist", [route.pk])

    assert yaml.safe_load(terms.content)["sensitive_terms"][0]["term"] == "Project Nightingale"
    assert yaml.safe_load(routes.content)["model_routes"][0]["model_pattern"] == "gpt-4o"


def test_a_user_who_may_only_view_patterns_may_export_them() -> None:
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_pattern"))
    client = Client()
    client.force_login(user)
    pattern = Pattern.objects.first()
    assert pattern is not None

    response = export_selected(client, "admin:patterns_pattern_changelist", [pattern.pk])

    assert response["Content-Disposition"].startswith("attachment")


def test_a_staff_user_without_view_permission_gets_no_document() -> None:
    user = User.objects.create_user("stranger", password="pw", is_staff=True)
    client = Client()
    client.force_login(user)
    term = SensitiveTerm.objects.create(term="Project Nightingale")

    response = export_selected(client, "admin:patterns_sensitiveterm_changelist", [term.pk])

    assert response.status_code == 403
    assert b"Nightingale" not in response.content
