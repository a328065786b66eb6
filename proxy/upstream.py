"""The provider behind the proxy, through LiteLLM: the only module that imports it.

LiteLLM's exceptions are translated here into ProxyErrors that keep the provider's status
and Anthropic error type; nothing of LiteLLM leaks past this module.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from django.conf import settings

from proxy.errors import (
    InvalidRequest,
    ProxyError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnreachable,
)

# LiteLLM reads these at import: no price-map download, no .env loading (settings set them
# too; this keeps the module safe to import first).
os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")
os.environ.setdefault("LITELLM_MODE", "PRODUCTION")

import litellm
from litellm import exceptions as litellm_errors

logger = logging.getLogger(__name__)

litellm.suppress_debug_info = True
litellm.drop_params = False


def _route_litellm_logging() -> None:
    # LiteLLM puts its own stream handler on its loggers at import. Removing it sends its
    # records through the project's one root handler: same format, request ids, and levels
    # from settings (LITELLM_LOG_LEVEL), so a DEBUG setting elsewhere cannot open it up.
    level = getattr(settings, "LITELLM_LOG_LEVEL", "WARNING")
    for name, name_level in (
        ("LiteLLM", level),
        ("LiteLLM Router", level),
        ("LiteLLM Proxy", "CRITICAL"),
    ):
        litellm_logger = logging.getLogger(name)
        for handler in list(litellm_logger.handlers):
            litellm_logger.removeHandler(handler)
        litellm_logger.propagate = True
        litellm_logger.setLevel(name_level)


_route_litellm_logging()

FORWARDED_HEADERS = ("anthropic-version", "anthropic-beta")
RELAYED_ERROR_HEADERS = ("retry-after", "request-id")
_STATUS_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}
_TYPE_STATUSES = {error_type: status for status, error_type in _STATUS_TYPES.items()}


@dataclass(frozen=True)
class UpstreamConfig:
    base_url: str
    api_key: str
    timeout: float
    connect_timeout: float


def upstream_config() -> UpstreamConfig:
    return UpstreamConfig(
        base_url=settings.PROXY_UPSTREAM_BASE_URL.rstrip("/"),
        api_key=settings.ANTHROPIC_API_KEY or "",
        timeout=settings.PROXY_UPSTREAM_TIMEOUT,
        connect_timeout=settings.PROXY_UPSTREAM_CONNECT_TIMEOUT,
    )


def warm_up() -> None:
    """Import what LiteLLM would import lazily on the event loop during the first stream."""
    for module in ("fastapi", "orjson", "soundfile", "backoff", "redis"):
        importlib.import_module(module)
    for module in (
        "litellm.llms.anthropic.messages.native.streaming_iterator",
        "litellm.llms.anthropic.messages.stream_assembly",
        "litellm.proxy.anthropic_endpoints.streaming_model_restamp",
        "litellm.proxy.pass_through_endpoints.llm_provider_handlers.anthropic_passthrough_logging_handler",
    ):
        importlib.import_module(module)


async def close_clients() -> None:
    """Close the HTTP clients LiteLLM keeps for this process (at shutdown)."""
    await litellm.close_litellm_async_clients()


def forwarded_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The client headers the provider must see (API version and beta flags)."""
    return {name: headers[name] for name in FORWARDED_HEADERS if headers.get(name)}


async def create_message(
    body: Mapping[str, Any], headers: Mapping[str, str]
) -> dict[str, Any] | AsyncIterator[bytes]:
    """Send a (masked) Messages request: a message dict, or raw SSE bytes when streaming."""
    config = upstream_config()
    fields = dict(body)
    model = fields.pop("model")
    try:
        result: Any = await litellm.anthropic.messages.acreate(
            model=f"anthropic/{model}",
            api_base=config.base_url,
            api_key=config.api_key,
            timeout=httpx.Timeout(config.timeout, connect=config.connect_timeout),
            extra_headers=forwarded_headers(headers),
            **fields,
        )
    except Exception as exc:  # noqa: BLE001 - every LiteLLM failure becomes a ProxyError
        raise translate_error(exc) from None
    # A plain dict (non-streaming) or an async iterator of raw SSE bytes.
    return result  # type: ignore[no-any-return]


async def probe(model: str, seconds: float) -> None:
    """A minimal live call (one output token), for the deep health check."""
    config = upstream_config()
    try:
        await litellm.anthropic.messages.acreate(
            model=f"anthropic/{model}",
            messages=[{"role": "user", "content": "ping"}],
            max_tokens=1,
            api_base=config.base_url,
            api_key=config.api_key,
            timeout=httpx.Timeout(seconds, connect=min(seconds, config.connect_timeout)),
        )
    except Exception as exc:  # noqa: BLE001 - see create_message
        raise translate_error(exc) from None


async def stream_bytes(stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The provider's SSE bytes, with failures mid-stream translated into ProxyErrors."""
    try:
        async for chunk in stream:
            yield chunk
    except Exception as exc:  # noqa: BLE001 - see create_message
        raise translate_error(exc) from None


async def count_tokens(body: Mapping[str, Any], headers: Mapping[str, str]) -> dict[str, Any]:
    """Count a (masked) request's input tokens with the provider's own endpoint."""
    config = upstream_config()
    request_headers = {
        "x-api-key": config.api_key,
        "anthropic-version": headers.get("anthropic-version") or "2023-06-01",
        **forwarded_headers(headers),
    }
    timeout = httpx.Timeout(config.timeout, connect=config.connect_timeout)
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            response = await client.post(
                f"{config.base_url}/v1/messages/count_tokens", json=body, headers=request_headers
            )
    except httpx.TimeoutException:
        raise UpstreamTimeout() from None
    except httpx.HTTPError:
        raise UpstreamUnreachable() from None
    if response.status_code >= 400:
        raise _from_status(response.status_code, response.text, response.headers)
    result: dict[str, Any] = response.json()
    return result


def translate_error(exc: BaseException) -> ProxyError:
    """The ProxyError for a LiteLLM or HTTP failure, keeping the provider's status and type."""
    if isinstance(exc, ProxyError):
        return exc
    if isinstance(exc, (litellm_errors.Timeout, httpx.TimeoutException)):
        return UpstreamTimeout()
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        # LiteLLM reports a 529 as a 500; the provider's own code is kept aside.
        provider_status = getattr(exc, "provider_status_code", None)
        real_status = provider_status if isinstance(provider_status, int) else status
        message = str(getattr(exc, "message", "") or "")
        upstream_headers = getattr(exc, "litellm_response_headers", None) or {}
        if _anthropic_error(message) is None and _is_connection_failure(exc, message):
            return UpstreamUnreachable()
        return _from_status(real_status, message, upstream_headers)
    if isinstance(exc, (httpx.HTTPError, litellm_errors.APIConnectionError)):
        return UpstreamUnreachable()
    if isinstance(exc, (TypeError, ValueError, KeyError, AttributeError)):
        # Raised while LiteLLM translated the request, before anything was sent: the shape
        # of the request is the cause.
        logger.warning("request could not be translated: %s", type(exc).__name__)
        return InvalidRequest("The request could not be translated for the provider.")
    logger.error("upstream call failed: %s", type(exc).__name__)
    return UpstreamUnreachable()


def status_for_error_type(error_type: str, default: int = 500) -> int:
    """The HTTP status Anthropic sends with an error type (a 413 LiteLLM calls a 400, say)."""
    return _TYPE_STATUSES.get(error_type, default)


def _from_status(status: int, text: str, headers: Mapping[str, str]) -> ProxyError:
    error = _anthropic_error(text)
    if error is None and status >= 500:
        # No error from the provider: its answer never arrived whole (LiteLLM calls a body
        # cut off mid-way a 500). A gateway's problem, not ours: 502.
        return UpstreamUnreachable("The upstream provider's answer was cut off or unreadable.")
    error_type = (error or {}).get("type") or _STATUS_TYPES.get(status, "api_error")
    status = status_for_error_type(str(error_type), default=status)
    message = (error or {}).get("message") or f"The upstream provider answered {status}."
    relayed = {name: headers[name] for name in RELAYED_ERROR_HEADERS if headers.get(name)}
    if "request-id" in relayed:
        relayed["upstream-request-id"] = relayed.pop("request-id")
    return UpstreamError(str(message), status=status, error_type=str(error_type), headers=relayed)


def _anthropic_error(text: str) -> dict[str, Any] | None:
    """The `error` object of an Anthropic error body found in text (LiteLLM wraps it)."""
    start = text.find("{")
    while start != -1:
        try:
            decoded, _ = json.JSONDecoder().raw_decode(text, start)
        except ValueError:
            start = text.find("{", start + 1)
            continue
        if isinstance(decoded, dict) and isinstance(decoded.get("error"), dict):
            error: dict[str, Any] = decoded["error"]
            return error
        start = text.find("{", start + 1)
    return None


def _is_connection_failure(exc: BaseException, message: str) -> bool:
    if isinstance(exc, litellm_errors.APIConnectionError):
        return True
    lowered = message.lower()
    return "connect" in lowered or "connection" in lowered
