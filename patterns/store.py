"""The mapping store: placeholders for values, kept in Redis; the only module that talks to Redis.

Two stores share each Redis connection pool, each with its own error, so that a failure says
what failed: the mapping store (placeholders, originals, what namespaces learned;
MappingStoreUnavailable) and the control store (each API key's use a minute and open streams,
and the version tokens of the rules, keys and routes; ControlStoreUnavailable). Both fail
closed: their callers refuse the request rather than serve it unmasked or unmetered.

Security assumptions: originals are stored only as AES-GCM ciphertext bound to their
namespace, and found by an HMAC of (namespace, value), so a dump of Redis reveals no
original. Every key carries the namespace (as a Redis Cluster hash tag, so one request's
keys share a slot) and a TTL refreshed on use. Allocation runs in Lua scripts: atomic across
processes, one round trip for up to ALLOCATION_CHUNK values (a chunk keeps Redis busy for a
few milliseconds at most, so one tenant's large request cannot stall the others').
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.retry
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError

logger = logging.getLogger(__name__)

NAMESPACE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}\Z")
_NONCE_BYTES = 12
# Values placed by one allocation script: Redis runs a script alone, so a request with many
# new values must not hold it for long (about 12 microseconds a value: 3 ms a chunk).
ALLOCATION_CHUNK = 250
# Values a namespace learns at most (patterns.memory); past them, values are still masked
# where the rules find them, but not learned.
LEARNED_VALUES_MAX = 100_000

# ARGV: key base ("<prefix>:mask:{<namespace>}"), ttl, the most values the namespace may
# learn, a fresh token that starts its list of learned values if it has none, then per value:
# digest, placeholder prefix, ciphertext, pattern name, and its learned record (the value with
# its rule, sealed; "" for a value not to be learned). Returns one placeholder per value.
_ALLOCATE_LUA = """
local base = ARGV[1]
local ttl = tonumber(ARGV[2])
local learned_max = tonumber(ARGV[3])
local learned_key = base .. ':learned'
local learned_set = base .. ':learned-set'
local learned = false
if redis.call('EXISTS', learned_key) == 0 then
  redis.call('DEL', learned_set)  -- the list expired: learn again what it held
end
local placeholders = {}
local prefixes = {}
for i = 5, #ARGV, 5 do
  local value_key = base .. ':v:' .. ARGV[i]
  local placeholder = redis.call('GET', value_key)
  if placeholder then
    redis.call('EXPIRE', value_key, ttl)
    local reverse_key = base .. ':p:' .. placeholder
    if redis.call('EXPIRE', reverse_key, ttl) == 0 then
      redis.call('SET', reverse_key, ARGV[i + 2], 'EX', ttl)
    end
  else
    local sequence_key = base .. ':seq:' .. ARGV[i + 1]
    -- SET NX guards against reuse if a counter was ever lost while its mappings lived.
    repeat
      placeholder = string.format('%s_%03d', ARGV[i + 1], redis.call('INCR', sequence_key))
    until redis.call('SET', base .. ':p:' .. placeholder, ARGV[i + 2], 'NX', 'EX', ttl)
    redis.call('SET', value_key, placeholder, 'EX', ttl)
    redis.call('HINCRBY', base .. ':count', ARGV[i + 3], 1)
  end
  -- Learned once (the set), in the order learned (the list, after its starting token).
  if ARGV[i + 4] ~= '' and redis.call('SCARD', learned_set) < learned_max
      and redis.call('SADD', learned_set, ARGV[i]) == 1 then
    if redis.call('LLEN', learned_key) == 0 then
      redis.call('RPUSH', learned_key, ARGV[4])
    end
    redis.call('RPUSH', learned_key, ARGV[i + 4])
    learned = true
  end
  prefixes[ARGV[i + 1]] = true
  placeholders[#placeholders + 1] = placeholder
end
-- Counters live as long as the mappings they numbered; what was learned, as long as the
-- namespace allocates.
for prefix in pairs(prefixes) do
  redis.call('EXPIRE', base .. ':seq:' .. prefix, ttl)
end
redis.call('EXPIRE', base .. ':count', ttl)
if learned or redis.call('EXISTS', learned_key) == 1 then
  redis.call('EXPIRE', learned_key, ttl)
  redis.call('EXPIRE', learned_set, ttl)
end
return placeholders
"""

# ARGV: the list of learned values, the token the caller's copy started with, how many
# entries of the list the caller has read. Returns the list's token and the entries after
# those read, or (with another token: the list expired and started again) all its entries.
_LEARNED_SINCE_LUA = """
local token = redis.call('LINDEX', ARGV[1], 0)
if not token then
  return {'', {}}
end
if token == ARGV[2] then
  return {token, redis.call('LRANGE', ARGV[1], tonumber(ARGV[3]), -1)}
end
return {token, redis.call('LRANGE', ARGV[1], 1, -1)}
"""


# KEYS[1]: the sorted set of a key's open streams. ARGV: stream id, now, oldest start still
# counted, limit. Streams whose process died are forgotten once older than the longest
# possible stream. Returns 1 when the stream may start.
_ACQUIRE_STREAM_LUA = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2]) - tonumber(ARGV[3])) + 60)
return 1
"""


class _NotReplicated(redis.RedisError):
    """Fewer replicas than required acknowledged a new mapping in time."""


class MappingStoreUnavailable(Exception):
    """Redis could not place or restore values in time: callers must fail closed."""


class ControlStoreUnavailable(Exception):
    """Redis could not count a key's use or read the version tokens: callers must fail
    closed."""


@dataclass(frozen=True)
class Allocation:
    """A value to place: the value, the placeholder prefix to number it under, its rule."""

    value: str
    prefix: str
    pattern: str
    # Whether the namespace learns it: masked wherever it later stands (patterns.memory).
    learn: bool = False


@dataclass(frozen=True)
class LearnedValue:
    """A value a namespace learned: masked wherever it stands in its later requests."""

    value: str
    prefix: str
    pattern: str


@dataclass(frozen=True)
class LearnedNews:
    """What a namespace learned since a reader's last look.

    token: the list's starting token ("" when it has none); when it differs from the one the
    reader had, `records` are all of the list and replace what the reader held.
    records: sealed (AsyncMappingStore.open_learned opens them).
    """

    token: str
    records: tuple[bytes, ...]


class ValueCipher:
    """Keyed hashing and authenticated encryption of original values.

    Two independent keys are derived (HKDF-SHA256) from one secret: an HMAC key for the
    lookup digest and an AES-256-GCM key for the stored original.
    """

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("The masking secret must be at least 16 bytes.")
        self._hmac_key = _derive(secret, b"maskproxy/v1/lookup-hmac")
        self._aead = AESGCM(_derive(secret, b"maskproxy/v1/value-encryption"))

    def digest(self, namespace: str, value: str) -> str:
        message = namespace.encode() + b"\x00" + value.encode()
        return hmac.new(self._hmac_key, message, hashlib.sha256).hexdigest()[:32]

    def encrypt(self, namespace: str, value: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, value.encode(), namespace.encode())

    def seal_learned(self, namespace: str, item: Allocation) -> bytes:
        """A learned value's record, sealed like a value (its rule and prefix with it)."""
        return self.encrypt(namespace, json.dumps([item.value, item.prefix, item.pattern]))

    def open_learned(self, namespace: str, blob: bytes) -> LearnedValue:
        value, prefix, pattern = json.loads(self.decrypt(namespace, blob))
        return LearnedValue(value, prefix, pattern)

    def decrypt(self, namespace: str, blob: bytes) -> str:
        """The original value; raises ValueError if the blob was not sealed for namespace."""
        try:
            plain = self._aead.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], namespace.encode())
        except InvalidTag:
            raise ValueError("A stored mapping failed authentication.") from None
        return plain.decode()


def _derive(secret: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


def check_namespace(namespace: str) -> None:
    if not NAMESPACE_RE.match(namespace):
        raise ValueError(
            "A namespace is 1-64 characters of letters, digits and _ . : - "
            "starting with a letter or digit."
        )


class _KeyScheme:
    def __init__(self, key_prefix: str) -> None:
        self.key_prefix = key_prefix

    def base(self, namespace: str) -> str:
        check_namespace(namespace)
        return f"{self.key_prefix}:mask:{{{namespace}}}"

    def reverse(self, namespace: str, placeholder: str) -> str:
        return f"{self.base(namespace)}:p:{placeholder}"

    def counts(self, namespace: str) -> str:
        return f"{self.base(namespace)}:count"

    def learned(self, namespace: str) -> str:
        return f"{self.base(namespace)}:learned"

    @property
    def rules_version(self) -> str:
        return f"{self.key_prefix}:rules-version"

    @property
    def keys_version(self) -> str:
        return f"{self.key_prefix}:keys-version"

    @property
    def routes_version(self) -> str:
        return f"{self.key_prefix}:routes-version"


@dataclass(frozen=True)
class KeyUsage:
    """What an API key used in the current minute: requests (this one included), CPU seconds."""

    requests: int
    cpu_seconds: float


@dataclass(frozen=True)
class PreparedAllocation:
    """A request's values as allocation scripts will take them, one entry per chunk."""

    chunks: tuple[tuple[tuple[Allocation, ...], list[Any]], ...]


@dataclass(frozen=True)
class Versions:
    """Tokens that move when admins change something processes cache ("" before any change)."""

    rules: str
    keys: str
    routes: str = ""


@dataclass(frozen=True)
class _Limits:
    ttl: int
    learned_max: int


def _allocation_args(
    keys: _KeyScheme,
    cipher: ValueCipher,
    limits: _Limits,
    namespace: str,
    items: Sequence[Allocation],
) -> list[Any]:
    args: list[Any] = [keys.base(namespace), limits.ttl, limits.learned_max, os.urandom(8).hex()]
    for item in items:
        args.extend(
            (
                cipher.digest(namespace, item.value),
                item.prefix,
                cipher.encrypt(namespace, item.value),
                item.pattern,
                cipher.seal_learned(namespace, item) if item.learn else b"",
            )
        )
    return args


def _learned_news(reply: Sequence[Any]) -> LearnedNews:
    token, records = reply
    return LearnedNews(token=_decode(token), records=tuple(records))


def _unique(items: Iterable[Allocation]) -> list[Allocation]:
    seen: dict[str, Allocation] = {}
    for item in items:
        seen.setdefault(item.value, item)
    return list(seen.values())


def _chunks(items: list[Allocation]) -> Iterator[list[Allocation]]:
    for start in range(0, len(items), ALLOCATION_CHUNK):
        yield items[start : start + ALLOCATION_CHUNK]


def _placed(chunk: Sequence[Allocation], placeholders: Sequence[Any]) -> dict[str, str]:
    return {item.value: _decode(p) for item, p in zip(chunk, placeholders, strict=True)}


def _decode(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


class MappingStore:
    """Synchronous access to the mappings (admin pages, commands, tests)."""

    def __init__(
        self,
        client: redis.Redis,
        cipher: ValueCipher,
        *,
        ttl: int,
        key_prefix: str,
        learned_max: int = LEARNED_VALUES_MAX,
    ):
        self._client = client
        self._cipher = cipher
        self._limits = _Limits(ttl, learned_max)
        self._keys = _KeyScheme(key_prefix)
        self._allocate = client.register_script(_ALLOCATE_LUA)
        # The version tokens, on the same connections.
        self.control = ControlStore(client, key_prefix=key_prefix)

    def allocate(self, namespace: str, items: Iterable[Allocation]) -> dict[str, str]:
        """value -> placeholder for each value (existing or new), one round trip a chunk."""
        placed: dict[str, str] = {}
        for chunk in _chunks(_unique(items)):
            args = _allocation_args(self._keys, self._cipher, self._limits, namespace, chunk)
            try:
                placeholders = self._allocate(keys=[], args=args)
            except redis.RedisError as exc:
                raise _unavailable(exc) from None
            placed.update(_placed(chunk, placeholders))
        return placed

    def restore(self, namespace: str, placeholders: Iterable[str]) -> dict[str, str]:
        """Originals of the placeholders this namespace issued (others are absent)."""
        wanted = sorted(set(placeholders))
        if not wanted:
            return {}
        try:
            blobs = self._client.mget([self._keys.reverse(namespace, p) for p in wanted])
        except redis.RedisError as exc:
            raise _unavailable(exc) from None
        return _decrypt_found(self._cipher, namespace, wanted, blobs)

    def counts(self, namespace: str) -> dict[str, int]:
        """How many distinct values each pattern has placed in this namespace (live)."""
        try:
            raw = self._client.hgetall(self._keys.counts(namespace))
        except redis.RedisError as exc:
            raise _unavailable(exc) from None
        return {_decode(k): int(v) for k, v in raw.items()}


class ControlStore:
    """Synchronous access to the version tokens (admin saves, commands, tests)."""

    def __init__(self, client: redis.Redis, *, key_prefix: str) -> None:
        self._client = client
        self._keys = _KeyScheme(key_prefix)

    def rules_version(self) -> str:
        """The current rules version token, creating one if Redis has none."""
        try:
            token = self._client.get(self._keys.rules_version)
            if token is None:
                self._client.set(self._keys.rules_version, os.urandom(8).hex(), nx=True)
                token = self._client.get(self._keys.rules_version)
        except redis.RedisError as exc:
            raise _control_unavailable(exc) from None
        return _decode(token or b"")

    def routes_version(self) -> str:
        """The current model routes version token ("" before any change)."""
        try:
            token = self._client.get(self._keys.routes_version)
        except redis.RedisError as exc:
            raise _control_unavailable(exc) from None
        return _decode(token or b"")

    def bump_rules_version(self) -> str:
        """Tell every process that the rules changed; returns the new token."""
        return self._bump(self._keys.rules_version)

    def bump_keys_version(self) -> str:
        """Tell every process that an API key changed (its cached principals are stale)."""
        return self._bump(self._keys.keys_version)

    def bump_routes_version(self) -> str:
        """Tell every process that the model routes changed."""
        return self._bump(self._keys.routes_version)

    def _bump(self, name: str) -> str:
        token = os.urandom(8).hex()
        try:
            self._client.set(name, token)
        except redis.RedisError as exc:
            raise _control_unavailable(exc) from None
        return token


class AsyncMappingStore:
    """The same store for the async request path (redis.asyncio, a blocking pool)."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        cipher: ValueCipher,
        *,
        ttl: int,
        key_prefix: str,
        sentinel: Sentinel | None = None,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 100,
        learned_max: int = LEARNED_VALUES_MAX,
    ):
        self._client = client
        self._sentinel = sentinel  # closed with the client: it holds connections of its own
        self._wait_replicas = wait_replicas
        self._wait_timeout_ms = wait_timeout_ms
        self._cipher = cipher
        self._limits = _Limits(ttl, learned_max)
        self._keys = _KeyScheme(key_prefix)
        self._allocate = client.register_script(_ALLOCATE_LUA)
        self._learned_since = client.register_script(_LEARNED_SINCE_LUA)
        # Keys' use and the version tokens, on the same connections.
        self.control = AsyncControlStore(client, key_prefix=key_prefix)

    async def allocate(self, namespace: str, items: Iterable[Allocation]) -> dict[str, str]:
        """value -> placeholder for each value (existing or new), in one round trip per
        ALLOCATION_CHUNK values, so that other requests' commands run between chunks."""
        return await self.place(self.prepare(namespace, items))

    def prepare(self, namespace: str, items: Iterable[Allocation]) -> PreparedAllocation:
        """The scripts' arguments: a keyed hash and a ciphertext per value (CPU only, about
        5 microseconds a value: callers with many values run it off the event loop)."""
        return PreparedAllocation(
            tuple(
                (
                    tuple(chunk),
                    _allocation_args(self._keys, self._cipher, self._limits, namespace, chunk),
                )
                for chunk in _chunks(_unique(items))
            )
        )

    async def place(self, prepared: PreparedAllocation) -> dict[str, str]:
        """Run the prepared scripts: value -> placeholder (fail closed: MappingStoreUnavailable)."""
        placed: dict[str, str] = {}
        for chunk, args in prepared.chunks:
            try:
                if self._wait_replicas:
                    placeholders = await self._allocate_replicated(args)
                else:
                    placeholders = await self._allocate(keys=[], args=args)
            except redis.RedisError as exc:
                raise _unavailable(exc) from None
            placed.update(_placed(chunk, placeholders))
        return placed

    async def _allocate_replicated(self, args: list[Any]) -> list[Any]:
        # Replication is asynchronous: a master that dies may take mappings its replicas never
        # received, and the promoted replica would then number other values with the same
        # placeholders. WAIT on the allocating connection (one pipeline, one round trip)
        # returns once `wait_replicas` replicas have every write this connection made, so
        # also any mapping the script found that another request had just written. Fewer
        # acknowledgements in time: refuse (the mapping may live on, it is not yet safe).
        for attempt in (1, 2):
            try:
                async with self._client.pipeline(transaction=False) as pipe:
                    pipe.evalsha(self._allocate.sha, 0, *args)
                    pipe.wait(self._wait_replicas, self._wait_timeout_ms)
                    placeholders, acknowledged = await pipe.execute()
            except NoScriptError:
                if attempt == 2:
                    raise
                # A Redis that restarted or was promoted knows no scripts yet.
                await self._client.script_load(_ALLOCATE_LUA)
                continue
            if int(acknowledged) < self._wait_replicas:
                raise _NotReplicated(f"{acknowledged} of {self._wait_replicas} replicas")
            return list(placeholders)
        raise AssertionError("unreachable")

    async def restore(self, namespace: str, placeholders: Iterable[str]) -> dict[str, str]:
        """Originals of the placeholders this namespace issued (others are absent)."""
        wanted = sorted(set(placeholders))
        if not wanted:
            return {}
        try:
            blobs = await self._client.mget([self._keys.reverse(namespace, p) for p in wanted])
        except redis.RedisError as exc:
            raise _unavailable(exc) from None
        return _decrypt_found(self._cipher, namespace, wanted, blobs)

    async def learned_since(self, namespace: str, token: str, read: int) -> LearnedNews:
        """What the namespace learned after the first `read` entries of its list (the token
        counts as one), or all of it when its list no longer starts with `token`."""
        try:
            reply = await self._learned_since(
                keys=[], args=[self._keys.learned(namespace), token, read]
            )
        except redis.RedisError as exc:
            raise _unavailable(exc) from None
        return _learned_news(reply)

    def open_learned(self, namespace: str, records: Sequence[bytes]) -> list[LearnedValue]:
        """The learned values of sealed records (CPU only, a few microseconds a record)."""
        return [self._cipher.open_learned(namespace, record) for record in records]

    async def ping(self) -> None:
        """Raise MappingStoreUnavailable unless Redis answers."""
        try:
            await self._client.ping()
        except redis.RedisError as exc:
            raise _unavailable(exc) from None

    async def aclose(self) -> None:
        await self._client.aclose()
        if self._sentinel is not None:
            await self._sentinel.aclose()


class AsyncControlStore:
    """The control store for the async request path: each API key's requests and CPU
    seconds a minute and its open streams, and the version tokens (fail closed:
    ControlStoreUnavailable)."""

    def __init__(self, client: redis.asyncio.Redis, *, key_prefix: str) -> None:
        self._client = client
        self._keys = _KeyScheme(key_prefix)
        self._acquire_stream = client.register_script(_ACQUIRE_STREAM_LUA)

    async def rules_version(self) -> str:
        """The current rules version token ("" when none was set yet)."""
        return (await self.versions()).rules

    async def versions(self) -> Versions:
        """The rules, keys and routes version tokens, in one round trip."""
        try:
            names = [self._keys.rules_version, self._keys.keys_version, self._keys.routes_version]
            rules, keys, routes = await self._client.mget(names)
        except redis.RedisError as exc:
            raise _control_unavailable(exc) from None
        return Versions(
            rules=_decode(rules or b""), keys=_decode(keys or b""), routes=_decode(routes or b"")
        )

    async def key_usage(self, key_id: str, *, now: float) -> KeyUsage:
        """Count one more request of this key in the current minute; what it used so far."""
        requests, cpu = self._usage_keys(key_id, now)
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.incr(requests)
                pipe.expire(requests, 120)
                pipe.get(cpu)
                count, _, seconds = await pipe.execute()
        except redis.RedisError as exc:
            raise _control_unavailable(exc) from None
        return KeyUsage(requests=int(count), cpu_seconds=float(seconds or 0))

    async def charge_cpu(self, key_id: str, seconds: float, *, now: float) -> None:
        """Add CPU seconds spent on this key's requests to its current minute."""
        _, cpu = self._usage_keys(key_id, now)
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.incrbyfloat(cpu, seconds)
                pipe.expire(cpu, 120)
                await pipe.execute()
        except redis.RedisError as exc:
            raise _control_unavailable(exc) from None

    def _usage_keys(self, key_id: str, now: float) -> tuple[str, str]:
        window = int(now // 60)
        prefix = self._keys.key_prefix
        return f"{prefix}:ratelimit:{key_id}:{window}", f"{prefix}:cpu:{key_id}:{window}"

    async def acquire_stream(
        self, key_id: str, stream_id: str, *, limit: int, now: float, max_age: float
    ) -> bool:
        """Take one of the key's stream slots; False when all `limit` are taken."""
        name = f"{self._keys.key_prefix}:streams:{key_id}"
        try:
            taken = await self._acquire_stream(
                keys=[name], args=[stream_id, now, now - max_age, limit]
            )
        except redis.RedisError as exc:
            raise _control_unavailable(exc) from None
        return bool(taken)

    async def release_stream(self, key_id: str, stream_id: str) -> None:
        try:
            await self._client.zrem(f"{self._keys.key_prefix}:streams:{key_id}", stream_id)
        except redis.RedisError as exc:
            # The slot frees itself once older than the longest stream; say so, go on.
            logger.warning("stream slot not released: %s", type(exc).__name__)


def _decrypt_found(
    cipher: ValueCipher, namespace: str, wanted: Sequence[str], blobs: Sequence[Any]
) -> dict[str, str]:
    found = {}
    for placeholder, blob in zip(wanted, blobs, strict=True):
        if blob is not None:
            found[placeholder] = cipher.decrypt(namespace, blob)
    return found


def _unavailable(exc: redis.RedisError) -> MappingStoreUnavailable:
    # The class name is enough for operators; Redis error texts can quote arguments.
    logger.error("mapping store unavailable: %s", type(exc).__name__)
    return MappingStoreUnavailable("The mapping store (Redis) is unavailable.")


def _control_unavailable(exc: redis.RedisError) -> ControlStoreUnavailable:
    logger.error("control store (key limits, version tokens) unavailable: %s", type(exc).__name__)
    return ControlStoreUnavailable("The control store (Redis) is unavailable.")


# --- wiring from Django settings -------------------------------------------------------------


def _settings() -> Any:
    from django.conf import settings

    return settings


def cipher_from_settings() -> ValueCipher:
    settings = _settings()
    secret = settings.MASKING_KEY or settings.SECRET_KEY
    return ValueCipher(secret.encode() if isinstance(secret, str) else secret)


@cache
def get_store(alias: str = "default") -> MappingStore:
    """The process-wide synchronous store, on the connection django-redis configured."""
    from django_redis import get_redis_connection

    settings = _settings()
    return MappingStore(
        get_redis_connection(alias),
        cipher_from_settings(),
        ttl=settings.MAPPING_TTL_SECONDS,
        key_prefix=settings.CACHES[alias].get("KEY_PREFIX", ""),
        learned_max=settings.PROXY_LEARNED_VALUES_MAX,
    )


def get_control_store(alias: str = "default") -> ControlStore:
    """The process-wide synchronous control store (the version tokens)."""
    return get_store(alias).control


def build_async_store(alias: str = "default", *, max_connections: int = 64) -> AsyncMappingStore:
    """A store on a redis.asyncio client built from the same CACHES entry as django-redis.

    One per event loop: redis.asyncio connections belong to the loop that opened them. With
    SENTINELS in the entry's OPTIONS, the client follows the master the sentinels name.
    """
    settings = _settings()
    config: Mapping[str, Any] = settings.CACHES[alias]
    options = config.get("OPTIONS", {})
    timeout = options.get("SOCKET_TIMEOUT")
    connection: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": options.get("SOCKET_CONNECT_TIMEOUT", timeout),
        # A pooled connection to a Redis that has since restarted (or failed over) fails on
        # first use: try once more on a fresh connection rather than refuse the request. Not
        # on timeouts, so a stalled Redis still fails closed within one socket timeout. A
        # retried allocation is harmless: a value keeps its placeholder (SET NX); at worst
        # one request's counts are added twice.
        "retry": _one_retry(),
    }
    sentinel = None
    if options.get("SENTINELS"):
        sentinel, client = _sentinel_client(
            config["LOCATION"], options, connection, max_connections=max_connections
        )
    else:
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            config["LOCATION"], max_connections=max_connections, timeout=timeout, **connection
        )
        client = redis.asyncio.Redis.from_pool(pool)  # the client owns the pool
    return AsyncMappingStore(
        client,
        cipher_from_settings(),
        ttl=settings.MAPPING_TTL_SECONDS,
        key_prefix=config.get("KEY_PREFIX", ""),
        learned_max=settings.PROXY_LEARNED_VALUES_MAX,
        sentinel=sentinel,
        wait_replicas=getattr(settings, "REDIS_WAIT_REPLICAS", 0),
        # Well inside the socket timeout, so that a late WAIT is our refusal, not a timeout.
        wait_timeout_ms=max(1, int((timeout or 2.0) * 500)),
    )


def _one_retry() -> redis.asyncio.retry.Retry:
    return redis.asyncio.retry.Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))


class _BlockingSentinelPool(SentinelConnectionPool, redis.asyncio.BlockingConnectionPool):
    """The master's connections, found through the sentinels, in a pool that waits (up to
    `timeout`) for a free connection instead of failing past `max_connections`."""


def _sentinel_client(
    location: str, options: Mapping[str, Any], connection: dict[str, Any], *, max_connections: int
) -> tuple[Sentinel, redis.asyncio.Redis]:
    # django-redis's convention, which the settings follow: redis://[:password@]<master>/<db>.
    url = redis.asyncio.connection.parse_url(location)
    service = url.pop("host")
    url.pop("port", None)
    if "connection_class" in url or "path" in url:
        raise ValueError("A Sentinel-managed Redis needs a redis://<master>/<db> location.")
    sentinel_kwargs = {**connection, "retry": _one_retry(), **options.get("SENTINEL_KWARGS", {})}
    sentinel = Sentinel(options["SENTINELS"], sentinel_kwargs=sentinel_kwargs, **connection, **url)
    client = sentinel.master_for(
        service,
        connection_pool_class=_BlockingSentinelPool,
        max_connections=max_connections,
        timeout=connection["socket_timeout"],
    )
    return sentinel, client
