"""Log formatting: the request id on every record, no client-chosen path, and JSON lines for
production."""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime

# Set by proxy.middleware for each request; "-" outside one.
request_id_var: ContextVar[str] = ContextVar("request_id", default="-")


class RequestIdFilter(logging.Filter):
    """Adds record.request_id, so any formatter can show which request a line belongs to."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


class SafePathFilter(logging.Filter):
    """Shows the route, never the path, in Django's request lines ("Not Found: %s"), and no
    Host header in its DisallowedHost lines: both are text the client chose, which may hold a
    value the proxy exists to keep out of sight ("/v1/models/AKIA...")."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "django.security.DisallowedHost":
            # Its traceback ends in the exception's message, which quotes the header.
            record.msg, record.args = DISALLOWED_HOST_LINE, ()
            record.exc_info, record.exc_text = None, None
            return True
        path = getattr(getattr(record, "request", None), "path_info", None)
        if isinstance(path, str) and isinstance(record.args, tuple):
            full = record.request.path  # type: ignore[attr-defined]
            # Django logs the path escaped (unicode_escape).
            said = {full, full.encode("unicode_escape").decode("ascii")}
            shown = route_of(path)
            record.args = tuple(shown if arg in said else arg for arg in record.args)
        return True


DISALLOWED_HOST_LINE = "Invalid Host header (not in ALLOWED_HOSTS); the header is not logged."
UNROUTED = "[a path no route serves]"


def route_of(path: str) -> str:
    """The URL pattern that serves path ("/v1/models/<path:model_id>"), or UNROUTED."""
    from django.urls import Resolver404, resolve  # only once a request is being logged

    try:
        return "/" + resolve(path).route
    except Resolver404:
        return UNROUTED


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, request id, message (and exception)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)
