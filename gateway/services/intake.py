"""Taking a call: validate by the regulations, route, set deadlines, store and queue at once.

The appeal, its first history entry, the audit entry and the outbox rows that forward it
commit in one transaction: a call is either fully accepted or not at all. Calls taken at
the same moment share that transaction (group commit): under load that is most of the
difference in throughput. Repeats are recognised by hotline + journal id and by the
Idempotency-Key, also under a race (the unique constraints decide, and the loser re-reads).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog

from gateway.api.wire import CallIn
from gateway.domain.appeal import Appeal, AppealStatus
from gateway.domain.intake import (
    Refusal,
    anonymity_refusal,
    received_at_refusal,
    registered_late,
    with_normalised_phone,
)
from gateway.domain.ports import Clock
from gateway.domain.route import TargetSystem
from gateway.domain.routing import UnknownTopic
from gateway.services.planning import DeadlinePlanner, RoutePlanner
from gateway.services.unit_of_work import AlreadyStored, NewAppeal, Storage, UnitOfWork
from gateway.storage.batching import Batcher

log = structlog.get_logger(__name__)


class CallRefused(Exception):
    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.code)
        self.refusal = refusal


class CallConflict(Exception):
    """The same journal entry or Idempotency-Key was already used for a different call."""

    def __init__(self, existing_id: str, by: str) -> None:
        super().__init__(by)
        self.existing_id = existing_id
        self.by = by


@dataclass(frozen=True, slots=True)
class IntakeResult:
    appeal: Appeal
    created: bool


class IntakeService:
    def __init__(
        self,
        storage: Storage,
        routes: RoutePlanner,
        deadlines: DeadlinePlanner,
        clock: Clock,
        hotlines: frozenset[str],
    ) -> None:
        self._storage = storage
        self._routes = routes
        self._deadlines = deadlines
        self._clock = clock
        self._hotlines = hotlines
        self._writes: Batcher[NewAppeal, None] = Batcher(self._store, name="intake")

    async def aclose(self) -> None:
        await self._writes.aclose()

    async def _store(self, batch: Sequence[NewAppeal]) -> list[BaseException | None]:
        """Calls taken at the same moment commit together; a repeat among them (a unique
        constraint refusing the batch) sends each back alone, to learn which one it was."""
        try:
            async with self._storage.write() as uow:
                _add(uow, batch)
            return [None] * len(batch)
        except AlreadyStored as exc:
            if len(batch) == 1:
                return [exc]
        outcomes: list[BaseException | None] = []
        for new in batch:
            try:
                async with self._storage.write() as uow:
                    _add(uow, [new])
                outcomes.append(None)
            # Each call's own outcome: one failing must not report the stored ones failed.
            except Exception as exc:  # noqa: BLE001 - handed to that call's submitter
                outcomes.append(exc)
        return outcomes

    async def accept(self, call: CallIn, idempotency_key: str | None, actor: str) -> IntakeResult:
        content_hash = call.content_hash()
        now = self._clock.now()
        # Most calls are new: write first and let the unique constraints find repeats.
        try:
            appeal = self._build(call, now)
        except CallRefused:
            # A repeat is answered from what is stored even if a rule now refuses it:
            # the call was valid when first taken; configuration may have changed since.
            repeat = await self._find_repeat(call, idempotency_key, content_hash)
            if repeat is None:
                raise
            return IntakeResult(repeat, created=False)
        planned = self._deadlines.plan(appeal.received_at, appeal.urgency, appeal.route,
                                       appeal.hotline)
        appeal.due_at = planned.due_at
        appeal.feedback_due_at = planned.feedback_due_at
        appeal.request_due_at = planned.request_due_at
        appeal.accepted(now, actor, registered_late=registered_late(appeal.received_at, now))
        try:
            await self._writes.submit(NewAppeal(appeal, content_hash, idempotency_key))
        except AlreadyStored:
            # The same journal entry or key is stored already: a repeat, or a conflict.
            repeat = await self._find_repeat(call, idempotency_key, content_hash)
            if repeat is None:
                raise
            return IntakeResult(repeat, created=False)
        log.info("call.accepted", appeal_id=appeal.id, route=appeal.route.system.value,
                 hotline=appeal.hotline)
        return IntakeResult(appeal, created=True)

    async def _find_repeat(
        self, call: CallIn, key: str | None, content_hash: str
    ) -> Appeal | None:
        async with self._storage.read() as uow:
            return await _repeat_of(uow, call, key, content_hash)

    def _build(self, call: CallIn, now: datetime) -> Appeal:
        if call.hotline not in self._hotlines:
            raise CallRefused(Refusal(
                "validation",
                "Неизвестная линия / unknown hotline code",
                {"hotline": f"not configured; known: {', '.join(sorted(self._hotlines))}"},
            ))
        refusal = received_at_refusal(call.received_at, now)
        if refusal:
            raise CallRefused(refusal)
        applicant, refusal = with_normalised_phone(call.applicant.to_domain())
        if refusal:
            raise CallRefused(refusal)
        channel = call.effective_answer_channel()
        refusal = anonymity_refusal(applicant, channel, call.informational)
        if refusal:
            raise CallRefused(refusal)
        try:
            route = self._routes.route(call.topic, call.hotline, call.informational)
            topic = self._routes.canonical_topic(call.topic)
        except UnknownTopic:
            raise CallRefused(Refusal(
                "unknown_topic",
                "Тематика не найдена в справочнике / the topic is not in the topic dictionary",
                {"topic": "not in the topic dictionary"},
            )) from None
        # Journaled only: informational calls, and topics no rule forwards [002: 2.8.2].
        journaled = call.informational or route.system is TargetSystem.NONE
        status = AppealStatus.JOURNALED if journaled else AppealStatus.ACCEPTED
        return Appeal(
            id=str(uuid.uuid4()),
            hotline=call.hotline,
            journal_id=call.journal_id,
            received_at=call.received_at,
            operator=call.operator,
            applicant=applicant,
            problem_address=call.problem_address,
            topic=topic,
            summary=call.summary,
            repeat=call.repeat,
            urgency=call.urgency,
            answer_channel=channel,
            informational=call.informational,
            status=status,
            route=route,
            due_at=None,
        )


def _add(uow: UnitOfWork, batch: Sequence[NewAppeal]) -> None:
    for new in batch:
        uow.appeals.add(new)


async def _repeat_of(
    uow: UnitOfWork, call: CallIn, key: str | None, content_hash: str
) -> Appeal | None:
    found = await uow.appeals.known_calls(call.hotline, call.journal_id, key)
    if not found:
        return None
    for known in found:
        same_entry = (known.hotline, known.journal_id) == (call.hotline, call.journal_id)
        if known.content_hash != content_hash:
            raise CallConflict(known.appeal_id, "journal_id" if same_entry else "Idempotency-Key")
    return await uow.appeals.get(found[0].appeal_id)
