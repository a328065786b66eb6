"""Authentication of proxy API keys: x-api-key or Authorization: Bearer, one indexed lookup."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from proxy.errors import AuthenticationError
from proxy.keys import digest_matches, key_prefix, secret_matches
from proxy.models import ApiKey

MASTER_NAMESPACE = "master"
# last_used_at is written at most this often per key: no write on the hot path.
LAST_USED_RESOLUTION = timedelta(minutes=5)


@dataclass(frozen=True)
class KeyPrincipal:
    """Who is calling: what the request path needs of an API key, and nothing more."""

    key_id: int | None
    name: str
    prefix: str
    namespace: str
    rate_limit_per_minute: int | None = None
    max_concurrent_streams: int | None = None

    # DRF's IsAuthenticated reads this.
    is_authenticated = True


def presented_key(request: Request) -> str | None:
    """The key from x-api-key, else from Authorization: Bearer; None when neither is sent."""
    key = request.headers.get("x-api-key", "").strip()
    if key:
        return key
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def authenticate_key(key: str) -> KeyPrincipal:
    """The principal for a presented key; raises AuthenticationError for anything else."""
    master = settings.LITELLM_MASTER_KEY
    if master and secret_matches(key, master):
        return KeyPrincipal(
            key_id=None, name="master key", prefix="master", namespace=MASTER_NAMESPACE
        )
    prefix = key_prefix(key)
    if prefix is None:
        raise AuthenticationError()
    api_key = ApiKey.objects.filter(prefix=prefix).first()
    now = timezone.now()
    if api_key is None or not digest_matches(key, api_key.key_hash) or not api_key.usable_at(now):
        raise AuthenticationError()
    if api_key.last_used_at is None or now - api_key.last_used_at > LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
    return KeyPrincipal(
        key_id=api_key.pk,
        name=api_key.name,
        prefix=api_key.prefix,
        namespace=api_key.effective_namespace,
        rate_limit_per_minute=api_key.rate_limit_per_minute,
        max_concurrent_streams=api_key.max_concurrent_streams,
    )


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[KeyPrincipal, None] | None:
        key = presented_key(request)
        if key is None:
            return None
        return authenticate_key(key), None

    def authenticate_header(self, request: Request) -> str:
        # A value here makes DRF answer 401 rather than 403 when no key is sent.
        return 'Bearer realm="api"'
