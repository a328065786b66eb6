"""The proxy's one job: mask a request, send it upstream, restore the answer, audit it."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from patterns.services import (
    MaskedTexts,
    RulesUnavailable,
    amask_texts,
    arules_snapshot,
    loaded_snapshot,
)
from patterns.store import MappingStoreUnavailable, Versions
from proxy import catalog, upstream
from proxy.audit import AuditEntry, write_audit_later
from proxy.auth import KeyPrincipal
from proxy.errors import (
    InvalidRequest,
    MaskingUnavailable,
    ProxyError,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from proxy.masking import (
    replace_request_texts,
    request_texts,
    restore_response,
    unmaskable_leftovers,
)
from proxy.routes import UpstreamTarget, aroute_table
from proxy.stores import request_store
from proxy.streaming import StreamRestorer, encode_sse

logger = logging.getLogger(__name__)

UPSTREAM_ERRORS = (UpstreamError, UpstreamTimeout, UpstreamUnreachable)
CLIENT_CLOSED_STATUS, CLIENT_CLOSED_ERROR = 499, "client_closed"
# What Anthropic's count_tokens accepts; the rest of a Messages body is not sent there.
COUNTED_FIELDS = frozenset(
    {"model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers"}
)


_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/\[\]-]{0,99}\Z")


def model_label(model: Any) -> str:
    """The model name as logs and audit rows may hold it: a name, never a value."""
    if not isinstance(model, str) or not _MODEL_NAME.match(model):
        return "(invalid)"
    snapshot = loaded_snapshot()
    if snapshot is not None and snapshot.find(model):
        return "(masked)"
    return model


@dataclass
class ProxyCall:
    """One request on its way through: who sent it, what it was, and what happened."""

    principal: KeyPrincipal
    endpoint: str
    body: dict[str, Any]
    headers: Mapping[str, str]
    request_id: str
    started: float = field(default_factory=time.monotonic)
    masked: MaskedTexts | None = None
    # The rules version token, when authentication already read it from Redis; whether
    # Redis failed to answer then (the request is refused without asking it again).
    rules_version: str | None = None
    routes_version: str | None = None
    store_unavailable: bool = False
    # The LiteLLM model that answered (after any fallback).
    upstream_model: str = ""

    def failed(self, error: ProxyError) -> AuditEntry:
        self.upstream_model = self.upstream_model or error.upstream_model
        return self.audit(
            status=error.status,
            error_type=error.error_type,
            upstream_failed=isinstance(error, UPSTREAM_ERRORS),
        )

    def client_left(self) -> AuditEntry:
        return self.audit(status=CLIENT_CLOSED_STATUS, error_type=CLIENT_CLOSED_ERROR)

    def audit(self, *, status: int, error_type: str = "", **extra: Any) -> AuditEntry:
        counts = dict(self.masked.counts) if self.masked else {}
        return AuditEntry(
            principal=self.principal,
            request_id=self.request_id,
            endpoint=self.endpoint,
            model=model_label(self.body.get("model")),
            stream=bool(self.body.get("stream", False)),
            status=status,
            error_type=error_type,
            latency_ms=int((time.monotonic() - self.started) * 1000),
            masked_by_pattern=counts,
            upstream_model=model_label(self.upstream_model) if self.upstream_model else "",
            **extra,
        )


async def mask_request(call: ProxyCall) -> dict[str, Any]:
    """The request with every text masked in the caller's namespace (fail closed)."""
    store = request_store()
    try:
        snapshot = await arules_snapshot(store, call.rules_version)
        texts = request_texts(call.body)
        call.masked = await amask_texts(
            namespace=call.principal.namespace, texts=texts, snapshot=snapshot, store=store
        )
    except (MappingStoreUnavailable, RulesUnavailable):
        raise MaskingUnavailable() from None
    masked = replace_request_texts(call.body, iter(call.masked.texts))
    leftover = unmaskable_leftovers(masked, snapshot, known_clean=call.masked.clean)
    if leftover is not None:
        # The path is not quoted back: it is built from the client's keys, which may be values.
        raise InvalidRequest(
            "A sensitive value sits where it cannot be masked (an id, a block type, the model "
            "name or a tool name); the request was not sent."
        )
    return masked


async def upstream_targets(call: ProxyCall) -> list[UpstreamTarget]:
    """Where the requested model goes: its route's target, then the route's fallbacks."""
    table = await aroute_table(call.routes_version or "")
    return table.targets(call.body["model"])


async def admit(call: ProxyCall) -> None:
    """Let the request in: Redis answered, and the key is within its requests-per-minute
    limit (one Redis round trip, only when a limit is set)."""
    if call.store_unavailable:
        raise MaskingUnavailable()
    await _within_rate_limit(call.principal)


async def available_models(principal: KeyPrincipal, versions: Versions | None) -> list[Any]:
    """GET /v1/models: what may be requested (a request against the key's rate limit)."""
    if versions is None:
        raise MaskingUnavailable()  # Redis is away: this process serves nothing
    await _within_rate_limit(principal)
    return await catalog.available_models(await aroute_table(versions.routes))


async def _within_rate_limit(principal: KeyPrincipal) -> None:
    limit = principal.rate_limit_per_minute
    if limit is None:
        return
    now = time.time()
    try:
        count = await request_store().count_request(principal.prefix, now=now)
    except MappingStoreUnavailable:
        raise MaskingUnavailable() from None
    if count > limit:
        retry_after = str(60 - int(now % 60))
        raise RateLimited(
            f"This API key may send {limit} requests a minute.",
            headers={"retry-after": retry_after},
        )


async def _take_stream_slot(call: ProxyCall) -> bool:
    """Take a stream slot when the key has a cap; True when one must be released later."""
    limit = call.principal.max_concurrent_streams
    if limit is None or not call.body.get("stream"):
        return False
    try:
        taken = await request_store().acquire_stream(
            call.principal.prefix,
            call.request_id,
            limit=limit,
            now=time.time(),
            max_age=settings.PROXY_UPSTREAM_TIMEOUT + 60,
        )
    except MappingStoreUnavailable:
        raise MaskingUnavailable() from None
    if not taken:
        raise RateLimited(f"This API key may have {limit} streams open at once.")
    return True


async def _release_stream_slot(call: ProxyCall) -> None:
    await request_store().release_stream(call.principal.prefix, call.request_id)


async def send_message(call: ProxyCall) -> dict[str, Any] | AsyncIterator[bytes]:
    """Messages: a restored message object, or an SSE byte stream restored as it flows."""
    slot = False
    try:
        await admit(call)
        targets = await upstream_targets(call)
        slot = await _take_stream_slot(call)
        masked_body = await mask_request(call)
        upstream_started = time.monotonic()
        target, result = await upstream.create_message(masked_body, call.headers, targets)
        call.upstream_model = target.model
    except ProxyError as error:
        if slot:
            await _release_stream_slot(call)
        write_audit_later(call.failed(error))
        raise
    except asyncio.CancelledError:
        # The client left (or the server stopped) before the answer began.
        if slot:
            await _release_stream_slot(call)
        write_audit_later(call.client_left())
        raise
    upstream_ms = int((time.monotonic() - upstream_started) * 1000)
    restore = call.masked.restore if call.masked else {}
    if isinstance(result, dict):
        message, restored = restore_response(result, restore)
        usage = message.get("usage") or {}
        write_audit_later(
            call.audit(
                status=200,
                upstream_latency_ms=upstream_ms,
                input_tokens=usage.get("input_tokens"),
                output_tokens=usage.get("output_tokens"),
                restored_total=restored,
            )
        )
        return message
    return _restored_stream(call, result, restore, upstream_ms, slot=slot)


async def _restored_stream(
    call: ProxyCall,
    stream: AsyncIterator[bytes],
    restore: Mapping[str, str],
    upstream_ms: int,
    *,
    slot: bool,
) -> AsyncIterator[bytes]:
    restorer = StreamRestorer(restore, gateway_error=upstream.gateway_stream_error)
    status, error_type, upstream_failed = 200, "", False
    try:
        async for chunk in upstream.stream_bytes(stream):
            out = restorer.feed(chunk)
            if out:
                yield out
        tail = restorer.close()
        if tail:
            yield tail
        if not restorer.finished:
            raise UpstreamUnreachable("The upstream stream ended before the message was complete.")
        if restorer.gateway_failure is not None:
            # LiteLLM ended the stream with an error of its own (the provider's stream broke).
            failure = restorer.gateway_failure
            status, error_type, upstream_failed = failure.status, failure.error_type, True
        elif restorer.error_type is not None:
            # The provider's own error event, relayed as it came: audit it as the failure it is.
            error_type = restorer.error_type
            status, upstream_failed = upstream.status_for_error_type(error_type), True
    except ProxyError as error:
        # Headers are gone already: the error travels as an SSE event.
        status, error_type, upstream_failed = error.status, error.error_type, True
        yield restorer.close() + encode_sse(
            "error",
            {"type": "error", "error": {"type": error.error_type, "message": error.message}},
        )
    except (asyncio.CancelledError, GeneratorExit):
        # The client went away mid-stream (nginx's 499): not a success, not the provider's fault.
        status, error_type = CLIENT_CLOSED_STATUS, CLIENT_CLOSED_ERROR
        raise
    finally:
        await _close_quietly(stream)
        if slot:
            await _release_stream_slot(call)
        write_audit_later(
            call.audit(
                status=status,
                error_type=error_type,
                upstream_latency_ms=upstream_ms,
                restored_total=restorer.stats.restored,
                upstream_failed=upstream_failed,
            )
        )


async def _close_quietly(stream: AsyncIterator[bytes]) -> None:
    close = getattr(stream, "aclose", None)
    if close is not None:
        try:
            await close()
        except (RuntimeError, OSError) as exc:
            logger.debug("closing the upstream stream: %s", type(exc).__name__)


async def count_tokens(call: ProxyCall) -> dict[str, Any]:
    """count_tokens on the masked request: the provider counts what it would read."""
    try:
        await admit(call)
        [target, *_] = await upstream_targets(call)
        masked_body = {k: v for k, v in (await mask_request(call)).items() if k in COUNTED_FIELDS}
        result = await upstream.count_tokens(masked_body, call.headers, target)
        call.upstream_model = target.model
    except ProxyError as error:
        write_audit_later(call.failed(error))
        raise
    except asyncio.CancelledError:
        write_audit_later(call.client_left())
        raise
    write_audit_later(call.audit(status=200, input_tokens=result.get("input_tokens")))
    return result
