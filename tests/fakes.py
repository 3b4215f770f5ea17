"""In-memory stand-ins for the storage ports: fast service-layer tests without a database.

`FakeStorage` hands out units of work over one dict of appeals. It keeps what the SQL
implementation promises and the services rely on: each unit of work works on its own
copies (an identity map), a bulk load comes without history and deliveries, the
pollers' cursors and every row an appeal's events cause are written at commit and only
then, a repeated journal entry or Idempotency-Key refuses the whole commit (also within
one batch), and a unit of work left by an exception keeps nothing.
"""

from __future__ import annotations

import contextlib
import copy
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from types import TracebackType

from gateway.domain.appeal import (
    AnswerChannel,
    Appeal,
    AppealStatus,
    DeliveryRecord,
    InterimAnswer,
    OverdueKind,
    StatusChange,
)
from gateway.domain.callbacks import CallbackTask, TaskState
from gateway.domain.ports import Clock
from gateway.domain.status import OPEN_UPSTREAM, READY_FOR_DELIVERY, UNANSWERED, UNDELIVERED
from gateway.services.unit_of_work import (
    AlreadyStored,
    AppealPage,
    AttachmentInfo,
    AuditEntry,
    Changes,
    KnownCall,
    NewAppeal,
    NewAttachment,
    PollerState,
    SentLetter,
    UnitOfWork,
    UnmatchedMail,
)
from outbox import NewMessage


class FakeAppeals:
    def __init__(self, storage: FakeStorage) -> None:
        self._storage = storage
        self._seen: dict[str, Appeal] = {}
        self._added: list[NewAppeal] = []
        self._with_related: set[str] = set()

    def _loaded(self, appeal_id: str) -> Appeal | None:
        """As a row is read: once per unit of work, without history and deliveries."""
        if appeal_id not in self._seen:
            stored = self._storage.appeals.get(appeal_id)
            if stored is None:
                return None
            # Each unit of work works on its own copy, as rows read from a database.
            self._seen[appeal_id] = copy.deepcopy(stored)
        return self._seen[appeal_id]

    def add(self, new: NewAppeal) -> None:
        self._added.append(new)
        self._seen[new.appeal.id] = new.appeal
        self._with_related.add(new.appeal.id)

    def seen(self) -> Sequence[Appeal]:
        return list(self._seen.values())

    def added(self) -> Sequence[NewAppeal]:
        return list(self._added)

    async def get(self, appeal_id: str) -> Appeal | None:
        appeal = self._loaded(appeal_id)
        if appeal is None:
            return None
        if appeal_id not in self._with_related:
            # Like the SQL repository: what is stored, then what this unit of work added.
            storage = self._storage
            appeal.history = tuple(
                c for i, c in storage.history if i == appeal_id) + appeal.history
            appeal.deliveries = tuple(
                d for i, d, _ in storage.deliveries if i == appeal_id) + appeal.deliveries
            appeal.interims = tuple(
                a for i, a, _ in storage.interims if i == appeal_id) + appeal.interims
            self._with_related.add(appeal_id)
        return appeal

    async def get_many(self, ids: Sequence[str]) -> dict[str, Appeal]:
        found = {i: self._loaded(i) for i in ids}
        return {i: a for i, a in found.items() if a is not None}

    async def by_external(self, system: str, external_ids: Sequence[str]) -> dict[str, Appeal]:
        wanted = set(external_ids)
        found: dict[str, Appeal] = {}
        for appeal_id, stored in self._storage.appeals.items():
            ref = stored.external
            if ref is not None and ref.system == system and ref.id in wanted:
                appeal = self._loaded(appeal_id)
                assert appeal is not None
                found[ref.id] = appeal
        return found

    async def ids_by_external_number(self, system: str, number: str) -> list[str]:
        suffix = number.rsplit("-", 1)[-1]
        return [a.id for a in self._storage.appeals.values()
                if a.external is not None and a.external.system == system
                and (number in (a.external.number, a.external.id) or a.external.id == suffix
                     or (a.external.number or "").endswith(f"-{suffix}"))][:2]

    async def known_calls(self, hotline: str, journal_id: str,
                          idempotency_key: str | None) -> list[KnownCall]:
        return [KnownCall(a.id, a.hotline, a.journal_id, self._storage.hashes[a.id])
                for a in self._storage.appeals.values()
                if (a.hotline, a.journal_id) == (hotline, journal_id) or (
                    idempotency_key is not None
                    and self._storage.keys.get(a.id) == idempotency_key)]

    async def open_records(self, system: str, after_id: str | None,
                           limit: int) -> list[tuple[str, str]]:
        found = sorted((a.id, a.external.id) for a in self._storage.appeals.values()
                       if a.external is not None and a.external.system == system
                       and a.status in OPEN_UPSTREAM and (after_id is None or a.id > after_id))
        return found[:limit]

    async def ids_to_mark_overdue(self, now: datetime, limit: int) -> list[str]:
        found = [a for a in self._storage.appeals.values()
                 if not a.overdue and a.due_at is not None and a.due_at < now
                 and a.status in UNDELIVERED]
        return [a.id for a in sorted(found, key=_due)][:limit]

    async def ids_to_remind(self, now: datetime, lead: timedelta, limit: int) -> list[str]:
        found = [a for a in self._storage.appeals.values()
                 if a.interim_reminded_at is None and a.due_at is not None
                 and a.due_at < now + lead and a.status in UNANSWERED]
        return [a.id for a in sorted(found, key=_due)][:limit]

    async def ids_to_mark_late(self, kind: OverdueKind, now: datetime,
                               limit: int) -> list[str]:
        # The appeal's own check is the specification the SQL conditions follow.
        found = [a for a in self._storage.appeals.values()
                 if copy.deepcopy(a).mark_late(kind, now)]
        return [a.id for a in found][:limit]

    async def ids_to_schedule_callback(self, limit: int) -> list[str]:
        return [a.id for a in self._storage.appeals.values()
                if a.status in READY_FOR_DELIVERY and a.answer_channel is AnswerChannel.PHONE
                and a.callback_due_at is None and not a.callback_attempts
                and not a.needs_supervisor][:limit]

    async def ready_for_delivery(self, limit: int) -> list[Appeal]:
        ready = [a for a in self._storage.appeals.values()
                 if a.status in READY_FOR_DELIVERY]
        # The SQL order: the supervisor's first, then the earliest callback, then the oldest.
        ready.sort(key=_ready_order)
        found = await self.get_many([a.id for a in ready[:limit]])
        return [found[a.id] for a in ready[:limit] if a.id in found]

    async def page(self, *, status: str | None, updated_since: datetime | None,
                   overdue: bool | OverdueKind | None, limit: int, cursor: str | None,
                   flag: str | None = None) -> AppealPage:
        """One page without a cursor: enough for the tests that use it."""
        items = [a for a in self._storage.appeals.values()
                 if (status is None or a.status.value == status)
                 and (overdue is None or (overdue in a.overdue_kinds()
                                          if isinstance(overdue, OverdueKind)
                                          else a.overdue == overdue))
                 and (flag is None or (a.needs_supervisor if flag == "needs_supervisor"
                                       else a.status.value == flag))]
        return AppealPage(items[:limit], None)

    async def count_by_status(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for appeal in self._storage.appeals.values():
            counts[appeal.status.value] = counts.get(appeal.status.value, 0) + 1
        return counts

    async def count_overdue(self) -> int:
        return sum(1 for a in self._storage.appeals.values() if a.overdue)

    async def interim_due(self, limit: int) -> list[Appeal]:
        due = [a for a in self._storage.appeals.values() if a.interim_due()]
        return [copy.deepcopy(a) for a in sorted(due, key=_due)][:limit]

    async def count_interim_due(self) -> int:
        return sum(1 for a in self._storage.appeals.values() if a.interim_due())

    async def count_overdue_by_kind(self) -> dict[OverdueKind, int]:
        return {kind: sum(1 for a in self._storage.appeals.values()
                          if kind in a.overdue_kinds()) for kind in OverdueKind}


class FakeCallbackTasks:
    """Missed-call tasks, each unit of work on its own copies."""

    def __init__(self, storage: FakeStorage) -> None:
        self._storage = storage
        self._seen: dict[str, CallbackTask] = {}
        self._added: list[CallbackTask] = []

    def add(self, task: CallbackTask) -> None:
        self._added.append(task)
        self._seen[task.id] = task

    def seen(self) -> Sequence[CallbackTask]:
        return list(self._seen.values())

    def added(self) -> Sequence[CallbackTask]:
        return list(self._added)

    def _loaded(self, task_id: str) -> CallbackTask | None:
        if task_id not in self._seen:
            stored = self._storage.tasks.get(task_id)
            if stored is None:
                return None
            self._seen[task_id] = copy.deepcopy(stored)
        return self._seen[task_id]

    async def get(self, task_id: str) -> CallbackTask | None:
        return self._loaded(task_id)

    async def get_many(self, ids: Sequence[str]) -> dict[str, CallbackTask]:
        found = {i: self._loaded(i) for i in ids}
        return {i: t for i, t in found.items() if t is not None}

    async def find(self, hotline: str, phone: str, missed_at: datetime) -> CallbackTask | None:
        for task in self._storage.tasks.values():
            if (task.hotline, task.phone, task.missed_at) == (hotline, phone, missed_at):
                return self._loaded(task.id)
        return None

    async def open_tasks(self, limit: int) -> list[CallbackTask]:
        found = [t for t in self._storage.tasks.values() if t.state is TaskState.OPEN]
        found.sort(key=lambda t: ((t.next_attempt_by or t.due_at).timestamp(), t.id))
        return [copy.deepcopy(t) for t in found[:limit]]

    async def ids_to_mark_late(self, now: datetime, limit: int) -> list[str]:
        return [t.id for t in self._storage.tasks.values()
                if copy.deepcopy(t).mark_late(now)][:limit]

    async def count_late(self) -> int:
        return sum(1 for t in self._storage.tasks.values() if t.late)


def _due(appeal: Appeal) -> datetime:
    assert appeal.due_at is not None
    return appeal.due_at


def _ready_order(appeal: Appeal) -> tuple[object, ...]:
    """needs_supervisor DESC, next_callback_at (NULLs last), answer_ready_at, id."""
    return (not appeal.needs_supervisor, appeal.next_callback_at is None,
            appeal.next_callback_at.timestamp() if appeal.next_callback_at else 0.0,
            appeal.answer_ready_at.timestamp() if appeal.answer_ready_at else 0.0, appeal.id)


class FakeCursors:
    """Written at commit, like the SQL rows in the unit of work's transaction."""

    def __init__(self, storage: FakeStorage) -> None:
        self._storage = storage
        self.pending: dict[str, PollerState] = {}

    def _state(self, system: str) -> PollerState | None:
        return self.pending.get(system) or self._storage.cursors.get(system)

    async def get(self, system: str) -> str | None:
        state = self._state(system)
        return state.cursor if state else None

    async def save(self, system: str, cursor: str | None, now: datetime) -> None:
        self.pending[system] = PollerState(system, cursor, now, None)

    async def record_error(self, system: str, reason: str, now: datetime) -> None:
        state = self._state(system) or PollerState(system, None, None, None)
        self.pending[system] = PollerState(system, state.cursor, state.last_success_at, reason)

    async def all(self) -> list[PollerState]:
        return list({**self._storage.cursors, **self.pending}.values())


@dataclass
class _StoredAttachment:
    info: AttachmentInfo
    data: bytes
    appeal_id: str | None
    unmatched_id: str | None


class FakeMailRecords:
    """The mail records in memory; what a unit of work writes lands at its commit."""

    def __init__(self, storage: FakeStorage) -> None:
        self._storage = storage
        self.pending: list[Callable[[], None]] = []

    async def record_sent(self, letter: SentLetter) -> None:
        def write() -> None:
            self._storage.letters.setdefault(letter.message_id, letter)
        self.pending.append(write)

    async def sent_by_message_ids(self, message_ids: Sequence[str]) -> list[SentLetter]:
        return [self._storage.letters[m] for m in message_ids if m in self._storage.letters]

    async def sent_for(self, appeal_id: str) -> list[SentLetter]:
        return [x for x in self._storage.letters.values() if x.appeal_id == appeal_id]

    async def appeal_ids_by_prefix(self, prefix: str) -> list[str]:
        return sorted(i for i in self._storage.appeals if i.startswith(prefix))[:2]

    async def last_uid(self, mailbox: str, uidvalidity: int) -> int:
        return max((uid for (box, validity, uid) in self._storage.seen_mail
                    if (box, validity) == (mailbox, uidvalidity)), default=0)

    async def was_seen(self, mailbox: str, uidvalidity: int, uid: int,
                       message_id: str | None) -> bool:
        seen = self._storage.seen_mail
        return (mailbox, uidvalidity, uid) in seen or (
            message_id is not None and (mailbox, message_id) in seen.values())

    async def mark_seen(self, mailbox: str, uidvalidity: int, uid: int,
                        message_id: str | None, outcome: str, appeal_id: str | None,
                        at: datetime) -> None:
        key = (mailbox, uidvalidity, uid)
        self.pending.append(lambda: self._storage.seen_mail.__setitem__(
            key, (mailbox, message_id)))

    async def add_unmatched(self, mail: UnmatchedMail,
                            attachments: Sequence[NewAttachment]) -> None:
        def write() -> None:
            self._storage.unmatched[mail.id] = mail
            self._store(None, mail.id, attachments)
        self.pending.append(write)

    async def unmatched(self, limit: int, *, open_only: bool = True) -> list[UnmatchedMail]:
        found = [self._with_attachments(m) for m in self._storage.unmatched.values()
                 if not open_only or m.assigned_to is None]
        return sorted(found, key=lambda m: (m.received_at, m.id))[:limit]

    async def get_unmatched(self, mail_id: str) -> UnmatchedMail | None:
        found = self._storage.unmatched.get(mail_id)
        return None if found is None else self._with_attachments(found)

    async def assign_unmatched(self, mail_id: str, appeal_id: str, at: datetime) -> None:
        def write() -> None:
            stored = self._storage.unmatched[mail_id]
            self._storage.unmatched[mail_id] = replace(stored, assigned_to=appeal_id)
            for item in self._storage.attachments:
                if item.unmatched_id == mail_id:
                    item.appeal_id = appeal_id
        self.pending.append(write)

    async def add_attachments(self, appeal_id: str, attachments: Sequence[NewAttachment],
                              at: datetime) -> None:
        self.pending.append(lambda: self._store(appeal_id, None, attachments))

    async def attachments_of(self, appeal_id: str) -> list[AttachmentInfo]:
        return [a.info for a in self._storage.attachments if a.appeal_id == appeal_id]

    async def attachment(self, appeal_id: str, attachment_id: str
                         ) -> tuple[AttachmentInfo, bytes] | None:
        return next(((a.info, a.data) for a in self._storage.attachments
                     if a.appeal_id == appeal_id and a.info.id == attachment_id), None)

    async def ids_request_late(self, now: datetime, limit: int) -> list[str]:
        late = [a for a in self._storage.appeals.values()
                if a.request_sent_at is not None and a.request_due_at is not None
                and a.request_due_at < now and a.request_reminded_at is None
                and a.status in UNANSWERED]
        return [a.id for a in sorted(late, key=lambda a: (a.request_due_at, a.id))][:limit]

    def _store(self, appeal_id: str | None, unmatched_id: str | None,
               attachments: Sequence[NewAttachment]) -> None:
        for a in attachments:
            info = AttachmentInfo(str(uuid.uuid4()), a.filename, a.content_type, len(a.data))
            self._storage.attachments.append(
                _StoredAttachment(info, a.data, appeal_id, unmatched_id))

    def _with_attachments(self, mail: UnmatchedMail) -> UnmatchedMail:
        return replace(mail, attachments=tuple(
            a.info for a in self._storage.attachments if a.unmatched_id == mail.id))


class FakeUnitOfWork(UnitOfWork):
    appeals: FakeAppeals
    callbacks: FakeCallbackTasks
    cursors: FakeCursors
    mail: FakeMailRecords

    def __init__(self, storage: FakeStorage, *, writes: bool) -> None:
        super().__init__()
        self._storage = storage
        self._writes = writes
        self.committed = False

    async def _begin(self) -> None:
        self.appeals = FakeAppeals(self._storage)
        self.callbacks = FakeCallbackTasks(self._storage)
        self.cursors = FakeCursors(self._storage)
        self.mail = FakeMailRecords(self._storage)

    async def _commit(self, changes: Changes) -> None:
        if not self._writes:
            if (changes.new or changes.updated or changes.audit or changes.messages
                    or changes.new_tasks or changes.updated_tasks or self.cursors.pending
                    or self.mail.pending):
                raise RuntimeError("a reading unit of work cannot save changes")
            return
        storage = self._storage
        if storage.failing_commits:
            failure = storage.failing_commits.pop(0)
            if failure is not None:
                raise failure
        # The unique constraints: (hotline, journal_id) and the Idempotency-Key, checked
        # against what is stored and within this commit, before anything is written.
        entries = {(a.hotline, a.journal_id) for a in storage.appeals.values()}
        keys = set(storage.keys.values())
        missed = {(t.hotline, t.phone, t.missed_at) for t in storage.tasks.values()}
        for task in changes.new_tasks:
            if (task.hotline, task.phone, task.missed_at) in missed:
                raise AlreadyStored("unique")
        for new in changes.new:
            entry = (new.appeal.hotline, new.appeal.journal_id)
            if entry in entries or new.idempotency_key in keys:
                raise AlreadyStored("unique")
            entries.add(entry)
            if new.idempotency_key is not None:
                keys.add(new.idempotency_key)
        now = storage.clock.now() if storage.clock else None
        for new in changes.new:
            storage.hashes[new.appeal.id] = new.content_hash
            if new.idempotency_key is not None:
                storage.keys[new.appeal.id] = new.idempotency_key
            if now is not None:
                new.appeal.created_at = now
        for appeal in [n.appeal for n in changes.new] + changes.updated:
            if now is not None:
                appeal.updated_at = now
            storage.appeals[appeal.id] = _as_row(appeal)
        storage.history.extend(changes.history)
        storage.deliveries.extend(changes.deliveries)
        storage.interims.extend(changes.interims)
        for task in [*changes.new_tasks, *changes.updated_tasks]:
            if now is not None:
                task.updated_at = now
            stored = copy.deepcopy(task)
            stored.events = []
            storage.tasks[task.id] = stored
        storage.audit.extend(changes.audit)
        storage.messages.extend(changes.messages)
        storage.cancelled.extend(changes.cancelled)
        storage.cancelled.extend(key for key, _ in changes.dismissed)
        storage.cursors.update(self.cursors.pending)
        for write in self.mail.pending:
            write()
        storage.commits += 1
        self.committed = True

    async def _rollback(self, exc_type: type[BaseException], exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.committed = False


def _as_row(appeal: Appeal) -> Appeal:
    """What the appeals table holds: history and deliveries live in their own lists."""
    row = copy.deepcopy(appeal)
    row.events = []
    row.history = ()
    row.deliveries = ()
    row.interims = ()
    return row


class FakeStorage:
    """What was committed, for the tests to read.

    `clock`: when given, commits stamp created_at/updated_at as the SQL storage does.
    `failing_commits`: what the next write commits do, one entry each: raise the exception
    and write nothing, or (None) commit.
    """

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock
        self.appeals: dict[str, Appeal] = {}
        self.hashes: dict[str, str] = {}
        self.keys: dict[str, str] = {}
        self.cursors: dict[str, PollerState] = {}
        self.history: list[tuple[str, StatusChange]] = []
        self.deliveries: list[tuple[str, DeliveryRecord, datetime]] = []
        self.interims: list[tuple[str, InterimAnswer, datetime]] = []
        self.tasks: dict[str, CallbackTask] = {}
        self.audit: list[AuditEntry] = []
        self.messages: list[NewMessage] = []
        self.cancelled: list[str] = []
        self.failing_commits: list[BaseException | None] = []
        self.letters: dict[str, SentLetter] = {}
        self.seen_mail: dict[tuple[str, int, int], tuple[str, str | None]] = {}
        self.unmatched: dict[str, UnmatchedMail] = {}
        self.attachments: list[_StoredAttachment] = []
        self.commits = 0

    def write(self) -> FakeUnitOfWork:
        return FakeUnitOfWork(self, writes=True)

    def read(self) -> FakeUnitOfWork:
        return FakeUnitOfWork(self, writes=False)

    @contextlib.asynccontextmanager
    async def turn(self, name: str) -> AsyncIterator[bool]:
        yield True

    def put(self, appeal: Appeal, *, content_hash: str = "",
            idempotency_key: str | None = None) -> Appeal:
        """Stores an appeal as if it had been committed earlier, its history and deliveries
        with it."""
        self.appeals[appeal.id] = _as_row(appeal)
        self.history.extend((appeal.id, change) for change in appeal.history)
        self.deliveries.extend((appeal.id, d, d.at) for d in appeal.deliveries)
        self.hashes[appeal.id] = content_hash
        if idempotency_key is not None:
            self.keys[appeal.id] = idempotency_key
        return appeal

    def actions(self) -> list[tuple[str, str]]:
        return [(m.target, m.action) for m in self.messages]

    def audit_actions(self, appeal_id: str | None = None) -> list[str]:
        return [e.action for e in self.audit if appeal_id is None or e.appeal_id == appeal_id]

    def statuses(self, appeal_id: str) -> list[AppealStatus]:
        """The appeal's committed history, oldest first."""
        return [c.status for i, c in self.history if i == appeal_id]
