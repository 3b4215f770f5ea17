"""Officials' reply letters: matched to their request and made the appeal's answer.

[004: 10.2] the responsible person answers by e-mail to the contact centre's address.
A reply is matched by In-Reply-To/References against the Message-IDs of the letters the
gateway sent (requests and reminders), else by the subject's reference «[ГЛ-…]». It is
applied only when it comes from one of the addresses those letters went to; anything
else — no match, a stranger's address, a closed appeal, no text, an unreadable message —
is left for an operator (GET /api/v1/mail/unmatched), never guessed.

Exactly once: each message's UID (within the folder's UIDVALIDITY) is recorded in the
same commit as its effect, so a crash repeats at most the uncommitted message, and a
message seen before under an old UIDVALIDITY is known again by its Message-ID. The folder's
UIDVALIDITY is kept as the "mail" poller's cursor, which also puts the reader in /status.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import structlog

from gateway.domain.appeal import AnswerClosed
from gateway.domain.mailbox import NotSendable, smtp_mailbox
from gateway.domain.ports import Clock, IncomingMail, Mailbox
from gateway.errors import GatewayError
from gateway.services.official_answers import CallNotFound
from gateway.services.polling import PollerHealth, keep_polling
from gateway.services.unit_of_work import (
    NewAttachment,
    SentLetter,
    Storage,
    UnitOfWork,
    UnmatchedMail,
)

log = structlog.get_logger(__name__)

CURSOR = "mail"
ERROR_BACKOFF_MAX_S = 600.0


class UnmatchedNotFound(GatewayError):
    pass


class UnmatchedAlreadyAssigned(GatewayError):
    pass


class UnmatchedWithoutText(GatewayError):
    """The reply has no text to make the answer of; record the answer by hand instead."""


@dataclass(slots=True)
class ReadResult:
    applied: list[str] = field(default_factory=list)  # appeal ids
    unmatched: list[str] = field(default_factory=list)  # reasons
    skipped: int = 0  # processed before


def _reason(exc: Exception) -> str:
    # Adapter errors say the phase, never an address or a subject.
    return str(exc) if isinstance(exc, GatewayError | OSError) else type(exc).__name__


def _address(value: str) -> str:
    try:
        return smtp_mailbox(value)
    except NotSendable:
        return value.strip().lower()


class MailReplies:
    def __init__(self, storage: Storage, mailbox: Mailbox, clock: Clock, *,
                 interval_s: float = 60.0, batch: int = 50) -> None:
        self._storage = storage
        self._mailbox = mailbox
        self._clock = clock
        self._interval_s = interval_s
        self._batch = batch
        self.health = PollerHealth()

    async def run(self) -> None:
        """Poll until cancelled; a failed poll is recorded for /status and backed off."""
        await keep_polling(self._storage, "mail", self.read_once, self.health, CURSOR,
                           self._clock, self._interval_s, reason_of=_reason,
                           max_backoff_s=ERROR_BACKOFF_MAX_S)

    async def read_once(self) -> ReadResult:
        """Every new message of the mailbox, one commit each; then the cursor."""
        result = ReadResult()
        box = self._mailbox.name
        async with self._storage.read() as uow:
            stored = await uow.cursors.get(CURSOR)
        known_validity = int(stored) if stored and stored.isdigit() else None
        while True:
            async with self._storage.read() as uow:
                last = (await uow.mail.last_uid(box, known_validity)
                        if known_validity is not None else 0)
            batch = await self._mailbox.fetch_after(known_validity, last, self._batch)
            if batch.uidvalidity != known_validity:
                if known_validity is not None:
                    log.warning("mail.uidvalidity_changed")
                known_validity = batch.uidvalidity
            settled: list[int] = []
            for mail in batch.messages:
                await self._process(box, batch.uidvalidity, mail, result)
                settled.append(mail.uid)
            async with self._storage.write() as uow:
                await uow.cursors.save(CURSOR, str(batch.uidvalidity), self._clock.now())
            await self._mailbox.settle(settled)
            if len(batch.messages) < self._batch:
                break
        log.info("mail.read", applied=len(result.applied), unmatched=len(result.unmatched),
                 skipped=result.skipped)
        return result

    async def _process(self, box: str, uidvalidity: int, mail: IncomingMail,
                       result: ReadResult) -> None:
        now = self._clock.now()
        appeal_id: str | None = None
        reason: str | None = "duplicate"
        async with self._storage.write() as uow:
            if await uow.mail.was_seen(box, uidvalidity, mail.uid, None):
                result.skipped += 1
                return
            if mail.message_id is not None and await uow.mail.was_seen(
                    box, uidvalidity, mail.uid, mail.message_id):
                # Seen under an earlier UIDVALIDITY: recorded, not applied again.
                await uow.mail.mark_seen(box, uidvalidity, mail.uid, mail.message_id,
                                         "duplicate", None, now)
            else:
                appeal_id, reason = await self._apply(uow, mail)
                await uow.mail.mark_seen(box, uidvalidity, mail.uid, mail.message_id,
                                         "applied" if reason is None else "unmatched",
                                         appeal_id, now)
        if reason == "duplicate":
            result.skipped += 1
        elif reason is None and appeal_id is not None:
            result.applied.append(appeal_id)
            log.info("mail.reply_applied", appeal_id=appeal_id, uid=mail.uid,
                     attachments=len(mail.attachments),
                     attachments_skipped=mail.skipped_attachments)
        else:
            result.unmatched.append(reason or "no_match")
            log.info("mail.reply_unmatched", reason=reason, uid=mail.uid, appeal_id=appeal_id)

    async def _apply(self, uow: UnitOfWork,
                     mail: IncomingMail) -> tuple[str | None, str | None]:
        """(appeal id, None) when applied; (appeal id or None, reason) when left."""
        at = self._clock.now()
        letters = await self._letters(uow, mail)
        appeal_id = letters[0].appeal_id if letters else None
        reason: str | None = None
        if mail.problem is not None:
            reason = mail.problem
        elif not letters:
            reason = "no_match"
        elif _address(mail.sender) not in {_address(r) for x in letters for r in x.recipients}:
            reason = "unexpected_sender"
        elif not mail.text.strip():
            reason = "no_text"
        else:
            appeal = await uow.appeals.get(letters[0].appeal_id)
            if appeal is None:
                reason = "no_match"
            else:
                try:
                    appeal.answer_received(mail.text, "email", mail.received_at or at, at,
                                           "email")
                except AnswerClosed:
                    reason = "appeal_closed"
                else:
                    await uow.mail.add_attachments(appeal.id, _attachments(mail), at)
                    return appeal.id, None
        await uow.mail.add_unmatched(UnmatchedMail(
            str(uuid.uuid4()), mail.received_at or at, reason, mail.sender, mail.subject,
            mail.text, appeal_id), _attachments(mail))
        return appeal_id, reason

    async def _letters(self, uow: UnitOfWork, mail: IncomingMail) -> list[SentLetter]:
        """The letters of the one appeal the reply answers, or none."""
        if mail.in_reply_to:
            found = await uow.mail.sent_by_message_ids(list(mail.in_reply_to))
            appeals = {x.appeal_id for x in found}
            if len(appeals) == 1:
                return await uow.mail.sent_for(appeals.pop())
        if mail.reference:
            ids = await uow.mail.appeal_ids_by_prefix(mail.reference)
            if len(ids) == 1:
                return await uow.mail.sent_for(ids[0])
        return []


class UnmatchedMailDesk:
    """The operator's list of replies the reader left, and assigning one to its appeal."""

    def __init__(self, storage: Storage, clock: Clock) -> None:
        self._storage = storage
        self._clock = clock

    async def unmatched(self, limit: int = 100) -> list[UnmatchedMail]:
        async with self._storage.read() as uow:
            return await uow.mail.unmatched(limit)

    async def assign(self, mail_id: str, appeal_id: str, actor: str) -> None:
        """An operator says which appeal a left reply answers: it becomes the answer.
        Raises UnmatchedNotFound, UnmatchedAlreadyAssigned, UnmatchedWithoutText,
        CallNotFound, AnswerClosed."""
        now = self._clock.now()
        async with self._storage.write() as uow:
            mail = await uow.mail.get_unmatched(mail_id)
            if mail is None:
                raise UnmatchedNotFound(mail_id)
            if mail.assigned_to is not None:
                raise UnmatchedAlreadyAssigned(mail.assigned_to)
            if not mail.text.strip():
                raise UnmatchedWithoutText(mail_id)
            appeal = await uow.appeals.get(appeal_id)
            if appeal is None:
                raise CallNotFound(appeal_id)
            appeal.answer_received(mail.text, "email", mail.received_at, now, actor)
            await uow.mail.assign_unmatched(mail_id, appeal_id, now)
        log.info("mail.reply_assigned", appeal_id=appeal_id)


def _attachments(mail: IncomingMail) -> list[NewAttachment]:
    return [NewAttachment(a.filename, a.content_type, a.data) for a in mail.attachments]
