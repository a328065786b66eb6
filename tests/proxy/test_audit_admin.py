"""The audit trail in the admin: read-only, filterable, cheap to page through."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from proxy.admin import CappedCountPaginator
from proxy.models import AuditRecord

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("admin", "admin@invalid", "pw"))
    return client


def _record(**fields: object) -> AuditRecord:
    defaults: dict[str, object] = {"endpoint": "messages", "status": 200, "model": "claude-x"}
    return AuditRecord.objects.create(**{**defaults, **fields})


def test_audit_list_filters_by_status_and_model(admin_client: Client) -> None:
    _record(status=200, model="claude-a", key_prefix="aaaa1111")
    _record(status=429, model="claude-b", error_type="rate_limit_error", key_prefix="bbbb2222")
    url = reverse("admin:proxy_auditrecord_changelist")
    page = admin_client.get(url, {"status": 429}).content.decode()
    assert "bbbb2222" in page and "aaaa1111" not in page
    page = admin_client.get(url, {"model": "claude-a"}).content.decode()
    assert "aaaa1111" in page and "bbbb2222" not in page


def test_audit_records_cannot_be_added_changed_or_deleted(admin_client: Client) -> None:
    record = _record()
    assert admin_client.get(reverse("admin:proxy_auditrecord_add")).status_code == 403
    change = admin_client.post(
        reverse("admin:proxy_auditrecord_change", args=[record.pk]), {"status": 500}
    )
    assert change.status_code == 403
    delete = admin_client.post(reverse("admin:proxy_auditrecord_delete", args=[record.pk]))
    assert delete.status_code == 403
    record.refresh_from_db()
    assert record.status == 200


def test_pagination_counts_at_most_the_cap() -> None:
    for _ in range(5):
        _record()
    paginator = CappedCountPaginator(AuditRecord.objects.order_by("pk"), 2)
    paginator.CAP = 3
    assert paginator.count == 3
    assert paginator.num_pages == 2
