"""The provider behind the proxy, through LiteLLM: the only module that imports it.

LiteLLM's exceptions are translated here into ProxyErrors that keep the provider's status
and Anthropic error type; nothing of LiteLLM leaks past this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import threading
from collections.abc import AsyncIterator, Coroutine, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import httpx
from django.conf import settings

from proxy.errors import (
    InvalidRequest,
    ProviderNotConfigured,
    ProxyError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from proxy.masking import FORWARDED_FIELDS
from proxy.streaming import StreamFailure
from proxy.targets import NO_CREDENTIAL, UpstreamTarget

# LiteLLM reads these at import: no price-map download, no .env loading (settings set them
# too; this keeps the module safe to import first).
os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")
os.environ.setdefault("LITELLM_MODE", "PRODUCTION")

import litellm
from litellm import exceptions as litellm_errors
from litellm._internal_context import internal_sub_call

logger = logging.getLogger(__name__)
T = TypeVar("T")

litellm.suppress_debug_info = True
litellm.drop_params = False
# Some conversions (a PDF by URL to an OpenAI-compatible route, images to Bedrock) make LiteLLM
# fetch a client's URL from this server: never from a private, loopback or link-local address.
litellm.user_url_validation = True
# OpenAI routes speak Chat Completions, which every OpenAI-compatible server has (LiteLLM would
# otherwise use OpenAI's Responses API, and fake the stream for models it does not know).
litellm.use_chat_completions_url_for_anthropic_messages = True


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

ANTHROPIC_VERSION = "2023-06-01"
# The request fields passed to LiteLLM as keyword arguments: never a name a client chose.
MESSAGE_ARGUMENTS = FORWARDED_FIELDS - {"model"}
_GATEWAY_MESSAGE_PREFIX = "litellm."
MODEL_LIST_PAGES = 10
MODEL_LIST_TIMEOUT = 30.0
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


def is_known_provider(name: str) -> bool:
    """Whether LiteLLM has a provider by this name (anthropic, openai, bedrock, ...)."""
    return name in _PROVIDERS


_PROVIDERS = frozenset(str(getattr(p, "value", p)) for p in litellm.provider_list)


def known_anthropic_models() -> frozenset[str]:
    """The Anthropic model names in LiteLLM's bundled model list (offline: read at import)."""
    return _ANTHROPIC_MODELS


_ANTHROPIC_MODELS = frozenset(
    str(name) for name in litellm.models_by_provider.get("anthropic", ()) if "/" not in str(name)
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
    await _provider_loop.close()


class ProviderLoop:
    """An event loop on a thread of its own, where the provider calls of large requests run.

    LiteLLM's work grows with a request: it walks, copies, serialises and logs every block,
    in plain Python on whatever loop calls it. For a large request that is here, not on the
    serving loop, whose other requests would otherwise wait it out; the GIL still alternates
    between the two threads every millisecond. LiteLLM keeps its HTTP clients per event loop,
    so this loop has clients of its own.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    async def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Await coroutine on the provider loop; cancelled here, it is cancelled there."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self.running())
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            future.cancel()
            raise

    async def close(self) -> None:
        """Close the loop's LiteLLM clients and stop its thread (at shutdown)."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        try:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(_wind_down(), loop))
        finally:
            loop.call_soon_threadsafe(loop.stop)
            await asyncio.to_thread(thread.join, PROVIDER_LOOP_STOP_SECONDS)
            if not thread.is_alive():
                loop.close()

    def running(self) -> asyncio.AbstractEventLoop:
        """The provider loop, started on first use."""
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="provider-loop", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop


async def _wind_down() -> None:
    """On the provider loop, before it stops: close LiteLLM's clients, end its tasks (its
    logging worker waits on a queue forever) as asyncio.run would."""
    await litellm.close_litellm_async_clients()
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.get_running_loop().shutdown_asyncgens()


_provider_loop = ProviderLoop()
PROVIDER_LOOP_STOP_SECONDS = 5.0


async def _send_on_provider_loop(
    target: UpstreamTarget, body: Mapping[str, Any], headers: Mapping[str, str]
) -> dict[str, Any] | AsyncIterator[bytes]:
    result = await _provider_loop.run(_send(target, body, headers))
    return result if isinstance(result, dict) else _relayed(result)


async def _relayed(stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """A stream read on the provider loop, relayed chunk by chunk to the serving loop.

    The provider loop reads and closes the stream itself: a stream must be closed where it
    is read, and only once its read has unwound (a client leaving cancels it mid-read).
    """
    serving = asyncio.get_running_loop()
    chunks: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
    finished = asyncio.Event()

    def hand_over(item: bytes | BaseException | None) -> None:
        serving.call_soon_threadsafe(chunks.put_nowait, item)

    async def pump() -> None:  # on the provider loop
        try:
            async for chunk in stream:
                hand_over(chunk)
            hand_over(None)
        except Exception as exc:  # noqa: BLE001 - relayed as it is, translated by the reader
            hand_over(exc)
        finally:
            try:
                await close_quietly(stream)
            finally:
                serving.call_soon_threadsafe(finished.set)

    reading = asyncio.run_coroutine_threadsafe(pump(), _provider_loop.running())
    try:
        while (item := await chunks.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        reading.cancel()  # the pump, when the client left before the end
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(finished.wait(), PROVIDER_LOOP_STOP_SECONDS)


async def close_quietly(stream: AsyncIterator[bytes]) -> None:
    """Close a provider stream; a failure to close it is only worth a debug line."""
    close = getattr(stream, "aclose", None)
    if close is not None:
        try:
            await close()
        except (RuntimeError, OSError) as exc:
            logger.debug("closing the upstream stream: %s", type(exc).__name__)


async def create_message(
    body: Mapping[str, Any],
    headers: Mapping[str, str],
    targets: Sequence[UpstreamTarget],
    *,
    large: bool = False,
) -> tuple[UpstreamTarget, dict[str, Any] | AsyncIterator[bytes]]:
    """Send a (masked) Messages request to the first target that answers.

    headers: the client headers the provider sees, already checked (validation).
    large: a large request, whose call runs on the provider loop (see ProviderLoop).
    Returns the target that answered and its answer: a message dict, or raw Anthropic SSE
    bytes when streaming. A target that fails before answering (see falls_back) hands the
    request to the next one; the last one's error is raised.
    """
    send = _send_on_provider_loop if large else _send
    for position, target in enumerate(targets):
        try:
            return target, await send(target, body, headers)
        except ProxyError as error:
            error.upstream_model = target.model
            if position + 1 == len(targets) or not falls_back(error):
                raise
            logger.warning(
                "route %s failed with %s %s; falling back to %s",
                target.route,
                error.status,
                error.error_type,
                targets[position + 1].route,
            )
    raise ProviderNotConfigured()  # no target at all


def falls_back(error: ProxyError) -> bool:
    """Whether another provider may succeed where this one failed before answering.

    The provider being away, overloaded, rate-limited or refusing our credentials is its
    problem; a 400 or a 413 is the request's, and another provider would refuse it too.
    """
    if isinstance(error, (UpstreamTimeout, UpstreamUnreachable, ProviderNotConfigured)):
        return True
    return isinstance(error, UpstreamError) and (
        error.status >= 500 or error.status in {401, 403, 404, 408, 429}
    )


async def _send(
    target: UpstreamTarget, body: Mapping[str, Any], headers: Mapping[str, str]
) -> dict[str, Any] | AsyncIterator[bytes]:
    _require_credential(target)
    # LiteLLM reads many keyword arguments as options (api_base, base_url, headers,
    # callbacks, files to read, ...): only Messages API fields by name, never the body as is.
    fields = {name: body[name] for name in MESSAGE_ARGUMENTS if name in body}
    try:
        with _unlogged_by_litellm():
            result: Any = await litellm.anthropic.messages.acreate(
                model=target.model,
                timeout=httpx.Timeout(target.timeout, connect=target.connect_timeout),
                extra_headers=dict(headers),
                # One attempt: the OpenAI SDK inside LiteLLM would retry twice by itself (honouring
                # retry-after), hiding the failure from the fallbacks and the client's own retries.
                num_retries=0,
                **_destination_and_key(target),
                **fields,
            )
    except Exception as exc:  # noqa: BLE001 - every LiteLLM failure becomes a ProxyError
        raise translate_error(exc) from None
    # A plain dict (non-streaming) or an async iterator of raw SSE bytes.
    return result  # type: ignore[no-any-return]


def _unlogged_by_litellm() -> contextlib.AbstractContextManager[None]:
    """LiteLLM's success and failure logging off for one call.

    After each call LiteLLM builds a logging payload for its callbacks: it copies every
    message, prices the call, counts tokens, and serialises the lot (a few milliseconds a
    request, tens for a long conversation, on the loop that made the call). The proxy registers
    no callbacks and keeps its own audit, so none of it is read. LiteLLM has no public switch
    for this; its marker for the sub-calls a parent call logs (`internal_sub_call`, a context
    variable, so set for this call only, never from a request) skips exactly that work. The
    pinned version's behaviour is checked by tests/proxy/test_upstream_logging.py.
    """
    return internal_sub_call()


def _require_credential(target: UpstreamTarget) -> None:
    if target.missing_credential:
        logger.error(
            "route %s: the credential variable %s cannot be read",
            target.route,
            target.missing_credential,
        )
        raise ProviderNotConfigured()


def _destination_and_key(target: UpstreamTarget) -> dict[str, Any]:
    # Always a key: given none (or ""), LiteLLM would take the provider's usual environment
    # variable (OPENAI_API_KEY, ...) and send it to the route's API base. Without an API base,
    # LiteLLM uses the provider's default URL.
    arguments: dict[str, Any] = {"api_key": target.api_key or NO_CREDENTIAL}
    if target.api_base:
        arguments["api_base"] = target.api_base
    return arguments


async def probe(target: UpstreamTarget, seconds: float) -> None:
    """A minimal live call (one output token), for the deep health check."""
    await _send(
        replace(target, timeout=seconds, connect_timeout=min(seconds, target.connect_timeout)),
        {"messages": [{"role": "user", "content": "ping"}], "max_tokens": 1},
        {},
    )


async def stream_bytes(stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The provider's SSE bytes, with failures mid-stream translated into ProxyErrors."""
    try:
        async for chunk in stream:
            yield chunk
    except Exception as exc:  # noqa: BLE001 - see create_message
        raise translate_error(exc) from None


async def count_tokens(
    body: Mapping[str, Any], headers: Mapping[str, str], target: UpstreamTarget
) -> dict[str, Any]:
    """Count a (masked) request's input tokens with an Anthropic provider's own endpoint."""
    _require_credential(target)
    if target.provider != "anthropic":
        # Tokenizing a large request takes a while: not on the event loop.
        return {"input_tokens": await asyncio.to_thread(_local_token_count, body, target)}
    request_headers = {
        "anthropic-version": ANTHROPIC_VERSION,
        **headers,
        "x-api-key": target.api_key,
    }
    counted = {**body, "model": target.provider_model}
    response = await _anthropic_request(
        "POST", target, "/v1/messages/count_tokens", request_headers, json=counted
    )
    result: dict[str, Any] = response.json()
    return result


def _local_token_count(body: Mapping[str, Any], target: UpstreamTarget) -> int:
    """LiteLLM's local estimate (tiktoken) where the provider has no Anthropic-style counter."""
    system = body.get("system")
    if isinstance(system, list):
        system = "\n".join(b.get("text", "") for b in system if isinstance(b, dict))
    messages = [{"role": "system", "content": system}] if isinstance(system, str) else []
    messages += [m for m in body.get("messages") or [] if isinstance(m, dict)]
    tools: Any = [
        {
            "type": "function",
            "function": {
                "name": tool.get("name", ""),
                "description": tool.get("description", ""),
                "parameters": tool.get("input_schema") or {},
            },
        }
        for tool in body.get("tools") or []
        if isinstance(tool, dict)
    ]
    try:
        counted = litellm.token_counter(model=target.model, messages=messages, tools=tools or None)
        return int(counted)
    except Exception as exc:  # noqa: BLE001 - an estimate, so a rougher one will do
        logger.warning("local token count failed: %s", type(exc).__name__)
        return len(json.dumps(messages, ensure_ascii=False)) // 4 + 1


async def list_anthropic_models(target: UpstreamTarget) -> list[dict[str, Any]]:
    """The models an Anthropic provider lists (GET /v1/models, every page)."""
    # A listing waits for a slow provider less than a message does.
    target = replace(target, timeout=min(target.timeout, MODEL_LIST_TIMEOUT))
    request_headers = {"x-api-key": target.api_key, "anthropic-version": ANTHROPIC_VERSION}
    models: list[dict[str, Any]] = []
    params: dict[str, str] = {"limit": "1000"}
    for _ in range(MODEL_LIST_PAGES):
        response = await _anthropic_request(
            "GET", target, "/v1/models", request_headers, params=params
        )
        page = response.json()
        models.extend(m for m in page.get("data") or [] if isinstance(m, dict))
        if not page.get("has_more") or not page.get("last_id"):
            break
        params["after_id"] = str(page["last_id"])
    return models


async def _anthropic_request(
    method: str, target: UpstreamTarget, path: str, headers: Mapping[str, str], **kwargs: Any
) -> httpx.Response:
    timeout = httpx.Timeout(target.timeout, connect=target.connect_timeout)
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            response = await client.request(
                method, f"{target.api_base}{path}", headers=dict(headers), **kwargs
            )
    except httpx.TimeoutException:
        raise UpstreamTimeout() from None
    except httpx.HTTPError:
        raise UpstreamUnreachable() from None
    if response.status_code >= 400:
        error = _provider_error(response.text)
        raise _from_status(response.status_code, error, response.headers)
    return response


def gateway_stream_error(event: Mapping[str, Any]) -> StreamFailure | None:
    """The error to send for an SSE error event LiteLLM wrote itself, None for a provider's.

    LiteLLM ends a converted stream whose provider broke off with an error event whose
    message is its own exception text: not for clients.
    """
    error = event.get("error")
    message = error.get("message") if isinstance(error, dict) else None
    if isinstance(message, str) and message.startswith(_GATEWAY_MESSAGE_PREFIX):
        cut = UpstreamUnreachable("The upstream stream ended before the message was complete.")
        return StreamFailure(status=cut.status, error_type=cut.error_type, message=cut.message)
    return None


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
        # The provider's error body: in the message (Anthropic), or only in the response
        # LiteLLM kept (OpenAI through its SDK).
        error = _provider_error(message) or _provider_error(_response_text(exc))
        upstream_headers = getattr(exc, "litellm_response_headers", None) or {}
        if error is None and _is_connection_failure(exc, message):
            return UpstreamUnreachable()
        return _from_status(real_status, error, upstream_headers)
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


@dataclass(frozen=True)
class ProviderError:
    """The error a provider answered with: Anthropic's type when it is Anthropic's shape."""

    message: str
    anthropic_type: str | None = None


def _from_status(
    status: int, error: ProviderError | None, headers: Mapping[str, str]
) -> ProxyError:
    if error is None and status >= 500:
        # No error from the provider: its answer never arrived whole (LiteLLM calls a body
        # cut off mid-way a 500). A gateway's problem, not ours: 502.
        return UpstreamUnreachable("The upstream provider's answer was cut off or unreadable.")
    if error is not None and error.anthropic_type:
        error_type = error.anthropic_type
        status = status_for_error_type(error_type, default=status)
    else:
        error_type = _STATUS_TYPES.get(status, "api_error")
    message = error.message if error is not None else ""
    if status in (401, 403) and (error is None or error.anthropic_type is None):
        # Other providers quote part of the rejected key back ("sk-...abcd"): the proxy's key.
        message = "The upstream provider refused the proxy's credentials for this model."
    relayed = {name: headers[name] for name in RELAYED_ERROR_HEADERS if headers.get(name)}
    if "request-id" in relayed:
        relayed["upstream-request-id"] = relayed.pop("request-id")
    return UpstreamError(
        message or f"The upstream provider answered {status}.",
        status=status,
        error_type=error_type,
        headers=relayed,
    )


def _response_text(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    try:
        text = response.text if response is not None else ""
    except httpx.StreamError:  # a response never read (or closed) has no text to give
        return ""
    return text if isinstance(text, str) else ""


def _provider_error(text: str) -> ProviderError | None:
    """The error object of an error body found in text (LiteLLM wraps it in its message).

    Anthropic's bodies are {"type": "error", "error": {"type", "message"}}; OpenAI-style ones
    {"error": {"message", "type", "code"}}, whose type is not one of Anthropic's.
    """
    start = text.find("{")
    while start != -1:
        try:
            decoded, _ = json.JSONDecoder().raw_decode(text, start)
        except ValueError:
            start = text.find("{", start + 1)
            continue
        if isinstance(decoded, dict) and isinstance(decoded.get("error"), dict):
            error: dict[str, Any] = decoded["error"]
            message = error.get("message")
            kind = error.get("type")
            anthropic = decoded.get("type") == "error" and isinstance(kind, str)
            return ProviderError(
                message=message if isinstance(message, str) else "",
                anthropic_type=kind if anthropic else None,
            )
        start = text.find("{", start + 1)
    return None


def _is_connection_failure(exc: BaseException, message: str) -> bool:
    if isinstance(exc, litellm_errors.APIConnectionError):
        return True
    lowered = message.lower()
    return "connect" in lowered or "connection" in lowered
