"""Applying what a target system says about an appeal, from a poll or from an imported export.

Idempotent by construction: statuses only move forward (a replayed or stale change never
moves an appeal back), the answer text is stored when it differs, and a delivery is
recorded once. Either door (the poller, `gateway pos import`) ends here.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, time, tzinfo
from typing import Any

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.domain.appeal import AnswerChannel, AppealStatus, can_transition
from gateway.domain.ports import ExternalUpdate
from gateway.services.delivery import (
    READY_FOR_DELIVERY,
    AnswerNotReady,
    Delivery,
    DeliveryConflict,
    record_delivery,
)
from gateway.services.outbox_actions import Enqueue, answer_mail
from gateway.storage import appeals as repo
from gateway.storage.tables import appeals

log = structlog.get_logger(__name__)

EXTENDING_SYSTEMS = frozenset({"delo"})
# An extension moves the deadline to the end of the executor's new planned day.
PLANNED_DAY_ENDS_AT = time(18, 0)


async def apply_update(
    conn: AsyncConnection, system: str, change: ExternalUpdate, now: datetime, *,
    enqueue: Enqueue, zone_of: Callable[[str], tzinfo],
) -> int:
    """Applies one remote change; 1 if it changed the appeal, 0 if it was known or not ours."""
    stored = await find_appeal(conn, system, change)
    if stored is None:
        return 0  # not ours (entered in ПОС by hand) or not yet recorded
    appeal = stored.appeal
    extra: dict[str, Any] = {}
    if stored.external_id is None:
        extra.update(external_system=system, external_id=change.external_id)
    if stored.external_stage != change.stage:
        extra["external_stage"] = change.stage
    if change.answer is not None and stored.answer_text != change.answer.text:
        extra.update(answer_text=change.answer.text,
                     answer_ready_at=change.answer.approved_at or change.updated_at)
    # Only «Дело» extensions move our deadline (an executor's new PLAN_DATE): ПОС's planned
    # completion is the platform's own term and must not hide a call going overdue.
    if change.planned_completion is not None and system in EXTENDING_SYSTEMS:
        planned = datetime.combine(change.planned_completion, PLANNED_DAY_ENDS_AT,
                                   zone_of(appeal.hotline))
        if appeal.due_at is None or planned > appeal.due_at:
            extra["due_at"] = planned  # the executor's extension
            extra["overdue"] = planned < now

    wanted = AppealStatus(change.status)
    changed = 0
    if wanted is AppealStatus.DELIVERED and change.delivery is not None:
        # Confirmed directly in ПОС: record it like any other confirmation.
        if extra:
            await _update(conn, appeal.id, extra, now)
        if appeal.status not in READY_FOR_DELIVERY and can_transition(
                appeal.status, AppealStatus.ANSWER_READY):
            # Answered and delivered between two polls: pass through «Ответ готов к
            # передаче» so the delivery is recorded (channel, when, who) like any other.
            ready = appeal.moved_to(AppealStatus.ANSWER_READY, now, system,
                                    note=AppealStatus.ANSWER_READY.value)
            if await repo.save_status(conn, appeal, ready, now=now):
                await repo.record_audit(conn, at=now, actor=system,
                                        action="answer.ready", appeal_id=appeal.id)
        try:
            await record_delivery(
                conn, appeal.id,
                Delivery(change.delivery.channel, change.delivery.confirmed_at,
                         change.delivery.confirmed_by, system),
                now=now, enqueue=enqueue, actor=system,
            )
            return 1
        except (AnswerNotReady, DeliveryConflict) as exc:
            if isinstance(exc, AnswerNotReady) and can_transition(
                    appeal.status, AppealStatus.DELIVERED):
                after = appeal.moved_to(AppealStatus.DELIVERED, now, system)
                await repo.save_status(conn, appeal, after, now=now, extra={
                    "delivered_at": change.delivery.confirmed_at,
                    "delivery_channel": change.delivery.channel.value})
                return 1
            log.warning("poll.delivery_not_applied", system=system,
                        appeal_id=appeal.id, reason=type(exc).__name__)
            return 0
    if wanted != appeal.status and can_transition(appeal.status, wanted) and not (
            _is_step_back(appeal.status, wanted)):
        after = appeal.moved_to(wanted, now, system, note=change.stage)
        if await repo.save_status(conn, appeal, after, now=now, extra=extra):
            changed = 1
            if wanted is AppealStatus.ANSWER_READY:
                await repo.record_audit(conn, at=now, actor=system,
                                        action="answer.ready", appeal_id=appeal.id)
                has_text = bool(extra.get("answer_text") or stored.answer_text)
                if appeal.answer_channel is AnswerChannel.EMAIL and has_text:
                    # The applicant chose e-mail: the gateway sends it, then confirms. Without
                    # the text (an export row says only the stage) an operator delivers it.
                    await enqueue(conn, [answer_mail(appeal.id)])
    elif extra:
        await _update(conn, appeal.id, extra, now)
        changed = 1
    return changed


async def find_appeal(
    conn: AsyncConnection, system: str, change: ExternalUpdate
) -> repo.StoredAppeal | None:
    if change.appeal_id:
        stored = await repo.get_appeal(conn, change.appeal_id)
        if stored is not None:
            return stored
    row = (await conn.execute(
        select(appeals.c.id).where(appeals.c.external_system == system,
                                   appeals.c.external_id == change.external_id)
    )).first()
    return await repo.get_appeal(conn, row[0]) if row else None

async def _update(conn: AsyncConnection, appeal_id: str, values: dict[str, Any],
                  now: datetime) -> None:
    await conn.execute(update(appeals).where(appeals.c.id == appeal_id)
                       .values(**values, updated_at=now))


_FORWARD_ORDER = [AppealStatus.ACCEPTED, AppealStatus.REGISTERED, AppealStatus.IN_PROGRESS,
                  AppealStatus.ANSWER_READY, AppealStatus.ANSWER_SENT, AppealStatus.DELIVERED]


def _is_step_back(current: AppealStatus, wanted: AppealStatus) -> bool:
    """A replayed or stale page must never move an appeal back (answer_ready → in_progress).

    An answer sent back for rework in the target system shows up as a new answer text,
    which is recorded; the appeal stays ready for delivery meanwhile.
    """
    if current in _FORWARD_ORDER and wanted in _FORWARD_ORDER:
        return _FORWARD_ORDER.index(wanted) < _FORWARD_ORDER.index(current)
    return False

