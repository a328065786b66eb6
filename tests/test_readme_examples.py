"""The README's before/after masking examples are what the engine produces today."""

from __future__ import annotations

from pathlib import Path

from tests.readme_examples import END, START, markdown

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_readme_shows_what_the_engine_masks() -> None:
    text = README.read_text(encoding="utf-8")
    section = text[text.index(START) : text.index(END) + len(END)]
    assert section == markdown(), "run python -m tests.readme_examples and paste its output"
