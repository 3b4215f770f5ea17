"""The unit of work: one transaction holding the appeals, the pollers' cursors, the audit log
and the outbox, as the services see them.

Services load appeals, call one of their methods and leave the block; on a clean exit the
unit of work commits the appeals together with every row their events cause. The events
become rows here and only here (`changes`), so a new event cannot forget its audit entry
or its outbox row. `gateway.storage.unit_of_work` is the SQL implementation; the tests'
fake keeps everything in memory.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Protocol, Self

from gateway.domain import events as ev
from gateway.domain.appeal import (
    Appeal,
    DeliveryRecord,
    InterimAnswer,
    OverdueKind,
    StatusChange,
)
from gateway.domain.callbacks import CallbackTask
from gateway.errors import GatewayError
from gateway.services import outbox_actions
from outbox import NewMessage


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """Who (a role or component) did what to which appeal; never personal data."""

    at: datetime
    actor: str
    action: str
    appeal_id: str | None = None
    detail: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class KnownCall:
    """What a repeat of a call is checked against: its journal entry, key and content."""

    appeal_id: str
    hotline: str
    journal_id: str
    content_hash: str


@dataclass(frozen=True, slots=True)
class NewAppeal:
    """An appeal taken at intake, with what intake decided beside it."""

    appeal: Appeal
    content_hash: str
    idempotency_key: str | None


@dataclass(frozen=True, slots=True)
class AppealPage:
    items: list[Appeal]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class PollerState:
    system: str
    cursor: str | None
    last_success_at: datetime | None
    last_error: str | None  # no personal data


class AlreadyStored(GatewayError):
    """The commit was refused because a unique record exists already (a repeated call)."""


class BadCursor(GatewayError, ValueError):
    """A list cursor this gateway did not give out."""


class AppealRepository(Protocol):
    """Appeals by id and by what the target systems call them. In a writing unit of work the
    appeals it returns are locked until commit (PostgreSQL: FOR UPDATE; SQLite: one writer),
    so what a method decides from them still holds when it is written."""

    def add(self, new: NewAppeal) -> None: ...

    async def get(self, appeal_id: str) -> Appeal | None:
        """With its history and deliveries."""
        ...

    async def get_many(self, ids: Sequence[str]) -> dict[str, Appeal]:
        """Without history and deliveries; missing ids are left out."""
        ...

    async def by_external(self, system: str, external_ids: Sequence[str]) -> dict[str, Appeal]:
        """By the target system's record id; without history and deliveries."""
        ...

    async def ids_by_external_number(self, system: str, number: str) -> list[str]:
        """At most two: an export's «Номер», written with or without its prefix."""
        ...

    async def known_calls(self, hotline: str, journal_id: str,
                          idempotency_key: str | None) -> list[KnownCall]: ...

    async def open_records(self, system: str, after_id: str | None,
                           limit: int) -> list[tuple[str, str]]:
        """(appeal id, record id) of appeals still open in `system`, in id order after
        `after_id`: what a reconciliation reads one by one."""
        ...

    async def ids_to_mark_overdue(self, now: datetime, limit: int) -> list[str]: ...

    async def ids_to_remind(self, now: datetime, lead: timedelta, limit: int) -> list[str]: ...

    async def ids_to_mark_late(self, kind: OverdueKind, now: datetime,
                               limit: int) -> list[str]:
        """Candidates for `Appeal.mark_late(kind)` (re-checked by the appeal)."""
        ...

    async def ids_to_schedule_callback(self, limit: int) -> list[str]:
        """[001: 13] answers to give by phone without their first callback term yet."""
        ...

    async def ready_for_delivery(self, limit: int) -> list[Appeal]:
        """Answers waiting to reach the applicant (answer_ready and answer_sent [003]), the
        most urgent callback first."""
        ...

    async def page(self, *, status: str | None, updated_since: datetime | None,
                   overdue: bool | OverdueKind | None, limit: int, cursor: str | None,
                   flag: str | None = None) -> AppealPage:
        """Keyset paging by (updated_at, id); raises BadCursor. `overdue`: the answer's
        flag (a bool) or one kind; `flag`: needs_supervisor, rejected or failed."""
        ...

    async def count_by_status(self) -> dict[str, int]: ...

    async def count_overdue(self) -> int: ...

    async def count_overdue_by_kind(self) -> dict[OverdueKind, int]: ...

    async def interim_due(self, limit: int) -> list[Appeal]:
        """[002: 2.8.10] reminded that an interim answer is due, none given, unanswered."""
        ...

    async def count_interim_due(self) -> int: ...

    def seen(self) -> Sequence[Appeal]:
        """Every appeal added or loaded in this unit of work."""
        ...

    def added(self) -> Sequence[NewAppeal]: ...


class CallbackTaskRepository(Protocol):
    """Missed calls and voicemail to call back [001: 12–14]; loaded tasks are locked in a
    writing unit of work, like appeals."""

    def add(self, task: CallbackTask) -> None: ...

    async def get(self, task_id: str) -> CallbackTask | None: ...

    async def get_many(self, ids: Sequence[str]) -> dict[str, CallbackTask]: ...

    async def find(self, hotline: str, phone: str, missed_at: datetime) -> CallbackTask | None:
        """The task of this missed call, if it was reported already."""
        ...

    async def open_tasks(self, limit: int) -> list[CallbackTask]:
        """Open tasks, the one whose next try is due soonest first."""
        ...

    async def ids_to_mark_late(self, now: datetime, limit: int) -> list[str]: ...

    async def count_late(self) -> int: ...

    def seen(self) -> Sequence[CallbackTask]: ...

    def added(self) -> Sequence[CallbackTask]: ...


class PollerCursors(Protocol):
    """Where each poller resumes, and its last success and error for /status."""

    async def get(self, system: str) -> str | None: ...

    async def save(self, system: str, cursor: str | None, now: datetime) -> None: ...

    async def record_error(self, system: str, reason: str, now: datetime) -> None: ...

    async def all(self) -> list[PollerState]: ...


@dataclass(frozen=True, slots=True)
class SentLetter:
    """A letter to an official, kept so a reply can be matched to it [004: 10.2]."""

    message_id: str
    appeal_id: str
    authority: str
    recipients: tuple[str, ...]  # personal data: never logged
    kind: str  # request | reminder
    sent_at: datetime


@dataclass(frozen=True, slots=True)
class AttachmentInfo:
    id: str
    filename: str
    content_type: str
    size: int


@dataclass(frozen=True, slots=True)
class NewAttachment:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class UnmatchedMail:
    """A reply left for an operator: no request matched it, or it could not be applied.
    Sender, subject and text are personal data: shown to operators, never logged."""

    id: str
    received_at: datetime
    reason: str  # no_match | unexpected_sender | appeal_closed | no_text | malformed
    sender: str
    subject: str
    text: str
    appeal_id: str | None  # the appeal it seemed to answer, if any
    assigned_to: str | None = None
    attachments: tuple[AttachmentInfo, ...] = ()


class MailRecords(Protocol):
    """Letters sent to officials, replies seen in the mailbox, replies left for a person,
    and the attachments kept. Written in the unit of work's transaction."""

    async def record_sent(self, letter: SentLetter) -> None: ...

    async def sent_by_message_ids(self, message_ids: Sequence[str]) -> list[SentLetter]: ...

    async def sent_for(self, appeal_id: str) -> list[SentLetter]: ...

    async def appeal_ids_by_prefix(self, prefix: str) -> list[str]:
        """At most two appeals whose id starts with `prefix` (a subject's reference)."""
        ...

    async def last_uid(self, mailbox: str, uidvalidity: int) -> int: ...

    async def was_seen(self, mailbox: str, uidvalidity: int, uid: int,
                       message_id: str | None) -> bool:
        """This UID, or (after a UIDVALIDITY change) this Message-ID, was processed."""
        ...

    async def mark_seen(self, mailbox: str, uidvalidity: int, uid: int,
                        message_id: str | None, outcome: str, appeal_id: str | None,
                        at: datetime) -> None: ...

    async def add_unmatched(self, mail: UnmatchedMail,
                            attachments: Sequence[NewAttachment]) -> None: ...

    async def unmatched(self, limit: int, *, open_only: bool = True) -> list[UnmatchedMail]: ...

    async def get_unmatched(self, mail_id: str) -> UnmatchedMail | None: ...

    async def assign_unmatched(self, mail_id: str, appeal_id: str, at: datetime) -> None:
        """Marks it assigned and moves its attachments to the appeal."""
        ...

    async def add_attachments(self, appeal_id: str, attachments: Sequence[NewAttachment],
                              at: datetime) -> None: ...

    async def attachments_of(self, appeal_id: str) -> list[AttachmentInfo]: ...

    async def attachment(self, appeal_id: str, attachment_id: str
                         ) -> tuple[AttachmentInfo, bytes] | None: ...

    async def ids_request_late(self, now: datetime, limit: int) -> list[str]:
        """Appeals whose official's answer is past its term and not yet reminded of."""
        ...


@dataclass
class Changes:
    """What one commit writes, derived from the appeals' events."""

    new: list[NewAppeal] = field(default_factory=list)
    updated: list[Appeal] = field(default_factory=list)
    history: list[tuple[str, StatusChange]] = field(default_factory=list)
    deliveries: list[tuple[str, DeliveryRecord, datetime]] = field(default_factory=list)
    audit: list[AuditEntry] = field(default_factory=list)
    messages: list[NewMessage] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)  # idempotency keys made moot
    dismissed: list[tuple[str, str]] = field(default_factory=list)  # (key, reason) by a service
    interims: list[tuple[str, InterimAnswer, datetime]] = field(default_factory=list)
    new_tasks: list[CallbackTask] = field(default_factory=list)
    updated_tasks: list[CallbackTask] = field(default_factory=list)


class UnitOfWork(abc.ABC):
    """`async with storage.write() as uow:` ... commits on a clean exit, else rolls back."""

    appeals: AppealRepository
    callbacks: CallbackTaskRepository
    cursors: PollerCursors
    mail: MailRecords

    def __init__(self) -> None:
        self._audit: list[AuditEntry] = []
        self._dismissed: list[tuple[str, str]] = []

    def audit(self, entry: AuditEntry) -> None:
        """An audit entry that belongs to no appeal event (an admin's re-drive, say)."""
        self._audit.append(entry)

    def dismiss(self, idempotency_key: str, reason: str) -> None:
        """A pending or dead outbox row that something outside the events made moot (the
        export showed its effect already happened): cancelled with the reason at commit."""
        self._dismissed.append((idempotency_key, reason))

    async def __aenter__(self) -> Self:
        await self._begin()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc_type is not None:
            await self._rollback(exc_type, exc, tb)
            return
        await self._commit(self.changes())
        # Only now: an appeal whose commit failed keeps its events for the next try.
        for appeal in self.appeals.seen():
            appeal.events.clear()
        for task in self.callbacks.seen():
            task.events.clear()

    def changes(self) -> Changes:
        """The one place where events become rows."""
        changes = Changes(new=list(self.appeals.added()), audit=list(self._audit),
                          dismissed=list(self._dismissed))
        self._audit.clear()
        self._dismissed.clear()
        new_ids = {n.appeal.id for n in changes.new}
        for appeal in self.appeals.seen():
            if not appeal.events:
                continue
            if appeal.id not in new_ids:
                changes.updated.append(appeal)
            for event in appeal.events:
                _rows_of(appeal, event, changes)
        new_tasks = {t.id for t in self.callbacks.added()}
        for task in self.callbacks.seen():
            if task.id in new_tasks:
                changes.new_tasks.append(task)
            elif task.events:
                changes.updated_tasks.append(task)
            changes.audit.extend(
                AuditEntry(e.at, e.actor, e.action, None, {"task_id": e.task_id, **e.detail})
                for e in task.events)
        return changes

    @abc.abstractmethod
    async def _begin(self) -> None: ...

    @abc.abstractmethod
    async def _commit(self, changes: Changes) -> None: ...

    @abc.abstractmethod
    async def _rollback(self, exc_type: type[BaseException], exc: BaseException | None,
                        tb: TracebackType | None) -> None: ...


def _rows_of(appeal: Appeal, event: ev.Event, changes: Changes) -> None:
    if isinstance(event, ev.StatusChanged):
        changes.history.append(
            (appeal.id, StatusChange(event.status, event.at, event.actor, event.note)))
    elif isinstance(event, ev.Delivered):
        changes.deliveries.append((appeal.id, DeliveryRecord(
            event.channel, "delivered", event.delivered_at, event.by, event.source), event.at))
    elif isinstance(event, ev.InterimGiven) and isinstance(event.answer, InterimAnswer):
        changes.interims.append((appeal.id, event.answer, event.at))
    elif isinstance(event, ev.CallbackFailed):
        changes.deliveries.append((appeal.id, DeliveryRecord(
            "phone", event.outcome, event.tried_at, None, "gateway"), event.at))
    if event.audit_action is not None:
        changes.audit.append(AuditEntry(event.at, event.actor, event.audit_action, appeal.id,
                                        event.audit_detail()))
    changes.messages.extend(outbox_actions.messages_for(appeal, event))
    changes.cancelled.extend(outbox_actions.moot_keys(appeal, event))


class Storage(Protocol):
    """Opens units of work: `write()` for changes, `read()` for queries (nothing committed)."""

    def write(self) -> UnitOfWork: ...

    def read(self) -> UnitOfWork: ...

    def turn(self, name: str) -> AbstractAsyncContextManager[bool]:
        """Whether this replica takes the named turn now (one poller per system at a time)."""
        ...
