"""The reply reader over each real database: a reply applied once with its UID and its
attachments, the reference in a subject found by the appeal id's prefix, a restart reading
nothing twice (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

from gateway.clock import ManualClock
from gateway.domain.appeal import AppealStatus
from gateway.domain.ports import IncomingMail, MailAttachment, MailBatch
from gateway.domain.route import EmailTarget, Route, TargetSystem
from gateway.services.mail_replies import MailReplies
from gateway.services.unit_of_work import NewAppeal, SentLetter
from gateway.storage.database import create_engine
from gateway.storage.unit_of_work import SqlStorage
from outbox import store_for
from tests.builders import make_appeal

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
ROUTE = Route(system=TargetSystem.EMAIL, executor="vet",
              email=(EmailTarget("vet", ("vet@gov.test",)),), deadline_policy="email")


class ListedMailbox:
    """The mailbox port over a fixed list: what a folder holds, by UID."""

    name = "INBOX"

    def __init__(self, messages: Sequence[IncomingMail], uidvalidity: int = 7) -> None:
        self.messages = list(messages)
        self.uidvalidity = uidvalidity

    async def fetch_after(self, uidvalidity: int | None, last_uid: int,
                          limit: int) -> MailBatch:
        after = last_uid if uidvalidity == self.uidvalidity else 0
        return MailBatch(self.uidvalidity,
                         [m for m in self.messages if m.uid > after][:limit])

    async def settle(self, uids: Sequence[int]) -> None:
        return None

    async def aclose(self) -> None:
        return None


async def test_a_reply_is_applied_once_with_its_documents(database_url: str) -> None:
    engine = create_engine(database_url)
    clock = ManualClock(NOW)
    storage = SqlStorage(engine, store_for(engine), clock)
    appeal = make_appeal(route=ROUTE, status=AppealStatus.REGISTERED, request_sent_at=NOW)
    try:
        async with storage.write() as uow:
            uow.appeals.add(NewAppeal(appeal, "hash", None))
        async with storage.write() as uow:
            await uow.mail.record_sent(SentLetter("<gw.req@gw.test>", appeal.id, "vet",
                                                  ("vet@gov.test",), "request", NOW))
            await uow.mail.record_sent(SentLetter("<gw.req@gw.test>", appeal.id, "vet",
                                                  ("vet@gov.test",), "request", NOW))
        reply = IncomingMail(1, "<r1@gov.test>", ("<gw.req@gw.test>",), "vet@gov.test",
                             "RE: запрос", "Ответ ветслужбы.", NOW,
                             attachments=(MailAttachment("Ответ.pdf", "application/pdf",
                                                         b"%PDF"),))
        by_reference = replace(reply, uid=2, message_id="<r2@gov.test>", in_reply_to=(),
                               text="Дополнение.", attachments=(),
                               reference=appeal.id[:13])
        mailbox = ListedMailbox([reply, by_reference])

        first = await MailReplies(storage, mailbox, clock).read_once()
        again = await MailReplies(storage, mailbox, clock).read_once()  # a restart

        assert first.applied == [appeal.id, appeal.id]
        assert (again.applied, again.unmatched, again.skipped) == ([], [], 0)
        async with storage.read() as uow:
            stored = await uow.appeals.get(appeal.id)
            files = await uow.mail.attachments_of(appeal.id)
            found = await uow.mail.attachment(appeal.id, files[0].id)
            assert await uow.mail.last_uid("INBOX", 7) == 2
        assert stored is not None and stored.status is AppealStatus.ANSWER_READY
        assert stored.answer_text == "Ответ ветслужбы.\n\nДополнение."
        assert found is not None and found[1] == b"%PDF"
    finally:
        await engine.dispose()
