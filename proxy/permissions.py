"""Who may see what of the proxy's operations: the permissions the dashboard and admin check.

Superusers hold every permission. Django's own view permissions are reused, so an admin grants
them as usual (Users or Groups):
- VIEW_AUDIT ("Can view audit record"): what happened — the dashboard's counts, series, models,
  latency and errors, and the audit trail in the admin;
- VIEW_KEYS ("Can view API key") as well: who did it — anything that names or counts per API
  key (the dashboard's key filter, usage per key and live mappings per namespace; the audit
  trail's key columns, filter and search).
"""

from __future__ import annotations

from typing import Any

VIEW_AUDIT = "proxy.view_auditrecord"
VIEW_KEYS = "proxy.view_apikey"


def may_view_keys(user: Any) -> bool:
    return bool(user.has_perm(VIEW_KEYS))
