"""ASGI entry point: `uvicorn config.asgi:application`."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

application = get_asgi_application()

# Pay for LiteLLM's imports at start-up rather than on the first request and first stream.
from proxy.upstream import warm_up  # noqa: E402

warm_up()
