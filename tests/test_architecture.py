"""The code keeps its shape: a pure engine, one door per outside system, no reverse imports."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.source import parse_file

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN_IN_PURE_CORE = ("django", "redis", "litellm", "rest_framework", "cryptography")


@pytest.mark.parametrize(
    "module",
    [
        "patterns.engine",
        "patterns.evasion",
        "patterns.library",
        "patterns.placements",
        "patterns.scan_cache",
        "patterns.scanner",
        "proxy.charts",
        "proxy.keys",
        "proxy.masking",
        "proxy.streaming",
    ],
)
def test_pure_modules_load_no_framework_or_service_client(module: str) -> None:
    code = (
        f"import json, sys; import {module}; "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    loaded = set(json.loads(output))
    assert not loaded & set(FORBIDDEN_IN_PURE_CORE)


def _imports(path: Path) -> set[str]:
    tree = parse_file(path)
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _python_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_patterns_never_imports_proxy() -> None:
    for path in _python_files("patterns"):
        assert not any(name.split(".")[0] == "proxy" for name in _imports(path)), path


@pytest.mark.parametrize(
    ("library", "door"),
    [
        ("redis", "patterns/store.py"),
        ("django_redis", "patterns/store.py"),
        ("litellm", "proxy/upstream.py"),
    ],
)
def test_one_module_talks_to_each_outside_system(library: str, door: str) -> None:
    for package in ("patterns", "proxy", "config"):
        for path in _python_files(package):
            if str(path.relative_to(ROOT)) == door:
                continue
            used = {name.split(".")[0] for name in _imports(path)}
            assert library not in used, f"{path} imports {library}; only {door} may"
