"""The operators' dashboard as tests read it: an operator's client and the counts of a table."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

URL = "/dashboard/"


@pytest.fixture
def staff_client(db: None) -> Client:
    """An operator who may see the whole page: audit records and API keys (not a superuser)."""
    user = User.objects.create_user("operator", password="pw", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="proxy", codename__in=["view_auditrecord", "view_apikey"]
        )
    )
    client = Client()
    client.force_login(user)
    return client


class _TableCounts(HTMLParser):
    """For one table: the value of a data-* attribute on each row -> its td.count text."""

    def __init__(self, table_id: str, attribute: str) -> None:
        super().__init__()
        self.table_id, self.attribute = table_id, attribute
        self.counts: dict[str, int] = {}
        self._in_table = False
        self._row: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "table" and values.get("id") == self.table_id:
            self._in_table = True
        elif self._in_table and tag == "tr":
            self._row = values.get(self.attribute)
        elif self._in_table and self._row is not None and tag == "td":
            self._cell = [] if "count" in (values.get("class") or "").split() else None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None and self._row is not None:
            self.counts.setdefault(self._row, int("".join(self._cell).strip().replace(",", "")))
            self._cell = None
        elif tag == "table":
            self._in_table = False


def table_counts(page: str, table_id: str, attribute: str) -> dict[str, int]:
    parser = _TableCounts(table_id, attribute)
    parser.feed(page)
    return parser.counts
