"""The proxy's one job: mask a request, send it upstream, restore the answer, audit it."""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.conf import settings

from patterns.engine import FindingBudget, Snapshot, TooManyFindings
from patterns.memory import learning, process_memory
from patterns.occurrences import KnownValues
from patterns.placements import PlacementCache, collides, trust_seconds
from patterns.scanner import Elsewhere, Scanner, ScannerUnavailable, holds_values
from patterns.services import (
    FoundValues,
    MaskedTexts,
    RulesUnavailable,
    allocation,
    arules_snapshot,
    find_values,
    loaded_snapshot,
    masked_texts,
    remember_checked,
)
from patterns.store import (
    Allocation,
    AsyncMappingStore,
    ControlStoreUnavailable,
    MappingStoreUnavailable,
    Versions,
)
from proxy import catalog, fair_use, upstream
from proxy.audit import AuditEntry, report_outcome
from proxy.auth import KeyPrincipal
from proxy.errors import (
    InvalidRequest,
    MaskingUnavailable,
    ProxyError,
    RequestTooLarge,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from proxy.fair_use import Work, run_cpu
from proxy.masking import (
    RequestStrings,
    forwarded_request,
    holds_value,
    replace_request_texts,
    request_strings,
    restore_response,
)
from proxy.routes import aroute_table
from proxy.stores import loop_store
from proxy.streaming import StreamRestorer, encode_sse
from proxy.targets import UpstreamTarget
from proxy.validation import (
    ANTHROPIC_BETA_HEADER,
    RequestLimits,
    parse_json_body,
    validate_messages_request,
)

logger = logging.getLogger(__name__)
T = TypeVar("T")

UPSTREAM_ERRORS = (UpstreamError, UpstreamTimeout, UpstreamUnreachable)
CLIENT_CLOSED_STATUS, CLIENT_CLOSED_ERROR = 499, "client_closed"
# What Anthropic's count_tokens accepts; the rest of a Messages body is not sent there.
COUNTED_FIELDS = frozenset(
    {"model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers"}
)


_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/\[\]-]{0,99}\Z")
# Occurrences of values a request may hold, per distinct value it may hold (the same ID in
# every line of a log is ordinary; a million IDs in one request are not).
OCCURRENCES_PER_VALUE = 10
UNMASKABLE = (
    "A sensitive value sits where it cannot be masked (a name, an id, a setting, a URL the "
    "provider fetches or a header); the request was not sent."
)


def model_label(model: Any) -> str:
    """The model name as logs and audit rows may hold it: a name, never a value ("" before
    the body was read)."""
    if model is None:
        return ""
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
    headers: Mapping[str, str]  # the client headers the provider sees, checked
    request_id: str
    work: Work = field(default_factory=Work)  # its size, and CPU seconds off the event loop
    started: float = field(default_factory=time.monotonic)
    masked: MaskedTexts | None = None
    trial_counts: Mapping[str, int] = field(default_factory=dict)  # rules on trial
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
            trial_by_pattern=dict(self.trial_counts),
            upstream_model=model_label(self.upstream_model) if self.upstream_model else "",
            **extra,
        )


# The process's scanning process (started at start-up, see proxy.lifecycle).
scanner = Scanner()


async def accept_request(call: ProxyCall, raw: bytes, *, count_tokens: bool) -> None:
    """Admit the request, then parse and validate its body into call.body.

    The key's limits come first: a key past them does not get its body parsed.
    Raises InvalidRequest, RequestTooLarge or RateLimited.
    """
    call.work.size = len(raw)
    if not call.store_unavailable:  # else refused once the body is read (with its model)
        await fair_use.within_limits(call.principal)
    try:
        call.body = await run_cpu(call.work, _parse_and_validate, raw, count_tokens, _limits())
    finally:
        await fair_use.charge(call.principal, call.work)


def _limits() -> RequestLimits:
    return RequestLimits.from_settings()


def _parse_and_validate(raw: bytes, count_tokens: bool, limits: RequestLimits) -> dict[str, Any]:
    body = parse_json_body(raw)
    validate_messages_request(body, count_tokens=count_tokens, limits=limits)
    return body


async def mask_request(call: ProxyCall) -> dict[str, Any]:
    """The forwarded request with every text masked in the caller's namespace (fail closed).

    Everything that refuses a request (a value where no placeholder can go, too many strings
    or values) is decided before any value is placed in Redis. A large request's texts are
    scanned in the scanning process, the rest of its work done on a thread.
    """
    try:
        return await _masked(call)
    finally:
        await fair_use.charge(call.principal, call.work)


async def _masked(call: ProxyCall) -> dict[str, Any]:
    store = loop_store()
    try:
        snapshot = await arules_snapshot(store.control, call.rules_version)
    except (ControlStoreUnavailable, RulesUnavailable):
        raise MaskingUnavailable() from None
    namespace = call.principal.namespace
    try:
        known = await process_memory().known(store, namespace, snapshot)
    except MappingStoreUnavailable:
        raise MaskingUnavailable() from None
    body = forwarded_request(call.body)
    limits = _value_limits()
    strings = await run_cpu(call.work, _checked_strings, body, call.headers, snapshot, limits)
    found = await _found_values(call, snapshot, strings, limits, known)
    if snapshot.trial is not None:
        call.trial_counts = await run_cpu(call.work, snapshot.trial_counts, strings.texts)
    try:
        placeholders = await _placeholders(call, store, namespace, found)
    except MappingStoreUnavailable:
        raise MaskingUnavailable() from None
    call.masked = masked = await run_cpu(call.work, masked_texts, found, placeholders)
    # Masking reaches a fixpoint: a masked text in which a value is still found would go out
    # with it, so the request stops here instead (a rule that cannot converge, say). A text
    # masked as in an earlier request that passed this check is not scanned again.
    changed = [
        after
        for index, (before, after) in enumerate(zip(found.texts, masked.texts, strict=True))
        if after is not before and index not in masked.checked
    ]
    if await _hold_values(call, snapshot, changed, frozenset(placeholders.values())):
        raise InvalidRequest(UNMASKABLE)
    await run_cpu(call.work, remember_checked, found, masked, placeholders)
    return await run_cpu(call.work, replace_request_texts, body, iter(masked.texts))


async def _placeholders(
    call: ProxyCall, store: AsyncMappingStore, namespace: str, found: FoundValues
) -> dict[str, str]:
    """value -> placeholder for every value found: those Redis confirmed a moment ago from
    this process's cache (patterns.placements), the others from Redis. If Redis numbered a
    new value with a placeholder the cache gives another (a mapping was deleted meanwhile),
    the cache is dropped for the namespace and every value placed again."""
    cache = placement_cache()
    learn = learning()
    # A long conversation's thousands of values: on a thread for a large request.
    trusted, missing = await run_cpu(call.work, _split, cache, namespace, found, learn)
    placed = await _place(call, store, namespace, missing)
    if collides(trusted, placed):
        logger.warning("a placeholder in this process's cache was given again; placing anew")
        cache.forget(namespace)
        trusted, placed = {}, await _place(call, store, namespace, found.allocations(learn=learn))
    cache.remember(namespace, placed)
    return {**trusted, **placed}


def _split(
    cache: PlacementCache, namespace: str, found: FoundValues, learn: bool
) -> tuple[dict[str, str], list[Allocation]]:
    """The placeholders the cache trusts, and the allocations of the other values."""
    firsts = list(found.firsts.values())
    trusted, missing = cache.split(namespace, firsts) if cache.enabled else ({}, firsts)
    return trusted, [allocation(f, learn=learn) for f in missing]


async def _place(
    call: ProxyCall, store: AsyncMappingStore, namespace: str, allocations: list[Allocation]
) -> dict[str, str]:
    if not allocations:
        return {}
    prepared = await run_cpu(call.work, store.prepare, namespace, allocations)
    return await store.place(prepared)


@functools.cache
def placement_cache() -> PlacementCache:
    """This process's placements cache (PROXY_PLACEMENT_CACHE_VALUES; 0 turns it off)."""
    return PlacementCache(
        settings.PROXY_PLACEMENT_CACHE_VALUES, trust_seconds(settings.MAPPING_TTL_SECONDS)
    )


@dataclass(frozen=True)
class _ValueLimits:
    strings: int
    values: int

    @property
    def occurrences(self) -> int:
        return self.values * OCCURRENCES_PER_VALUE

    def too_many(self) -> RequestTooLarge:
        return RequestTooLarge(
            f"The request holds more than {self.values} distinct sensitive values, or more "
            f"than {self.occurrences} occurrences of them (this proxy's "
            "PROXY_MAX_VALUES_PER_REQUEST); send them in smaller requests."
        )


def _value_limits() -> _ValueLimits:
    return _ValueLimits(
        strings=settings.PROXY_MAX_STRINGS, values=settings.PROXY_MAX_VALUES_PER_REQUEST
    )


def _checked_strings(
    body: Mapping[str, Any], headers: Mapping[str, str], snapshot: Snapshot, limits: _ValueLimits
) -> RequestStrings:
    """The request's strings by place; refuses values where no placeholder can go, and
    requests with too many strings."""
    strings = request_strings(body)
    if len(strings.texts) + len(strings.checked) > limits.strings:
        raise RequestTooLarge(
            f"At most {limits.strings} strings in one request (this proxy's PROXY_MAX_STRINGS)."
        )
    betas = headers.get(ANTHROPIC_BETA_HEADER, "").split(",")
    # The same names recur (types, roles, tool names): each distinct one is scanned once.
    if any(holds_value(text, snapshot) for text in {*strings.checked, *betas}):
        raise InvalidRequest(UNMASKABLE)
    return strings


async def _found_values(
    call: ProxyCall,
    snapshot: Snapshot,
    strings: RequestStrings,
    limits: _ValueLimits,
    known: KnownValues,
) -> FoundValues:
    """The values in the texts (with what the namespace learned), refused past the limits (a
    text dense with values costs time per match: the scan stops at a budget rather than
    finish what will be refused)."""
    budget = FindingBudget(limits.occurrences)
    namespace = call.principal.namespace
    try:
        if not call.work.heavy:
            found = find_values(snapshot, strings.texts, strings.runs, budget, known, namespace)
        else:
            # On a thread; what the scan cache does not know is scanned in the scanning
            # process when there is much of it (a history's first request).
            found = await _failing_closed(
                run_cpu(
                    call.work,
                    find_values,
                    snapshot,
                    strings.texts,
                    strings.runs,
                    budget,
                    known,
                    namespace,
                    _scanning_elsewhere(call, snapshot),
                )
            )
    except TooManyFindings:
        raise limits.too_many() from None
    if found.distinct > limits.values:
        raise limits.too_many()
    return found


async def _hold_values(
    call: ProxyCall, snapshot: Snapshot, texts: list[str], placeholders: frozenset[str]
) -> bool:
    namespace = call.principal.namespace
    if not call.work.heavy:
        return holds_values(snapshot, texts, placeholders, namespace)
    elsewhere = _scanning_elsewhere(call, snapshot)
    # Too large to look up text by text here: every text goes to the scanning process.
    scope = None if elsewhere.too_large(texts) else namespace
    return await _failing_closed(
        run_cpu(
            call.work,
            functools.partial(holds_values, scan=elsewhere.scan),
            snapshot,
            texts,
            placeholders,
            scope,
        )
    )


def _scanning_elsewhere(call: ProxyCall, snapshot: Snapshot) -> Elsewhere:
    """A large request's scanning process: batches of OFF_LOOP_BYTES or more, and the rest
    of the work when the rules read that much new text (its CPU time charged to the
    request)."""

    def spent(cpu_seconds: float) -> None:
        call.work.cpu_seconds += cpu_seconds

    return scanner.scans(snapshot, fair_use.OFF_LOOP_BYTES, spent)


async def _failing_closed(job: Awaitable[T]) -> T:
    try:
        return await job
    except ScannerUnavailable:
        logger.error("the scanning process stopped; the request was refused")
        raise MaskingUnavailable() from None


async def upstream_targets(call: ProxyCall) -> list[UpstreamTarget]:
    """Where the requested model goes: its route's target, then the route's fallbacks."""
    table = await aroute_table(call.routes_version or "")
    return table.targets(call.body["model"])


def admit(call: ProxyCall) -> None:
    """Let the request in: Redis answered when authentication asked it (fail closed)."""
    if call.store_unavailable:
        raise MaskingUnavailable()


async def available_models(principal: KeyPrincipal, versions: Versions | None) -> list[Any]:
    """GET /v1/models: what may be requested (a request against the key's rate limit)."""
    if versions is None:
        raise MaskingUnavailable()  # Redis is away: this process serves nothing
    await fair_use.within_limits(principal)
    return await catalog.available_models(await aroute_table(versions.routes))


async def send_message(call: ProxyCall) -> dict[str, Any] | AsyncIterator[bytes]:
    """Messages: a restored message object, or an SSE byte stream restored as it flows."""
    slot = False
    try:
        admit(call)
        targets = await upstream_targets(call)
        slot = bool(call.body.get("stream")) and await fair_use.take_stream_slot(
            call.principal, call.request_id
        )
        masked_body = await mask_request(call)
        upstream_started = time.monotonic()
        if call.work.heavy:
            await fair_use.loop_watch.slack()  # LiteLLM's work for it, too, waits its turn
        target, result = await upstream.create_message(
            masked_body, call.headers, targets, large=call.work.heavy
        )
        call.upstream_model = target.model
    except ProxyError as error:
        if slot:
            await fair_use.release_stream_slot(call.principal, call.request_id)
        report_outcome(call.failed(error))
        raise
    except asyncio.CancelledError:
        # The client left (or the server stopped) before the answer began.
        if slot:
            await fair_use.release_stream_slot(call.principal, call.request_id)
        report_outcome(call.client_left())
        raise
    upstream_ms = int((time.monotonic() - upstream_started) * 1000)
    restore = call.masked.restore if call.masked else {}
    if isinstance(result, dict):
        message, restored = restore_response(result, restore)
        usage = message.get("usage") or {}
        report_outcome(
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
        await upstream.close_quietly(stream)
        if slot:
            await fair_use.release_stream_slot(call.principal, call.request_id)
        report_outcome(
            call.audit(
                status=status,
                error_type=error_type,
                upstream_latency_ms=upstream_ms,
                restored_total=restorer.restored,
                upstream_failed=upstream_failed,
            )
        )


async def count_tokens(call: ProxyCall) -> dict[str, Any]:
    """count_tokens on the masked request: the provider counts what it would read."""
    try:
        admit(call)
        [target, *_] = await upstream_targets(call)
        masked_body = {k: v for k, v in (await mask_request(call)).items() if k in COUNTED_FIELDS}
        result = await upstream.count_tokens(masked_body, call.headers, target)
        call.upstream_model = target.model
    except ProxyError as error:
        report_outcome(call.failed(error))
        raise
    except asyncio.CancelledError:
        report_outcome(call.client_left())
        raise
    report_outcome(call.audit(status=200, input_tokens=result.get("input_tokens")))
    return result
