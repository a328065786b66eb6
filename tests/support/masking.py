"""Masking a batch of texts as one request with the engine alone (no Redis): for the engine's
pass tests."""

from __future__ import annotations

from patterns.engine import LocalAllocator, Snapshot, replace_findings, unmask
from patterns.scanner import find_in_texts


def masked(snapshot: Snapshot, *texts: str) -> list[str]:
    """The texts masked as one request, after checking that restoring gives them back."""
    findings = find_in_texts(snapshot, texts)
    allocator = LocalAllocator()
    placeholders = allocator([f for found in findings for f in found])
    out = [replace_findings(t, f, placeholders) for t, f in zip(texts, findings, strict=True)]
    for before, after in zip(texts, out, strict=True):
        assert unmask(after, allocator.restore_map) == before
    return out
