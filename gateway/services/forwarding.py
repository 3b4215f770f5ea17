"""The outbox handlers that carry an appeal out of the gateway and record what came back.

Each handler is safe to run again: the remote call is idempotent by the appeal's key
(and looks the record up first on any retry), and recording the outcome only moves the
appeal forward. One table below declares every action with its retry policy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.domain.appeal import AppealStatus, DeliveryChannel, StatusChange, can_transition
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
from gateway.services.delivery import (
    AnswerNotReady,
    Delivery,
    DeliveryConflict,
    record_delivery,
)
from gateway.services.outbox_actions import Enqueue
from gateway.storage import appeals as repo
from gateway.storage.batching import Batcher
from gateway.storage.database import Database
from gateway.storage.tables import appeals
from outbox import Message, NewMessage, Permanent, Registration, RetryPolicy

log = structlog.get_logger(__name__)

RequestAnswerDue = Callable[[datetime, Route, str], datetime | None]

# [001: 15] a call is due in the tracking system within the hour: keep trying for days
# rather than give up, but let an admin see it among the dead letters if it never goes.
REGISTER_POLICY = RetryPolicy(max_attempts=60, max_age_s=3 * 24 * 3600.0, timeout_s=60.0)
CONFIRM_POLICY = RetryPolicy(max_attempts=40, max_age_s=7 * 24 * 3600.0, timeout_s=60.0)
MAIL_POLICY = RetryPolicy(max_attempts=30, max_age_s=2 * 24 * 3600.0, timeout_s=120.0)


_REGISTERABLE = frozenset({AppealStatus.ACCEPTED, AppealStatus.FAILED})


def _is_retry(message: Message) -> bool:
    """An earlier try may have had its effect (also before a re-drive or a crash)."""
    return message.attempt > 1 or message.window_start != message.created_at


class Forwarding:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        registrars: Mapping[str, Registrar],
        confirmers: Mapping[str, DeliveryConfirmer],
        mailer: Mailer | None = None,
        letters: LetterComposer | None = None,
        request_answer_due: RequestAnswerDue | None = None,
        enqueue: Enqueue | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._registrars = registrars
        self._confirmers = confirmers
        self._mailer = mailer
        self._letters = letters
        self._request_answer_due = request_answer_due
        self._enqueue: Enqueue = enqueue or _no_enqueue
        # Rows the dispatcher runs at the same moment read and record together.
        self._loads: Batcher[str, repo.StoredAppeal | None] = Batcher(
            self._load_many, name="forwarding-load")
        self._registrations: Batcher[tuple[str, ExternalRef], None] = Batcher(
            self._record_registrations, name="registrations")

    def registrations(self) -> list[Registration]:
        """What this gateway can do, each with its policy: the dispatcher's table."""
        table: list[Registration] = []
        for system in self._registrars:
            table.append(Registration(system, "register", self.register, REGISTER_POLICY))
        if "pos" in self._confirmers:
            target, action = actions.POS_CONFIRM_DELIVERY
            table.append(Registration(target, action, self.confirm_delivery, CONFIRM_POLICY))
        if "delo" in self._confirmers:
            target, action = actions.DELO_CLOSE_CONTROL
            table.append(Registration(target, action, self.confirm_delivery, CONFIRM_POLICY))
        if self._mailer is not None and self._letters is not None:
            target, action = actions.EMAIL_REQUEST
            table.append(Registration(target, action, self.send_request, MAIL_POLICY))
            target, action = actions.EMAIL_ANSWER
            table.append(Registration(target, action, self.send_answer, MAIL_POLICY))
        return table

    async def aclose(self) -> None:
        await self._loads.aclose()
        await self._registrations.aclose()

    async def _load(self, message: Message) -> repo.StoredAppeal:
        appeal_id = str(message.payload.get("appeal_id", ""))
        stored = await self._loads.submit(appeal_id)
        if stored is None:
            raise Permanent(f"appeal {appeal_id} does not exist")
        structlog.contextvars.bind_contextvars(appeal_id=appeal_id)
        return stored

    async def _load_many(self, ids: Sequence[str]) -> list[repo.StoredAppeal | None]:
        async with self._db.read() as conn:
            found = await repo.get_appeals(conn, set(ids))
        return [found.get(appeal_id) for appeal_id in ids]

    # -- register ------------------------------------------------------------------------

    async def register(self, message: Message) -> None:
        stored = await self._load(message)
        known = stored.external_id is not None and stored.external_system == message.target
        if known and stored.external_number is not None:
            return  # recorded by an earlier try whose completion was lost
        registrar = self._registrars[message.target]
        # Known but without its number: the poller saw the record before this try's answer
        # arrived (a lost response). Look it up, so the number and the event are recorded.
        ref = await registrar.register(stored.appeal, lookup_first=known or _is_retry(message))
        await self.record_registration(stored.appeal.id, ref)

    async def record_registration(self, appeal_id: str, ref: ExternalRef) -> None:
        """Stores the external record and moves the appeal to registered (never backwards)."""
        await self._registrations.submit((appeal_id, ref))
        log.info("call.registered", system=ref.system, external_id=ref.id)

    async def _record_registrations(
        self, batch: Sequence[tuple[str, ExternalRef]]
    ) -> list[BaseException | None]:
        now = self._clock.now()
        outcomes: list[BaseException | None] = []
        moved: list[dict[str, Any]] = []
        kept: list[dict[str, Any]] = []
        history: list[tuple[str, StatusChange]] = []
        audit: list[repo.AuditEntry] = []
        async with self._db.write() as conn:
            # The rows stay locked until commit (PostgreSQL), so the status read here is the
            # one each update below replaces; SQLite's single writer gives the same.
            rows = await conn.execute(
                select(appeals.c.id, appeals.c.status)
                .where(appeals.c.id.in_({appeal_id for appeal_id, _ in batch}))
                .with_for_update())
            status = {row.id: AppealStatus(row.status) for row in rows}
            for appeal_id, ref in batch:
                if appeal_id not in status:
                    outcomes.append(Permanent(f"appeal {appeal_id} vanished"))
                    continue
                values = {"b_id": appeal_id, "external_system": ref.system,
                          "external_id": ref.id, "external_number": ref.number,
                          "external_stage": ref.stage}
                # Only an appeal not yet further along becomes registered; when the poller
                # saw it first, its status stays and only what it lacked is added.
                if status[appeal_id] in _REGISTERABLE:
                    status[appeal_id] = AppealStatus.REGISTERED
                    moved.append(values)
                    history.append((appeal_id, StatusChange(
                        AppealStatus.REGISTERED, now, ref.system, ref.number)))
                else:
                    kept.append(values)
                audit.append(repo.AuditEntry(now, ref.system, "call.registered", appeal_id,
                                             {"external_id": ref.id, "number": ref.number}))
                outcomes.append(None)
            # Executed for many: each parameter set's column keys are its SET values.
            by_id = appeals.c.id == bindparam("b_id")
            if moved:
                await conn.execute(update(appeals).where(by_id).values(
                    status=AppealStatus.REGISTERED.value, updated_at=now,
                    version=appeals.c.version + 1), moved)
            if kept:
                await conn.execute(update(appeals).where(by_id).values(updated_at=now), kept)
            await repo.append_histories(conn, history)
            await repo.record_audits(conn, audit)
        return outcomes

    # -- delivery confirmation -------------------------------------------------------------

    async def confirm_delivery(self, message: Message) -> None:
        stored = await self._load(message)
        system = message.target
        if stored.external_id is None or stored.external_system != system:
            raise Permanent(f"appeal has no {system} record to confirm")
        channel = DeliveryChannel(str(message.payload["channel"]))
        confirmed_at = datetime.fromisoformat(str(message.payload["delivered_at"]))
        await self._confirmers[system].confirm_delivery(
            stored.external_id, channel, confirmed_at, None)
        now = self._clock.now()
        async with self._db.write() as conn:
            await repo.record_audit(conn, at=now, actor=system, action="delivery.confirmed_remote",
                                    appeal_id=stored.appeal.id, detail={"channel": channel.value})
        log.info("delivery.confirmed_remote", system=system, channel=channel.value)

    # -- e-mail ----------------------------------------------------------------------------

    async def send_request(self, message: Message) -> None:
        """[004: 10.1] the request to one competent authority's responsible persons."""
        assert self._mailer is not None and self._letters is not None
        stored = await self._load(message)
        authority = str(message.payload["authority"])
        target = next((t for t in stored.appeal.route.email if t.authority == authority), None)
        if target is None:
            raise Permanent("the appeal's route names no such authority")
        appeal = stored.appeal
        due = (self._request_answer_due(self._clock.now(), appeal.route, appeal.hotline)
               if self._request_answer_due else None)
        mail = self._letters.request(appeal, authority, target.recipients, due)
        await self._mailer.send(mail)
        now = self._clock.now()
        async with self._db.write() as conn:
            current = await repo.get_appeal(conn, stored.appeal.id)
            assert current is not None
            before = current.appeal
            if can_transition(before.status, AppealStatus.REGISTERED) and (
                    before.status is AppealStatus.ACCEPTED):
                after = before.moved_to(AppealStatus.REGISTERED, now, "email", note="request sent")
                await repo.save_status(conn, before, after, now=now,
                                       extra={"external_system": "email"})
            await repo.record_audit(conn, at=now, actor="email", action="email.request_sent",
                                    appeal_id=before.id,
                                    detail={"recipients": len(target.recipients)})
        log.info("email.request_sent", recipient_count=len(target.recipients))

    async def send_answer(self, message: Message) -> None:
        """The ready answer to an applicant who chose e-mail, then the delivery is recorded."""
        assert self._mailer is not None and self._letters is not None
        stored = await self._load(message)
        if stored.answer_text is None:
            raise Permanent("no answer text to send")
        await self._mailer.send(self._letters.answer(stored.appeal, stored.answer_text))
        now = self._clock.now()
        async with self._db.write() as conn:
            try:
                await record_delivery(
                    conn, stored.appeal.id,
                    Delivery(DeliveryChannel.EMAIL, now, None, "email"),
                    now=now, enqueue=self._enqueue, actor="email")
            except (AnswerNotReady, DeliveryConflict) as exc:
                # Delivered meanwhile another way: the letter was extra, not wrong.
                log.warning("email.answer_after_delivery", reason=type(exc).__name__)
        log.info("email.answer_sent")


async def _no_enqueue(conn: AsyncConnection, messages: Sequence[NewMessage]) -> object:
    raise RuntimeError("this Forwarding was built without the outbox's enqueue")
