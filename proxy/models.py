"""Proxy API keys, the model routes to providers, and the audit trail of proxied requests."""

from __future__ import annotations

from datetime import datetime

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone

from patterns.store import NAMESPACE_RE
from proxy.route_checks import route_errors


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
        null=True,
        blank=True,
        help_text="Requests per minute; empty for the server's default "
        "(PROXY_DEFAULT_RATE_LIMIT_PER_MINUTE), 0 for no limit.",
    )
    max_concurrent_streams = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Streams open at once; empty for the server's default "
        "(PROXY_DEFAULT_MAX_CONCURRENT_STREAMS), 0 for no limit.",
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
    # What rules on trial would have masked (counted, not masked), by rule.
    trial_by_pattern = models.JSONField(default=dict, blank=True)
    restored_total = models.PositiveIntegerField(default=0)
    upstream_model = models.CharField(
        max_length=200, blank=True, default="", help_text="The LiteLLM model that answered."
    )

    class Meta:
        ordering = ("-created_at",)
        indexes = (models.Index(fields=["api_key", "created_at"]),)

    def __str__(self) -> str:
        return f"{self.endpoint} {self.status} at {self.created_at:%Y-%m-%d %H:%M:%S}"


class ModelRoute(models.Model):
    """Where requests for a model go: a LiteLLM model at a provider, then its fallbacks."""

    model_pattern = models.CharField(
        "requested model",
        max_length=200,
        unique=True,
        help_text="The model name clients send, or a pattern where * stands for any characters "
        "(claude-*).",
    )
    litellm_model = models.CharField(
        "LiteLLM model",
        max_length=200,
        help_text="LiteLLM's provider/model, e.g. openai/gpt-4o-mini; {model} stands for the "
        "requested name (anthropic/{model}).",
    )
    api_base = models.CharField(
        "API base",
        max_length=500,
        blank=True,
        help_text="The provider's base URL. Empty: PROXY_UPSTREAM_BASE_URL for anthropic/ "
        "models, LiteLLM's default for others.",
    )
    api_key_env = models.CharField(
        "credential variable",
        max_length=100,
        blank=True,
        help_text="The name of the environment variable holding the provider's key (or "
        "NAME_FILE, a file holding it), one of those PROXY_ROUTE_CREDENTIALS lists — never the "
        "key itself. Empty: ANTHROPIC_API_KEY for anthropic/ models at "
        "PROXY_UPSTREAM_BASE_URL, no key otherwise.",
    )
    timeout_seconds = models.FloatField(
        "read timeout (s)",
        null=True,
        blank=True,
        validators=[MinValueValidator(1.0)],
        help_text="Empty: PROXY_UPSTREAM_TIMEOUT.",
    )
    connect_timeout_seconds = models.FloatField(
        "connect timeout (s)",
        null=True,
        blank=True,
        validators=[MinValueValidator(0.1)],
        help_text="Empty: PROXY_UPSTREAM_CONNECT_TIMEOUT.",
    )
    enabled = models.BooleanField(default=True)
    order = models.PositiveIntegerField(
        default=100,
        help_text="Routes are tried lowest first; the first whose pattern matches serves.",
    )
    display_name = models.CharField(
        max_length=200, blank=True, help_text="The name GET /v1/models shows; empty: the model."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("order", "id")
        verbose_name = "model route"

    def __str__(self) -> str:
        return f"{self.model_pattern} → {self.litellm_model}"

    def clean(self) -> None:
        errors = route_errors(
            model_pattern=self.model_pattern,
            litellm_model=self.litellm_model,
            api_key_env=self.api_key_env,
            api_base=self.api_base,
        )
        if errors:
            raise ValidationError(errors)


class RouteFallback(models.Model):
    """A route tried, in position order, when the one before it fails."""

    route = models.ForeignKey(ModelRoute, on_delete=models.CASCADE, related_name="fallback_links")
    fallback = models.ForeignKey(
        ModelRoute,
        on_delete=models.PROTECT,
        related_name="fallback_for",
        help_text="Called with its own LiteLLM model ({model}: the requested name).",
    )
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ("position", "id")
        constraints = (
            models.UniqueConstraint(fields=("route", "fallback"), name="unique_route_fallback"),
        )

    def __str__(self) -> str:
        return f"{self.route.model_pattern} then {self.fallback.model_pattern}"

    def clean(self) -> None:
        if self.route_id is not None and self.route_id == self.fallback_id:
            raise ValidationError({"fallback": "A route cannot fall back to itself."})
