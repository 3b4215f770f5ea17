"""What the contact centre records about an official's answer [004: 10.2–10.3]: an answer
that came by phone, paper or fax, an extension the official asked for, and the watch that
reminds the official when the answer is late.

Reply letters arrive through `gateway.services.mail_replies`; everything here has the
same effect on the appeal through the same methods.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import structlog

from gateway.domain.appeal import Appeal
from gateway.domain.ports import Clock
from gateway.domain.route import Route
from gateway.errors import GatewayError
from gateway.services.loops import every
from gateway.services.unit_of_work import Storage

log = structlog.get_logger(__name__)

# The latest term an extension may give, from when the request went out [004: 10.3].
LatestAnswer = Callable[[datetime, Route, str], datetime | None]

SWEEP_BATCH = 200


class CallNotFound(GatewayError):
    pass


class OfficialAnswers:
    def __init__(self, storage: Storage, clock: Clock, latest_answer: LatestAnswer, *,
                 interval_s: float = 60.0) -> None:
        self._storage = storage
        self._clock = clock
        self._latest_answer = latest_answer
        self._interval_s = interval_s

    async def record_answer(self, appeal_id: str, text: str, source: str,
                            received_at: datetime, actor: str) -> Appeal:
        """An answer that reached the contact centre outside the mailbox; raises
        CallNotFound, AnswerClosed (delivered, rejected or journaled)."""
        async with self._storage.write() as uow:
            appeal = await uow.appeals.get(appeal_id)
            if appeal is None:
                raise CallNotFound(appeal_id)
            appeal.answer_received(text, source, received_at, self._clock.now(), actor)
        log.info("answer.recorded", appeal_id=appeal_id, source=source)
        return appeal

    async def extend(self, appeal_id: str, until: datetime, reason: str,
                     letter_ref: str | None, actor: str) -> Appeal:
        """[004: 10.3] the official's letter asking for more time; raises CallNotFound,
        NoRequestSent, AnswerClosed, ExtensionLimit (past 5 working days from the
        request)."""
        async with self._storage.write() as uow:
            appeal = await uow.appeals.get(appeal_id)
            if appeal is None:
                raise CallNotFound(appeal_id)
            latest = (self._latest_answer(appeal.request_sent_at, appeal.route, appeal.hotline)
                      if appeal.request_sent_at is not None else None)
            appeal.extension_requested(until, reason, letter_ref, latest, self._clock.now(),
                                       actor)
        log.info("request.extended", appeal_id=appeal_id)
        return appeal

    async def run(self) -> None:
        await every(self._interval_s, self.remind_late, failed="request.sweep_failed")

    async def remind_late(self) -> list[str]:
        """[004: 10.2] every request whose answer is past its term: the appeal records it
        (overdue kind "request") and the reminder letters go out with that commit."""
        reminded: list[str] = []
        now = self._clock.now()
        while True:
            async with self._storage.write() as uow:
                late = await uow.appeals.get_many(
                    await uow.mail.ids_request_late(now, SWEEP_BATCH))
                batch = sorted(a.id for a in late.values() if a.request_answer_late(now))
            reminded.extend(batch)
            for appeal_id in batch:
                log.warning("request.answer_late", appeal_id=appeal_id)
            if len(late) < SWEEP_BATCH:
                return reminded
