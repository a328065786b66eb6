"""The production settings the README documents pass Django's deployment checks."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

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


def test_readme_documents_the_same_settings() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name, value in PRODUCTION_ENV.items():
        assert f"{name}={value}" in readme, name


def test_every_setting_read_from_the_environment_is_documented() -> None:
    source = "\n".join(
        (ROOT / name).read_text(encoding="utf-8") for name in ("config/settings.py",)
    )
    names = set(re.findall(r'env_(?:str|bool|int|float|list|secret)\(\s*"([A-Z0-9_]+)"', source))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    assert names, "no settings found: the pattern above needs updating"
    for name in sorted(names):
        assert f"`{name}" in readme, f"{name} missing from the README's configuration table"
        assert f"{name}=" in example, f"{name} missing from .env.example"
