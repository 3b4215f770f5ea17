"""The one root of the gateway core's own errors (domain, services, storage)."""

from __future__ import annotations


class GatewayError(Exception):
    """Something the gateway refused or could not do; the message holds no personal data."""
