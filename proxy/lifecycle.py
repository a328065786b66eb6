"""Start-up and shutdown of a serving process (the ASGI lifespan protocol)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from proxy import upstream
from proxy.audit import drain_audit
from proxy.stores import close_store

logger = logging.getLogger(__name__)

Message = Mapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

SHUTDOWN_AUDIT_SECONDS = 10.0


async def shutdown() -> None:
    """Once the server has finished its requests: write their audit records, close clients."""
    if not await drain_audit(SHUTDOWN_AUDIT_SECONDS):
        logger.error("shutdown: audit records still unwritten after %ss", SHUTDOWN_AUDIT_SECONDS)
    await close_store()
    await upstream.close_clients()


async def serve_lifespan(receive: Receive, send: Send) -> None:
    """Answer the server's lifespan messages (Django's ASGI handler does not speak them)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return
