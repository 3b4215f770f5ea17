"""Taking a call: validate by the regulations, route, set deadlines, store and queue at once.

The appeal, its first history entry, the audit entry and the outbox rows that forward it
commit in one transaction: a call is either fully accepted or not at all. Calls taken at
the same moment share that transaction (group commit): under load that is most of the
difference in throughput. Repeats are recognised by hotline + journal id and by the
Idempotency-Key, also under a race (the unique constraints decide, and the loser re-reads);
a repeat is told from a different call by the hash of the normalised call.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog

from gateway.domain.appeal import Appeal, AppealStatus, journal_refusal
from gateway.domain.intake import (
    NewCall,
    Refusal,
    anonymity_refusal,
    content_hash,
    email_refusal,
    normalised,
    received_at_refusal,
    registered_late,
)
from gateway.domain.ports import Clock
from gateway.domain.route import EpguFallback, Route, TargetSystem
from gateway.domain.routing import UnknownTopic
from gateway.errors import GatewayError
from gateway.services.batching import Batcher
from gateway.services.planning import DeadlinePlanner, RoutePlanner
from gateway.services.unit_of_work import AlreadyStored, NewAppeal, Storage, UnitOfWork

log = structlog.get_logger(__name__)


class CallRefused(GatewayError):
    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.code)
        self.refusal = refusal


class CallConflict(GatewayError):
    """The same journal entry or Idempotency-Key was already used for a different call."""

    def __init__(self, existing_id: str, by: str) -> None:
        super().__init__(by)
        self.existing_id = existing_id
        self.by = by


@dataclass(frozen=True, slots=True)
class IntakeResult:
    """The appeal as stored; `created` is False for a repeat (answered with the original)."""

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
        epgu_fallback: EpguFallback | None = None,
    ) -> None:
        self._storage = storage
        self._epgu_fallback = epgu_fallback
        self._routes = routes
        self._deadlines = deadlines
        self._clock = clock
        self._hotlines = hotlines
        self._writes: Batcher[NewAppeal, None] = Batcher(self._store, name="intake")

    async def aclose(self) -> None:
        await self._writes.aclose()

    async def _store(self, batch: Sequence[NewAppeal]) -> list[BaseException | None]:
        """Calls taken at the same moment commit together; when the batch fails (a repeat
        refused by a unique constraint, or any call the database will not take) each goes
        again alone, so only the one at fault fails."""
        try:
            async with self._storage.write() as uow:
                _add(uow, batch)
            return [None] * len(batch)
        except Exception as exc:  # noqa: BLE001 - whichever member sank it, find it
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

    async def accept(self, call: NewCall, idempotency_key: str | None, actor: str) -> IntakeResult:
        now = self._clock.now()
        call, phone_refusal = normalised(call, self._known_topic(call.topic))
        fingerprint = content_hash(call)
        # Most calls are new: write first and let the unique constraints find repeats.
        try:
            appeal = self._build(call, phone_refusal, now)
        except CallRefused:
            # A repeat is answered from what is stored even if a rule now refuses it:
            # the call was valid when first taken; configuration may have changed since.
            repeat = await self._find_repeat(call, idempotency_key, fingerprint)
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
            await self._writes.submit(NewAppeal(appeal, fingerprint, idempotency_key))
        except AlreadyStored:
            # The same journal entry or key is stored already: a repeat, or a conflict.
            repeat = await self._find_repeat(call, idempotency_key, fingerprint)
            if repeat is None:
                raise
            return IntakeResult(repeat, created=False)
        log.info("call.accepted", appeal_id=appeal.id, route=appeal.route.system.value,
                 hotline=appeal.hotline)
        return IntakeResult(appeal, created=True)

    async def _find_repeat(
        self, call: NewCall, key: str | None, fingerprint: str
    ) -> Appeal | None:
        async with self._storage.read() as uow:
            return await _repeat_of(uow, call, key, fingerprint)

    def _known_topic(self, typed: str) -> str | None:
        """The dictionary's own spelling of the topic; None when it is not in the dictionary."""
        try:
            return self._routes.canonical_topic(typed)
        except UnknownTopic:
            return None

    def _build(self, call: NewCall, phone_refusal: Refusal | None, now: datetime) -> Appeal:
        """The appeal from a normalised call, or CallRefused by the first rule it breaks."""
        if call.hotline not in self._hotlines:
            raise CallRefused(Refusal(
                "validation",
                "Неизвестная линия / unknown hotline code",
                {"hotline": f"not configured; known: {', '.join(sorted(self._hotlines))}"},
            ))
        refusal = received_at_refusal(call.received_at, now)
        if refusal:
            raise CallRefused(refusal)
        if phone_refusal:
            raise CallRefused(phone_refusal)
        try:
            route: Route | None = self._routes.route(call.topic, call.hotline,
                                                     call.informational, call.received_at)
        except UnknownTopic:
            route = None
        if route is not None and self._epgu_fallback is not None:
            route = self._epgu_fallback.apply(route, call.applicant.epgu_id is not None)
        journal_only = route is not None and route.system is TargetSystem.NONE
        refusal = anonymity_refusal(call.applicant, call.answer_channel, call.informational,
                                    journal_only)
        if refusal:
            raise CallRefused(refusal)
        refusal = email_refusal(call.applicant)
        if refusal:
            raise CallRefused(refusal)
        if route is None:
            raise CallRefused(Refusal(
                "unknown_topic",
                "Тематика не найдена в справочнике / the topic is not in the topic dictionary",
                {"topic": "not in the topic dictionary"},
            ))
        journal_fields = journal_refusal(call.journal)
        if journal_fields:
            raise CallRefused(Refusal(
                "validation", "«Комментарий» обязателен для этого результата рассмотрения "
                "/ this review result needs a comment [001: appendix 2]", journal_fields))
        # Journaled only: informational calls, and topics no rule forwards [002: 2.8.2].
        journaled = call.informational or route.system is TargetSystem.NONE
        status = AppealStatus.JOURNALED if journaled else AppealStatus.ACCEPTED
        return Appeal(
            id=str(uuid.uuid4()),
            hotline=call.hotline,
            journal_id=call.journal_id,
            received_at=call.received_at,
            operator=call.operator,
            applicant=call.applicant,
            problem_address=call.problem_address,
            topic=call.topic,
            summary=call.summary,
            repeat=call.repeat,
            urgency=call.urgency,
            answer_channel=call.answer_channel,
            informational=call.informational,
            status=status,
            route=route,
            due_at=None,
            journal=call.journal,
        )


def _add(uow: UnitOfWork, batch: Sequence[NewAppeal]) -> None:
    for new in batch:
        uow.appeals.add(new)


async def _repeat_of(
    uow: UnitOfWork, call: NewCall, key: str | None, fingerprint: str
) -> Appeal | None:
    found = await uow.appeals.known_calls(call.hotline, call.journal_id, key)
    if not found:
        return None
    for known in found:
        same_entry = (known.hotline, known.journal_id) == (call.hotline, call.journal_id)
        if known.content_hash != fingerprint:
            raise CallConflict(known.appeal_id, "journal_id" if same_entry else "Idempotency-Key")
    return await uow.appeals.get(found[0].appeal_id)
