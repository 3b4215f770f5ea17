"""Officials' reply letters [004: 10.2], read from a real IMAP server (Dovecot), matched to
their request, made the appeal's answer and delivered; everything else left for a person."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from adapters.email.imap import ImapMailbox, ImapSecurity, ImapSettings
from adapters.email.letters import appeal_reference
from config.settings import ImapSettings as ImapConfig
from gateway.services.mail_replies import MailReplies
from tests.imap_server import ImapServer
from tests.integration.flows.conftest import (
    ANIMALS,
    DELIVERY,
    OPERATOR,
    PERSONAL,
    Flow,
    StartFlow,
)

GATEWAY = Path(sys.executable).with_name("gateway")
VET = "hotline@vet.example.ru"
CITY_ADMIN = "priemnaya@primersk.example.ru"
ANSWER = ("Отлов безнадзорных собак у школы № 5 запланирован на 25.11.2026. "
          "Ответственный — отдел ветеринарии.")


def reply_to(letter: EmailMessage, *, sender: str, text: str = ANSWER,
             charset: str = "utf-8", threaded: bool = True, html: bool = False,
             attachments: tuple[tuple[str, bytes], ...] = ()) -> bytes:
    """An official's reply to one of our letters, quoting it below, as mail clients do."""
    reply = EmailMessage()
    reply["From"] = f"Ветеринарная служба <{sender}>"
    reply["To"] = "hotline@gateway.test"
    reply["Subject"] = f"RE: {letter['Subject']}"
    reply["Message-ID"] = make_msgid(domain="vet.example.ru")
    reply["Date"] = format_datetime(letter["Date"].datetime + timedelta(hours=2))
    if threaded:
        reply["In-Reply-To"] = str(letter["Message-ID"])
        reply["References"] = str(letter["Message-ID"])
    quoted = "\n".join(f"> {line}" for line in letter.get_body(("plain",)).get_content()
                       .splitlines())
    body = f"{text}\n\n-----Original Message-----\n{quoted}\n"
    if html:
        markup = (f"<html><body><p>{text}</p><blockquote>{quoted}</blockquote>"
                  "</body></html>")
        reply.set_content(markup, subtype="html", charset=charset)
    else:
        reply.set_content(body, charset=charset)
    for name, data in attachments:
        reply.add_attachment(data, maintype="application", subtype="octet-stream",
                             filename=name)
    return reply.as_bytes()


def mailbox_settings(server: ImapServer, folder: str, **changes: Any) -> ImapConfig:
    return ImapConfig(host=server.host, port=server.port, username=server.user,
                      password=SecretStr(server.password), security="none", folder=folder,
                      **changes)


async def email_call(flow: Flow, **overrides: Any) -> tuple[str, dict[str, EmailMessage]]:
    """An e-mail-routed call with its requests sent: (appeal id, letters by recipient)."""
    accepted = await flow.post_call(topic=ANIMALS, summary="Стая собак у школы № 5 по утрам",
                                    **overrides)
    await flow.drain()
    letters = {str(m["To"]).split(",")[0].strip(): m for m in flow.letters()
               if accepted["id"] in str(m["X-Gateway-Appeal"])}
    return accepted["id"], letters


def reader(flow: Flow) -> MailReplies:
    assert flow.gw.mail is not None, "the flow has no mailbox configured"
    return flow.gw.mail


async def unmatched(flow: Flow) -> list[dict[str, Any]]:
    response = await flow.client.get("/api/v1/mail/unmatched", headers=OPERATOR)
    assert response.status == 200, await response.text()
    items: list[dict[str, Any]] = (await response.json())["items"]
    return items


async def test_an_email_routed_call_is_answered_by_a_reply_letter_and_delivered(
        start_flow: StartFlow, imap_server: ImapServer) -> None:
    folder = imap_server.new_folder()
    flow = await start_flow(imap=mailbox_settings(imap_server, folder))
    appeal_id, letters = await email_call(flow)
    imap_server.deliver(folder, reply_to(letters[VET], sender=VET))

    result = await reader(flow).read_once()

    assert result.applied == [appeal_id]
    appeal = await flow.get(appeal_id)
    assert appeal["status"] == "answer_ready"
    assert appeal["answer"]["text"] == ANSWER  # the quoted request is not part of it
    assert [item["id"] for item in await flow.ready()] == [appeal_id]
    status, _ = await flow.deliver(appeal_id)
    assert status == 200
    assert (await flow.get(appeal_id))["status"] == "delivered"
    # Read again, and after a restart of the reader: nothing is taken twice.
    assert (await reader(flow).read_once()).applied == []
    again = MailReplies(flow.gw.storage, ImapMailbox(ImapSettings(
        imap_server.host, imap_server.port, imap_server.user, imap_server.password,
        security=ImapSecurity.NONE, folder=folder)), flow.clock)
    assert (await again.read_once()).applied == []
    assert await unmatched(flow) == []
    assert imap_server.uids(folder) == [1]  # nothing deleted from the mailbox


async def test_a_new_letter_with_the_reference_in_windows_1251_html_is_matched_with_documents(
        start_flow: StartFlow, imap_server: ImapServer) -> None:
    folder = imap_server.new_folder()
    flow = await start_flow(imap=mailbox_settings(imap_server, folder))
    appeal_id, letters = await email_call(flow)
    pdf = b"%PDF-1.4 answer"
    imap_server.deliver(folder, reply_to(
        letters[VET], sender=VET.upper(), charset="windows-1251", threaded=False, html=True,
        attachments=(("Ответ.pdf", pdf), ("setup.exe", b"MZ"))))

    assert (await reader(flow).read_once()).applied == [appeal_id]

    appeal = await flow.get(appeal_id)
    assert appeal["answer"]["text"].startswith("Отлов безнадзорных собак")
    assert "Original Message" not in appeal["answer"]["text"]
    assert [(a["filename"], a["size"]) for a in appeal["attachments"]] == [("Ответ.pdf", len(pdf))]
    download = await flow.client.get(
        f"/api/v1/calls/{appeal_id}/attachments/{appeal['attachments'][0]['id']}",
        headers=DELIVERY)
    assert download.status == 200
    assert await download.read() == pdf


async def test_replies_that_cannot_be_applied_are_left_for_an_operator_with_the_reason(
        start_flow: StartFlow, imap_server: ImapServer,
        capsys: pytest.CaptureFixture[str]) -> None:
    folder = imap_server.new_folder()
    flow = await start_flow(imap=mailbox_settings(imap_server, folder, max_message_mb=0.05))
    appeal_id, letters = await email_call(flow)
    closed_id, closed_letters = await email_call(flow)
    await flow.client.post(f"/api/v1/calls/{closed_id}/answer", headers=OPERATOR,
                           json={"text": "Ответ по телефону", "source": "phone"})
    assert (await flow.deliver(closed_id))[0] == 200
    stranger = "someone@elsewhere.example.ru"
    imap_server.deliver(folder, reply_to(letters[VET], sender=stranger))
    imap_server.deliver(folder, reply_to(letters[VET], sender=VET, text=""))
    imap_server.deliver(folder, reply_to(closed_letters[VET], sender=VET))
    imap_server.deliver(folder, b"From: x@y.ru\r\nSubject: hello\r\n\r\njust a letter\r\n")
    imap_server.deliver(folder, reply_to(letters[VET], sender=VET,
                                         attachments=(("big.pdf", b"x" * 200_000),)))
    imap_server.deliver(folder, b"Content-Type: multipart/mixed; boundary=\"zz\"\r\n"
                                b"Subject: =?koi8-r?B?broken\r\n\r\n--zz\r\nbroken")

    result = await reader(flow).read_once()

    assert result.applied == []
    items = await unmatched(flow)
    assert sorted((item["reason"], item["call_id"] or "") for item in items) == sorted([
        ("unexpected_sender", appeal_id), ("no_text", appeal_id), ("appeal_closed", closed_id),
        ("no_match", ""), ("too_large", appeal_id), ("no_match", "")])
    by_reason = {item["reason"]: item for item in items}
    assert (await flow.get(appeal_id))["status"] == "registered"
    # Nothing personal in the reader's log lines.
    logged = capsys.readouterr()
    for text in (*PERSONAL, stranger, "vet.example.ru", ANSWER[:20]):
        assert text not in logged.out + logged.err

    # The operator decides: the stranger's letter was the answer after all.
    stranger_letter = by_reason["unexpected_sender"]["id"]
    response = await flow.client.post(f"/api/v1/mail/unmatched/{stranger_letter}/assign",
                                      headers=OPERATOR, json={"call_id": appeal_id})
    assert response.status == 200, await response.text()
    assert (await flow.get(appeal_id))["answer"]["text"] == ANSWER
    assert len(await unmatched(flow)) == 5
    again = await flow.client.post(f"/api/v1/mail/unmatched/{stranger_letter}/assign",
                                   headers=OPERATOR, json={"call_id": appeal_id})
    assert again.status == 409
    no_text = by_reason["no_text"]["id"]
    empty = await flow.client.post(f"/api/v1/mail/unmatched/{no_text}/assign",
                                   headers=OPERATOR, json={"call_id": appeal_id})
    assert (empty.status, (await empty.json())["error"]["code"]) == (409, "no_text")

    # The same list from the command line.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["GATEWAY_DATABASE_URL"] = flow.database_url
    listed = await asyncio.to_thread(
        subprocess.run, [str(GATEWAY), "mail", "unmatched"], env=env, capture_output=True,
        text=True, timeout=60, check=False)
    assert listed.returncode == 0, listed.stderr
    assert "5 unmatched" in listed.stdout and "appeal_closed" in listed.stdout


async def test_a_message_seen_before_a_uidvalidity_change_is_not_applied_again(
        start_flow: StartFlow, imap_server: ImapServer) -> None:
    folder = imap_server.new_folder()
    flow = await start_flow(imap=mailbox_settings(imap_server, folder))
    appeal_id, letters = await email_call(flow)
    reply = reply_to(letters[VET], sender=VET)
    imap_server.deliver(folder, reply)
    assert (await reader(flow).read_once()).applied == [appeal_id]

    imap_server.recreate(folder)  # the server rebuilt the folder: new UIDVALIDITY
    imap_server.deliver(folder, reply)
    second = await reader(flow).read_once()

    assert (second.applied, second.skipped) == ([], 1)
    assert len([a for a in await flow.audit(appeal_id) if a["action"] == "answer.received"]) == 1


async def test_a_late_answer_brings_a_reminder_and_the_reply_to_it_is_the_answer(
        start_flow: StartFlow, imap_server: ImapServer) -> None:
    folder = imap_server.new_folder()
    flow = await start_flow(imap=mailbox_settings(imap_server, folder))
    appeal_id, letters = await email_call(flow)
    due = (await flow.appeal_row(appeal_id))["request_due_at"]
    assert due is not None and due > flow.clock.now()

    assert await flow.gw.answers.remind_late() == []
    flow.clock.advance(due - flow.clock.now() + timedelta(minutes=1))
    assert await flow.gw.answers.remind_late() == [appeal_id]
    assert await flow.gw.answers.remind_late() == []  # once per term
    await flow.drain()

    reminders = [m for m in flow.letters() if "Напоминание" in str(m["Subject"])]
    assert sorted(str(m["To"]) for m in reminders) == sorted(
        [str(letters[VET]["To"]), str(letters[CITY_ADMIN]["To"])])
    assert f"[{appeal_reference(appeal_id)}]" in str(reminders[0]["Subject"])
    to_vet = next(m for m in reminders if VET in str(m["To"]))
    imap_server.deliver(folder, reply_to(to_vet, sender=VET))
    assert (await reader(flow).read_once()).applied == [appeal_id]


@pytest.mark.parametrize("security", [ImapSecurity.STARTTLS, ImapSecurity.TLS])
async def test_the_mailbox_is_read_over_tls(imap_server: ImapServer,
                                            security: ImapSecurity) -> None:
    if imap_server.ca_file is None or imap_server.tls_port is None:
        pytest.skip("the IMAP server given has no test certificate")
    folder = imap_server.new_folder()
    uid = imap_server.deliver(folder, b"From: a@b.ru\r\nSubject: x\r\n\r\n"
                                      + "Ответ".encode("koi8-r"))
    port = imap_server.tls_port if security is ImapSecurity.TLS else imap_server.port
    mailbox = ImapMailbox(ImapSettings(imap_server.host, port, imap_server.user,
                                       imap_server.password, security=security,
                                       folder=folder, ca_file=imap_server.ca_file))

    batch = await mailbox.fetch_after(None, 0, 10)

    assert [(m.uid, m.sender) for m in batch.messages] == [(uid, "a@b.ru")]


async def test_a_wrong_certificate_is_refused(imap_server: ImapServer) -> None:
    if imap_server.tls_port is None:
        pytest.skip("the IMAP server given has no IMAPS port")
    from adapters.email.imap import MailboxError

    mailbox = ImapMailbox(ImapSettings(imap_server.host, imap_server.tls_port,
                                       imap_server.user, imap_server.password,
                                       security=ImapSecurity.TLS))
    with pytest.raises(MailboxError, match="connect"):
        await mailbox.fetch_after(None, 0, 10)
