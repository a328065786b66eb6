"""Proxy API keys and the audit trail of proxied requests."""

from __future__ import annotations

from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from patterns.store import NAMESPACE_RE


class ApiKey(models.Model):
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    namespace = models.CharField(
        max_length=64,
        blank=True,
        help_text="Keys in one namespace share placeholders. Empty: this key's own namespace.",
    )
    enabled = models.BooleanField(default=True)
    rate_limit_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="Requests per minute; empty for no limit."
    )
    max_concurrent_streams = models.PositiveIntegerField(
        null=True, blank=True, help_text="Streams open at once; empty for no limit."
    )
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ("-created_at",)
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def effective_namespace(self) -> str:
        return self.namespace or f"key-{self.prefix}"

    def usable_at(self, now: datetime) -> bool:
        if not self.enabled or self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > now

    def clean(self) -> None:
        if self.namespace and not NAMESPACE_RE.match(self.namespace):
            message = "Letters, digits and _ . : - (1-64), starting with a letter or digit."
            raise ValidationError({"namespace": message})

    def revoke(self) -> None:
        self.revoked_at = timezone.now()
        self.enabled = False
        self.save(update_fields=["revoked_at", "enabled"])


class AuditRecord(models.Model):
    """One proxied request: who, what, how it went, and counts — never a value or placeholder."""

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL)
    key_prefix = models.CharField(max_length=16, blank=True)
    key_name = models.CharField(max_length=100, blank=True)
    namespace = models.CharField(max_length=64, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    endpoint = models.CharField(max_length=64)
    model = models.CharField(max_length=200, blank=True)
    stream = models.BooleanField(default=False)
    status = models.PositiveSmallIntegerField()
    error_type = models.CharField(max_length=64, blank=True)
    latency_ms = models.PositiveIntegerField(default=0)
    upstream_latency_ms = models.PositiveIntegerField(null=True, blank=True)
    input_tokens = models.PositiveIntegerField(null=True, blank=True)
    output_tokens = models.PositiveIntegerField(null=True, blank=True)
    masked_total = models.PositiveIntegerField(default=0)
    masked_by_pattern = models.JSONField(default=dict, blank=True)
    restored_total = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ("-created_at",)
        indexes = (models.Index(fields=["api_key", "created_at"]),)

    def __str__(self) -> str:
        return f"{self.endpoint} {self.status} at {self.created_at:%Y-%m-%d %H:%M:%S}"
