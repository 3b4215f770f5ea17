"""The journal's own fields and interim answers, set after intake.

[001: appendix 2] «Итог консультации» and «Результат рассмотрения сообщения», with the
«Комментарий» the appendix requires; [002: 2.8.10] an interim answer to the applicant
when the answer cannot come in time.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from gateway.domain.appeal import Appeal, InterimAnswer, JournalEntry
from gateway.domain.callbacks import ImplausibleAttemptTime, attempt_time_error
from gateway.domain.ports import Clock
from gateway.services.unit_of_work import Storage

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class JournalChanges:
    """A PATCH: only the fields given change; None clears one."""

    given: frozenset[str]
    entry: JournalEntry


class JournalDesk:
    def __init__(self, storage: Storage, clock: Clock) -> None:
        self._storage = storage
        self._clock = clock

    async def update(self, appeal_id: str, changes: JournalChanges, actor: str) -> Appeal:
        """Raises LookupError or JournalRefused."""
        now = self._clock.now()
        async with self._storage.write() as uow:
            appeal = await uow.appeals.get(appeal_id)
            if appeal is None:
                raise LookupError(appeal_id)
            current = appeal.journal
            wanted = JournalEntry(
                changes.entry.consultation_outcome if "consultation_outcome" in changes.given
                else current.consultation_outcome,
                changes.entry.review_result if "review_result" in changes.given
                else current.review_result,
                changes.entry.comment if "comment" in changes.given else current.comment,
            )
            appeal.update_journal(wanted, now, actor)
        log.info("journal.updated", appeal_id=appeal_id)
        return appeal

    async def interim(self, appeal_id: str, interim: InterimAnswer, actor: str) -> Appeal:
        """Raises LookupError, ImplausibleAttemptTime or ResolveRefused."""
        now = self._clock.now()
        error = attempt_time_error(interim.at, now)
        if error is not None:
            raise ImplausibleAttemptTime(error)
        async with self._storage.write() as uow:
            appeal = await uow.appeals.get(appeal_id)
            if appeal is None:
                raise LookupError(appeal_id)
            appeal.give_interim(interim, now, actor)
        log.info("interim.recorded", appeal_id=appeal_id, channel=interim.channel)
        return appeal
