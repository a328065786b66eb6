"""GET /health: can this process serve? Database, mapping store, rules, provider."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, connection

from config.db import releasing_connections
from patterns.services import RulesUnavailable, arules_snapshot
from patterns.store import MappingStoreUnavailable
from proxy import upstream
from proxy.errors import ProxyError
from proxy.routes import DEFAULT_ROUTE, RouteTable, aroute_table
from proxy.stores import request_store


@dataclass
class Component:
    status: str  # healthy, degraded or unhealthy
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, **self.detail}


def _ms_since(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 2)


def _database_ping() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


async def check_database() -> Component:
    started = time.monotonic()
    try:
        await sync_to_async(releasing_connections(_database_ping))()
    except DatabaseError as exc:
        return Component("unhealthy", {"error": type(exc).__name__})
    return Component("healthy", {"vendor": connection.vendor, "latency_ms": _ms_since(started)})


async def check_mapping_store() -> Component:
    started = time.monotonic()
    try:
        await request_store().ping()
    except MappingStoreUnavailable:
        return Component("unhealthy", {"connected": False})
    return Component("healthy", {"connected": True, "latency_ms": _ms_since(started)})


async def check_rules() -> Component:
    try:
        snapshot = await arules_snapshot(request_store())
    except (RulesUnavailable, MappingStoreUnavailable) as exc:
        return Component("unhealthy", {"error": str(exc)})
    return Component(
        "healthy",
        {
            "patterns_enabled": len(snapshot.patterns),
            "terms_enabled": sum(len(t.specs) for t in snapshot.terms),
            "version": snapshot.version or "initial",
        },
    )


async def check_upstream(*, deep: bool) -> Component:
    try:
        table = await aroute_table((await request_store().versions()).routes)
    except (MappingStoreUnavailable, ProxyError):
        return Component("unhealthy", {"error": "the model routes could not be loaded"})
    default = DEFAULT_ROUTE.target("")
    missing = sum(1 for route in table.routes if route.target("").missing_credential)
    detail: dict[str, Any] = {
        "default_route": table.default_route,
        "routes_enabled": len(table.routes),
        "routes_missing_credentials": missing,
    }
    if table.default_route:
        detail["credentials_configured"] = bool(default.api_key)
        detail["host"] = urlsplit(default.api_base).hostname or ""
    if missing or (table.default_route and not default.api_key):
        return Component("degraded", detail)
    if not deep:
        return Component("healthy", detail)
    return await _probe(table, detail)


async def _probe(table: RouteTable, detail: dict[str, Any]) -> Component:
    started = time.monotonic()
    timeout = settings.PROXY_HEALTH_PROBE_TIMEOUT
    try:
        target = table.targets(settings.PROXY_HEALTH_MODEL)[0]
        await asyncio.wait_for(upstream.probe(target, timeout), timeout)
    except TimeoutError:
        return Component("degraded", {**detail, "probe": "timeout"})
    except ProxyError as exc:
        probe = "timeout" if exc.status == 504 else "error"
        return Component("degraded", {**detail, "probe": probe, "probe_status": exc.status})
    return Component("healthy", {**detail, "probe": "healthy", "latency_ms": _ms_since(started)})


async def health_report(*, deep: bool = False) -> tuple[dict[str, Any], int]:
    """The report and its HTTP status: 503 when this process cannot serve requests."""
    database, store, upstream_state = await asyncio.gather(
        check_database(), check_mapping_store(), check_upstream(deep=deep)
    )
    rules = (
        await check_rules()
        if store.status == "healthy"
        else Component("unhealthy", {"error": "needs the mapping store"})
    )
    components = {
        "database": database,
        "mapping_store": store,
        "patterns": rules,
        "upstream": upstream_state,
    }
    states = {c.status for c in components.values()}
    overall = (
        "unhealthy" if "unhealthy" in states else "degraded" if "degraded" in states else "healthy"
    )
    report = {"status": overall, "components": {k: c.as_dict() for k, c in components.items()}}
    return report, 503 if overall == "unhealthy" else 200
