"""Start-up and shutdown of a serving process (the ASGI lifespan protocol)."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

from proxy import fair_use, services, upstream
from proxy.audit import drain_audit
from proxy.stores import close_store

logger = logging.getLogger(__name__)

Message = Mapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Scope = dict[str, Any]
Application = Callable[[Scope, Receive, Send], Coroutine[Any, Any, None]]

# How long the shutdown waits for the requests the server cut at the end of its grace period
# to finish (they only have to notice the closed connection and audit themselves).
SHUTDOWN_REQUESTS_SECONDS = 5.0
SHUTDOWN_AUDIT_SECONDS = 10.0

_running: set[asyncio.Task[None]] = set()


async def serve_http(app: Application, scope: Scope, receive: Receive, send: Send) -> None:
    """Run the application on one request in a task of its own, out of the server's reach.

    When its grace period is over, uvicorn cancels the requests still running and closes
    their connections. Cancelled, Django's handler would leave the task that answers the
    request running on its own (`asyncio.wait` does not cancel what it waits for): a stream
    would go on reading the provider until the event loop closed, and its audit record would
    come after the shutdown's flush, if ever. Shielded, the handler sees the closed
    connection as a client leaving: it cancels the view (a stream is audited as 499
    client_closed), and the shutdown waits for it before writing the audit records.
    """
    task = asyncio.create_task(app(scope, receive, send))
    _running.add(task)
    task.add_done_callback(_running.discard)
    await asyncio.shield(task)


async def _finish_requests(seconds: float) -> None:
    if not _running:
        return
    _, pending = await asyncio.wait(set(_running), timeout=seconds)
    if pending:
        logger.error("shutdown: %s request(s) still running after %ss", len(pending), seconds)


async def shutdown() -> None:
    """Once the server has finished (or cut) its requests: write their audit records, close
    clients."""
    await fair_use.loop_watch.stop()
    await _finish_requests(SHUTDOWN_REQUESTS_SECONDS)
    if not await drain_audit(SHUTDOWN_AUDIT_SECONDS):
        logger.error("shutdown: audit records still unwritten after %ss", SHUTDOWN_AUDIT_SECONDS)
    await close_store()
    await upstream.close_clients()
    await services.scanner.aclose()


def out_of_the_collectors_way() -> None:
    """What start-up built lives as long as the process: moved out of the cyclic garbage
    collector's generations (gc.freeze), its oldest generation holds only what serving made.

    Each request leaves reference cycles behind (a DRF response holds its renderer context,
    which holds the response, the view and the request with its body), freed only when the
    oldest generation is collected. CPython collects it once what was added to it since
    reaches a quarter of what it held before: with LiteLLM's million start-up objects in it,
    that took hundreds of requests, whose bodies the worker's memory kept meanwhile, and each
    collection walked them all (a quarter of a second).

    Only where the server is the program (it runs on the main thread): served from another
    program's thread (a test runner's), freezing would hide that program's objects from its
    own garbage collector and from the tools that ask it."""
    if threading.current_thread() is not threading.main_thread():
        return
    gc.collect()
    gc.freeze()


async def serve_lifespan(receive: Receive, send: Send) -> None:
    """Answer the server's lifespan messages (Django's ASGI handler does not speak them)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            services.scanner.start()
            fair_use.loop_watch.start()
            out_of_the_collectors_way()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return
