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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import tzinfo

import structlog

from gateway.domain.ports import Clock, StatusSource
from gateway.services.remote_updates import apply_changes
from gateway.services.unit_of_work import Storage

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
        storage: Storage,
        clock: Clock,
        *,
        zone_of: Callable[[str], tzinfo],
        interval_s: float,
        page_size: int,
    ) -> None:
        self.system = system
        self._source = source
        self._storage = storage
        self._clock = clock
        self._zone_of = zone_of
        self._interval_s = interval_s
        self._page_size = page_size

    async def run(self) -> None:
        """Poll until cancelled; failures are recorded for /status and backed off."""
        failures = 0
        while True:
            try:
                async with self._storage.turn(f"poller.{self.system}") as ours:
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

    async def _record_error(self, exc: Exception) -> None:
        now = self._clock.now()
        reason = str(getattr(exc, "reason", None) or type(exc).__name__)[:300]
        log.warning("poll.failed", system=self.system, error=reason)
        with contextlib.suppress(Exception):
            async with self._storage.write() as uow:
                await uow.cursors.record_error(self.system, reason, now)
