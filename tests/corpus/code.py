"""Real code, documentation and configuration as a regression corpus for false positives: the
Python, Markdown, YAML and JSON files of pinned packages this project installs (Django,
Django REST framework, LiteLLM: a proxy for model providers, full of code that handles
API keys, tokens, passwords and S3 buckets).

What such text may hold is mostly code, and a rule that masks code changes what the model
reads. Example values in it (a documentation's "arn:aws:iam::123456789012:role/MyRole",
"my-bucket") are values by the rules' own definition and are masked on purpose; a finding
is counted as damaging when a rule that decides from context (bucket names, secret
settings, passwords, addresses, account and resource IDs) takes a value with no digit in
it, or that is a number: real identifiers, addresses and accounts have digits (and are not
plain numbers: "cost_per_token": 4e-07 is not a token), code identifiers and prose mostly
have none.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

PACKAGES = ("django", "rest_framework", "litellm")
SUFFIXES = (".py", ".md", ".txt", ".rst", ".yaml", ".yml", ".json", ".toml", ".cfg", ".html")
# Rules that decide from the words around a value, or from a loose shape.
CONTEXT_RULES = (
    "aws_s3_bucket",
    "secret_named",
    "password_assignment",
    "public_ipv4",
    "aws_account_id",
    "aws_resource_id",
)


@dataclass(frozen=True)
class SourceFile:
    name: str  # package-relative path
    text: str


def package_version(package: str) -> str:
    return metadata.version(_DISTRIBUTIONS.get(package, package))


def source_files() -> Iterator[SourceFile]:
    """Every file of the packages with one of SUFFIXES, in a stable order."""
    for package in PACKAGES:
        root = Path(importlib.import_module(package).__file__ or "").parent
        for path in sorted(root.rglob("*")):
            if path.suffix in SUFFIXES and path.is_file():
                name = f"{package}/{path.relative_to(root)}"
                yield SourceFile(name, path.read_text(encoding="utf-8", errors="replace"))


_NUMBER = re.compile(r"[-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?,?")
_DISTRIBUTIONS = {"django": "Django", "rest_framework": "djangorestframework"}


def is_damaging(pattern: str, value: str) -> bool:
    """A context rule's finding with no digit in it, or that is a number (see the module's
    docstring)."""
    if not pattern.startswith(CONTEXT_RULES):
        return False
    return not any(ch.isdigit() for ch in value) or bool(_NUMBER.fullmatch(value))
