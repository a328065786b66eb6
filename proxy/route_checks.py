"""What a model route may hold: the checks the admin, the model and the table share.

Apart from the route table (proxy.routes), which the model (proxy.models) would otherwise
import while the table reads the model. The provider names come from LiteLLM
(proxy.upstream), imported only when a route is checked.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from django.conf import settings

MODEL_SLOT = "{model}"
_PATTERN_RE = re.compile(r"[A-Za-z0-9*][A-Za-z0-9._:@/*\[\]-]{0,199}\Z")
_LITELLM_MODEL_RE = re.compile(r"([a-z0-9_.-]+)/([A-Za-z0-9._:@/\[\]{}-]+)\Z")
_ENV_NAME_RE = re.compile(r"[A-Z_][A-Z0-9_]{0,99}\Z")
# The proxy's own secrets and connection strings: a route must not send one of them to a
# provider (an admin could otherwise point a route at any host with SECRET_KEY as its key).
PROXY_OWN_VARIABLES = frozenset(
    {
        "SECRET_KEY",
        "MASKING_KEY",
        "DATABASE_URL",
        "TEST_DATABASE_URL",
        "REDIS_URL",
        "REDIS_SENTINEL_PASSWORD",
        "PROXY_MASTER_KEY",
        "LITELLM_MASTER_KEY",  # PROXY_MASTER_KEY's former name, still read
        "METRICS_TOKEN",
    }
)


def route_errors(
    *, model_pattern: str, litellm_model: str, api_key_env: str, api_base: str = ""
) -> dict[str, str]:
    """What is wrong with a route's fields, by field name (empty when nothing is)."""
    errors: dict[str, str] = {}
    if not _PATTERN_RE.match(model_pattern):
        errors["model_pattern"] = (
            "A model name (letters, digits and . _ : @ / [ ] -, at most 200) where * stands "
            "for any characters."
        )
    errors.update(_litellm_model_errors(litellm_model))
    if api_base:
        error = api_base_error(api_base)
        if error:
            errors["api_base"] = error
    if api_key_env:
        error = credential_variable_error(api_key_env)
        if error:
            errors["api_key_env"] = error
    return errors


def _litellm_model_errors(litellm_model: str) -> dict[str, str]:
    from proxy.upstream import is_known_provider  # imports LiteLLM: only when a route is edited

    found = _LITELLM_MODEL_RE.match(litellm_model)
    if found is None:
        return {"litellm_model": "provider/model, e.g. openai/gpt-4o-mini or anthropic/{model}."}
    provider, name = found.groups()
    if not is_known_provider(provider):
        return {"litellm_model": f"LiteLLM has no provider called {provider!r}."}
    if "{" in name.replace(MODEL_SLOT, "") or "}" in name.replace(MODEL_SLOT, ""):
        return {"litellm_model": "The only placeholder allowed is {model}."}
    return {}


def api_base_error(api_base: str) -> str:
    """Why an API base is refused ("" when it is fine): http(s), a host, no credentials."""
    try:
        parts = urlsplit(api_base)
        port = parts.port  # raises on a port that is not a number
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
        return "An http:// or https:// URL with a host, e.g. http://vllm:8000/v1."
    if parts.username or parts.password:
        return "No user or password in the URL: name the key's variable as the credential."
    if parts.query or parts.fragment or any(c.isspace() for c in api_base):
        return "No query, fragment or spaces in the URL."
    return ""


def credential_variable_error(name: str) -> str:
    """Why a route may not read its key from this variable ("" when it may)."""
    if not _ENV_NAME_RE.match(name):
        return "An environment variable name: capitals, digits and _ (OPENAI_API_KEY)."
    base = name.removesuffix("_FILE")
    if name in PROXY_OWN_VARIABLES or base in PROXY_OWN_VARIABLES:
        return f"{name} holds one of the proxy's own secrets; name the provider's key instead."
    allowed = settings.PROXY_ROUTE_CREDENTIALS
    if name not in allowed:
        listed = ", ".join(allowed) or "none yet"
        return (
            f"Routes may only read the variables the operator lists in "
            f"PROXY_ROUTE_CREDENTIALS ({listed}); {name} is not one of them."
        )
    return ""
