"""Rows loaded once per unit of work: a second load of the same id returns the object the
first made, with any change the unit of work made to it since. In a writing unit of work
the rows are locked until commit (FOR UPDATE on PostgreSQL; SQLite has one writer)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, Table, select
from sqlalchemy.ext.asyncio import AsyncConnection

T = TypeVar("T")


class IdentityMap(Generic[T]):
    def __init__(self, conn: AsyncConnection, table: Table, from_row: Callable[[Any], T], *,
                 for_update: bool) -> None:
        self._conn = conn
        self._table = table
        self._from_row = from_row
        self._for_update = for_update
        self.seen: dict[str, T] = {}

    def select(self, condition: Any) -> Select[Any]:
        query = select(self._table).where(condition)
        return query.with_for_update() if self._for_update else query

    async def load(self, condition: Any) -> list[T]:
        rows = (await self._conn.execute(self.select(condition))).mappings().all()
        loaded = []
        for row in rows:
            known = self.seen.get(row["id"])
            if known is None:
                known = self.seen[row["id"]] = self._from_row(row)
            loaded.append(known)
        return loaded

    async def get_many(self, ids: Sequence[str]) -> dict[str, T]:
        wanted = set(ids)
        missing = wanted - self.seen.keys()
        if missing:
            await self.load(self._table.c.id.in_(sorted(missing)))
        return {i: self.seen[i] for i in wanted if i in self.seen}
