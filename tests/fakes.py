"""In-memory stand-ins for the storage ports: fast service-layer tests without a database.

`FakeStorage` hands out units of work over one dict of appeals. A commit keeps what the
real one would write (history, deliveries, audit entries, outbox messages) in lists the
tests read; a unit of work left by an exception keeps nothing.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from types import TracebackType

from gateway.domain.appeal import Appeal, AppealStatus, DeliveryRecord, StatusChange
from gateway.domain.status import UNANSWERED, UNDELIVERED
from gateway.services.unit_of_work import (
    AlreadyStored,
    AppealPage,
    AuditEntry,
    Changes,
    KnownCall,
    NewAppeal,
    PollerState,
    UnitOfWork,
)
from outbox.store import NewMessage


class FakeAppeals:
    def __init__(self, storage: FakeStorage) -> None:
        self._storage = storage
        self._seen: dict[str, Appeal] = {}
        self._added: list[NewAppeal] = []

    def _loaded(self, appeal_id: str) -> Appeal | None:
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

    def seen(self) -> Sequence[Appeal]:
        return list(self._seen.values())

    def added(self) -> Sequence[NewAppeal]:
        return list(self._added)

    async def get(self, appeal_id: str) -> Appeal | None:
        return self._loaded(appeal_id)

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
                and suffix in (a.external.id, (a.external.number or "").rsplit("-", 1)[-1])][:2]

    async def known_calls(self, hotline: str, journal_id: str,
                          idempotency_key: str | None) -> list[KnownCall]:
        return [KnownCall(a.id, a.hotline, a.journal_id, self._storage.hashes[a.id])
                for a in self._storage.appeals.values()
                if (a.hotline, a.journal_id) == (hotline, journal_id) or (
                    idempotency_key is not None
                    and self._storage.keys.get(a.id) == idempotency_key)]

    async def ids_to_mark_overdue(self, now: datetime, limit: int) -> list[str]:
        return [a.id for a in self._storage.appeals.values()
                if not a.overdue and a.due_at is not None and a.due_at < now
                and a.status in UNDELIVERED][:limit]

    async def ids_to_remind(self, now: datetime, lead: timedelta, limit: int) -> list[str]:
        return [a.id for a in self._storage.appeals.values()
                if a.interim_reminded_at is None and a.due_at is not None
                and a.due_at < now + lead and a.status in UNANSWERED][:limit]

    async def ready_for_delivery(self, limit: int) -> list[Appeal]:
        ids = [a.id for a in self._storage.appeals.values()
               if a.status is AppealStatus.ANSWER_READY][:limit]
        return list((await self.get_many(ids)).values())

    async def page(self, *, status: str | None, updated_since: datetime | None,
                   overdue: bool | None, limit: int, cursor: str | None) -> AppealPage:
        items = [a for a in self._storage.appeals.values()
                 if (status is None or a.status.value == status)
                 and (overdue is None or a.overdue == overdue)]
        return AppealPage(items[:limit], None)

    async def count_by_status(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for appeal in self._storage.appeals.values():
            counts[appeal.status.value] = counts.get(appeal.status.value, 0) + 1
        return counts

    async def count_overdue(self) -> int:
        return sum(1 for a in self._storage.appeals.values() if a.overdue)


class FakeCursors:
    def __init__(self, storage: FakeStorage) -> None:
        self._storage = storage

    async def get(self, system: str) -> str | None:
        state = self._storage.cursors.get(system)
        return state.cursor if state else None

    async def save(self, system: str, cursor: str | None, now: datetime) -> None:
        self._storage.cursors[system] = PollerState(system, cursor, now, None)

    async def record_error(self, system: str, reason: str, now: datetime) -> None:
        state = self._storage.cursors.get(system) or PollerState(system, None, None, None)
        self._storage.cursors[system] = PollerState(system, state.cursor,
                                                    state.last_success_at, reason)

    async def all(self) -> list[PollerState]:
        return list(self._storage.cursors.values())


class FakeUnitOfWork(UnitOfWork):
    def __init__(self, storage: FakeStorage, *, writes: bool) -> None:
        super().__init__()
        self._storage = storage
        self._writes = writes
        self.committed = False

    async def _begin(self) -> None:
        self.appeals = FakeAppeals(self._storage)
        self.cursors = FakeCursors(self._storage)

    async def _commit(self, changes: Changes) -> None:
        if not self._writes:
            assert not (changes.new or changes.updated or changes.audit or changes.messages), (
                "a reading unit of work cannot save changes")
            return
        storage = self._storage
        for new in changes.new:
            duplicate = any(
                (a.hotline, a.journal_id) == (new.appeal.hotline, new.appeal.journal_id)
                for a in storage.appeals.values()) or (
                new.idempotency_key is not None
                and new.idempotency_key in storage.keys.values())
            if duplicate:
                raise AlreadyStored("unique")
        for new in changes.new:
            storage.hashes[new.appeal.id] = new.content_hash
            if new.idempotency_key is not None:
                storage.keys[new.appeal.id] = new.idempotency_key
        for appeal in [n.appeal for n in changes.new] + changes.updated:
            stored = copy.copy(appeal)
            stored.events = []
            storage.appeals[appeal.id] = stored
        storage.history.extend(changes.history)
        storage.deliveries.extend(changes.deliveries)
        storage.audit.extend(changes.audit)
        storage.messages.extend(changes.messages)
        self.committed = True

    async def _rollback(self, exc_type: type[BaseException], exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.committed = False


class FakeStorage:
    """What was committed, for the tests to read."""

    def __init__(self) -> None:
        self.appeals: dict[str, Appeal] = {}
        self.hashes: dict[str, str] = {}
        self.keys: dict[str, str] = {}
        self.cursors: dict[str, PollerState] = {}
        self.history: list[tuple[str, StatusChange]] = []
        self.deliveries: list[tuple[str, DeliveryRecord, datetime]] = []
        self.audit: list[AuditEntry] = []
        self.messages: list[NewMessage] = []

    def write(self) -> FakeUnitOfWork:
        return FakeUnitOfWork(self, writes=True)

    def read(self) -> FakeUnitOfWork:
        return FakeUnitOfWork(self, writes=False)

    @contextlib.asynccontextmanager
    async def turn(self, name: str) -> AsyncIterator[bool]:
        yield True

    def put(self, appeal: Appeal) -> Appeal:
        """Stores an appeal as if it had been committed earlier."""
        stored = copy.deepcopy(appeal)
        stored.events = []
        self.appeals[appeal.id] = stored
        self.hashes.setdefault(appeal.id, "")
        return appeal

    def actions(self) -> list[tuple[str, str]]:
        return [(m.target, m.action) for m in self.messages]
