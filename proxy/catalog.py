"""GET /v1/models: the models clients may request, in Anthropic's list shape.

Routes with an exact model name are listed as they are. Where a pattern route (or the default
route) passes requested names on to Anthropic, the models Anthropic lists are asked for and
shown when that route is the one that would serve them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from proxy import upstream
from proxy.errors import InvalidRequest, NotFound
from proxy.routes import PASS_THROUGH, Route, RouteTable
from proxy.targets import UpstreamTarget

logger = logging.getLogger(__name__)

DEFAULT_LIMIT, MAX_LIMIT = 20, 1000
# A model route existing before the proxy's first start: the date Anthropic-style ids need.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def route_entry(route: Route) -> dict[str, Any]:
    created = route.created_at or _EPOCH
    return {
        "type": "model",
        "id": route.pattern,
        "display_name": route.display_name or route.pattern,
        "created_at": created.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


async def available_models(table: RouteTable) -> list[dict[str, Any]]:
    """Every model a client may request, exact routes first, without duplicates."""
    models = {route.pattern: route_entry(route) for route in table.listed_routes()}
    for entry in await _provider_models(table):
        model_id = entry.get("id")
        if not isinstance(model_id, str) or model_id in models:
            continue
        route = table.route_for(model_id)
        if route is not None and not route.is_exact and route.litellm_model == PASS_THROUGH:
            models[model_id] = entry
    return list(models.values())


async def _provider_models(table: RouteTable) -> list[dict[str, Any]]:
    """What the providers behind pass-through Anthropic routes list, each provider asked once."""
    targets: dict[tuple[str, str, str], UpstreamTarget] = {}
    for route in table.anthropic_patterns():
        target = route.target("")
        targets.setdefault(_provider_key(table, target), target)
    results = await asyncio.gather(
        *(_listed_by(key, target) for key, target in targets.items()), return_exceptions=True
    )
    found: list[dict[str, Any]] = []
    for result in results:
        if isinstance(result, BaseException):
            # The routes' own models are still listed; the provider's are missing this time.
            logger.warning("the provider's model list is unavailable: %s", type(result).__name__)
            continue
        found.extend(result)
    return found


# Provider lists change rarely; a client paging through ours should not cost a provider call
# a page (nor see the list change under its after_id). A route change starts afresh.
PROVIDER_LIST_SECONDS = 300.0
_provider_lists: dict[tuple[str, str, str], tuple[float, list[dict[str, Any]]]] = {}


def _provider_key(table: RouteTable, target: UpstreamTarget) -> tuple[str, str, str]:
    return table.version, target.api_base, hashlib.sha256(target.api_key.encode()).hexdigest()


async def _listed_by(key: tuple[str, str, str], target: UpstreamTarget) -> list[dict[str, Any]]:
    cached = _provider_lists.get(key)
    if cached is not None and time.monotonic() < cached[0]:
        return cached[1]
    models = await upstream.list_anthropic_models(target)
    now = time.monotonic()
    for stale in [k for k, (expires, _) in _provider_lists.items() if expires <= now]:
        del _provider_lists[stale]
    _provider_lists[key] = (now + PROVIDER_LIST_SECONDS, models)
    return models


def is_known_model(table: RouteTable, model: str) -> bool:
    """Whether a requested name is one the routes or the catalogue know, not just any string.

    Known: the name of an exact route, or a name that a pass-through Anthropic route serves
    and that Anthropic lists (in LiteLLM's bundled list, or in a provider's list as last
    fetched for GET /v1/models). Admins and providers choose these names, clients never do,
    so they are few (what bounds the metrics' model label).
    """
    route = table.route_for(model)
    if route is None:
        return False
    if route.is_exact:
        return True  # the route's own name: route_for matched it exactly
    if route.litellm_model != PASS_THROUGH:
        return False
    if model in upstream.known_anthropic_models():
        return True
    now = time.monotonic()
    return any(
        expires > now and any(entry.get("id") == model for entry in listed)
        for expires, listed in list(_provider_lists.values())
    )


def model_page(models: list[dict[str, Any]], params: Mapping[str, str]) -> dict[str, Any]:
    """One page of the list, with Anthropic's before_id / after_id / limit parameters."""
    limit = _limit(params.get("limit"))
    ids = [model["id"] for model in models]
    after, before = params.get("after_id"), params.get("before_id")
    if after and before:
        raise InvalidRequest("Give after_id or before_id, not both.")
    if after:
        start = _position(ids, after, "after_id") + 1
        page = models[start : start + limit]
        has_more = start + limit < len(models)
    elif before:
        end = _position(ids, before, "before_id")
        page = models[max(0, end - limit) : end]
        has_more = end - limit > 0
    else:
        page, has_more = models[:limit], limit < len(models)
    return {
        "data": page,
        "has_more": has_more,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
    }


def find_model(models: list[dict[str, Any]], model_id: str) -> dict[str, Any]:
    found = next((model for model in models if model["id"] == model_id), None)
    if found is None:
        raise NotFound("model: no model with this id is served by this proxy.")
    return found


def _limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidRequest(f"limit: an integer from 1 to {MAX_LIMIT}.")
    return int(raw)


def _position(ids: list[str], model_id: str, name: str) -> int:
    try:
        return ids.index(model_id)
    except ValueError:
        raise InvalidRequest(f"{name}: no model with this id is listed.") from None
