"""The outbox handlers that carry an appeal out of the gateway and record what came back.

Each handler is safe to run again: the remote call is idempotent by the appeal's key
(and looks the record up first on any retry), and recording the outcome only moves the
appeal forward. One table below declares every action with its retry policy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

import structlog

from gateway.domain.appeal import (
    AnswerNotReady,
    Appeal,
    Delivery,
    DeliveryChannel,
    DeliveryConflict,
)
from gateway.domain.ports import (
    Clock,
    DeliveryConfirmer,
    ExternalRef,
    LetterComposer,
    Mailer,
    Registrar,
)
from gateway.domain.route import Route
from gateway.services import outbox_actions as actions
from gateway.services.batching import Batcher
from gateway.services.unit_of_work import AuditEntry, SentLetter, Storage
from outbox import Message, Permanent, Registration, RetryPolicy

log = structlog.get_logger(__name__)

RequestAnswerDue = Callable[[datetime, Route, str], datetime | None]

# [001: 15] a call is due in the tracking system within the hour: keep trying for days
# rather than give up, but let an admin see it among the dead letters if it never goes.
REGISTER_POLICY = RetryPolicy(max_attempts=60, max_age_s=3 * 24 * 3600.0, timeout_s=60.0)
CONFIRM_POLICY = RetryPolicy(max_attempts=40, max_age_s=7 * 24 * 3600.0, timeout_s=60.0)
MAIL_POLICY = RetryPolicy(max_attempts=30, max_age_s=2 * 24 * 3600.0, timeout_s=120.0)


def _is_retry(message: Message) -> bool:
    """An earlier try may have had its effect (also before a re-drive or a crash)."""
    return message.attempt > 1 or message.window_start != message.created_at


class Forwarding:
    def __init__(
        self,
        storage: Storage,
        clock: Clock,
        *,
        registrars: Mapping[str, Registrar],
        confirmers: Mapping[str, DeliveryConfirmer],
        mailer: Mailer | None = None,
        letters: LetterComposer | None = None,
        request_answer_due: RequestAnswerDue | None = None,
    ) -> None:
        self._storage = storage
        self._clock = clock
        self._registrars = registrars
        self._confirmers = confirmers
        self._mailer = mailer
        self._letters = letters
        self._request_answer_due = request_answer_due
        # Rows the dispatcher runs at the same moment read and record together.
        self._loads: Batcher[str, Appeal | None] = Batcher(self._load_many, name="forwarding-load")
        self._registrations: Batcher[tuple[str, ExternalRef], None] = Batcher(
            self._record_registrations, name="registrations")

    def registrations(self) -> list[Registration]:
        """What this gateway can do, each with its policy: the dispatcher's table."""
        table: list[Registration] = []
        for system in self._registrars:
            table.append(Registration(system, "register", self.register, REGISTER_POLICY,
                                      on_dead=self.forwarding_failed))
        if "pos" in self._confirmers:
            target, action = actions.POS_CONFIRM_DELIVERY
            table.append(Registration(target, action, self.confirm_delivery, CONFIRM_POLICY))
        if "delo" in self._confirmers:
            target, action = actions.DELO_CLOSE_CONTROL
            table.append(Registration(target, action, self.confirm_delivery, CONFIRM_POLICY))
        if self._mailer is not None and self._letters is not None:
            target, action = actions.EMAIL_REQUEST
            table.append(Registration(target, action, self.send_request, MAIL_POLICY,
                                      on_dead=self.forwarding_failed))
            target, action = actions.EMAIL_ANSWER
            table.append(Registration(target, action, self.send_answer, MAIL_POLICY))
            target, action = actions.EMAIL_REMINDER
            table.append(Registration(target, action, self.send_reminder, MAIL_POLICY))
        return table

    async def aclose(self) -> None:
        await self._loads.aclose()
        await self._registrations.aclose()

    async def _load(self, message: Message) -> Appeal:
        appeal_id = str(message.payload.get("appeal_id", ""))
        appeal = await self._loads.submit(appeal_id)
        if appeal is None:
            raise Permanent(f"appeal {appeal_id} does not exist")
        structlog.contextvars.bind_contextvars(appeal_id=appeal_id)
        return appeal

    async def _load_many(self, ids: Sequence[str]) -> list[Appeal | None]:
        async with self._storage.read() as uow:
            found = await uow.appeals.get_many(ids)
        return [found.get(appeal_id) for appeal_id in ids]

    async def forwarding_failed(self, message: Message, reason: str) -> None:
        """The dead-letter hook of the forwarding actions: the appeal shows as failed."""
        appeal_id = str(message.payload.get("appeal_id", ""))
        async with self._storage.write() as uow:
            appeal = await uow.appeals.get(appeal_id)
            if appeal is None:
                return  # nothing to mark: the row's own reason says so
            appeal.forwarding_failed(f"{message.target}.{message.action}", reason,
                                     self._clock.now(), message.target)
        log.warning("forwarding.failed", appeal_id=appeal_id, target=message.target)

    # -- register ------------------------------------------------------------------------

    async def register(self, message: Message) -> None:
        appeal = await self._load(message)
        if appeal.is_registered_in(message.target):
            return  # recorded by an earlier try whose completion was lost
        registrar = self._registrars[message.target]
        # Known but without its number: the poller saw the record before this try's answer
        # arrived (a lost response). Look it up, so the number and the event are recorded.
        known = appeal.knows_record_in(message.target)
        if getattr(registrar, "cannot_look_up", False):
            # Nothing to look up (ПОС EAS): only a retry since the creation or the last
            # re-drive may have had its effect; a re-drive is a person's "not there → send".
            ref = await registrar.register(appeal, lookup_first=message.attempt > 1)
        else:
            ref = await registrar.register(appeal, lookup_first=known or _is_retry(message))
        await self.record_registration(appeal.id, ref)

    async def record_registration(self, appeal_id: str, ref: ExternalRef) -> None:
        """Stores the external record and moves the appeal to registered (never backwards)."""
        await self._registrations.submit((appeal_id, ref))
        log.info("call.registered", system=ref.system, external_id=ref.id)

    async def _record_registrations(
        self, batch: Sequence[tuple[str, ExternalRef]]
    ) -> list[BaseException | None]:
        now = self._clock.now()
        outcomes: list[BaseException | None] = []
        async with self._storage.write() as uow:
            found = await uow.appeals.get_many([appeal_id for appeal_id, _ in batch])
            for appeal_id, ref in batch:
                appeal = found.get(appeal_id)
                if appeal is None:
                    outcomes.append(Permanent(f"appeal {appeal_id} vanished"))
                    continue
                appeal.register(ref, now)
                outcomes.append(None)
        return outcomes

    # -- delivery confirmation -------------------------------------------------------------

    async def confirm_delivery(self, message: Message) -> None:
        appeal = await self._load(message)
        system = message.target
        external = appeal.external
        if external is None or external.system != system:
            raise Permanent(f"appeal has no {system} record to confirm")
        channel = DeliveryChannel(str(message.payload["channel"]))
        confirmed_at = datetime.fromisoformat(str(message.payload["delivered_at"]))
        await self._confirmers[system].confirm_delivery(external.id, channel, confirmed_at, None)
        async with self._storage.write() as uow:
            uow.audit(AuditEntry(self._clock.now(), system, "delivery.confirmed_remote",
                                 appeal.id, {"channel": channel.value}))
        log.info("delivery.confirmed_remote", system=system, channel=channel.value)

    # -- e-mail ----------------------------------------------------------------------------

    async def send_request(self, message: Message) -> None:
        """[004: 10.1] the request to one competent authority's responsible persons."""
        assert self._mailer is not None and self._letters is not None
        appeal = await self._load(message)
        authority = str(message.payload["authority"])
        target = next((t for t in appeal.route.email if t.authority == authority), None)
        if target is None:
            raise Permanent("the appeal's route names no such authority")
        due = (self._request_answer_due(self._clock.now(), appeal.route, appeal.hotline)
               if self._request_answer_due else None)
        mail = self._letters.request(appeal, authority, target.recipients, due)
        await self._mailer.send(mail)
        now = self._clock.now()
        async with self._storage.write() as uow:
            current = await uow.appeals.get(appeal.id)
            if current is None:
                raise Permanent(f"appeal {appeal.id} vanished")
            # Kept so the official's reply finds this request [004: 10.2].
            await uow.mail.record_sent(SentLetter(
                self._mailer.message_id(mail), appeal.id, authority, target.recipients,
                "request", now))
            current.request_sent(len(target.recipients), now, answer_due=due)
        log.info("email.request_sent", recipient_count=len(target.recipients))

    async def send_reminder(self, message: Message) -> None:
        """[004: 10.2] the official's answer is late: remind the same responsible persons.
        Not sent once the answer came meanwhile."""
        assert self._mailer is not None and self._letters is not None
        appeal = await self._load(message)
        authority = str(message.payload["authority"])
        due = datetime.fromisoformat(str(message.payload["due_at"]))
        if appeal.answer_text is not None or appeal.request_sent_at is None:
            log.info("email.reminder_not_needed", status=appeal.status.value)
            return
        target = next((t for t in appeal.route.email if t.authority == authority), None)
        if target is None:
            raise Permanent("the appeal's route names no such authority")
        mail = self._letters.reminder(appeal, authority, target.recipients, due,
                                      appeal.request_sent_at)
        await self._mailer.send(mail)
        async with self._storage.write() as uow:
            await uow.mail.record_sent(SentLetter(
                self._mailer.message_id(mail), appeal.id, authority, target.recipients,
                "reminder", self._clock.now()))
        log.info("email.reminder_sent", recipient_count=len(target.recipients))

    async def send_answer(self, message: Message) -> None:
        """The ready answer to an applicant who chose e-mail, then the delivery is recorded."""
        assert self._mailer is not None and self._letters is not None
        appeal = await self._load(message)
        if appeal.answer_text is None:
            raise Permanent("no answer text to send")
        if not appeal.needs_answer_letter():
            # ПОС sent it itself, or it reached the applicant another way meanwhile.
            log.info("email.answer_not_needed", status=appeal.status.value)
            return
        await self._mailer.send(self._letters.answer(appeal, appeal.answer_text))
        now = self._clock.now()
        async with self._storage.write() as uow:
            current = await uow.appeals.get(appeal.id)
            if current is None:
                raise Permanent(f"appeal {appeal.id} vanished")
            try:
                current.deliver(Delivery(DeliveryChannel.EMAIL, now, None, "email"), now,
                                actor="email")
            except (AnswerNotReady, DeliveryConflict) as exc:
                # Delivered meanwhile another way: the letter was extra, not wrong.
                log.warning("email.answer_after_delivery", reason=type(exc).__name__)
        log.info("email.answer_sent")
