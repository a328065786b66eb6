"""ASGI entry point: `uvicorn config.asgi:application`."""

import os
import sys
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

django_application = get_asgi_application()

# Imported once Django is set up.
from proxy.lifecycle import Receive, Send, serve_http, serve_lifespan  # noqa: E402
from proxy.upstream import warm_up  # noqa: E402


async def application(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """Django for HTTP; the lifespan messages (start-up, shutdown) are ours."""
    if scope["type"] == "lifespan":
        await serve_lifespan(receive, send)
    else:
        await serve_http(django_application, scope, receive, send)


# Pay for LiteLLM's imports at start-up rather than on the first request and first stream.
warm_up()

# Large requests are parsed and masked on a worker thread. Whenever the event loop wants the
# GIL back from it, it waits up to the switch interval (5 ms by default), and a small request
# needs the loop dozens of times: 1 ms keeps other tenants' requests fast meanwhile
# (bench/fairness_bench.py measures it).
GIL_SWITCH_INTERVAL_SECONDS = 0.001
sys.setswitchinterval(GIL_SWITCH_INTERVAL_SECONDS)
