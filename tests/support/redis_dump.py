"""Reading Redis keys back with their contents, for tests that search them for values."""

from __future__ import annotations

from collections.abc import Iterable

import redis


def dump_keys(client: redis.Redis, keys: Iterable[bytes | str]) -> bytes:
    """The keys and all their contents, of any type, one item a line.

    A string's value, a hash's fields and values (`field=value`), a list's items, a set's and
    a sorted set's members: everything a value could have been written into.
    """
    parts: list[bytes] = []
    for key in keys:
        parts.append(_raw(key))
        kind = _raw(client.type(key))
        if kind == b"string":
            parts.append(_raw(client.get(key) or b""))
        elif kind == b"hash":
            parts += [_raw(k) + b"=" + _raw(v) for k, v in client.hgetall(key).items()]
        elif kind == b"list":
            parts += [_raw(item) for item in client.lrange(key, 0, -1)]
        elif kind == b"set":
            parts += sorted(_raw(member) for member in client.smembers(key))
        elif kind == b"zset":
            parts += [_raw(member) for member in client.zrange(key, 0, -1)]
        else:
            parts.append(b"<" + kind + b">")
    return b"\n".join(parts)


def _raw(item: object) -> bytes:
    # redis-py types replies as bytes or str (decode_responses); these clients get bytes.
    return item if isinstance(item, bytes) else str(item).encode()
