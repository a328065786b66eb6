"""The code keeps its shape: a pure engine, one door per outside system, no reverse imports."""

from __future__ import annotations

import ast
import graphlib
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


PROJECT_PACKAGES = ("config", "patterns", "proxy")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(path: Path, modules: set[str]) -> set[str]:
    """The project modules a module imports when it runs (anywhere in it, functions too),
    leaving out what only type checkers read (`if TYPE_CHECKING:`)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for statement in node.orelse:
                visit(statement)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in modules else node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(parse_file(path))
    return found & modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def test_no_import_cycles_between_project_modules() -> None:
    paths = {
        _module_name(path): path
        for package in PROJECT_PACKAGES
        for path in _python_files(package)
        if "migrations" not in path.parts
    }
    modules = set(paths)
    graph = {name: _runtime_imports(path, modules) - {name} for name, path in paths.items()}
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as cycle:
        pytest.fail(f"modules import each other: {' -> '.join(cycle.args[1])}")


def _test_and_bench_files() -> list[Path]:
    return [*_python_files("tests"), *_python_files("bench")]


def test_nothing_imports_from_a_conftest_or_a_test_module() -> None:
    """Shared helpers live in tests/support and their fixtures are registered once
    (`pytest_plugins` in tests/conftest.py): importing a conftest would run it twice, and a
    test module's helpers another suite needs belong in tests/support."""
    for path in _test_and_bench_files():
        for name in _imports(path):
            assert name.split(".")[-1] != "conftest", f"{path} imports {name}"
            assert not name.split(".")[-1].startswith("test_"), f"{path} imports {name}"


# What tests/support/processes.py defines for the tests and the benchmarks alike (by name;
# a test's own wait for a condition is not a process helper, so wait_until is not listed).
PROCESS_HELPERS = frozenset(
    {"free_port", "spawn", "terminate", "base_env", "running_in_group", "PrivateRedis"}
)


def test_each_process_helper_is_defined_once_for_tests_and_benchmarks() -> None:
    home = ROOT / "tests" / "support" / "processes.py"
    for path in _test_and_bench_files():
        if path == home:
            continue
        for node in ast.walk(parse_file(path)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                bare = node.name.lstrip("_")
                assert bare not in PROCESS_HELPERS, f"{path} defines {node.name} again"
