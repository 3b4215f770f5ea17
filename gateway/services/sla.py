"""Watching deadlines: mark what is overdue, remind before an answer is late.

[002: 2.8.10] when the answer cannot come in time the applicant gets an interim answer
with the reason and the new date, so the reminder comes before the deadline, not after.
Candidates are re-checked by the appeal itself under the unit of work's lock, so several
replicas watching at once record every event exactly once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog

from gateway.domain.appeal import OverdueKind
from gateway.domain.ports import Clock
from gateway.services.loops import every
from gateway.services.unit_of_work import Storage, UnitOfWork

log = structlog.get_logger(__name__)

# Appeals marked per transaction: a backlog is worked off in several short commits.
SWEEP_BATCH = 500


# The kinds the sweep watches; a late registration is flagged at intake [001: 15].
WATCHED = (OverdueKind.ANSWER, OverdueKind.FEEDBACK, OverdueKind.REQUEST, OverdueKind.CALLBACK)

# [001: 13] the first callback's latest moment for an answer ready at `at` on a hotline.
FirstCallbackDue = Callable[[datetime, str], datetime]


@dataclass(frozen=True, slots=True)
class SweepResult:
    overdue: list[str] = field(default_factory=list)  # the answer's deadline
    reminded: list[str] = field(default_factory=list)
    late: dict[OverdueKind, list[str]] = field(default_factory=dict)  # every kind
    scheduled: list[str] = field(default_factory=list)  # first callback terms set
    late_tasks: list[str] = field(default_factory=list)  # missed-call tasks


class SlaWatch:
    def __init__(
        self, storage: Storage, clock: Clock, *, interval_s: float = 60.0,
        reminder_lead: timedelta = timedelta(hours=24),
        first_callback_due: FirstCallbackDue | None = None,
    ) -> None:
        self._storage = storage
        self._clock = clock
        self._interval_s = interval_s
        self._reminder_lead = reminder_lead
        self._first_callback_due = first_callback_due

    async def run(self) -> None:
        await every(self._interval_s, self.sweep, failed="sla.sweep_failed")

    async def sweep(self) -> SweepResult:
        """Every stored deadline, one kind at a time, in batches found by indexed queries."""
        result = SweepResult()
        now = self._clock.now()
        while True:
            async with self._storage.write() as uow:
                full = await self._batch(uow, now, result)
            if not full:
                return result

    async def _batch(self, uow: UnitOfWork, now: datetime, result: SweepResult) -> bool:
        """One transaction's worth; True when some query filled its batch (more to do)."""
        full = False
        appeals = uow.appeals
        if self._first_callback_due is not None:
            ids = await appeals.ids_to_schedule_callback(SWEEP_BATCH)
            full |= len(ids) == SWEEP_BATCH
            for appeal in (await appeals.get_many(ids)).values():
                due = self._first_callback_due(appeal.answer_ready_at or now, appeal.hotline)
                if appeal.schedule_callback(due, now):
                    result.scheduled.append(appeal.id)
        for kind in WATCHED:
            ids = await appeals.ids_to_mark_late(kind, now, SWEEP_BATCH)
            full |= len(ids) == SWEEP_BATCH
            marked = sorted(a.id for a in (await appeals.get_many(ids)).values()
                            if a.mark_late(kind, now))
            result.late.setdefault(kind, []).extend(marked)
            if kind is OverdueKind.ANSWER:
                result.overdue.extend(marked)
            for appeal_id in marked:
                log.warning("sla.overdue", appeal_id=appeal_id, kind=kind.value)
        ids = await appeals.ids_to_remind(now, self._reminder_lead, SWEEP_BATCH)
        full |= len(ids) == SWEEP_BATCH
        reminded = sorted(a.id for a in (await appeals.get_many(ids)).values()
                          if a.remind_interim(now, self._reminder_lead))
        result.reminded.extend(reminded)
        for appeal_id in reminded:
            log.info("sla.interim_answer_due", appeal_id=appeal_id)
        ids = await uow.callbacks.ids_to_mark_late(now, SWEEP_BATCH)
        full |= len(ids) == SWEEP_BATCH
        late = sorted(t.id for t in (await uow.callbacks.get_many(ids)).values()
                      if t.mark_late(now))
        result.late_tasks.extend(late)
        for task_id in late:
            log.warning("sla.callback_late", task_id=task_id)
        return full
