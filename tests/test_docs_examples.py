"""The before/after masking examples of docs/masking.md are what the engine produces today."""

from __future__ import annotations

from pathlib import Path

from tests.docs_examples import END, START, markdown

MASKING_DOC = Path(__file__).resolve().parent.parent / "docs" / "masking.md"


def test_the_masking_doc_shows_what_the_engine_masks() -> None:
    text = MASKING_DOC.read_text(encoding="utf-8")
    section = text[text.index(START) : text.index(END) + len(END)]
    assert section == markdown(), "run python -m tests.docs_examples and paste its output"
