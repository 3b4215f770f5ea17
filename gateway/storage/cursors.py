"""The pollers' cursors over SQL: where each resumes, its last success and its last error."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.services.unit_of_work import PollerState
from gateway.storage.tables import poller_cursors


class SqlPollerCursors:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def get(self, system: str) -> str | None:
        row = (await self._conn.execute(select(poller_cursors.c.cursor)
                                        .where(poller_cursors.c.system == system))).first()
        return row[0] if row else None

    async def save(self, system: str, cursor: str | None, now: datetime) -> None:
        await self._upsert({"system": system, "cursor": cursor, "last_success_at": now,
                            "last_error": None, "updated_at": now},
                           ["cursor", "last_success_at", "last_error", "updated_at"])

    async def record_error(self, system: str, reason: str, now: datetime) -> None:
        await self._upsert({"system": system, "last_error": reason, "last_error_at": now,
                            "updated_at": now}, ["last_error", "last_error_at", "updated_at"])

    async def all(self) -> list[PollerState]:
        rows = (await self._conn.execute(select(poller_cursors))).mappings().all()
        return [PollerState(r["system"], r["cursor"], r["last_success_at"], r["last_error"])
                for r in rows]

    async def _upsert(self, values: dict[str, Any], on_conflict: list[str]) -> None:
        dialect = self._conn.dialect.name
        insert_ = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(
            poller_cursors)
        await self._conn.execute(insert_.values(**values).on_conflict_do_update(
            index_elements=[poller_cursors.c.system],
            set_={name: values[name] for name in on_conflict}))
