"""What a request handler may use of the KBS: its configuration, stores and collaborators.
Handlers take this protocol, not the `Kbs` class that satisfies it, so they depend on what
they use and nothing imports the core back."""

from __future__ import annotations

from typing import Protocol

from trustee.admin.auth import AdminAuthorizer
from trustee.attestation.backend import AttestationBackend
from trustee.config.model import Config
from trustee.kbs.claims import ClaimsSource
from trustee.metrics import Metrics
from trustee.plugins.base import Plugin
from trustee.plugins.resource_policy import ResourcePolicy
from trustee.storage.sessions import Sessions
from trustee.token.verifier import AttestationTokenVerifier


class KbsContext(Protocol):
    config: Config
    sessions: Sessions
    attestation: AttestationBackend | None
    token_verifier: AttestationTokenVerifier
    resource_policy: ResourcePolicy
    plugins: dict[str, Plugin]
    admin: AdminAuthorizer
    timeout_min: int  # the RCAR session lifetime, minutes
    metrics: Metrics
    claims: ClaimsSource
