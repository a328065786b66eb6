"""The admin index's Documentation panel: the repository's docs/ pages, each linked when
PROXY_DOCS_URL says where they can be read (the admin does not serve Markdown)."""

from __future__ import annotations

from typing import Any

from django import template
from django.conf import settings

register = template.Library()

# Every page of docs/ (a test holds this list to the folder), with what a reader finds there.
DOCS_PAGES = (
    ("configuration.md", "Every setting, its default and meaning"),
    ("clients.md", "API keys, the endpoints, errors, Claude Code and the SDKs"),
    ("providers.md", "Model routes: aliases, other providers, fallbacks"),
    ("masking.md", "The rules, the default library, the mapping store"),
    ("rules.md", "Rules as code: export, review in Git, import"),
    ("security.md", "The security model, limits and permissions"),
    ("operations.md", "Health, logs, the audit trail, the dashboard, metrics"),
    ("deployment.md", "Topology, production settings, upgrades, backups"),
    ("reliability.md", "Each fault the tests inject, and what clients get"),
    ("performance.md", "The benchmarks, their figures and goals"),
    ("architecture.md", "The apps and modules, and the request path"),
    ("development.md", "Make targets and the tests"),
)


@register.inclusion_tag("admin/docs_panel.html")
def docs_panel() -> dict[str, Any]:
    base = settings.PROXY_DOCS_URL.rstrip("/")
    pages = [
        {"name": f"docs/{page}", "what": what, "url": f"{base}/{page}" if base else ""}
        for page, what in DOCS_PAGES
    ]
    return {"pages": pages, "linked": bool(base)}
