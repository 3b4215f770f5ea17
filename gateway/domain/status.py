"""An appeal's statuses and the moves between them: one table, read by the appeal itself."""

from __future__ import annotations

from enum import StrEnum

from gateway.errors import GatewayError


class AppealStatus(StrEnum):
    ACCEPTED = "accepted"  # stored and queued
    JOURNALED = "journaled"  # informational: answered on the spot, not forwarded [002: 2.8.2]
    REGISTERED = "registered"  # the target system holds it
    IN_PROGRESS = "in_progress"  # the target system is working on it
    ANSWER_READY = "answer_ready"  # «Ответ готов к передаче»
    ANSWER_SENT = "answer_sent"  # «Ответ отправлен заявителю» (ПОС e-mailed it itself)
    DELIVERED = "delivered"  # «Ответ передан заявителю»
    REJECTED = "rejected"  # the target system refused it, with a reason
    FAILED = "failed"  # forwarding failed for good (dead letter); needs an admin
    CLOSED = "closed"  # a supervisor closed it without a delivery (unreachable, refused)


_ALLOWED: dict[AppealStatus, frozenset[AppealStatus]] = {
    AppealStatus.ACCEPTED: frozenset(
        {AppealStatus.REGISTERED, AppealStatus.FAILED, AppealStatus.REJECTED,
         AppealStatus.IN_PROGRESS, AppealStatus.ANSWER_READY}
    ),
    AppealStatus.REGISTERED: frozenset(
        {AppealStatus.IN_PROGRESS, AppealStatus.ANSWER_READY, AppealStatus.ANSWER_SENT,
         AppealStatus.DELIVERED, AppealStatus.REJECTED}
    ),
    AppealStatus.IN_PROGRESS: frozenset(
        {AppealStatus.ANSWER_READY, AppealStatus.ANSWER_SENT, AppealStatus.DELIVERED,
         AppealStatus.REJECTED}
    ),
    AppealStatus.ANSWER_READY: frozenset(
        {AppealStatus.ANSWER_SENT, AppealStatus.DELIVERED, AppealStatus.IN_PROGRESS,
         AppealStatus.CLOSED}
    ),
    # [003] «Ответ отправлен заявителю» is not the end: delivery is still to be confirmed.
    AppealStatus.ANSWER_SENT: frozenset({AppealStatus.DELIVERED, AppealStatus.CLOSED}),
    AppealStatus.FAILED: frozenset(
        {AppealStatus.ACCEPTED, AppealStatus.REGISTERED, AppealStatus.CLOSED}),
    AppealStatus.DELIVERED: frozenset(),
    # A supervisor re-routes a rejection (accepted again) or has the citizen told why
    # (the reason becomes the answer to deliver).
    AppealStatus.REJECTED: frozenset({AppealStatus.ACCEPTED, AppealStatus.ANSWER_READY}),
    AppealStatus.CLOSED: frozenset(),
    AppealStatus.JOURNALED: frozenset(),
}

# A forwarded appeal that is not yet further along can become registered.
REGISTERABLE = frozenset({AppealStatus.ACCEPTED, AppealStatus.FAILED})
READY_FOR_DELIVERY = frozenset({AppealStatus.ANSWER_READY, AppealStatus.ANSWER_SENT})
# Still waiting for an answer, or for its delivery: these can be late.
UNANSWERED = frozenset({AppealStatus.ACCEPTED, AppealStatus.REGISTERED,
                        AppealStatus.IN_PROGRESS, AppealStatus.FAILED})
# [003] «статусы идентичны … ответ отправлен заявителю»: ПОС mailing it is not a confirmed
# delivery, so answer_sent stays in the worklist and can be late.
UNDELIVERED = UNANSWERED | READY_FOR_DELIVERY
# Held by a target system that may still report on it.
OPEN_UPSTREAM = frozenset({AppealStatus.REGISTERED, AppealStatus.IN_PROGRESS,
                           AppealStatus.ANSWER_READY, AppealStatus.ANSWER_SENT,
                           AppealStatus.FAILED, AppealStatus.ACCEPTED})

_FORWARD_ORDER = [AppealStatus.ACCEPTED, AppealStatus.REGISTERED, AppealStatus.IN_PROGRESS,
                  AppealStatus.ANSWER_READY, AppealStatus.ANSWER_SENT, AppealStatus.DELIVERED]


class TransitionNotAllowed(GatewayError):
    def __init__(self, current: AppealStatus, wanted: AppealStatus) -> None:
        super().__init__(f"status {current.value} cannot change to {wanted.value}")
        self.current = current
        self.wanted = wanted


def can_transition(current: AppealStatus, wanted: AppealStatus) -> bool:
    return current == wanted or wanted in _ALLOWED[current]


def is_step_back(current: AppealStatus, wanted: AppealStatus) -> bool:
    """A replayed or stale report must never move an appeal back (answer_ready → in_progress).

    An answer sent back for rework in the target system shows up as a new answer text,
    which is recorded; the appeal stays ready for delivery meanwhile.
    """
    if current in _FORWARD_ORDER and wanted in _FORWARD_ORDER:
        return _FORWARD_ORDER.index(wanted) < _FORWARD_ORDER.index(current)
    return False
