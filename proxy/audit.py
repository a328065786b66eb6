"""The audit trail: one record per proxied request, counts only — never a value."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from django.db import DatabaseError

from proxy.auth import KeyPrincipal
from proxy.models import AuditRecord

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AuditEntry:
    principal: KeyPrincipal
    request_id: str
    endpoint: str
    model: str
    stream: bool
    status: int
    error_type: str = ""
    latency_ms: int = 0
    upstream_latency_ms: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    masked_by_pattern: Mapping[str, int] = field(default_factory=dict)
    restored_total: int = 0
    upstream_failed: bool = False


async def write_audit(entry: AuditEntry) -> None:
    """Store the record; a failure is logged, never turned into a failed request."""
    try:
        await AuditRecord.objects.acreate(
            api_key_id=entry.principal.key_id,
            key_prefix=entry.principal.prefix,
            key_name=entry.principal.name,
            namespace=entry.principal.namespace,
            request_id=entry.request_id,
            endpoint=entry.endpoint,
            model=entry.model,
            stream=entry.stream,
            status=entry.status,
            error_type=entry.error_type,
            latency_ms=entry.latency_ms,
            upstream_latency_ms=entry.upstream_latency_ms,
            input_tokens=entry.input_tokens,
            output_tokens=entry.output_tokens,
            masked_total=sum(entry.masked_by_pattern.values()),
            masked_by_pattern=dict(entry.masked_by_pattern),
            restored_total=entry.restored_total,
        )
    except DatabaseError as exc:
        logger.error(
            "audit record not written: request_id=%s error=%s", entry.request_id, type(exc).__name__
        )
    logger.info(
        "request_id=%s key=%s endpoint=%s model=%s stream=%s status=%s latency_ms=%s masked=%s",
        entry.request_id,
        entry.principal.prefix,
        entry.endpoint,
        entry.model,
        entry.stream,
        entry.status,
        entry.latency_ms,
        sum(entry.masked_by_pattern.values()),
    )


# Strong references: a task nobody holds can be garbage-collected before it runs.
_pending: set[asyncio.Task[None]] = set()


def write_audit_later(entry: AuditEntry) -> None:
    """Write the record in the background: a response or stream never waits for it."""
    from proxy import metrics  # imported here: metrics imports this module

    metrics.observe(entry)
    task = asyncio.get_running_loop().create_task(write_audit(entry))
    _pending.add(task)
    task.add_done_callback(_pending.discard)


async def drain_audit() -> None:
    """Wait for this event loop's pending audit writes (shutdown, tests)."""
    loop = asyncio.get_running_loop()
    pending = [task for task in _pending if task.get_loop() is loop]
    if pending:
        await asyncio.gather(*pending)
