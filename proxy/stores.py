"""The async mapping store of the running event loop (one per loop: connections belong to it)."""

from __future__ import annotations

import asyncio
import weakref

from patterns.store import AsyncMappingStore, build_async_store

_stores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncMappingStore] = (
    weakref.WeakKeyDictionary()
)


def request_store() -> AsyncMappingStore:
    loop = asyncio.get_running_loop()
    store = _stores.get(loop)
    if store is None:
        store = _stores[loop] = build_async_store()
    return store


def use_store(store: AsyncMappingStore) -> None:
    """Make store the running loop's (tests that point a loop at another Redis)."""
    _stores[asyncio.get_running_loop()] = store


async def close_store() -> None:
    """Close the running loop's store and its connections (at shutdown)."""
    store = _stores.pop(asyncio.get_running_loop(), None)
    if store is not None:
        await store.aclose()
