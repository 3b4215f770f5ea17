"""Following the target systems: read what changed since a stored cursor, apply it, move on.

A cycle costs ceil(changed / page size) + 1 requests whatever the number of open appeals.
Each page's changes and the cursor after it commit together, so a crash repeats at most
one page, and applying a change twice does nothing the second time (statuses only move
forward; the answer and the delivery are recorded once). On PostgreSQL one replica polls
each system at a time: the cycle runs under a session advisory lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

import structlog
from sqlalchemy import select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.domain.ports import Clock, StatusSource
from gateway.services.outbox_actions import Enqueue
from gateway.services.remote_updates import apply_update
from gateway.storage.database import Database
from gateway.storage.tables import poller_cursors

log = structlog.get_logger(__name__)

ERROR_BACKOFF_MAX_S = 300.0


@dataclass(frozen=True, slots=True)
class CycleResult:
    requests: int
    updates: int
    applied: int


class Poller:
    def __init__(
        self,
        system: str,
        source: StatusSource,
        db: Database,
        clock: Clock,
        *,
        enqueue: Enqueue,
        zone_of: Callable[[str], tzinfo],
        interval_s: float,
        page_size: int,
    ) -> None:
        self.system = system
        self._source = source
        self._db = db
        self._clock = clock
        self._enqueue = enqueue
        self._zone_of = zone_of
        self._interval_s = interval_s
        self._page_size = page_size

    async def run(self) -> None:
        """Poll until cancelled; failures are recorded for /status and backed off."""
        failures = 0
        while True:
            try:
                async with self._turn() as ours:
                    if ours:
                        await self.poll_once()
                failures = 0
                delay = self._interval_s
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - recorded, then tried again later
                failures += 1
                await self._record_error(exc)
                delay = min(ERROR_BACKOFF_MAX_S, self._interval_s * 2 ** min(failures, 8))
            await asyncio.sleep(delay * random.uniform(0.9, 1.1))

    async def poll_once(self) -> CycleResult:
        cursor = await self._load_cursor()
        requests = updates = applied = 0
        while True:
            page = await self._source.fetch_updates(cursor, self._page_size)
            requests += 1
            updates += len(page.updates)
            next_cursor = page.next_cursor or page.resume_from or cursor
            now = self._clock.now()
            async with self._db.write() as conn:
                for change in page.updates:
                    applied += await apply_update(
                        conn, self.system, change, now, enqueue=self._enqueue,
                        zone_of=self._zone_of)
                await self._save_cursor(conn, next_cursor, now)
            cursor = next_cursor
            if page.next_cursor is None:
                break
        log.info("poll.cycle", system=self.system, requests=requests, updates=updates,
                 applied=applied)
        return CycleResult(requests, updates, applied)

    # -- cursor and errors ------------------------------------------------------------------

    async def _load_cursor(self) -> str | None:
        async with self._db.read() as conn:
            row = (await conn.execute(select(poller_cursors.c.cursor)
                                      .where(poller_cursors.c.system == self.system))).first()
        return row[0] if row else None

    async def _save_cursor(self, conn: AsyncConnection, cursor: str | None, now: datetime) -> None:
        await _upsert(conn, {"system": self.system, "cursor": cursor, "last_success_at": now,
                             "last_error": None, "updated_at": now},
                      ["cursor", "last_success_at", "last_error", "updated_at"])

    async def _record_error(self, exc: Exception) -> None:
        now = self._clock.now()
        reason = getattr(exc, "reason", None) or type(exc).__name__
        log.warning("poll.failed", system=self.system, error=str(reason)[:300])
        with contextlib.suppress(Exception):
            async with self._db.write() as conn:
                await _upsert(conn, {"system": self.system, "last_error": str(reason)[:300],
                                     "last_error_at": now, "updated_at": now},
                              ["last_error", "last_error_at", "updated_at"])

    @contextlib.asynccontextmanager
    async def _turn(self) -> AsyncIterator[bool]:
        """Whether this replica polls this cycle: always on SQLite, by advisory lock on PG."""
        if self._db.engine.dialect.name != "postgresql":
            yield True
            return
        key = zlib.crc32(f"gateway.poller.{self.system}".encode())
        async with self._db.read() as conn:
            got = (await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key})).scalar()
            try:
                yield bool(got)
            finally:
                if got:
                    await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                await conn.commit()


async def _upsert(conn: AsyncConnection, values: dict[str, Any], on_conflict: list[str]) -> None:
    dialect = conn.dialect.name
    insert_ = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(poller_cursors)
    statement = insert_.values(**values).on_conflict_do_update(
        index_elements=[poller_cursors.c.system],
        set_={name: values[name] for name in on_conflict},
    )
    await conn.execute(statement)

