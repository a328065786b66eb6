"""The proxy API key scheme: generating keys, and the prefix and digest stored for them.

Pure (standard library only). Security assumptions: a key carries 256 bits from the
operating system's CSPRNG, so an unsalted SHA-256 digest cannot be reversed or guessed
and needs no server secret; only the digest and an 8-character prefix are ever stored;
comparisons are constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

KEY_TAG = "mpk"
PREFIX_LENGTH = 8
_PREFIX_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"  # no 0/o, 1/l: read aloud safely
_KEY_RE = re.compile(rf"{KEY_TAG}-([{_PREFIX_ALPHABET}]{{{PREFIX_LENGTH}}})-[A-Za-z0-9_-]{{43}}\Z")


@dataclass(frozen=True)
class NewKey:
    """A freshly generated key: show `key` once, store `prefix` and `digest`."""

    key: str
    prefix: str
    digest: str


def generate_key() -> NewKey:
    """A new random key in the form mpk-<prefix>-<secret>."""
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
    key = f"{KEY_TAG}-{prefix}-{secrets.token_urlsafe(32)}"
    return NewKey(key=key, prefix=prefix, digest=key_digest(key))


def key_prefix(key: str) -> str | None:
    """The visible prefix of a well-formed key, or None for anything else."""
    match = _KEY_RE.match(key)
    return match.group(1) if match else None


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def digest_matches(key: str, digest: str) -> bool:
    """Whether key hashes to digest, in constant time."""
    return hmac.compare_digest(key_digest(key).encode(), digest.encode())


def secret_matches(given: str, expected: str) -> bool:
    """Constant-time comparison of two secrets of any length (the master key)."""
    return hmac.compare_digest(
        hashlib.sha256(given.encode()).digest(), hashlib.sha256(expected.encode()).digest()
    )
