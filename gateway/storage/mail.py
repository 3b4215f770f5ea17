"""The mail records over SQL: letters sent to officials, the mailbox's processed messages,
replies left for an operator, and attachments (the `MailRecords` port)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.domain.status import UNANSWERED
from gateway.services.unit_of_work import (
    AttachmentInfo,
    NewAttachment,
    SentLetter,
    UnmatchedMail,
)
from gateway.storage.tables import (
    appeals,
    mail_attachments,
    mail_letters,
    mail_seen,
    mail_unmatched,
)


def _letter(row: Any) -> SentLetter:
    return SentLetter(row["message_id"], row["appeal_id"], row["authority"],
                      tuple(row["recipients"]), row["kind"], row["sent_at"])


def _info(row: Any) -> AttachmentInfo:
    return AttachmentInfo(row["id"], row["filename"], row["content_type"], row["size"])


class SqlMailRecords:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def record_sent(self, letter: SentLetter) -> None:
        """Once per Message-ID: a retried send of the same letter adds nothing."""
        dialect = self._conn.dialect.name
        insert_ = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(
            mail_letters)
        await self._conn.execute(insert_.values(
            message_id=letter.message_id, appeal_id=letter.appeal_id,
            authority=letter.authority, recipients=list(letter.recipients),
            kind=letter.kind, sent_at=letter.sent_at,
        ).on_conflict_do_nothing(index_elements=[mail_letters.c.message_id]))

    async def sent_by_message_ids(self, message_ids: Sequence[str]) -> list[SentLetter]:
        if not message_ids:
            return []
        rows = (await self._conn.execute(select(mail_letters).where(
            mail_letters.c.message_id.in_(list(message_ids))))).mappings().all()
        return [_letter(r) for r in rows]

    async def sent_for(self, appeal_id: str) -> list[SentLetter]:
        rows = (await self._conn.execute(select(mail_letters).where(
            mail_letters.c.appeal_id == appeal_id))).mappings().all()
        return [_letter(r) for r in rows]

    async def appeal_ids_by_prefix(self, prefix: str) -> list[str]:
        escaped = prefix.replace("\\", "").replace("%", "").replace("_", "")
        rows = await self._conn.execute(select(appeals.c.id).where(
            appeals.c.id.like(f"{escaped}%")).limit(2))
        return [r[0] for r in rows]

    async def last_uid(self, mailbox: str, uidvalidity: int) -> int:
        result = await self._conn.execute(select(func.max(mail_seen.c.uid)).where(and_(
            mail_seen.c.mailbox == mailbox, mail_seen.c.uidvalidity == uidvalidity)))
        return int(result.scalar() or 0)

    async def was_seen(self, mailbox: str, uidvalidity: int, uid: int,
                       message_id: str | None) -> bool:
        by_uid = and_(mail_seen.c.mailbox == mailbox, mail_seen.c.uidvalidity == uidvalidity,
                      mail_seen.c.uid == uid)
        condition = by_uid if message_id is None else (by_uid | and_(
            mail_seen.c.mailbox == mailbox, mail_seen.c.message_id == message_id))
        row = (await self._conn.execute(select(mail_seen.c.id).where(condition)
                                        .limit(1))).first()
        return row is not None

    async def mark_seen(self, mailbox: str, uidvalidity: int, uid: int,
                        message_id: str | None, outcome: str, appeal_id: str | None,
                        at: datetime) -> None:
        await self._conn.execute(insert(mail_seen).values(
            mailbox=mailbox, uidvalidity=uidvalidity, uid=uid, message_id=message_id,
            outcome=outcome, appeal_id=appeal_id, seen_at=at))

    async def add_unmatched(self, mail: UnmatchedMail,
                            attachments: Sequence[NewAttachment]) -> None:
        await self._conn.execute(insert(mail_unmatched).values(
            id=mail.id, received_at=mail.received_at, reason=mail.reason, sender=mail.sender,
            subject=mail.subject, body=mail.text, appeal_id=mail.appeal_id))
        await self._add_attachments(None, mail.id, attachments, mail.received_at)

    async def unmatched(self, limit: int, *, open_only: bool = True) -> list[UnmatchedMail]:
        query = select(mail_unmatched).order_by(mail_unmatched.c.received_at,
                                                mail_unmatched.c.id).limit(limit)
        if open_only:
            query = query.where(mail_unmatched.c.assigned_to.is_(None))
        rows = (await self._conn.execute(query)).mappings().all()
        found = await self._attachments_by_unmatched([r["id"] for r in rows])
        return [self._unmatched(r, found.get(r["id"], ())) for r in rows]

    async def get_unmatched(self, mail_id: str) -> UnmatchedMail | None:
        row = (await self._conn.execute(select(mail_unmatched).where(
            mail_unmatched.c.id == mail_id))).mappings().first()
        if row is None:
            return None
        found = await self._attachments_by_unmatched([mail_id])
        return self._unmatched(row, found.get(mail_id, ()))

    async def assign_unmatched(self, mail_id: str, appeal_id: str, at: datetime) -> None:
        await self._conn.execute(update(mail_unmatched).where(
            mail_unmatched.c.id == mail_id).values(assigned_to=appeal_id, assigned_at=at))
        await self._conn.execute(update(mail_attachments).where(
            mail_attachments.c.unmatched_id == mail_id).values(appeal_id=appeal_id))

    async def add_attachments(self, appeal_id: str, attachments: Sequence[NewAttachment],
                              at: datetime) -> None:
        await self._add_attachments(appeal_id, None, attachments, at)

    async def attachments_of(self, appeal_id: str) -> list[AttachmentInfo]:
        rows = (await self._conn.execute(
            select(mail_attachments.c.id, mail_attachments.c.filename,
                   mail_attachments.c.content_type, mail_attachments.c.size)
            .where(mail_attachments.c.appeal_id == appeal_id)
            .order_by(mail_attachments.c.received_at, mail_attachments.c.id))).mappings().all()
        return [_info(r) for r in rows]

    async def attachment(self, appeal_id: str, attachment_id: str
                         ) -> tuple[AttachmentInfo, bytes] | None:
        row = (await self._conn.execute(select(mail_attachments).where(and_(
            mail_attachments.c.id == attachment_id,
            mail_attachments.c.appeal_id == appeal_id)))).mappings().first()
        return None if row is None else (_info(row), bytes(row["data"]))

    async def ids_request_late(self, now: datetime, limit: int) -> list[str]:
        rows = await self._conn.execute(
            select(appeals.c.id).where(and_(
                appeals.c.request_sent_at.is_not(None),
                appeals.c.request_due_at < now,
                appeals.c.request_reminded_at.is_(None),
                appeals.c.status.in_(sorted(s.value for s in UNANSWERED)),
            )).order_by(appeals.c.request_due_at).limit(limit))
        return [r[0] for r in rows]

    async def _add_attachments(self, appeal_id: str | None, unmatched_id: str | None,
                               attachments: Sequence[NewAttachment], at: datetime) -> None:
        if attachments:
            await self._conn.execute(insert(mail_attachments), [
                {"id": str(uuid.uuid4()), "appeal_id": appeal_id,
                 "unmatched_id": unmatched_id, "filename": a.filename,
                 "content_type": a.content_type, "size": len(a.data), "data": a.data,
                 "received_at": at} for a in attachments])

    async def _attachments_by_unmatched(
            self, ids: Sequence[str]) -> dict[str, tuple[AttachmentInfo, ...]]:
        if not ids:
            return {}
        rows = (await self._conn.execute(
            select(mail_attachments.c.id, mail_attachments.c.filename,
                   mail_attachments.c.content_type, mail_attachments.c.size,
                   mail_attachments.c.unmatched_id)
            .where(mail_attachments.c.unmatched_id.in_(list(ids))))).mappings().all()
        found: dict[str, list[AttachmentInfo]] = {}
        for r in rows:
            found.setdefault(r["unmatched_id"], []).append(_info(r))
        return {k: tuple(v) for k, v in found.items()}

    @staticmethod
    def _unmatched(row: Any, attachments: tuple[AttachmentInfo, ...]) -> UnmatchedMail:
        return UnmatchedMail(row["id"], row["received_at"], row["reason"], row["sender"],
                             row["subject"], row["body"], row["appeal_id"],
                             row["assigned_to"], attachments)
