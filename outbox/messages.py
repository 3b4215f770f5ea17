"""What moves through the outbox: rows to enqueue, claimed rows, outcomes, admin views.

Every store (SQLite, PostgreSQL, the in-memory double) speaks these types, so the
dispatcher, the gateway and the admin API never see a database row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from outbox.leases import Lease
from outbox.schema import State

MAX_REASON_CHARS = 500


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A row to enqueue. `payload` holds ids and small parameters, never personal data."""

    ordering_key: str
    target: str
    action: str
    payload: Mapping[str, Any]
    idempotency_key: str
    # Epoch seconds; None means due at once.
    available_at: float | None = None


@dataclass(frozen=True, slots=True)
class Message:
    """A claimed row as a handler sees it.

    `attempt` counts claims since the row was created or last re-driven; an attempt above
    1 means an earlier one may already have had its effect, so the handler should look it
    up (by `idempotency_key`) before acting again.
    """

    id: int
    ordering_key: str
    target: str
    action: str
    payload: dict[str, Any]
    idempotency_key: str
    attempt: int
    created_at: float
    # Start of the retry window: created_at, or the time of the last re-drive.
    window_start: float

    @property
    def lease(self) -> Lease:
        return Lease(self.id, self.attempt)


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """A row as the admin API shows it."""

    id: int
    ordering_key: str
    target: str
    action: str
    payload: dict[str, Any]
    idempotency_key: str
    state: State
    attempts: int
    available_at: float
    lease_owner: str | None
    lease_expires_at: float | None
    last_error: str | None
    created_at: float
    updated_at: float
    finished_at: float | None
    redriven_at: float | None


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """Counts for /status and /metrics: no payloads, no keys, nothing personal."""

    by_state: dict[str, int]
    by_target: dict[str, dict[str, int]]
    oldest_pending_age_s: float | None


class Verdict(StrEnum):
    DONE = "done"
    RETRY = "retry"
    DEAD = "dead"
    # Give the row back without an outcome (shutdown); the attempt still counts.
    RELEASE = "release"


@dataclass(frozen=True, slots=True)
class Settlement:
    """A worker's outcome for one lease."""

    lease: Lease
    verdict: Verdict
    retry_at: float | None = None
    reason: str | None = None

    @staticmethod
    def done(lease: Lease) -> Settlement:
        return Settlement(lease, Verdict.DONE)

    @staticmethod
    def retry(lease: Lease, at: float, reason: str) -> Settlement:
        return Settlement(lease, Verdict.RETRY, retry_at=at, reason=reason)

    @staticmethod
    def dead(lease: Lease, reason: str) -> Settlement:
        return Settlement(lease, Verdict.DEAD, reason=reason)

    @staticmethod
    def release(lease: Lease) -> Settlement:
        return Settlement(lease, Verdict.RELEASE)


def clip_reason(reason: str) -> str:
    """A failure reason short enough for `last_error` and the admin API."""
    return reason if len(reason) <= MAX_REASON_CHARS else reason[: MAX_REASON_CHARS - 1] + "…"
