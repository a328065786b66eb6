"""The API key scheme (pure)."""

from __future__ import annotations

from proxy.keys import digest_matches, generate_key, key_digest, key_prefix, secret_matches


def test_generated_key_carries_its_prefix_and_is_stored_as_a_digest() -> None:
    new = generate_key()
    assert new.key.startswith(f"mpk-{new.prefix}-")
    assert key_prefix(new.key) == new.prefix
    assert new.digest == key_digest(new.key)
    assert new.key not in new.digest and len(new.digest) == 64


def test_keys_are_unique() -> None:
    assert len({generate_key().key for _ in range(200)}) == 200


def test_malformed_keys_have_no_prefix() -> None:
    key = generate_key().key
    for bad in ("", "sk-ant-123", key[:-1], key + "x", key.upper(), f" {key}"):
        assert key_prefix(bad) is None


def test_digest_comparison() -> None:
    new = generate_key()
    assert digest_matches(new.key, new.digest)
    assert not digest_matches(generate_key().key, new.digest)


def test_master_key_comparison_handles_any_length() -> None:
    assert secret_matches("sk-litellm-master-key", "sk-litellm-master-key")
    assert not secret_matches("sk-litellm-master-ke", "sk-litellm-master-key")
    assert not secret_matches("", "sk-litellm-master-key")
