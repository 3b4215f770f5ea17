"""Which outbox rows a state change causes: the one table of (target, action) the gateway uses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.domain.appeal import Appeal
from gateway.domain.route import TargetSystem
from outbox import NewMessage


class Enqueue(Protocol):
    """The outbox's enqueue: rows join the caller's transaction."""

    async def __call__(self, conn: AsyncConnection, messages: Sequence[NewMessage]) -> object: ...


POS_REGISTER = ("pos", "register")
DELO_REGISTER = ("delo", "register")
EMAIL_REQUEST = ("email", "request")
EMAIL_ANSWER = ("email", "answer")
POS_CONFIRM_DELIVERY = ("pos", "confirm_delivery")
DELO_CLOSE_CONTROL = ("delo", "close_control")


def forwarding_messages(appeal: Appeal) -> list[NewMessage]:
    """The rows that forward a newly accepted appeal to its target system."""
    route = appeal.route
    if route.system is TargetSystem.POS:
        return [_message(appeal.id, POS_REGISTER, appeal.id)]
    if route.system is TargetSystem.DELO:
        return [_message(appeal.id, DELO_REGISTER, appeal.id)]
    if route.system in (TargetSystem.EMAIL, TargetSystem.HEALTH):
        # [004: 10.1] one request to every competent authority, each retried on its own.
        return [
            _message(appeal.id, EMAIL_REQUEST, f"{appeal.id}:request:{target.authority}",
                     {"authority": target.authority})
            for target in route.email
        ]
    return []


def _message(
    appeal_id: str, kind: tuple[str, str], key: str, extra: dict[str, str] | None = None
) -> NewMessage:
    target, action = kind
    return NewMessage(
        ordering_key=appeal_id,
        target=target,
        action=action,
        payload={"appeal_id": appeal_id, **(extra or {})},
        idempotency_key=key,
    )


def answer_mail(appeal_id: str) -> NewMessage:
    """The ready answer to an applicant who chose e-mail."""
    return _message(appeal_id, EMAIL_ANSWER, f"{appeal_id}:answer")
