"""Where one provider call goes: the type the route table builds and the upstream calls.

Apart from both, so that neither imports the other: the route table (proxy.routes) makes
targets, the provider calls (proxy.upstream) take them.
"""

from __future__ import annotations

from dataclasses import dataclass

# The key sent by a route without a credential: any key at all, so that LiteLLM does not fall
# back to the provider's usual environment variable and send that to the route's API base.
NO_CREDENTIAL = "none"


@dataclass(frozen=True)
class UpstreamTarget:
    """One provider call's destination: a LiteLLM model, where it lives, and its key."""

    model: str  # LiteLLM's provider/model
    api_base: str  # "" for LiteLLM's default
    api_key: str
    timeout: float
    connect_timeout: float
    route: str = "*"  # the route's pattern, for logs
    missing_credential: str = ""  # the variable named for the key, when it cannot be read

    @property
    def provider(self) -> str:
        return self.model.partition("/")[0]

    @property
    def provider_model(self) -> str:
        """The model name the provider itself knows."""
        return self.model.partition("/")[2]
