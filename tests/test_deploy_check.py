"""The production settings docs/deployment.md documents pass Django's deployment checks, and the
settings, the configuration table (docs/configuration.md) and .env.example name the same
variables."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIGURATION = ROOT / "docs" / "configuration.md"
DEPLOYMENT = ROOT / "docs" / "deployment.md"
ENV_EXAMPLE = ROOT / ".env.example"

PRODUCTION_ENV = {
    "DJANGO_DEBUG": "false",
    "ALLOWED_HOSTS": "proxy.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://proxy.example.com",
    "TRUST_X_FORWARDED_PROTO": "true",
    "SECURE_SSL_REDIRECT": "true",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
    "SECURE_HSTS_PRELOAD": "true",
}


def test_documented_production_settings_pass_check_deploy() -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DJANGO_SETTINGS_MODULE", "SECRET_KEY_FILE", "SECRET_KEY"}
    }
    env.update(PRODUCTION_ENV, SECRET_KEY=secrets.token_urlsafe(60))
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def _section(text: str, heading: str) -> str:
    """The part of a Markdown page under one heading, up to the next heading of its level."""
    start = text.index(f"\n{heading}\n")
    level = heading.split(" ", 1)[0]
    end = text.find(f"\n{level} ", start + len(heading) + 2)
    return text[start : end if end != -1 else len(text)]


def _table_variables() -> set[str]:
    """The variables named in the first column of the configuration table."""
    names: set[str] = set()
    for line in CONFIGURATION.read_text(encoding="utf-8").splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([A-Z][A-Z0-9_]*)`", line.split("|")[1]))
    return names


def _without_file_variants(names: set[str]) -> set[str]:
    """NAME_FILE counts as NAME: a secret may be given either way."""
    return {name.removesuffix("_FILE") for name in names}


def test_deployment_doc_documents_the_same_settings() -> None:
    section = _section(DEPLOYMENT.read_text(encoding="utf-8"), "## Production settings")
    for name, value in PRODUCTION_ENV.items():
        assert f"{name}={value}" in section, name


def test_every_setting_read_from_the_environment_is_documented() -> None:
    source = (ROOT / "config" / "settings.py").read_text(encoding="utf-8")
    names = set(re.findall(r'env_(?:str|bool|int|float|list|secret)\(\s*"([A-Z0-9_]+)"', source))
    table = _table_variables()
    example = ENV_EXAMPLE.read_text(encoding="utf-8")
    assert names, "no settings found: the pattern above needs updating"
    for name in sorted(names):
        assert name in table, f"{name} missing from the table in docs/configuration.md"
        assert f"{name}=" in example, f"{name} missing from .env.example"


def test_env_example_lists_exactly_the_configuration_table() -> None:
    table = _table_variables()
    example = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(encoding="utf-8"), re.M))
    assert table, "no variables found in docs/configuration.md: the pattern above needs updating"
    in_table, in_example = _without_file_variants(table), _without_file_variants(example)
    assert not in_table - in_example, f"missing from .env.example: {sorted(in_table - in_example)}"
    assert not in_example - in_table, f"not in the table: {sorted(in_example - in_table)}"
