"""Watching deadlines: mark what is overdue, remind before an answer is late.

[002: 2.8.10] when the answer cannot come in time the applicant gets an interim answer
with the reason and the new date, so the reminder comes before the deadline, not after.
Candidates are re-checked by the appeal itself under the unit of work's lock, so several
replicas watching at once record every event exactly once.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from datetime import timedelta

import structlog

from gateway.domain.ports import Clock
from gateway.services.unit_of_work import Storage

log = structlog.get_logger(__name__)

# Appeals marked per transaction: a backlog is worked off in several short commits.
SWEEP_BATCH = 500


@dataclass(frozen=True, slots=True)
class SweepResult:
    overdue: list[str] = field(default_factory=list)
    reminded: list[str] = field(default_factory=list)


class SlaWatch:
    def __init__(
        self, storage: Storage, clock: Clock, *, interval_s: float = 60.0,
        reminder_lead: timedelta = timedelta(hours=24),
    ) -> None:
        self._storage = storage
        self._clock = clock
        self._interval_s = interval_s
        self._reminder_lead = reminder_lead

    async def run(self) -> None:
        while True:
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - logged; the next sweep tries again
                log.warning("sla.sweep_failed", error_type=type(exc).__name__)
            await asyncio.sleep(self._interval_s * random.uniform(0.9, 1.1))

    async def sweep(self) -> SweepResult:
        result = SweepResult()
        now = self._clock.now()
        while True:
            async with self._storage.write() as uow:
                overdue = await uow.appeals.get_many(
                    await uow.appeals.ids_to_mark_overdue(now, SWEEP_BATCH))
                marked = [a.id for a in overdue.values() if a.mark_overdue(now)]
                due = await uow.appeals.get_many(
                    await uow.appeals.ids_to_remind(now, self._reminder_lead, SWEEP_BATCH))
                reminded = [a.id for a in due.values()
                            if a.remind_interim(now, self._reminder_lead)]
            result.overdue.extend(sorted(marked))
            result.reminded.extend(sorted(reminded))
            for appeal_id in marked:
                log.warning("sla.overdue", appeal_id=appeal_id)
            for appeal_id in reminded:
                log.info("sla.interim_answer_due", appeal_id=appeal_id)
            if len(overdue) < SWEEP_BATCH and len(due) < SWEEP_BATCH:
                return result
