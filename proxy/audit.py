"""The audit trail: one record per proxied request, counts only — never a value."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from asgiref.sync import sync_to_async
from django.db import DatabaseError, IntegrityError, connections
from django.utils import timezone

from proxy import metrics
from proxy.auth import KeyPrincipal
from proxy.models import AuditRecord

logger = logging.getLogger(__name__)

BATCH_SIZE = 200
# The writer closes its database connection after this long without a record, so an idle
# process holds none open (and a database restart costs at most the next batch).
IDLE_CLOSE_SECONDS = 1.0


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
    trial_by_pattern: Mapping[str, int] = field(default_factory=dict)
    restored_total: int = 0
    upstream_failed: bool = False
    upstream_model: str = ""
    created_at: datetime = field(default_factory=timezone.now)


def audit_record(entry: AuditEntry) -> AuditRecord:
    return AuditRecord(
        created_at=entry.created_at,
        api_key_id=entry.principal.key_id,
        key_prefix=entry.principal.prefix,
        key_name=entry.principal.name,
        namespace=entry.principal.namespace,
        # Never None by its type, yet once None at run time (not reproduced): the row is
        # worth more than its id, which the column allows to be empty.
        request_id=entry.request_id or "",
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
        trial_by_pattern=dict(entry.trial_by_pattern),
        restored_total=entry.restored_total,
        upstream_model=entry.upstream_model,
    )


def write_audit_batch(entries: Sequence[AuditEntry]) -> None:
    """Store the records in one statement; a failure is logged, never raised."""
    try:
        AuditRecord.objects.bulk_create([audit_record(entry) for entry in entries])
    except IntegrityError:
        # One bad row (say, a key deleted meanwhile) must not cost the others theirs.
        for entry in entries:
            _write_one(entry)
    except DatabaseError as exc:
        _not_written(entries, exc)


def _write_one(entry: AuditEntry) -> None:
    try:
        audit_record(entry).save(force_insert=True)
    except DatabaseError as exc:
        _not_written([entry], exc)


def _not_written(entries: Sequence[AuditEntry], exc: DatabaseError) -> None:
    for entry in entries:
        logger.error(
            "audit record not written: request_id=%s error=%s", entry.request_id, type(exc).__name__
        )
    # The connection may be the broken part (a restarted database): the next batch opens anew.
    connections.close_all()


class AuditWriter:
    """One thread per process writing queued records, many per transaction.

    Requests only enqueue (no thread hop, no database round trip on the request path); under
    load the writer's batches grow, so the database sees one insert per batch, not per request.
    """

    def __init__(self, *, batch_size: int = BATCH_SIZE) -> None:
        self._batch_size = batch_size
        self._queue: queue.SimpleQueue[AuditEntry] = queue.SimpleQueue()
        self._unfinished = 0
        self._done = threading.Condition()
        self._thread: threading.Thread | None = None

    def submit(self, entry: AuditEntry) -> None:
        with self._done:
            self._unfinished += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
                self._thread.start()
        self._queue.put(entry)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every submitted record is written (or failed); False on timeout."""
        with self._done:
            return self._done.wait_for(lambda: self._unfinished == 0, timeout)

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=IDLE_CLOSE_SECONDS)
            except queue.Empty:
                connections.close_all()
                first = self._queue.get()
            batch = [first]
            while len(batch) < self._batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                write_audit_batch(batch)
            finally:
                with self._done:
                    self._unfinished -= len(batch)
                    self._done.notify_all()


_writer = AuditWriter()


def report_outcome(entry: AuditEntry) -> None:
    """A request's outcome, reported everywhere it goes: the metrics, the log line, and the
    audit record queued for the writer thread (a response or stream never waits for it)."""
    metrics.observe(entry)
    _writer.submit(entry)
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


def flush_audit(timeout: float | None = None) -> bool:
    """Wait for every queued record to be written (shutdown, tests); False on timeout."""
    return _writer.flush(timeout)


async def drain_audit(seconds: float | None = None) -> bool:
    """flush_audit without blocking the event loop; False if records remain after seconds."""
    return await sync_to_async(flush_audit, thread_sensitive=False)(seconds)
