"""Recording that the answer reached the applicant, whoever saw it first.

An operator's callback, an e-mail the gateway sent, or ministry staff confirming directly
in ПОС all end here. The first confirmation wins; repeating it is harmless; a second one
naming another channel is a conflict a person must look at. A confirmation made in the
gateway is passed on to the target system through the outbox (ПОС: delivery channel;
«Дело»: control removed only now [002: 2.8.11]); one seen in ПОС is not sent back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.domain.appeal import AppealStatus, DeliveryChannel
from gateway.services import outbox_actions as actions
from gateway.services.outbox_actions import Enqueue
from gateway.storage import appeals as repo
from gateway.storage.tables import deliveries
from outbox import NewMessage

READY_FOR_DELIVERY = frozenset({AppealStatus.ANSWER_READY, AppealStatus.ANSWER_SENT})


class DeliveryResult(StrEnum):
    RECORDED = "recorded"
    ALREADY_RECORDED = "already_recorded"


class AnswerNotReady(Exception):
    def __init__(self, status: AppealStatus) -> None:
        super().__init__(status.value)
        self.status = status


class DeliveryConflict(Exception):
    """Delivered already, by another channel."""

    def __init__(self, recorded: str) -> None:
        super().__init__(recorded)
        self.recorded = recorded


@dataclass(frozen=True, slots=True)
class Delivery:
    channel: DeliveryChannel
    delivered_at: datetime
    by: str | None
    source: str  # gateway | pos | delo | email


async def record_delivery(
    conn: AsyncConnection, appeal_id: str, delivery: Delivery, *, now: datetime,
    enqueue: Enqueue, actor: str,
) -> DeliveryResult:
    """Within the caller's transaction: the delivery row, the status, the confirmation row."""
    stored = await repo.get_appeal(conn, appeal_id)
    if stored is None:
        raise LookupError(appeal_id)
    appeal = stored.appeal
    if appeal.status is AppealStatus.DELIVERED:
        recorded = stored.delivery_channel
        if recorded == delivery.channel.value:
            return DeliveryResult.ALREADY_RECORDED
        raise DeliveryConflict(recorded or "unknown")
    if appeal.status not in READY_FOR_DELIVERY:
        raise AnswerNotReady(appeal.status)
    after = appeal.moved_to(AppealStatus.DELIVERED, now, delivery.source,
                            note=f"channel {delivery.channel.value}")
    moved = await repo.save_status(
        conn, appeal, after, now=now,
        extra={"delivered_at": delivery.delivered_at, "delivery_channel": delivery.channel.value,
               "next_callback_at": None},
    )
    if not moved:  # someone else moved it in between: let the caller retry and see why
        raise AnswerNotReady(appeal.status)
    await conn.execute(insert(deliveries).values(
        appeal_id=appeal_id, channel=delivery.channel.value, outcome="delivered",
        at=delivery.delivered_at, by=delivery.by, source=delivery.source, recorded_at=now,
    ))
    confirmation = _confirmation(stored, delivery)
    if confirmation is not None:
        await enqueue(conn, [confirmation])
    await repo.record_audit(
        conn, at=now, actor=actor, action="delivery.recorded", appeal_id=appeal_id,
        detail={"channel": delivery.channel.value, "source": delivery.source,
                "delivered_at": delivery.delivered_at.isoformat(), "by": delivery.by},
    )
    return DeliveryResult.RECORDED


def _confirmation(stored: repo.StoredAppeal, delivery: Delivery) -> NewMessage | None:
    system = stored.external_system
    if system is None or stored.external_id is None or system == delivery.source:
        return None  # nothing to tell, or the system told us itself
    kind = {"pos": actions.POS_CONFIRM_DELIVERY, "delo": actions.DELO_CLOSE_CONTROL}.get(system)
    if kind is None:
        return None
    target, action = kind
    return NewMessage(
        ordering_key=stored.appeal.id, target=target, action=action,
        payload={"appeal_id": stored.appeal.id, "channel": delivery.channel.value,
                 "delivered_at": delivery.delivered_at.isoformat()},
        idempotency_key=f"{stored.appeal.id}:{action}",
    )
