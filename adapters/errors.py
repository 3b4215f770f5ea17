"""The one root of the adapters' own errors (unreadable exports, broken templates, bad
multipart bodies). Outcomes for the outbox stay `outbox.errors` types."""

from __future__ import annotations


class AdapterError(Exception):
    """An adapter could not read or build something; the message holds no personal data."""
