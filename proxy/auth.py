"""Authentication of proxy API keys (x-api-key or Authorization: Bearer, one indexed lookup),
and of the operator's metrics token for monitoring."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from config.db import releasing_connections
from patterns.store import ControlStoreUnavailable, Versions, get_control_store
from proxy.errors import AuthenticationError
from proxy.keys import digest_matches, key_digest, key_prefix, secret_matches
from proxy.models import ApiKey
from proxy.stores import loop_control_store

logger = logging.getLogger(__name__)

MASTER_NAMESPACE = "master"
# last_used_at is written at most this often per key: no write on the hot path.
LAST_USED_RESOLUTION = timedelta(minutes=5)
KEY_CACHE_MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class KeyPrincipal:
    """Who is calling: what the request path needs of an API key, and nothing more."""

    key_id: int | None
    name: str
    prefix: str
    namespace: str
    # The key's own limits: None for the server's defaults, 0 for none.
    rate_limit_per_minute: int | None = None
    max_concurrent_streams: int | None = None

    # DRF's IsAuthenticated reads this.
    is_authenticated = True


@dataclass(frozen=True)
class MonitoringPrincipal:
    """The operator's monitoring, by the metrics token: /metrics and the deep health probe."""

    name: str = "metrics token"

    # DRF's IsAuthenticated reads this.
    is_authenticated = True


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of Authorization: Bearer <token>; None when none is sent."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def presented_key(request: Request) -> str | None:
    """The key from x-api-key, else from Authorization: Bearer; None when neither is sent."""
    key = request.headers.get("x-api-key", "").strip()
    if key:
        return key
    return bearer_token(request.headers)


def is_metrics_token(token: str | None) -> bool:
    """Whether token is METRICS_TOKEN (compared in constant time); never while none is set."""
    expected = settings.METRICS_TOKEN
    return bool(expected and token and secret_matches(token, expected))


def master_principal(key: str) -> KeyPrincipal | None:
    """The master key's principal when key is PROXY_MASTER_KEY (compared in constant time)."""
    master = settings.PROXY_MASTER_KEY
    if master and secret_matches(key, master):
        return KeyPrincipal(
            key_id=None, name="master key", prefix="master", namespace=MASTER_NAMESPACE
        )
    return None


@dataclass(frozen=True)
class _LoadedKey:
    principal: KeyPrincipal
    expires_at: datetime | None


def _load_key(key: str) -> _LoadedKey:
    """The key's row, checked (one indexed query; a write at most every few minutes)."""
    prefix = key_prefix(key)
    if prefix is None:
        raise AuthenticationError()
    api_key = ApiKey.objects.filter(prefix=prefix).first()
    now = timezone.now()
    if api_key is None or not digest_matches(key, api_key.key_hash) or not api_key.usable_at(now):
        raise AuthenticationError()
    if api_key.last_used_at is None or now - api_key.last_used_at > LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
    principal = KeyPrincipal(
        key_id=api_key.pk,
        name=api_key.name,
        prefix=api_key.prefix,
        namespace=api_key.effective_namespace,
        rate_limit_per_minute=api_key.rate_limit_per_minute,
        max_concurrent_streams=api_key.max_concurrent_streams,
    )
    return _LoadedKey(principal=principal, expires_at=api_key.expires_at)


@dataclass(frozen=True)
class _CachedKey:
    loaded: _LoadedKey
    keys_version: str
    cached_at: float  # time.monotonic()


class KeyCache:
    """Recently authenticated keys, by digest, for as long as no API key has changed.

    Every change made through Django (admin, model methods, management commands) moves the
    keys version in Redis, which each request reads anyway with the rules version, so a
    revocation or an edit applies from the next request in every process. Entries also age
    out after API_KEY_CACHE_SECONDS, which bounds what a change made outside Django (raw SQL)
    may take to apply. Expiry dates are checked on every hit.
    """

    def __init__(self, *, max_entries: int = KEY_CACHE_MAX_ENTRIES) -> None:
        self._entries: dict[str, _CachedKey] = {}
        self._max_entries = max_entries
        self._lock = threading.Lock()

    def get(self, digest: str, keys_version: str) -> KeyPrincipal | None:
        entry = self._entries.get(digest)
        if entry is None or entry.keys_version != keys_version:
            return None
        if time.monotonic() - entry.cached_at > settings.API_KEY_CACHE_SECONDS:
            return None
        expires_at = entry.loaded.expires_at
        if expires_at is not None and expires_at <= timezone.now():
            return None
        return entry.loaded.principal

    def put(self, digest: str, loaded: _LoadedKey, keys_version: str) -> None:
        with self._lock:
            if len(self._entries) >= self._max_entries:
                self._entries.clear()  # rare (that many live keys): start over, simply
            self._entries[digest] = _CachedKey(loaded, keys_version, time.monotonic())

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


key_cache = KeyCache()


async def authenticate_request_key(key: str) -> tuple[KeyPrincipal, Versions | None]:
    """The principal for a presented key, and the version tokens read on the way.

    The versions are None when Redis does not answer: the key is then checked against the
    database alone (so a wrong key still gets its 401) and the request fails closed later.
    """
    try:
        versions: Versions | None = await loop_control_store().versions()
    except ControlStoreUnavailable:
        versions = None
    principal = master_principal(key)
    if principal is not None:
        return principal, versions
    if key_prefix(key) is None:
        raise AuthenticationError()
    digest = key_digest(key)
    if versions is not None and settings.API_KEY_CACHE_SECONDS > 0:
        cached = key_cache.get(digest, versions.keys)
        if cached is not None:
            return cached, versions
    loaded = await sync_to_async(releasing_connections(_load_key))(key)
    if versions is not None:
        key_cache.put(digest, loaded, versions.keys)
    return loaded.principal, versions


def keys_changed() -> None:
    """Move the keys version so that every process forgets its cached keys."""
    key_cache.clear()
    try:
        get_control_store().bump_keys_version()
    except ControlStoreUnavailable:
        # Requests fail closed while Redis is away; once it is back, cached keys still age
        # out within API_KEY_CACHE_SECONDS.
        logger.error("an API key changed but the keys version could not be bumped")


class ApiKeyAuthentication(BaseAuthentication):
    """For adrf views: authenticate() is a coroutine, run on the request's event loop."""

    async def authenticate(  # type: ignore[override]
        self, request: Request
    ) -> tuple[KeyPrincipal, Versions | None] | None:
        key = presented_key(request)
        if key is None:
            return None
        return await authenticate_request_key(key)

    def authenticate_header(self, request: Request) -> str:
        # A value here makes DRF answer 401 rather than 403 when no key is sent.
        return 'Bearer realm="api"'


class MetricsTokenAuthentication(BaseAuthentication):
    """Authorization: Bearer <METRICS_TOKEN>, for the operator's monitoring (/health).

    Listed before ApiKeyAuthentication, which would take the token for a malformed API key;
    any other bearer token is left to it (and refused there if it is not a key).
    """

    def authenticate(self, request: Request) -> tuple[MonitoringPrincipal, None] | None:
        if is_metrics_token(bearer_token(request.headers)):
            return MonitoringPrincipal(), None
        return None
