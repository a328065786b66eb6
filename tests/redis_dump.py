"""Reading Redis keys back with their contents, for tests that search them for values."""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import redis


def dump_keys(client: redis.Redis, keys: Iterable[bytes]) -> bytes:
    """The keys with their values (strings) or fields and values (hashes), concatenated."""
    dump = b""
    for key in keys:
        dump += key
        kind = client.type(key)
        if kind == b"string":
            dump += cast(bytes, client.get(key) or b"")
        elif kind == b"hash":
            fields = cast(dict[bytes, bytes], client.hgetall(key))
            dump += b"".join(k + v for k, v in fields.items())
    return dump
