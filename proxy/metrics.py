"""Prometheus metrics: requests, latencies, masked values per pattern, upstream and Redis errors.

Every label takes a bounded set of values: none is a string a client chose (model names are
"other" unless the routes or the catalogue know them).

With several worker processes, set PROMETHEUS_MULTIPROC_DIR (prometheus_client's
multiprocess mode) so that any worker's /metrics answers for all of them.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from proxy import catalog
from proxy.routes import loaded_route_table

if TYPE_CHECKING:
    from proxy.audit import AuditEntry  # the audit module reports through this one

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

REQUESTS = Counter(
    "maskproxy_requests", "Proxied requests.", ["endpoint", "model", "status", "stream"]
)
REQUEST_SECONDS = Histogram(
    "maskproxy_request_seconds",
    "Total time per request.",
    ["endpoint", "stream"],
    buckets=_LATENCY_BUCKETS,
)
UPSTREAM_SECONDS = Histogram(
    "maskproxy_upstream_seconds",
    "Time to the provider's answer (headers, for streams).",
    ["endpoint"],
    buckets=_LATENCY_BUCKETS,
)
MASKED_VALUES = Counter("maskproxy_masked_values", "Values masked, by pattern.", ["pattern"])
UPSTREAM_ERRORS = Counter(
    "maskproxy_upstream_errors", "Errors answered by or about the provider.", ["status", "type"]
)
MAPPING_STORE_ERRORS = Counter(
    "maskproxy_mapping_store_errors",
    "Requests refused because Redis or the rules were unavailable.",
)


OTHER_MODEL = "other"


def model_label(model: str) -> str:
    """The requested model as a label: a name the routes or the catalogue know, else "other".

    Clients choose model names: taken as sent, every new name would be a new time series, for
    as long as the process lives. The audit row keeps the name (proxy.services.model_label).
    """
    return model if catalog.is_known_model(loaded_route_table(), model) else OTHER_MODEL


def observe(entry: AuditEntry) -> None:
    """Count one finished request (called with its audit entry: one source of truth)."""
    stream = "true" if entry.stream else "false"
    # entry.model has been through proxy.services.model_label: a name with a sensitive value
    # in it is "(masked)" already, which no route or catalogue knows.
    REQUESTS.labels(entry.endpoint, model_label(entry.model), str(entry.status), stream).inc()
    REQUEST_SECONDS.labels(entry.endpoint, stream).observe(entry.latency_ms / 1000)
    if entry.upstream_latency_ms is not None:
        UPSTREAM_SECONDS.labels(entry.endpoint).observe(entry.upstream_latency_ms / 1000)
    for pattern, count in entry.masked_by_pattern.items():
        MASKED_VALUES.labels(pattern).inc(count)
    if entry.upstream_failed:
        UPSTREAM_ERRORS.labels(str(entry.status), entry.error_type).inc()
    elif entry.status == 503:
        MAPPING_STORE_ERRORS.inc()


def render() -> bytes:
    """The exposition text for every process of this host (multiprocess mode) or this one."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest()
