"""Reading Python source as a syntax tree, for tests that inspect code."""

from __future__ import annotations

import ast
import gc
from pathlib import Path


def parse_file(path: Path) -> ast.Module:
    """The module's syntax tree, parsed with garbage collection held.

    Python 3.11 keeps the AST builder's recursion depth in interpreter-wide state. A collection
    during a parse can finalize an abandoned asyncio task, whose "never retrieved" log line
    formats a traceback, which in 3.11 parses source again: the outer parse then fails with
    "AST constructor recursion depth mismatch".
    """
    source = path.read_text(encoding="utf-8")
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return ast.parse(source)
    finally:
        if was_enabled:
            gc.enable()
