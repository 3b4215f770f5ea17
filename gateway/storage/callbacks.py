"""The missed-call callback tasks over SQL [001: 12–14]: rows to `CallbackTask`s and back.

Like appeals, tasks loaded in a writing unit of work are locked until commit and loaded
once per unit of work, so two tries entered at once are ordered, not lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.domain.callbacks import CallbackTask, CallbackTry, TaskState
from gateway.storage.identity_map import IdentityMap
from gateway.storage.tables import callback_tasks


class SqlCallbackTasks:
    """`CallbackTaskRepository` on one connection."""

    def __init__(self, conn: AsyncConnection, *, for_update: bool) -> None:
        self._conn = conn
        self._rows = IdentityMap(conn, callback_tasks, _from_row, for_update=for_update)
        self._seen = self._rows.seen
        self._added: list[CallbackTask] = []

    def add(self, task: CallbackTask) -> None:
        self._added.append(task)
        self._seen[task.id] = task

    def seen(self) -> Sequence[CallbackTask]:
        return list(self._seen.values())

    def added(self) -> Sequence[CallbackTask]:
        return list(self._added)

    async def get(self, task_id: str) -> CallbackTask | None:
        if task_id in self._seen:
            return self._seen[task_id]
        found = await self._rows.load(callback_tasks.c.id == task_id)
        return found[0] if found else None

    async def get_many(self, ids: Sequence[str]) -> dict[str, CallbackTask]:
        return await self._rows.get_many(ids)

    async def find(self, hotline: str, phone: str, missed_at: datetime) -> CallbackTask | None:
        found = await self._rows.load((callback_tasks.c.hotline == hotline)
                                 & (callback_tasks.c.phone == phone)
                                 & (callback_tasks.c.missed_at == missed_at))
        return found[0] if found else None

    async def open_tasks(self, limit: int) -> list[CallbackTask]:
        rows = (await self._conn.execute(
            select(callback_tasks).where(callback_tasks.c.state == TaskState.OPEN.value)
            .order_by(callback_tasks.c.next_attempt_by, callback_tasks.c.id).limit(limit)
        )).mappings().all()
        return [_from_row(row) for row in rows]

    async def ids_to_mark_late(self, now: datetime, limit: int) -> list[str]:
        rows = await self._conn.execute(
            select(callback_tasks.c.id)
            .where(callback_tasks.c.state == TaskState.OPEN.value,
                   callback_tasks.c.late.is_(False), callback_tasks.c.next_attempt_by < now)
            .order_by(callback_tasks.c.next_attempt_by).limit(limit))
        return list(rows.scalars())

    async def count_late(self) -> int:
        result = await self._conn.execute(
            select(func.count()).select_from(callback_tasks)
            .where(callback_tasks.c.late.is_(True)))
        return int(result.scalar_one())


async def write_tasks(conn: AsyncConnection, new: Sequence[CallbackTask],
                      updated: Sequence[CallbackTask], now: datetime) -> None:
    for task in [*new, *updated]:
        task.updated_at = now
    if new:
        for task in new:
            task.created_at = now
        await conn.execute(insert(callback_tasks), [
            {"id": t.id, "hotline": t.hotline, "phone": t.phone, "missed_at": t.missed_at,
             "voicemail": t.voicemail, "due_at": t.due_at, "created_at": now, **_state(t)}
            for t in new])
    for task in updated:
        await conn.execute(update(callback_tasks).where(callback_tasks.c.id == task.id)
                           .values(**_state(task)))


def _state(task: CallbackTask) -> dict[str, Any]:
    return {
        "state": task.state.value,
        "tries": [{"at": t.at.isoformat(), "outcome": t.outcome} for t in task.tries],
        "next_attempt_at": task.next_attempt_at,
        "next_attempt_by": task.next_attempt_by,
        "late": task.late,
        "updated_at": task.updated_at,
    }


def _from_row(row: Any) -> CallbackTask:
    return CallbackTask(
        id=row["id"], hotline=row["hotline"], phone=row["phone"], missed_at=row["missed_at"],
        due_at=row["due_at"], voicemail=row["voicemail"], state=TaskState(row["state"]),
        tries=tuple(CallbackTry(datetime.fromisoformat(t["at"]), t["outcome"])
                    for t in row["tries"]),
        next_attempt_at=row["next_attempt_at"], next_attempt_by=row["next_attempt_by"],
        late=row["late"], created_at=row["created_at"], updated_at=row["updated_at"],
    )
