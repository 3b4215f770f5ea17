"""The appeals repository over SQL: rows to `Appeal`s and back, inside one unit of work.

Appeals loaded for writing are locked until commit (FOR UPDATE on PostgreSQL; SQLite has
one writer), and each is loaded once per unit of work (an identity map), so two changes
from one poll page land on the same object.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, case, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.domain.appeal import (
    AnswerChannel,
    Appeal,
    AppealStatus,
    Applicant,
    ConsultationOutcome,
    DeliveryRecord,
    InterimAnswer,
    JournalEntry,
    OverdueKind,
    ReviewResult,
    StatusChange,
    Urgency,
)
from gateway.domain.ports import ExternalRef
from gateway.domain.route import DeloTarget, EmailTarget, PosTarget, Route, TargetSystem
from gateway.domain.status import OPEN_UPSTREAM, READY_FOR_DELIVERY, UNANSWERED, UNDELIVERED
from gateway.services.unit_of_work import (
    AppealPage,
    AuditEntry,
    BadCursor,
    KnownCall,
    NewAppeal,
)
from gateway.storage.identity_map import IdentityMap
from gateway.storage.tables import (
    appeal_status_history,
    appeals,
    audit_log,
    deliveries,
    interim_answers,
)

# The flag column of each kind of missed deadline.
_FLAG = {
    OverdueKind.ANSWER: appeals.c.overdue,
    OverdueKind.FEEDBACK: appeals.c.feedback_overdue,
    OverdueKind.REQUEST: appeals.c.request_overdue,
    OverdueKind.REGISTRATION: appeals.c.registered_late,
    OverdueKind.CALLBACK: appeals.c.callback_late,
}


def route_to_json(route: Route) -> dict[str, Any]:
    return {
        "system": route.system.value,
        "executor": route.executor,
        "pos": asdict(route.pos) if route.pos else None,
        "delo": asdict(route.delo) if route.delo else None,
        "email": [{"authority": t.authority, "recipients": list(t.recipients)}
                  for t in route.email],
        "deadline_policy": route.deadline_policy,
        **({"note": route.note} if route.note else {}),
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
        note=data.get("note"),
    )


class SqlAppeals:
    """`AppealRepository` on one connection; `for_update` when the unit of work writes."""

    def __init__(self, conn: AsyncConnection, *, for_update: bool) -> None:
        self._conn = conn
        self._rows = IdentityMap(conn, appeals, _from_row, for_update=for_update)
        self._seen = self._rows.seen
        self._added: list[NewAppeal] = []
        self._with_related: set[str] = set()

    # -- identity map --------------------------------------------------------------------

    def add(self, new: NewAppeal) -> None:
        self._added.append(new)
        self._seen[new.appeal.id] = new.appeal
        self._with_related.add(new.appeal.id)

    def seen(self) -> Sequence[Appeal]:
        return list(self._seen.values())

    def added(self) -> Sequence[NewAppeal]:
        return list(self._added)

    # -- loading -------------------------------------------------------------------------

    async def get(self, appeal_id: str) -> Appeal | None:
        appeal = self._seen.get(appeal_id)
        if appeal is None:
            found = await self._rows.load(appeals.c.id == appeal_id)
            if not found:
                return None
            appeal = found[0]
        if appeal_id not in self._with_related:
            await self._load_related(appeal)
        return appeal

    async def _load_related(self, appeal: Appeal) -> None:
        history = (await self._conn.execute(
            select(appeal_status_history)
            .where(appeal_status_history.c.appeal_id == appeal.id)
            .order_by(appeal_status_history.c.id))).mappings().all()
        delivered = (await self._conn.execute(
            select(deliveries).where(deliveries.c.appeal_id == appeal.id)
            .order_by(deliveries.c.id))).mappings().all()
        # A bulk load left both empty: what they hold now was added in this unit of work.
        appeal.history = tuple(
            StatusChange(AppealStatus(h["status"]), h["at"], h["source"], h["note"])
            for h in history) + appeal.history
        appeal.deliveries = tuple(
            DeliveryRecord(d["channel"], d["outcome"], d["at"], d["by"], d["source"])
            for d in delivered) + appeal.deliveries
        interims = (await self._conn.execute(
            select(interim_answers).where(interim_answers.c.appeal_id == appeal.id)
            .order_by(interim_answers.c.id))).mappings().all()
        appeal.interims = tuple(
            InterimAnswer(i["reason"], i["expected_at"], i["channel"], i["at"], i["by"])
            for i in interims) + appeal.interims
        self._with_related.add(appeal.id)

    async def get_many(self, ids: Sequence[str]) -> dict[str, Appeal]:
        return await self._rows.get_many(ids)

    async def by_external(self, system: str, external_ids: Sequence[str]) -> dict[str, Appeal]:
        if not external_ids:
            return {}
        loaded = await self._rows.load(and_(appeals.c.external_system == system,
                                       appeals.c.external_id.in_(sorted(set(external_ids)))))
        return {a.external.id: a for a in loaded if a.external is not None}

    async def ids_by_external_number(self, system: str, number: str) -> list[str]:
        suffix = number.rsplit("-", 1)[-1]
        found = (await self._conn.execute(
            select(appeals.c.id).where(
                appeals.c.external_system == system,
                or_(appeals.c.external_number == number, appeals.c.external_id == number,
                    appeals.c.external_id == suffix,
                    appeals.c.external_number.endswith(f"-{suffix}")),
            ).limit(2))).scalars().all()
        return list(found)

    async def known_calls(self, hotline: str, journal_id: str,
                          idempotency_key: str | None) -> list[KnownCall]:
        condition = and_(appeals.c.hotline == hotline, appeals.c.journal_id == journal_id)
        if idempotency_key is not None:
            condition = or_(condition, appeals.c.idempotency_key == idempotency_key)
        rows = await self._conn.execute(
            select(appeals.c.id, appeals.c.hotline, appeals.c.journal_id,
                   appeals.c.content_hash).where(condition).order_by(appeals.c.created_at))
        return [KnownCall(*row) for row in rows]

    async def open_records(self, system: str, after_id: str | None,
                           limit: int) -> list[tuple[str, str]]:
        query = (select(appeals.c.id, appeals.c.external_id)
                 .where(appeals.c.external_system == system, appeals.c.external_id.is_not(None),
                        appeals.c.status.in_(_values(OPEN_UPSTREAM)))
                 .order_by(appeals.c.id).limit(limit))
        if after_id is not None:
            query = query.where(appeals.c.id > after_id)
        return [(row.id, row.external_id) for row in await self._conn.execute(query)]

    async def ids_to_mark_overdue(self, now: datetime, limit: int) -> list[str]:
        rows = await self._conn.execute(
            select(appeals.c.id)
            .where(appeals.c.overdue.is_(False), appeals.c.due_at < now,
                   appeals.c.status.in_(_values(UNDELIVERED)))
            .order_by(appeals.c.due_at).limit(limit))
        return list(rows.scalars())

    async def ids_to_mark_late(self, kind: OverdueKind, now: datetime,
                               limit: int) -> list[str]:
        """Candidates for `Appeal.mark_late(kind)`, found by the index-friendly conditions
        the appeal re-checks under the lock."""
        if kind is OverdueKind.ANSWER:
            return await self.ids_to_mark_overdue(now, limit)
        if kind is OverdueKind.FEEDBACK:
            due, condition = appeals.c.feedback_due_at, and_(
                appeals.c.status.in_(_values(UNDELIVERED)),
                appeals.c.interim_given_at.is_(None))
        elif kind is OverdueKind.REQUEST:
            due, condition = appeals.c.request_due_at, or_(
                appeals.c.status.in_([AppealStatus.ACCEPTED.value, AppealStatus.FAILED.value]),
                and_(appeals.c.status.in_([AppealStatus.REGISTERED.value,
                                           AppealStatus.IN_PROGRESS.value]),
                     appeals.c.route_system.in_(["email", "health"])))
        elif kind is OverdueKind.CALLBACK:
            due, condition = appeals.c.callback_due_at, and_(
                appeals.c.status.in_(_values(READY_FOR_DELIVERY)),
                appeals.c.needs_supervisor.is_(False))
        else:
            return []  # registration is flagged at intake
        rows = await self._conn.execute(
            select(appeals.c.id)
            .where(_FLAG[kind].is_(False), due < now, condition)
            .order_by(due).limit(limit))
        return list(rows.scalars())

    async def ids_to_schedule_callback(self, limit: int) -> list[str]:
        """[001: 13] answers to give by phone whose first callback term is not yet set."""
        rows = await self._conn.execute(
            select(appeals.c.id)
            .where(appeals.c.status.in_(_values(READY_FOR_DELIVERY)),
                   appeals.c.answer_channel == AnswerChannel.PHONE.value,
                   appeals.c.callback_due_at.is_(None), appeals.c.callback_attempts == 0,
                   appeals.c.needs_supervisor.is_(False))
            .order_by(appeals.c.answer_ready_at).limit(limit))
        return list(rows.scalars())

    async def ids_to_remind(self, now: datetime, lead: timedelta, limit: int) -> list[str]:
        rows = await self._conn.execute(
            select(appeals.c.id)
            .where(appeals.c.interim_reminded_at.is_(None), appeals.c.due_at < now + lead,
                   appeals.c.status.in_(_values(UNANSWERED)))
            .order_by(appeals.c.due_at).limit(limit))
        return list(rows.scalars())

    async def ready_for_delivery(self, limit: int) -> list[Appeal]:
        ids = (await self._conn.execute(
            select(appeals.c.id)
            # [003] answer_sent is not the end: it waits for a confirmed delivery too.
            .where(appeals.c.status.in_(_values(READY_FOR_DELIVERY)))
            .order_by(appeals.c.needs_supervisor.desc(), appeals.c.next_callback_at.is_(None),
                      appeals.c.next_callback_at, appeals.c.answer_ready_at, appeals.c.id)
            .limit(limit))).scalars().all()
        found = await self.get_many(ids)
        return [found[i] for i in ids if i in found]

    async def page(self, *, status: str | None, updated_since: datetime | None,
                   overdue: bool | OverdueKind | None, limit: int, cursor: str | None,
                   flag: str | None = None) -> AppealPage:
        query = select(appeals)
        if status is not None:
            query = query.where(appeals.c.status == status)
        if updated_since is not None:
            query = query.where(appeals.c.updated_at >= updated_since)
        if isinstance(overdue, OverdueKind):
            query = query.where(_FLAG[overdue].is_(True))
        elif overdue is not None:
            query = query.where(appeals.c.overdue == overdue)
        if flag == "needs_supervisor":
            query = query.where(appeals.c.needs_supervisor.is_(True))
        elif flag in ("rejected", "failed"):
            query = query.where(appeals.c.status == flag)
        if cursor is not None:
            after_at, after_id = _decode_cursor(cursor)
            query = query.where(or_(
                appeals.c.updated_at > after_at,
                and_(appeals.c.updated_at == after_at, appeals.c.id > after_id)))
        query = query.order_by(appeals.c.updated_at, appeals.c.id).limit(limit + 1)
        rows = (await self._conn.execute(query)).mappings().all()
        items = [_from_row(row) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit and items:
            last = items[-1]
            assert last.updated_at is not None
            next_cursor = _encode_cursor(last.updated_at, last.id)
        return AppealPage(items, next_cursor)

    async def count_by_status(self) -> dict[str, int]:
        rows = await self._conn.execute(
            select(appeals.c.status, func.count()).group_by(appeals.c.status))
        return {status: count for status, count in rows}

    async def count_overdue(self) -> int:
        result = await self._conn.execute(
            select(func.count()).select_from(appeals).where(appeals.c.overdue.is_(True)))
        return int(result.scalar_one())

    def _interim_due(self) -> Any:
        return and_(appeals.c.interim_reminded_at.is_not(None),
                    appeals.c.interim_given_at.is_(None),
                    appeals.c.status.in_(_values(UNANSWERED)))

    async def interim_due(self, limit: int) -> list[Appeal]:
        rows = (await self._conn.execute(
            select(appeals).where(self._interim_due())
            .order_by(appeals.c.due_at, appeals.c.id).limit(limit))).mappings().all()
        return [_from_row(row) for row in rows]

    async def count_interim_due(self) -> int:
        result = await self._conn.execute(
            select(func.count()).select_from(appeals).where(self._interim_due()))
        return int(result.scalar_one())

    async def count_overdue_by_kind(self) -> dict[OverdueKind, int]:
        """One scan: each kind of missed deadline counted on its own."""
        row = (await self._conn.execute(select(*[
            func.coalesce(func.sum(case((column.is_(True), 1), else_=0)), 0)
            for column in _FLAG.values()]))).one()
        return {kind: int(count) for kind, count in zip(_FLAG, row, strict=True)}


# -- writing -----------------------------------------------------------------------------

_UPDATE = (update(appeals).where(appeals.c.id == bindparam("b_id"))
           .values(version=appeals.c.version + 1))


async def write_appeals(conn: AsyncConnection, new: Sequence[NewAppeal],
                        updated: Sequence[Appeal], now: datetime) -> None:
    """New appeals in one statement, changed ones in one executemany."""
    if new:
        await conn.execute(insert(appeals), [_new_row(n, now) for n in new])
    if updated:
        for appeal in updated:
            appeal.updated_at = now
        await conn.execute(_UPDATE, [{"b_id": a.id, **_state(a)} for a in updated])


async def write_history(conn: AsyncConnection, changes: Sequence[tuple[str, StatusChange]]) -> None:
    if changes:
        await conn.execute(insert(appeal_status_history), [
            {"appeal_id": appeal_id, "status": c.status.value, "at": c.at, "source": c.source,
             "note": c.note} for appeal_id, c in changes])


async def write_deliveries(
    conn: AsyncConnection, records: Sequence[tuple[str, DeliveryRecord, datetime]]
) -> None:
    if records:
        await conn.execute(insert(deliveries), [
            {"appeal_id": appeal_id, "channel": d.channel, "outcome": d.outcome, "at": d.at,
             "by": d.by, "source": d.source, "recorded_at": recorded_at}
            for appeal_id, d, recorded_at in records])


async def write_interims(
    conn: AsyncConnection, records: Sequence[tuple[str, InterimAnswer, datetime]]
) -> None:
    if records:
        await conn.execute(insert(interim_answers), [
            {"appeal_id": appeal_id, "reason": i.reason, "expected_at": i.expected_at,
             "channel": i.channel, "at": i.at, "by": i.by, "recorded_at": recorded_at}
            for appeal_id, i, recorded_at in records])


async def write_audit(conn: AsyncConnection, entries: Iterable[AuditEntry]) -> None:
    rows = [{"at": e.at, "actor": e.actor, "action": e.action, "appeal_id": e.appeal_id,
             "detail": e.detail} for e in entries]
    if rows:
        await conn.execute(insert(audit_log), rows)


def _state(appeal: Appeal) -> dict[str, Any]:
    """The columns an appeal's methods may change."""
    external = appeal.external
    return {
        "status": appeal.status.value,
        "due_at": appeal.due_at,
        "overdue": appeal.overdue,
        "interim_reminded_at": appeal.interim_reminded_at,
        "request_due_at": appeal.request_due_at,
        "request_sent_at": appeal.request_sent_at,
        "request_reminded_at": appeal.request_reminded_at,
        "external_system": external.system if external else None,
        "external_id": external.id if external else None,
        "external_number": external.number if external else None,
        "external_stage": external.stage if external else None,
        "answer_text": appeal.answer_text,
        "answer_ready_at": appeal.answer_ready_at,
        "delivered_at": appeal.delivered_at,
        "delivery_channel": appeal.delivery_channel,
        "callback_attempts": appeal.callback_attempts,
        "next_callback_at": appeal.next_callback_at,
        "needs_supervisor": appeal.needs_supervisor,
        "callback_due_at": appeal.callback_due_at,
        "callbacks_from": appeal.callbacks_from,
        "feedback_overdue": appeal.feedback_overdue,
        "request_overdue": appeal.request_overdue,
        "registered_late": appeal.registered_late,
        "callback_late": appeal.callback_late,
        "interim_given_at": appeal.interim_given_at,
        "interim_expected_at": appeal.interim_expected_at,
        "consultation_outcome": (appeal.journal.consultation_outcome.value
                                 if appeal.journal.consultation_outcome else None),
        "review_result": (appeal.journal.review_result.value
                          if appeal.journal.review_result else None),
        "journal_comment": appeal.journal.comment,
        "resolution": appeal.resolution,
        "reroutes": appeal.reroutes,
        # A supervisor's re-route changes these.
        "route": route_to_json(appeal.route),
        "route_system": appeal.route.system.value,
        "executor": appeal.route.executor,
        "topic": appeal.topic,
        "updated_at": appeal.updated_at,
    }


def _new_row(new: NewAppeal, now: datetime) -> dict[str, Any]:
    appeal = new.appeal
    appeal.created_at = appeal.updated_at = now
    return {
        "id": appeal.id,
        "hotline": appeal.hotline,
        "journal_id": appeal.journal_id,
        "idempotency_key": new.idempotency_key,
        "content_hash": new.content_hash,
        "received_at": appeal.received_at,
        "operator": appeal.operator,
        "applicant": asdict(appeal.applicant),
        "problem_address": appeal.problem_address,
        "summary": appeal.summary,
        "repeat": appeal.repeat,
        "urgency": appeal.urgency.value,
        "answer_channel": appeal.answer_channel.value if appeal.answer_channel else None,
        "informational": appeal.informational,
        "feedback_due_at": appeal.feedback_due_at,
        "created_at": now,
        "version": 1,
        **_state(appeal),
    }


def _from_row(row: Any) -> Appeal:
    external = (ExternalRef(row["external_system"], row["external_id"], row["external_number"],
                            row["external_stage"])
                if row["external_system"] and row["external_id"] else None)
    return Appeal(
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
        request_due_at=row["request_due_at"],
        request_sent_at=row["request_sent_at"],
        request_reminded_at=row["request_reminded_at"],
        overdue=row["overdue"],
        interim_reminded_at=row["interim_reminded_at"],
        external=external,
        answer_text=row["answer_text"],
        answer_ready_at=row["answer_ready_at"],
        delivered_at=row["delivered_at"],
        delivery_channel=row["delivery_channel"],
        callback_attempts=row["callback_attempts"],
        next_callback_at=row["next_callback_at"],
        needs_supervisor=row["needs_supervisor"],
        callback_due_at=row["callback_due_at"],
        callbacks_from=row["callbacks_from"],
        feedback_overdue=row["feedback_overdue"],
        request_overdue=row["request_overdue"],
        registered_late=row["registered_late"],
        callback_late=row["callback_late"],
        interim_given_at=row["interim_given_at"],
        interim_expected_at=row["interim_expected_at"],
        journal=JournalEntry(
            ConsultationOutcome(row["consultation_outcome"])
            if row["consultation_outcome"] else None,
            ReviewResult(row["review_result"]) if row["review_result"] else None,
            row["journal_comment"]),
        resolution=row["resolution"],
        reroutes=row["reroutes"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _values(statuses: Iterable[AppealStatus]) -> list[str]:
    return sorted(s.value for s in statuses)


def _encode_cursor(updated_at: datetime, appeal_id: str) -> str:
    raw = json.dumps([updated_at.isoformat(), appeal_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


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
