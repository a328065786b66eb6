"""GET /health: can this process serve? Database, mapping store, rules, provider.

The live provider probe (deep) is a paid call: at most one per process per
HEALTH_PROBE_CACHE_SECONDS (ProbeCache); who may ask for it is the view's concern.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, connection

from config.db import releasing_connections
from patterns.services import RulesUnavailable, arules_snapshot
from patterns.store import ControlStoreUnavailable, MappingStoreUnavailable
from proxy import upstream
from proxy.errors import ProxyError
from proxy.routes import DEFAULT_ROUTE, RouteTable, aroute_table
from proxy.stores import loop_control_store, loop_store
from proxy.targets import UpstreamTarget


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
        await loop_store().ping()
    except MappingStoreUnavailable:
        return Component("unhealthy", {"connected": False})
    return Component("healthy", {"connected": True, "latency_ms": _ms_since(started)})


async def check_rules() -> Component:
    try:
        snapshot = await arules_snapshot(loop_control_store())
    except (RulesUnavailable, ControlStoreUnavailable) as exc:
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
        table = await aroute_table((await loop_control_store().versions()).routes)
    except (ControlStoreUnavailable, ProxyError):
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
    try:
        target = table.targets(settings.PROXY_HEALTH_MODEL)[0]
    except ProxyError as exc:  # no route serves the health model
        return Component("degraded", {**detail, "probe": "error", "probe_status": exc.status})
    result, shared = await probes.result(target)
    state = "healthy" if result.probe == "healthy" else "degraded"
    probe = {"probe": result.probe, **result.detail, "probe_cached": shared}
    return Component(state, {**detail, **probe})


@dataclass(frozen=True)
class ProbeResult:
    probe: str  # healthy, timeout or error
    detail: Mapping[str, Any]  # latency_ms, or the provider's probe_status
    finished_at: float = field(default_factory=time.monotonic)


async def _live_probe(target: UpstreamTarget) -> ProbeResult:
    started = time.monotonic()
    timeout = settings.PROXY_HEALTH_PROBE_TIMEOUT
    try:
        await asyncio.wait_for(upstream.probe(target, timeout), timeout)
    except TimeoutError:
        return ProbeResult("timeout", {})
    except ProxyError as exc:
        probe = "timeout" if exc.status == 504 else "error"
        return ProbeResult(probe, {"probe_status": exc.status})
    return ProbeResult("healthy", {"latency_ms": _ms_since(started)})


class ProbeCache:
    """At most one live provider probe per process per HEALTH_PROBE_CACHE_SECONDS.

    Each probe is a paid provider call: callers within that time of the last one, or while
    one is running, share its result, so that no caller (with a key or not) can turn
    /health?deep=1 into an amplifier of provider calls. A different target (a route or
    PROXY_HEALTH_MODEL changed) is probed at once.
    """

    def __init__(self) -> None:
        self._last: tuple[UpstreamTarget, asyncio.Task[ProbeResult]] | None = None

    async def result(self, target: UpstreamTarget) -> tuple[ProbeResult, bool]:
        """The probe's result for target, and whether it was shared rather than made now."""
        loop = asyncio.get_running_loop()
        task = self._reusable(target, loop)
        shared = task is not None
        if task is None:
            task = loop.create_task(_live_probe(target))
            self._last = (target, task)  # also the task's reference while it runs
        # Shielded: a caller that hangs up does not cancel the probe others are waiting for.
        return await asyncio.shield(task), shared

    def _reusable(
        self, target: UpstreamTarget, loop: asyncio.AbstractEventLoop
    ) -> asyncio.Task[ProbeResult] | None:
        if self._last is None or self._last[0] != target:
            return None
        task = self._last[1]
        if not task.done():
            # A task can only be awaited on its own loop (one per process, outside tests).
            return task if task.get_loop() is loop else None
        if task.cancelled() or task.exception() is not None:
            return None
        age = time.monotonic() - task.result().finished_at
        return task if age < settings.HEALTH_PROBE_CACHE_SECONDS else None

    def clear(self) -> None:
        """Forget the last probe (tests)."""
        self._last = None


probes = ProbeCache()


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
