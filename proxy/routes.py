"""Model routes: which provider serves a requested model, and what to try when it fails.

Admins keep routes in the database; each process holds an immutable RouteTable, reloaded when
the routes version in Redis moves (read in the same MGET as the rules and keys versions). A
model no route matches goes to the default route (Anthropic at PROXY_UPSTREAM_BASE_URL with
ANTHROPIC_API_KEY, as before routes existed) unless PROXY_DEFAULT_ROUTE is off.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError

from config.db import releasing_connections
from config.env import env_secret
from patterns.store import ControlStoreUnavailable, get_control_store
from proxy.errors import ModelNotRouted, RoutesUnavailable
from proxy.route_checks import MODEL_SLOT, credential_variable_error
from proxy.targets import UpstreamTarget

if TYPE_CHECKING:
    from proxy.models import ModelRoute

logger = logging.getLogger(__name__)

ANTHROPIC_PREFIX = "anthropic/"
PASS_THROUGH = ANTHROPIC_PREFIX + MODEL_SLOT
DEFAULT_CREDENTIAL = "ANTHROPIC_API_KEY"
# Each process reloads its table at least this often, even when the routes version did not
# move (a change made while Redis was away).
TABLE_MAX_AGE_SECONDS = 60.0


def glob_match(pattern: str, name: str) -> bool:
    """Whether name matches pattern, where * stands for any characters (newlines included).

    Linear in the name: each part between stars is found left to right, once.
    """
    first, *rest = pattern.split("*")
    if not rest:
        return name == pattern
    *middle, last = rest
    if len(name) < len(first) + len(last) or not name.startswith(first):
        return False
    if not name.endswith(last):
        return False
    position, end = len(first), len(name) - len(last)
    for part in middle:
        found = name.find(part, position, end)
        if found == -1:
            return False
        position = found + len(part)
    return True


@dataclass(frozen=True)
class Route:
    """One enabled route, as the table holds it."""

    id: int
    pattern: str
    litellm_model: str
    api_base: str = ""
    api_key_env: str = ""
    timeout: float | None = None
    connect_timeout: float | None = None
    display_name: str = ""
    fallback_ids: tuple[int, ...] = ()
    created_at: datetime | None = None

    @property
    def is_exact(self) -> bool:
        return "*" not in self.pattern

    def matches(self, model: str) -> bool:
        return glob_match(self.pattern, model)

    def credential_variable(self) -> str:
        """The variable this route's key comes from ("" for none).

        ANTHROPIC_API_KEY goes, unnamed, only to an anthropic/ model at PROXY_UPSTREAM_BASE_URL.
        """
        if self.api_key_env:
            return self.api_key_env
        default_base = settings.PROXY_UPSTREAM_BASE_URL.rstrip("/")
        anthropic = self.litellm_model.startswith(ANTHROPIC_PREFIX)
        return DEFAULT_CREDENTIAL if anthropic and self._base() in ("", default_base) else ""

    def target(self, requested: str) -> UpstreamTarget:
        """Where this route sends a request for `requested`, with its credential read now."""
        model = self.litellm_model.replace(MODEL_SLOT, requested)
        anthropic = model.startswith(ANTHROPIC_PREFIX)
        default_base = settings.PROXY_UPSTREAM_BASE_URL if anthropic else ""
        api_key, missing = self._credential()
        return UpstreamTarget(
            model=model,
            api_base=(self._base() or default_base).rstrip("/"),
            api_key=api_key,
            timeout=self.timeout or settings.PROXY_UPSTREAM_TIMEOUT,
            connect_timeout=self.connect_timeout or settings.PROXY_UPSTREAM_CONNECT_TIMEOUT,
            route=self.pattern,
            missing_credential=missing,
        )

    def _base(self) -> str:
        return self.api_base.rstrip("/")

    def _credential(self) -> tuple[str, str]:
        """The key and, when it cannot be had, the variable's name (a named variable only
        while PROXY_ROUTE_CREDENTIALS still lists it: it may have changed since)."""
        name = self.credential_variable()
        if name == DEFAULT_CREDENTIAL and not self.api_key_env:
            return settings.ANTHROPIC_API_KEY or "", ""
        if not name:
            return "", ""
        refused = credential_variable_error(name)
        if refused:
            logger.error("route %s: %s", self.pattern, refused)
            return "", name
        api_key = read_credential(name)
        return api_key, "" if api_key else name


DEFAULT_ROUTE = Route(id=0, pattern="*", litellm_model=PASS_THROUGH)


def read_credential(name: str) -> str:
    """The provider key in NAME (or the file NAME_FILE names); "" when neither is set."""
    try:
        return env_secret(name) or ""
    except ImproperlyConfigured as exc:
        # The message names the file, never its contents.
        logger.error("route credential unreadable: %s", exc)
        return ""


@dataclass(frozen=True)
class RouteTable:
    """The enabled routes in the order they are tried, and the default route's switch."""

    version: str
    routes: tuple[Route, ...]
    default_route: bool
    loaded_at: float = field(default_factory=time.monotonic)

    @cached_property
    def by_id(self) -> Mapping[int, Route]:
        return {route.id: route for route in self.routes}

    def current(self, version: str) -> bool:
        fresh = time.monotonic() - self.loaded_at < TABLE_MAX_AGE_SECONDS
        return self.version == version and fresh

    def route_for(self, model: str) -> Route | None:
        found = next((route for route in self.routes if route.matches(model)), None)
        if found is None and self.default_route:
            return DEFAULT_ROUTE
        return found

    def targets(self, model: str) -> list[UpstreamTarget]:
        """The targets for a requested model, primary first, then its fallbacks in order."""
        route = self.route_for(model)
        if route is None:
            raise ModelNotRouted()
        fallbacks = [self.by_id[i] for i in route.fallback_ids if i in self.by_id]
        return [candidate.target(model) for candidate in (route, *fallbacks)]

    def listed_routes(self) -> list[Route]:
        """Routes a client may name exactly: the enabled routes without a *."""
        return [route for route in self.routes if route.is_exact]

    def anthropic_patterns(self) -> list[Route]:
        """Pattern routes that pass the requested name on to Anthropic (anthropic/{model})."""
        patterns = [
            route
            for route in self.routes
            if not route.is_exact and route.litellm_model == PASS_THROUGH
        ]
        return [*patterns, DEFAULT_ROUTE] if self.default_route else patterns


def build_table(version: str, rows: Iterable[Route], *, default_route: bool) -> RouteTable:
    return RouteTable(version=version, routes=tuple(rows), default_route=default_route)


def load_route_table(version: str = "") -> RouteTable:
    """The enabled routes from the database, exact names before patterns of the same order."""
    from proxy.models import ModelRoute

    try:
        rows = list(ModelRoute.objects.filter(enabled=True).prefetch_related("fallback_links"))
    except DatabaseError as exc:
        logger.error("model routes could not be read: %s", type(exc).__name__)
        raise RoutesUnavailable() from None
    rows.sort(key=lambda row: (row.order, "*" in row.model_pattern, row.id))
    routes = [route_from_row(row) for row in rows]
    logger.info("model routes loaded: version=%s routes=%d", version or "initial", len(routes))
    return build_table(version, routes, default_route=settings.PROXY_DEFAULT_ROUTE)


def route_from_row(row: ModelRoute) -> Route:
    """The route a ModelRoute row describes (its fallback links prefetched, ideally)."""
    return Route(
        id=row.id,
        pattern=row.model_pattern,
        litellm_model=row.litellm_model,
        api_base=row.api_base,
        api_key_env=row.api_key_env,
        timeout=row.timeout_seconds,
        connect_timeout=row.connect_timeout_seconds,
        display_name=row.display_name,
        fallback_ids=tuple(link.fallback_id for link in row.fallback_links.all()),
        created_at=row.created_at,
    )


_current: RouteTable | None = None


async def aroute_table(version: str) -> RouteTable:
    """The process's route table for this routes version, reloaded when the version moved."""
    global _current
    current = _current
    if current is not None and current.current(version):
        return current
    table = await sync_to_async(releasing_connections(load_route_table))(version)
    _current = table
    return table


def loaded_route_table() -> RouteTable:
    """The process's route table as last loaded, without reading anything; before the first
    load, the default route alone (when PROXY_DEFAULT_ROUTE has it)."""
    return _current or build_table("", (), default_route=settings.PROXY_DEFAULT_ROUTE)


def routes_changed() -> None:
    """Move the routes version so that every process reloads its route table."""
    global _current
    _current = None
    try:
        get_control_store().bump_routes_version()
    except ControlStoreUnavailable:
        # Requests fail closed while Redis is away; other processes see the change within
        # TABLE_MAX_AGE_SECONDS of Redis coming back (they reload their tables that often).
        logger.error("a model route changed but the routes version could not be bumped")
