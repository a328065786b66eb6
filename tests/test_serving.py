"""make serve's gunicorn configuration (config/serving.py): the workers are forked from one
master that imported the application, with make run's uvicorn settings. The configuration
reads the environment at import, so each case imports it in a fresh interpreter."""

from __future__ import annotations

import json

from tests.support.processes import in_fresh_interpreter

SERVING_VARIABLES = {"HOST", "PORT", "WORKERS", "SHUTDOWN_GRACE_SECONDS", "TRUST_X_FORWARDED_PROTO"}
SHOW = (
    "import json, config.serving as s; print(json.dumps({'kwargs': s.ProxyWorker.CONFIG_KWARGS,"
    " 'bind': s.bind, 'workers': s.workers, 'preload': s.preload_app,"
    " 'graceful': s.graceful_timeout, 'worker_class': s.worker_class,"
    " 'control_socket_disable': s.control_socket_disable}))"
)


def _serving(**environment: str) -> dict[str, object]:
    done = in_fresh_interpreter(SHOW, SERVING_VARIABLES.__contains__, **environment)
    assert done.returncode == 0, done.stderr
    shown: dict[str, object] = json.loads(done.stdout)
    return shown


def test_the_workers_run_make_runs_protocol_forked_from_a_preloaded_master() -> None:
    shown = _serving(HOST="10.0.0.5", PORT="9000", WORKERS="3", SHUTDOWN_GRACE_SECONDS="12")
    assert shown["kwargs"] == {
        "loop": "auto",
        "http": "config.http:BoundedHttpProtocol",
        "ws": "none",
        "lifespan": "on",
        "access_log": False,
        "proxy_headers": False,
        "timeout_graceful_shutdown": 12,
    }
    assert shown["bind"] == ["10.0.0.5:9000"]
    assert shown["workers"] == 3
    assert shown["preload"] is True
    assert shown["graceful"] == 17  # the workers' grace, then the master's margin
    assert shown["worker_class"] == "config.serving.ProxyWorker"
    assert shown["control_socket_disable"] is True


def test_defaults_and_proxy_headers_only_when_trusted() -> None:
    shown = _serving(TRUST_X_FORWARDED_PROTO=" Yes ")
    kwargs = shown["kwargs"]
    assert isinstance(kwargs, dict)
    assert kwargs["proxy_headers"] is True
    assert kwargs["timeout_graceful_shutdown"] == 30
    assert shown["bind"] == ["127.0.0.1:8000"]
    assert isinstance(shown["workers"], int) and shown["workers"] >= 1
    assert _serving(TRUST_X_FORWARDED_PROTO="off")["kwargs"] == {**kwargs, "proxy_headers": False}
