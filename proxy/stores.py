"""The async stores of the running event loop, one of each per loop (redis.asyncio connections
belong to the loop that opened them): the mapping store and the control store, which shares
its connections."""

from __future__ import annotations

import asyncio
import weakref

from patterns.store import AsyncControlStore, AsyncMappingStore, build_async_store

_stores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncMappingStore] = (
    weakref.WeakKeyDictionary()
)


def loop_store() -> AsyncMappingStore:
    """The running loop's mapping store (placeholders, originals, learned values)."""
    loop = asyncio.get_running_loop()
    store = _stores.get(loop)
    if store is None:
        store = _stores[loop] = build_async_store()
    return store


def loop_control_store() -> AsyncControlStore:
    """The running loop's control store (keys' use a minute, streams, version tokens)."""
    return loop_store().control


def use_store(store: AsyncMappingStore) -> None:
    """Make store the running loop's (tests that point a loop at another Redis)."""
    _stores[asyncio.get_running_loop()] = store


async def close_store() -> None:
    """Close the running loop's store and its connections (at shutdown)."""
    store = _stores.pop(asyncio.get_running_loop(), None)
    if store is not None:
        await store.aclose()
