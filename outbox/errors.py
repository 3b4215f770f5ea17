"""How a handler tells the outbox what happened, so the engine can decide what comes next.

A handler returns normally on success. Anything else is one of these; an exception of
any other type is treated as transient (a bug must not lose a message).
"""

from __future__ import annotations


class HandlerOutcome(Exception):
    """Base of the outcomes a handler may raise. `reason` must hold no personal data."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Transient(HandlerOutcome):
    """Try again later (5xx, 429, timeouts). `retry_after` seconds is honoured as a floor."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class Permanent(HandlerOutcome):
    """Will never succeed as it is (validation, 4xx other than 408/429): dead-letter now."""


class Ambiguous(Transient):
    """The effect may or may not have happened (lost response, reset after sending).

    Retried like a transient failure; the handler must look the effect up before
    performing it again.
    """
