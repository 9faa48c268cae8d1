"""The one error type every collateral source raises."""

from __future__ import annotations


class CollateralError(Exception):
    """Collateral could not be obtained; the message names the source, the URL or file and why."""
