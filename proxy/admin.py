"""Admin for API keys (the full key shown once), model routes and the read-only audit trail."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest
from django.utils import timezone
from django.utils.functional import cached_property

from patterns.admin import AllowedValueAdmin, PatternAdmin, SensitiveTermAdmin
from proxy.auth import keys_changed
from proxy.keys import generate_key
from proxy.models import ApiKey, AuditRecord, ModelRoute, RouteFallback
from proxy.permissions import may_view_keys
from proxy.route_checks import credential_variable_error
from proxy.routes import route_from_row
from proxy.rules_admin import add_export_action


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


class RouteFallbackInline(admin.TabularInline):
    model = RouteFallback
    fk_name = "route"
    fields = ("position", "fallback")
    extra = 0
    verbose_name = "fallback"
    verbose_name_plural = "fallbacks: tried in position order when this route's provider fails"


@admin.register(ModelRoute)
class ModelRouteAdmin(admin.ModelAdmin):
    list_display = (
        "model_pattern",
        "litellm_model",
        "api_base",
        "credential",
        "fallback_list",
        "enabled",
        "order",
    )
    list_filter = ("enabled",)
    search_fields = ("model_pattern", "litellm_model", "display_name")
    readonly_fields = ("credential", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("model_pattern", "display_name", "enabled", "order")}),
        (
            "Provider",
            {
                "fields": (
                    "litellm_model",
                    "api_base",
                    "api_key_env",
                    "credential",
                    "timeout_seconds",
                    "connect_timeout_seconds",
                )
            },
        ),
        (None, {"fields": ("created_at", "updated_at")}),
    )
    inlines = (RouteFallbackInline,)
    ordering = ("order", "id")

    def get_queryset(self, request: HttpRequest) -> QuerySet[ModelRoute]:
        return super().get_queryset(request).prefetch_related("fallback_links__fallback")

    @admin.display(description="credential")
    def credential(self, row: ModelRoute) -> str:
        """Whether this process can read the route's key: never the key itself."""
        route = route_from_row(row)
        name = route.credential_variable()
        if not name:
            return "none"
        if route.api_key_env and credential_variable_error(name):
            return f"{name}: not in PROXY_ROUTE_CREDENTIALS"
        return f"{name}: " + ("set" if route.target("").api_key else "NOT SET")

    @admin.display(description="fallbacks")
    def fallback_list(self, route: ModelRoute) -> str:
        links = route.fallback_links.all()  # prefetched with the page
        return ", ".join(link.fallback.model_pattern for link in links) or "-"

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> Any:
        default = (
            "Models no enabled route matches go to Anthropic (anthropic/{model}, "
            "PROXY_UPSTREAM_BASE_URL, ANTHROPIC_API_KEY)."
            if settings.PROXY_DEFAULT_ROUTE
            else "Models no enabled route matches are refused (PROXY_DEFAULT_ROUTE is off)."
        )
        context = {"subtitle": default, **(extra_context or {})}
        return super().changelist_view(request, context)


add_export_action(PatternAdmin, SensitiveTermAdmin, AllowedValueAdmin, ModelRouteAdmin)


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
        "upstream_model",
        "stream",
        "status",
        "latency_ms",
        "masked_total",
        "restored_total",
    )
    list_filter = (
        "status",
        "error_type",
        "endpoint",
        "stream",
        "model",
        "upstream_model",
        "api_key",
        "created_at",
    )
    search_fields = ("key_prefix", "key_name", "model", "request_id")
    ordering = ("-created_at",)
    date_hierarchy = "created_at"
    show_full_result_count = False  # no COUNT(*) over a large table on every page
    # Which key made a request: shown, filtered and searched (a search is an oracle too) only
    # for users who may view API keys, as on the dashboard (proxy.permissions).
    key_fields = frozenset({"api_key", "key_prefix", "key_name", "namespace"})

    def _without_keys(self, request: HttpRequest, names: Any) -> list[Any]:
        if may_view_keys(request.user):
            return list(names)
        return [name for name in names if name not in self.key_fields]

    def get_list_display(self, request: HttpRequest) -> list[Any]:
        return self._without_keys(request, super().get_list_display(request))

    def get_list_filter(self, request: HttpRequest) -> list[Any]:
        return self._without_keys(request, super().get_list_filter(request))

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        return self._without_keys(request, super().get_search_fields(request))

    def get_readonly_fields(
        self, request: HttpRequest, obj: AuditRecord | None = None
    ) -> list[str]:
        return self._without_keys(request, [f.name for f in AuditRecord._meta.fields])

    def get_exclude(self, request: HttpRequest, obj: AuditRecord | None = None) -> list[str]:
        return [] if may_view_keys(request.user) else sorted(self.key_fields)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditRecord | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditRecord | None = None) -> bool:
        return False
