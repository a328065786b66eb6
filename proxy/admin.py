"""Admin for API keys (the full key shown once) and the read-only audit trail."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest
from django.utils import timezone
from django.utils.functional import cached_property

from proxy.auth import keys_changed
from proxy.keys import generate_key
from proxy.models import ApiKey, AuditRecord


@admin.action(description="Revoke selected keys")
def revoke_keys(modeladmin: Any, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
    count = queryset.filter(revoked_at__isnull=True).update(
        revoked_at=timezone.now(), enabled=False
    )
    # update() sends no post_save: tell the processes' key caches here.
    transaction.on_commit(keys_changed)
    messages.success(request, f"{count} key(s) revoked.")


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "prefix",
        "namespace",
        "enabled",
        "revoked_at",
        "expires_at",
        "last_used_at",
    )
    list_filter = ("enabled", ("revoked_at", admin.EmptyFieldListFilter))
    search_fields = ("name", "prefix", "namespace")
    ordering = ("-created_at",)
    readonly_fields = ("prefix", "revoked_at", "created_at", "last_used_at")
    fields = (
        "name",
        "namespace",
        "enabled",
        "expires_at",
        "rate_limit_per_minute",
        "max_concurrent_streams",
        *readonly_fields,
    )
    actions = (revoke_keys,)

    def save_model(
        self, request: HttpRequest, obj: ApiKey, form: ModelForm[ApiKey], change: bool
    ) -> None:
        if not change:
            new = generate_key()
            obj.prefix, obj.key_hash = new.prefix, new.digest
            super().save_model(request, obj, form, change)
            messages.warning(
                request,
                f"The new key is {new.key} — copy it now: it is stored only as a hash and "
                "will not be shown again.",
            )
            return
        super().save_model(request, obj, form, change)

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        # The hash must not be searchable, even through a hand-made URL.
        return not lookup.startswith("key_hash") and super().lookup_allowed(lookup, value, request)

    def has_change_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        # Revoked keys stay as they were: a record, not something to re-enable.
        if obj is not None and obj.revoked_at is not None:
            return False
        return super().has_change_permission(request, obj)


class CappedCountPaginator(Paginator):
    """Counts at most CAP rows: a COUNT(*) over millions of audit rows on every page is not."""

    CAP = 10_000

    @cached_property
    def count(self) -> int:
        return int(self.object_list[: self.CAP].count())  # type: ignore[attr-defined]


@admin.register(AuditRecord)
class AuditRecordAdmin(admin.ModelAdmin):
    paginator = CappedCountPaginator
    list_display = (
        "created_at",
        "key_prefix",
        "key_name",
        "endpoint",
        "model",
        "stream",
        "status",
        "latency_ms",
        "masked_total",
        "restored_total",
    )
    list_filter = ("status", "error_type", "endpoint", "stream", "model", "api_key", "created_at")
    search_fields = ("key_prefix", "key_name", "model", "request_id")
    ordering = ("-created_at",)
    date_hierarchy = "created_at"
    show_full_result_count = False  # no COUNT(*) over a large table on every page

    def get_readonly_fields(
        self, request: HttpRequest, obj: AuditRecord | None = None
    ) -> list[str]:
        return [f.name for f in AuditRecord._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditRecord | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditRecord | None = None) -> bool:
        return False
