"""make serve: gunicorn's configuration, a pre-forking master with uvicorn workers.

The master imports the application once (preload_app) and forks each worker from it, so the
workers share the pages of the imported code and data (Django, LiteLLM and its model tables,
the rules engine) instead of each importing them again: a worker costs what it writes, not
what it imported. gc.freeze() before each fork moves everything the master holds out of the
collector's sight, so a worker's collections do not touch (and copy) those shared pages.

Nothing that holds a connection or a thread exists before the fork: the database, Redis,
the scanning process, the audit writer and the provider loop start in each worker, at its
lifespan start-up (proxy.lifecycle).

Settings come from the environment, as make serve passes them: HOST, PORT, WORKERS (default:
the number of CPUs), SHUTDOWN_GRACE_SECONDS (default 30), TRUST_X_FORWARDED_PROTO (proxy
headers from FORWARDED_ALLOW_IPS only when on).
"""

from __future__ import annotations

import gc
import os
from typing import Any

from uvicorn_worker import UvicornWorker

# The master's own margin after the workers' grace period before it kills one.
KILL_MARGIN_SECONDS = 5


def _grace_seconds() -> int:
    return int(os.environ.get("SHUTDOWN_GRACE_SECONDS") or 30)


def _trusts_proxy_headers() -> bool:
    flag = os.environ.get("TRUST_X_FORWARDED_PROTO", "").strip().lower()
    return flag in {"true", "1", "yes", "on"}


class ProxyWorker(UvicornWorker):
    """A uvicorn worker with make run's protocol and bounds (config/http.py), the lifespan on,
    no access log and the graceful stop of SHUTDOWN_GRACE_SECONDS."""

    CONFIG_KWARGS: dict[str, Any] = {  # noqa: RUF012  (uvicorn_worker's own class attribute)
        "loop": "auto",
        "http": "config.http:BoundedHttpProtocol",
        "ws": "none",
        "lifespan": "on",
        "access_log": False,
        "proxy_headers": _trusts_proxy_headers(),
        "timeout_graceful_shutdown": _grace_seconds(),
    }


def pre_fork(server: Any, worker: Any) -> None:
    """In the master, before each fork: what it holds is never collected again (nor copied
    into the worker by a collection)."""
    gc.freeze()


bind = [f"{os.environ.get('HOST') or '127.0.0.1'}:{os.environ.get('PORT') or '8000'}"]
workers = int(os.environ.get("WORKERS") or os.cpu_count() or 1)
worker_class = "config.serving.ProxyWorker"
preload_app = True
graceful_timeout = _grace_seconds() + KILL_MARGIN_SECONDS
accesslog = None
# No control socket: a service manager stops and reloads the master with signals.
control_socket_disable = True
