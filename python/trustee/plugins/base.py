"""The plugin contract: `/kbs/v0/<plugin>/<path…>` requests are handed to the named plugin."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


class PluginError(Exception):
    """The plugin could not serve the request; answered as PluginInternalError."""


@dataclass(frozen=True)
class PluginRequest:
    method: str
    path: list[str]  # segments after the plugin name
    query: dict[str, str]
    body: bytes
    init_data_claims: Any = None


class Plugin(Protocol):
    name: str

    def is_admin_request(self, req: PluginRequest) -> bool:
        """True when the request changes the plugin (admin auth), False for attested reads."""
        ...

    async def handle(self, req: PluginRequest) -> bytes: ...

    def encrypted(self, req: PluginRequest) -> bool:
        """Whether the response is sealed to the guest's TEE key (JWE)."""
        ...
