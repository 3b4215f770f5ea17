"""Reading and writing appeals. Every write takes the caller's connection, so a state change,
its history row, its audit row and the outbox rows it causes commit together."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.domain.appeal import (
    AnswerChannel,
    Appeal,
    AppealStatus,
    Applicant,
    StatusChange,
    Urgency,
)
from gateway.domain.route import DeloTarget, EmailTarget, PosTarget, Route, TargetSystem
from gateway.storage.tables import (
    appeal_status_history,
    appeals,
    audit_log,
    deliveries,
)


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    channel: str
    outcome: str
    at: datetime
    by: str | None
    source: str


@dataclass(frozen=True, slots=True)
class StoredAppeal:
    """An appeal as stored: the domain object plus what the outside world said about it."""

    appeal: Appeal
    content_hash: str
    idempotency_key: str | None
    request_due_at: datetime | None
    overdue: bool
    external_system: str | None
    external_id: str | None
    external_number: str | None
    external_stage: str | None
    answer_text: str | None
    answer_ready_at: datetime | None
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None = None
    delivery_channel: str | None = None
    callback_attempts: int = 0
    next_callback_at: datetime | None = None
    needs_supervisor: bool = False
    interim_reminded_at: datetime | None = None
    deliveries: tuple[DeliveryRecord, ...] = field(default_factory=tuple)


def route_to_json(route: Route) -> dict[str, Any]:
    return {
        "system": route.system.value,
        "executor": route.executor,
        "pos": asdict(route.pos) if route.pos else None,
        "delo": asdict(route.delo) if route.delo else None,
        "email": [{"authority": t.authority, "recipients": list(t.recipients)}
                  for t in route.email],
        "deadline_policy": route.deadline_policy,
    }


def route_from_json(data: dict[str, Any]) -> Route:
    return Route(
        system=TargetSystem(data["system"]),
        executor=data.get("executor", ""),
        pos=PosTarget(**data["pos"]) if data.get("pos") else None,
        delo=DeloTarget(**data["delo"]) if data.get("delo") else None,
        email=tuple(
            EmailTarget(authority=t["authority"], recipients=tuple(t["recipients"]))
            for t in data.get("email") or ()
        ),
        deadline_policy=data.get("deadline_policy", "default"),
    )


def _applicant_to_json(applicant: Applicant) -> dict[str, Any]:
    return asdict(applicant)


@dataclass(frozen=True, slots=True)
class NewAppeal:
    """An accepted appeal with what intake decided beside it, ready to insert."""

    appeal: Appeal
    content_hash: str
    idempotency_key: str | None
    request_due_at: datetime | None
    now: datetime


async def insert_appeals(conn: AsyncConnection, new: Sequence[NewAppeal]) -> None:
    """Many appeals and their first history rows in two statements."""
    if not new:
        return
    await conn.execute(insert(appeals), [_appeal_row(n) for n in new])
    await conn.execute(
        insert(appeal_status_history),
        [
            {"appeal_id": n.appeal.id, "status": c.status.value, "at": c.at, "source": c.source,
             "note": c.note}
            for n in new
            for c in n.appeal.history
        ],
    )


def _appeal_row(new: NewAppeal) -> dict[str, Any]:
    appeal = new.appeal
    return {
        "id": appeal.id,
        "hotline": appeal.hotline,
        "journal_id": appeal.journal_id,
        "idempotency_key": new.idempotency_key,
        "content_hash": new.content_hash,
        "received_at": appeal.received_at,
        "operator": appeal.operator,
        "applicant": _applicant_to_json(appeal.applicant),
        "problem_address": appeal.problem_address,
        "topic": appeal.topic,
        "summary": appeal.summary,
        "repeat": appeal.repeat,
        "urgency": appeal.urgency.value,
        "answer_channel": appeal.answer_channel.value if appeal.answer_channel else None,
        "informational": appeal.informational,
        "status": appeal.status.value,
        "route": route_to_json(appeal.route),
        "route_system": appeal.route.system.value,
        "executor": appeal.route.executor,
        "due_at": appeal.due_at,
        "feedback_due_at": appeal.feedback_due_at,
        "request_due_at": new.request_due_at,
        "overdue": False,
        "callback_attempts": 0,
        "needs_supervisor": False,
        "created_at": new.now,
        "updated_at": new.now,
        "version": 1,
    }


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """Who (a role or component) did what to which appeal; never personal data."""

    at: datetime
    actor: str
    action: str
    appeal_id: str | None = None
    detail: dict[str, Any] | None = None


async def record_audits(conn: AsyncConnection, entries: Sequence[AuditEntry]) -> None:
    if entries:
        await conn.execute(insert(audit_log), [
            {"at": e.at, "actor": e.actor, "action": e.action, "appeal_id": e.appeal_id,
             "detail": e.detail} for e in entries])


async def record_audit(
    conn: AsyncConnection,
    *,
    at: datetime,
    actor: str,
    action: str,
    appeal_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """An audit entry: who (a role or component) did what to which appeal; no personal data."""
    await record_audits(conn, [AuditEntry(at, actor, action, appeal_id, detail)])


async def find_existing(
    conn: AsyncConnection, hotline: str, journal_id: str, idempotency_key: str | None
) -> list[StoredAppeal]:
    """Appeals that a repeat of this call may refer to (by journal entry or by key)."""
    condition = and_(appeals.c.hotline == hotline, appeals.c.journal_id == journal_id)
    if idempotency_key is not None:
        condition = or_(condition, appeals.c.idempotency_key == idempotency_key)
    rows = (await conn.execute(select(appeals).where(condition))).mappings().all()
    return [_from_row(row, (), ()) for row in rows]


async def get_appeal(
    conn: AsyncConnection, appeal_id: str, *, with_related: bool = True
) -> StoredAppeal | None:
    """The appeal; with its history and deliveries unless `with_related` is False."""
    row = (await conn.execute(select(appeals).where(appeals.c.id == appeal_id))).mappings().first()
    if row is None:
        return None
    if not with_related:
        return _from_row(row, (), ())
    history = (
        await conn.execute(
            select(appeal_status_history)
            .where(appeal_status_history.c.appeal_id == appeal_id)
            .order_by(appeal_status_history.c.id)
        )
    ).mappings().all()
    delivered = (
        await conn.execute(
            select(deliveries)
            .where(deliveries.c.appeal_id == appeal_id)
            .order_by(deliveries.c.id)
        )
    ).mappings().all()
    return _from_row(
        row,
        tuple(
            StatusChange(AppealStatus(h["status"]), h["at"], h["source"], h["note"])
            for h in history
        ),
        tuple(
            DeliveryRecord(d["channel"], d["outcome"], d["at"], d["by"], d["source"])
            for d in delivered
        ),
    )


async def get_appeals(conn: AsyncConnection, ids: Collection[str]) -> dict[str, StoredAppeal]:
    """Appeal rows by id (without history and deliveries); missing ids are left out."""
    if not ids:
        return {}
    rows = (await conn.execute(select(appeals).where(appeals.c.id.in_(list(ids))))).mappings()
    return {row["id"]: _from_row(row, (), ()) for row in rows}


@dataclass(frozen=True, slots=True)
class Page:
    items: list[StoredAppeal]
    next_cursor: str | None


def _encode_cursor(updated_at: datetime, appeal_id: str) -> str:
    raw = json.dumps([updated_at.isoformat(), appeal_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


class BadCursor(ValueError):
    pass


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        at, appeal_id = json.loads(base64.urlsafe_b64decode(padded))
        after = datetime.fromisoformat(at)
        if after.tzinfo is None:
            raise ValueError("naive time")
        return after.astimezone(UTC), str(uuid.UUID(appeal_id))
    except (ValueError, TypeError, AttributeError, OverflowError) as exc:
        raise BadCursor("cursor is not one this API gave out") from exc


async def list_appeals(
    conn: AsyncConnection,
    *,
    status: str | None = None,
    updated_since: datetime | None = None,
    overdue: bool | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Page:
    """Keyset paging by (updated_at, id): stable under concurrent inserts, no OFFSET scans."""
    query = select(appeals)
    if status is not None:
        query = query.where(appeals.c.status == status)
    if updated_since is not None:
        query = query.where(appeals.c.updated_at >= updated_since)
    if overdue is not None:
        query = query.where(appeals.c.overdue == overdue)
    if cursor is not None:
        after_at, after_id = _decode_cursor(cursor)
        query = query.where(
            or_(
                appeals.c.updated_at > after_at,
                and_(appeals.c.updated_at == after_at, appeals.c.id > after_id),
            )
        )
    query = query.order_by(appeals.c.updated_at, appeals.c.id).limit(limit + 1)
    rows = (await conn.execute(query)).mappings().all()
    items = [_from_row(row, (), ()) for row in rows[:limit]]
    next_cursor = None
    if len(rows) > limit and items:
        last = items[-1]
        next_cursor = _encode_cursor(last.updated_at, last.appeal.id)
    return Page(items, next_cursor)


async def count_by_status(conn: AsyncConnection) -> dict[str, int]:
    rows = await conn.execute(
        select(appeals.c.status, func.count()).group_by(appeals.c.status)
    )
    return {status: count for status, count in rows}


async def count_overdue(conn: AsyncConnection) -> int:
    result = await conn.execute(
        select(func.count()).select_from(appeals).where(appeals.c.overdue.is_(True))
    )
    return int(result.scalar_one())


async def append_history(conn: AsyncConnection, appeal_id: str, change: StatusChange) -> None:
    await append_histories(conn, [(appeal_id, change)])


async def append_histories(
    conn: AsyncConnection, changes: Sequence[tuple[str, StatusChange]]
) -> None:
    if changes:
        await conn.execute(insert(appeal_status_history), [
            {"appeal_id": appeal_id, "status": c.status.value, "at": c.at, "source": c.source,
             "note": c.note} for appeal_id, c in changes])


async def save_status(
    conn: AsyncConnection, before: Appeal, after: Appeal, *, now: datetime,
    extra: dict[str, Any] | None = None,
) -> bool:
    """Writes the new status and the history rows it added; False if someone else moved first."""
    new_changes = after.history[len(before.history):]
    values: dict[str, Any] = {"status": after.status.value, "updated_at": now,
                              "version": appeals.c.version + 1, **(extra or {})}
    result = await conn.execute(
        update(appeals)
        .where(appeals.c.id == before.id, appeals.c.status == before.status.value)
        .values(**values)
    )
    if result.rowcount != 1:
        return False
    if new_changes:
        await conn.execute(
            insert(appeal_status_history),
            [{"appeal_id": after.id, "status": c.status.value, "at": c.at, "source": c.source,
              "note": c.note} for c in new_changes],
        )
    return True


def _from_row(
    row: Any, history: tuple[StatusChange, ...], delivered: tuple[DeliveryRecord, ...]
) -> StoredAppeal:
    appeal = Appeal(
        id=row["id"],
        hotline=row["hotline"],
        journal_id=row["journal_id"],
        received_at=row["received_at"],
        operator=row["operator"],
        applicant=Applicant(**row["applicant"]),
        problem_address=row["problem_address"],
        topic=row["topic"],
        summary=row["summary"],
        repeat=row["repeat"],
        urgency=Urgency(row["urgency"]),
        answer_channel=AnswerChannel(row["answer_channel"]) if row["answer_channel"] else None,
        informational=row["informational"],
        status=AppealStatus(row["status"]),
        route=route_from_json(row["route"]),
        due_at=row["due_at"],
        feedback_due_at=row["feedback_due_at"],
        history=history,
    )
    return StoredAppeal(
        appeal=appeal,
        content_hash=row["content_hash"],
        idempotency_key=row["idempotency_key"],
        request_due_at=row["request_due_at"],
        overdue=row["overdue"],
        external_system=row["external_system"],
        external_id=row["external_id"],
        external_number=row["external_number"],
        external_stage=row["external_stage"],
        answer_text=row["answer_text"],
        answer_ready_at=row["answer_ready_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        delivered_at=row["delivered_at"],
        delivery_channel=row["delivery_channel"],
        callback_attempts=row["callback_attempts"],
        next_callback_at=row["next_callback_at"],
        needs_supervisor=row["needs_supervisor"],
        interim_reminded_at=row["interim_reminded_at"],
        deliveries=delivered,
    )
