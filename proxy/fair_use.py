"""Fair use of what tenants share: per-key limits, and large requests' work off the event loop.

A worker serves every key on one event loop, and its threads share one GIL. Per key: requests
a minute, streams open at once, and CPU seconds a minute spent on its large requests (all
counted in Redis, so across processes). Per process: large requests do their CPU work on a
thread, one at a time (their scans in the scanning process), so that the loop stays free
for everyone else's small requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from django.conf import settings

from patterns.store import ControlStoreUnavailable
from proxy.auth import KeyPrincipal
from proxy.errors import RateLimited, RateLimitingUnavailable
from proxy.stores import loop_control_store

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Requests at least this large are parsed and masked off the event loop.
OFF_LOOP_BYTES = 64 * 1024
# Threads of one process share the GIL: two large requests at once would not finish sooner,
# and every extra runnable thread lengthens each wait of the event loop for the GIL.
HEAVY_WORK_AT_ONCE = 1
WINDOW_SECONDS = 60


@dataclass
class Work:
    """What one request costs off the event loop: its size, and the CPU seconds spent."""

    size: int = 0
    cpu_seconds: float = 0.0

    @property
    def heavy(self) -> bool:
        return self.size >= OFF_LOOP_BYTES


# The loop watch: how often it looks, how late the loop may run before large requests wait,
# and how long one step of a large request waits at most (it must not starve either).
WATCH_INTERVAL_SECONDS = 0.005
LAG_LIMIT_SECONDS = 0.005
MAX_YIELD_SECONDS = 1.0


class LoopWatch:
    """How late the serving loop runs, so that large requests yield to small ones.

    A task of its own sleeps a few milliseconds at a time and notes how late it wakes: late,
    the loop (or the GIL it needs) is busy with other requests. Started and stopped with the
    serving process (proxy.lifecycle); without it nothing waits.
    """

    def __init__(self) -> None:
        self.lag = 0.0
        self._task: asyncio.Task[None] | None = None
        self._keeping_up = asyncio.Event()

    def start(self) -> None:
        self._keeping_up = asyncio.Event()
        self._keeping_up.set()
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def slack(self) -> None:
        """Return once the loop keeps up (or after MAX_YIELD_SECONDS)."""
        if self._task is None or self._keeping_up.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._keeping_up.wait(), MAX_YIELD_SECONDS)

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(WATCH_INTERVAL_SECONDS)
            self.lag = max(0.0, loop.time() - started - WATCH_INTERVAL_SECONDS)
            if self.lag > LAG_LIMIT_SECONDS:
                self._keeping_up.clear()
            else:
                self._keeping_up.set()


loop_watch = LoopWatch()
_gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


@contextlib.asynccontextmanager
async def heavy_turn() -> AsyncIterator[None]:
    """A large request's turn at CPU work: one at a time in the process, and only while the
    serving loop keeps up with the small requests."""
    loop = asyncio.get_running_loop()
    gate = _gates.get(loop)
    if gate is None:
        gate = _gates[loop] = asyncio.Semaphore(HEAVY_WORK_AT_ONCE)
    async with gate:
        await loop_watch.slack()
        yield


async def run_cpu(work: Work, fn: Callable[..., T], *args: Any) -> T:
    """fn(*args): here for a small request, on a thread in its turn (heavy_turn) for a large
    one, whose CPU seconds are added to work."""
    if not work.heavy:
        return fn(*args)
    async with heavy_turn():
        return await asyncio.to_thread(_timed, work, fn, *args)


def _timed(work: Work, fn: Callable[..., T], *args: Any) -> T:
    started = time.thread_time()
    try:
        return fn(*args)
    finally:
        # The event loop awaits this thread meanwhile: nothing else writes work now.
        work.cpu_seconds += time.thread_time() - started


def effective_limit(own: int | None, default: int) -> int | None:
    """A key's limit: its own, else the server's default; 0 (either way) for none."""
    limit = default if own is None else own
    return limit or None


async def within_limits(principal: KeyPrincipal) -> None:
    """Count the request; RateLimited when the key is past its requests a minute or its CPU
    seconds a minute (one Redis round trip, only when a limit applies)."""
    limit = effective_limit(
        principal.rate_limit_per_minute, settings.PROXY_DEFAULT_RATE_LIMIT_PER_MINUTE
    )
    budget = settings.PROXY_KEY_CPU_SECONDS_PER_MINUTE
    if limit is None and not budget:
        return
    now = time.time()
    try:
        usage = await loop_control_store().key_usage(principal.prefix, now=now)
    except ControlStoreUnavailable:
        raise RateLimitingUnavailable() from None
    retry_after = {"retry-after": str(WINDOW_SECONDS - int(now % WINDOW_SECONDS))}
    if limit is not None and usage.requests > limit:
        raise RateLimited(f"This API key may send {limit} requests a minute.", headers=retry_after)
    if budget and usage.cpu_seconds >= budget:
        raise RateLimited(
            f"This API key's large requests took {budget:g} CPU seconds of this proxy in this "
            "minute, its share (PROXY_KEY_CPU_SECONDS_PER_MINUTE).",
            headers=retry_after,
        )


async def charge(principal: KeyPrincipal, work: Work) -> None:
    """Add the CPU seconds a request cost to its key's minute (then work counts from 0)."""
    seconds, work.cpu_seconds = work.cpu_seconds, 0.0
    if seconds <= 0 or not settings.PROXY_KEY_CPU_SECONDS_PER_MINUTE:
        return
    try:
        await loop_control_store().charge_cpu(principal.prefix, seconds, now=time.time())
    except ControlStoreUnavailable:
        # Accounting, not masking: the request itself is not refused for it.
        logger.warning("CPU time not charged to key %s", principal.prefix)


async def take_stream_slot(principal: KeyPrincipal, request_id: str) -> bool:
    """Take a stream slot when the key has a cap; True when one must be released later."""
    limit = effective_limit(
        principal.max_concurrent_streams, settings.PROXY_DEFAULT_MAX_CONCURRENT_STREAMS
    )
    if limit is None:
        return False
    try:
        taken = await loop_control_store().acquire_stream(
            principal.prefix,
            request_id,
            limit=limit,
            now=time.time(),
            max_age=settings.PROXY_UPSTREAM_TIMEOUT + 60,
        )
    except ControlStoreUnavailable:
        raise RateLimitingUnavailable() from None
    if not taken:
        raise RateLimited(f"This API key may have {limit} streams open at once.")
    return True


async def release_stream_slot(principal: KeyPrincipal, request_id: str) -> None:
    await loop_control_store().release_stream(principal.prefix, request_id)
