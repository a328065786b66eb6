"""Every relative link in the README, the changelog and docs/ leads somewhere: to a file of the
repository and, with an #anchor, to a heading of the page it names (GitHub's heading ids).

Links in code (fenced blocks, code spans) are not links; links with a scheme (https:, mailto:)
are not checked: no network here.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", ROOT / "CHANGELOG.md", *(ROOT / "docs").glob("*.md")])

FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
# [text](target) and ![alt](target), with an optional "title"; link text may hold one level of
# brackets and span lines.
INLINE_LINK = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]"  # [text] or ![alt]
    r"\(\s*<?([^()\s<>]+)>?(?:\s+\"[^\"]*\")?\s*\)"  # (target "title")
)
REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?([^\s>]+)>?", re.M)
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
SCHEME = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:|//)")


def _outside_fences(text: str) -> Iterator[str]:
    """The lines of a Markdown page that are not inside a fenced code block."""
    fence = ""
    for line in text.splitlines():
        opening = FENCE.match(line)
        if fence:
            if opening and opening.group(1)[0] == fence[0] and len(opening.group(1)) >= len(fence):
                fence = ""
        elif opening:
            fence = opening.group(1)
        else:
            yield line


def slug(heading: str) -> str:
    """GitHub's id for a heading: its text lower-cased, punctuation but - and _ dropped, each
    space a hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link counts by its text
    text = text.replace("`", "").replace("*", "")
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The ids of a page's headings; a repeated id gets -1, -2, ... in order."""
    seen: dict[str, int] = {}
    ids: set[str] = set()
    for line in _outside_fences(text):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        ids.add(base if count == 0 else f"{base}-{count}")
    return ids


def link_targets(text: str) -> list[str]:
    """Every link target of a page, code left out."""
    prose = CODE_SPAN.sub("code", "\n".join(_outside_fences(text)))
    return INLINE_LINK.findall(prose) + REFERENCE_DEFINITION.findall(prose)


def broken_links(page: Path, root: Path) -> list[str]:
    """What is wrong with each relative link of page: a missing file, or an anchor that names no
    heading of its page."""
    problems = []
    for target in link_targets(page.read_text(encoding="utf-8")):
        if SCHEME.match(target):
            continue
        path, _, anchor = target.partition("#")
        destination = (page.parent / unquote(path)).resolve() if path else page
        if not destination.is_relative_to(root.resolve()) or not destination.exists():
            problems.append(f"{target}: no such file in the repository")
        elif anchor and destination.suffix != ".md":
            problems.append(f"{target}: an anchor into a page that is not Markdown")
        elif anchor and unquote(anchor) not in anchors(destination.read_text(encoding="utf-8")):
            problems.append(f"{target}: no heading of {destination.name} has the id {anchor!r}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    assert page.exists(), f"{page.relative_to(ROOT)} is gone: update PAGES"
    assert not broken_links(page, ROOT)


def test_the_docs_have_pages_and_links() -> None:
    assert len(PAGES) > 3
    assert sum(len(link_targets(page.read_text(encoding="utf-8"))) for page in PAGES) > 20


def test_ids_follow_githubs_rules() -> None:
    page = (
        "# Masking proxy\n"
        "## Composite values: structure kept\n"
        "## A conversation's next turn\n"
        "## Only the routed models, and `GET /v1/models`\n"
        "### Tests of the [docs](x.md)\n"
        "## Examples\n"
        "## Examples\n"
        "```sh\n"
        "# not a heading\n"
        "```\n"
    )
    assert anchors(page) == {
        "masking-proxy",
        "composite-values-structure-kept",
        "a-conversations-next-turn",
        "only-the-routed-models-and-get-v1models",
        "tests-of-the-docs",
        "examples",
        "examples-1",
    }


def test_a_missing_page_or_heading_is_reported(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "other.md").write_text("# Other\n## Some part\n", encoding="utf-8")
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "# Page\n"
        "See [other](other.md), [its part](other.md#some-part), [here](#page),\n"
        "[the site](https://example.com/missing.md) and `[code](missing.md)`.\n"
        "Broken: [gone](gone.md), [no part](other.md#no-part), [no\n"
        "heading](#nowhere), [outside](../../elsewhere.md).\n"
        "```md\n"
        "[in a block](missing.md)\n"
        "```\n",
        encoding="utf-8",
    )
    assert broken_links(page, tmp_path) == [
        "gone.md: no such file in the repository",
        "other.md#no-part: no heading of other.md has the id 'no-part'",
        "#nowhere: no heading of page.md has the id 'nowhere'",
        "../../elsewhere.md: no such file in the repository",
    ]


# A file of the repository the docs name in code (`tests/system/test_shutdown.py`): moved or
# renamed, the page must follow. Only paths under the project's own folders, with a suffix.
NAMED_FILE = re.compile(
    r"`((?:bench|config|docs|e2e|patterns|proxy|scripts|templates|tests)/[\w./-]+\.\w+)"
)


def _generated(path: str) -> bool:
    """Whether .gitignore names path: written by a command (bench/results.json), so a fresh
    clone has none yet."""
    ignored = (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    patterns = [line.strip() for line in ignored if line.strip() and not line.startswith("#")]
    return any(fnmatch.fnmatch(path, pattern) for pattern in patterns)


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_project_file_a_page_names_exists(page: Path) -> None:
    if page.name == "CHANGELOG.md":
        return  # history names files as they were
    named = NAMED_FILE.findall(page.read_text(encoding="utf-8"))
    missing = [path for path in named if not (ROOT / path).exists() and not _generated(path)]
    assert missing == []
