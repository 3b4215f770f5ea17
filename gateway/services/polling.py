"""Following the target systems: read what changed since a stored cursor, apply it, move on.

A cycle costs ceil(changed / page size) + 1 requests whatever the number of open appeals.
Each page's changes and the cursor after it commit together, so a crash repeats at most
one page, and applying a change twice does nothing the second time (statuses only move
forward; the answer and the delivery are recorded once). On PostgreSQL one replica polls
each system at a time (the storage's turn for the poller).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, tzinfo

import structlog

from gateway.domain.ports import Clock, ExternalUpdate, RecordReader, StatusSource
from gateway.services.remote_updates import apply_changes
from gateway.services.unit_of_work import Storage

log = structlog.get_logger(__name__)

ERROR_BACKOFF_MAX_S = 300.0
# Open appeals read one by one per reconciliation transaction.
RECONCILE_PAGE = 200


@dataclass(slots=True)
class PollerHealth:
    """This process's own view of its poller, for /status even when the database could
    not record the error (a full or read-only disk is exactly when that happens)."""

    last_error: str | None = None
    last_error_at: datetime | None = None
    # Per-record reading (ПОС EAS): how far the most overdue read is behind, if known.
    due_lag_s: Callable[[datetime], float] | None = None


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    checked: int
    applied: int


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
        storage: Storage,
        clock: Clock,
        *,
        zone_of: Callable[[str], tzinfo],
        interval_s: float,
        page_size: int,
        reader: RecordReader | None = None,
        reconcile_every_s: float = 0.0,
    ) -> None:
        self.system = system
        self._source = source
        self._storage = storage
        self._clock = clock
        self._zone_of = zone_of
        self._interval_s = interval_s
        self._page_size = page_size
        self.health = PollerHealth()
        self._reader = reader
        self._reconcile_every_s = reconcile_every_s
        # The first reconciliation comes one interval after start, not at every restart.
        self._reconciled_at = clock.now()

    async def run(self) -> None:
        """Poll until cancelled; failures are recorded for /status and backed off."""
        await keep_polling(self._storage, f"poller.{self.system}", self._cycle, self.health,
                           self.system, self._clock, self._interval_s,
                           reason_of=_reason)

    async def _cycle(self) -> None:
        await self.poll_once()
        if self._reconcile_due():
            await self.reconcile()

    async def poll_once(self) -> CycleResult:
        async with self._storage.read() as uow:
            cursor = await uow.cursors.get(self.system)
        requests = updates = applied = 0
        while True:
            page = await self._source.fetch_updates(cursor, self._page_size)
            requests += 1
            updates += len(page.updates)
            next_cursor = page.next_cursor or page.resume_from or cursor
            now = self._clock.now()
            async with self._storage.write() as uow:
                applied += await apply_changes(uow, self.system, page.updates, now,
                                               zone_of=self._zone_of)
                await uow.cursors.save(self.system, next_cursor, now)
            cursor = next_cursor
            if page.next_cursor is None:
                break
        log.info("poll.cycle", system=self.system, requests=requests, updates=updates,
                 applied=applied)
        return CycleResult(requests, updates, applied)

    def _reconcile_due(self) -> bool:
        if self._reader is None or self._reconcile_every_s <= 0:
            return False
        elapsed = (self._clock.now() - self._reconciled_at).total_seconds()
        return elapsed >= self._reconcile_every_s

    async def reconcile(self) -> ReconcileResult:
        """Reads every open appeal's record one by one and applies what differs: the
        backstop for changes committed upstream later than the cursor's overlap window.
        Costs one request per open appeal, so it runs rarely (daily by default)."""
        assert self._reader is not None
        checked = applied = 0
        after: str | None = None
        while True:
            async with self._storage.read() as uow:
                batch = await uow.appeals.open_records(self.system, after, RECONCILE_PAGE)
            updates: list[ExternalUpdate] = []
            for appeal_id, external_id in batch:
                update = await self._reader.get_update(external_id)
                checked += 1
                if update is not None:
                    updates.append(replace(update, appeal_id=appeal_id))
            if updates:
                async with self._storage.write() as uow:
                    applied += await apply_changes(uow, self.system, updates, self._clock.now(),
                                                   zone_of=self._zone_of)
            if len(batch) < RECONCILE_PAGE:
                break
            after = batch[-1][0]
        self._reconciled_at = self._clock.now()
        log.info("poll.reconciled", system=self.system, checked=checked, applied=applied)
        return ReconcileResult(checked, applied)



def _reason(exc: Exception) -> str:
    return str(getattr(exc, "reason", None) or type(exc).__name__)


async def keep_polling(storage: Storage, turn: str, once: Callable[[], Awaitable[object]],
                       health: PollerHealth, cursor: str, clock: Clock, interval_s: float, *,
                       reason_of: Callable[[Exception], str],
                       max_backoff_s: float = ERROR_BACKOFF_MAX_S) -> None:
    """Runs `once` every interval until cancelled, on this replica's turn only. A failure is
    kept in `health` (shown by /status even when the database cannot take it), written to
    the cursor row when it can be, and backed off exponentially up to `max_backoff_s`."""
    failures = 0
    while True:
        try:
            async with storage.turn(turn) as ours:
                if ours:
                    await once()
            failures = 0
            health.last_error = health.last_error_at = None
            delay = interval_s
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - recorded, then tried again later
            failures += 1
            reason, now = reason_of(exc)[:300], clock.now()
            log.warning("poll.failed", source=cursor, error=reason)
            health.last_error, health.last_error_at = reason, now
            with contextlib.suppress(Exception):
                async with storage.write() as uow:
                    await uow.cursors.record_error(cursor, reason, now)
            delay = min(max_backoff_s, interval_s * 2 ** min(failures, 8))
        await asyncio.sleep(delay * random.uniform(0.9, 1.1))
