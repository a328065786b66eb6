"""The admin index: the product's name, and the ways to the dashboard and the docs."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client, override_settings
from django.urls import reverse

from proxy.templatetags.admin_docs import DOCS_PAGES

pytestmark = pytest.mark.django_db

DOCS = Path(__file__).resolve().parents[2] / "docs"


def index_as(user: User) -> str:
    client = Client()
    client.force_login(user)
    response = client.get(reverse("admin:index"))
    assert response.status_code == 200
    return response.content.decode()


@pytest.fixture
def superuser() -> User:
    return User.objects.create_superuser("admin", "admin@invalid", "pw")


def test_the_index_names_the_product_in_its_title_header_and_heading(superuser: User) -> None:
    page = index_as(superuser)
    title = "Masking proxy: masking rules, API keys and model routes | Masking proxy admin"
    assert f"<title>{title}</title>" in page
    assert "Masking proxy administration" in page
    assert "<h1>Masking proxy: masking rules, API keys and model routes</h1>" in page


def test_the_index_has_no_view_site_link_to_the_api(superuser: User) -> None:
    assert "View site" not in index_as(superuser)


def test_the_dashboard_link_is_shown_to_those_who_may_see_the_dashboard(superuser: User) -> None:
    assert f'href="{reverse("dashboard")}"' in index_as(superuser)
    staff = User.objects.create_user("staff", "staff@invalid", "pw", is_staff=True)
    assert 'id="dashboard-link"' not in index_as(staff)
    staff.user_permissions.add(Permission.objects.get(codename="view_auditrecord"))
    assert f'href="{reverse("dashboard")}"' in index_as(User.objects.get(pk=staff.pk))


def test_the_docs_panel_names_every_page_of_docs() -> None:
    assert sorted(page for page, _ in DOCS_PAGES) == sorted(p.name for p in DOCS.glob("*.md"))


def test_without_a_docs_url_the_panel_names_the_pages_without_links(superuser: User) -> None:
    page = index_as(superuser)
    panel = page[page.index('id="docs-panel"') :]
    for name, _ in DOCS_PAGES:
        assert f"docs/{name}" in panel
    assert "<a " not in panel[: panel.index("</table>")]
    assert "set PROXY_DOCS_URL" in panel


@override_settings(PROXY_DOCS_URL="https://git.example.com/team/proxy/blob/main/docs/")
def test_with_a_docs_url_each_page_is_a_link(superuser: User) -> None:
    page = index_as(superuser)
    for name, _ in DOCS_PAGES:
        url = f"https://git.example.com/team/proxy/blob/main/docs/{name}"
        assert f'<a href="{url}">docs/{name}</a>' in page
    assert "set PROXY_DOCS_URL" not in page
