"""The SMTP mailer against a real aiosmtpd server on loopback — no mocks.

The sink (adapters/email/sink.py) is the server: it stores letters in a Maildir, can
refuse or defer recipients, and can cut the connection at a chosen moment once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from email.message import EmailMessage
from pathlib import Path

import pytest
import structlog

from adapters.email.letters import answer_letter, request_letters
from adapters.email.mailer import SmtpMailer, SmtpSettings, TlsMode
from adapters.email.sink import DropPoint, MaildirHandler, RunningSink, start_sink
from gateway.domain.appeal import AnswerChannel, Appeal, AppealStatus, Applicant
from gateway.domain.ports import OutgoingMail
from gateway.domain.route import EmailTarget, Route, TargetSystem
from outbox import Ambiguous, Permanent, Transient
from tests import builders

UTC = dt.UTC
APPEAL_ID = "3f2a9c1e-4b7d-4e2a-9c1e-0123456789ab"
SENDER = "Горячая линия 122 <hotline@gateway.test>"
HOUSING = EmailTarget("Министерство ЖКХ", ("zhkh@gov.test",))
ROADS = EmailTarget("Министерство транспорта", ("roads@gov.test", "roads-duty@gov.test"))
HEALTH = EmailTarget("Министерство здравоохранения", ("health@gov.test",))
APPLICANT = Applicant(last_name="Петров", first_name="Иван", middle_name="Сергеевич",
                      phone="+79001234567", email="petrov@mail.test")


def make_appeal() -> Appeal:
    """A call answered by e-mail, its request gone to three authorities."""
    return builders.make_appeal(
        id=APPEAL_ID, applicant=APPLICANT, problem_address="г. Ульяновск, ул. Гончарова, 1",
        answer_channel=AnswerChannel.EMAIL, status=AppealStatus.ANSWER_READY,
        route=Route(system=TargetSystem.EMAIL, executor="ЖКХ", email=(HOUSING, ROADS, HEALTH)),
    )


def plain_mail(key: str = "k-1", to: tuple[str, ...] = ("zhkh@gov.test",)) -> OutgoingMail:
    return OutgoingMail(to=to, subject="Проверка", text="Текст письма", idempotency_key=key)


def settings_for(port: int, **changes: object) -> SmtpSettings:
    values: dict[str, object] = dict(
        host="127.0.0.1", port=port, sender=SENDER, tls=TlsMode.NONE,
        local_hostname="gateway.test", connect_timeout_s=2.0, command_timeout_s=2.0,
        data_timeout_s=2.0,
    )
    values.update(changes)
    return SmtpSettings(**values)  # type: ignore[arg-type]


def read_maildir(path: Path) -> list[EmailMessage]:
    import mailbox

    box = mailbox.Maildir(str(path), create=False)
    messages = []
    for key in sorted(box.iterkeys()):
        with box.get_file(key) as handle:
            parsed = email.message_from_bytes(handle.read(), policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        messages.append(parsed)
    return messages


@pytest.fixture
def maildir(tmp_path: Path) -> Path:
    return tmp_path / "maildir"


@pytest.fixture
async def sink(maildir: Path) -> AsyncIterator[RunningSink]:
    running = await start_sink("127.0.0.1", 0, maildir)
    yield running
    await running.close()


@pytest.fixture
async def mailer(sink: RunningSink) -> AsyncIterator[SmtpMailer]:
    async with SmtpMailer(settings_for(sink.port)) as smtp_mailer:
        yield smtp_mailer


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- delivery ---------------------------------------------------------------------------


async def test_request_to_several_authorities_arrives_at_each(
    mailer: SmtpMailer, sink: RunningSink, maildir: Path,
) -> None:
    due_at = dt.datetime(2026, 11, 24, 13, 0, tzinfo=UTC)
    letters = request_letters(make_appeal(), (HOUSING, ROADS, HEALTH), due_at)

    await asyncio.gather(*(mailer.send(letter) for letter in letters))

    received = read_maildir(maildir)
    by_rcpt = {m["X-Sink-Rcpt-To"]: m for m in received}
    assert set(by_rcpt) == {"zhkh@gov.test", "roads@gov.test, roads-duty@gov.test",
                            "health@gov.test"}
    for target in (HOUSING, ROADS, HEALTH):
        message = by_rcpt[", ".join(target.recipients)]
        assert str(message["Subject"]).startswith("[ГЛ-3F2A9C1E-4B7D] Запрос")
        assert [a.addr_spec for a in message["To"].addresses] == list(target.recipients)
        body = message.get_body(("plain",))
        assert body is not None and target.authority in body.get_content()
    assert len({m["Message-ID"] for m in received}) == 3


async def test_answer_arrives_with_russian_subject_text_and_html(
    mailer: SmtpMailer, maildir: Path,
) -> None:
    answer = "Подача тепла восстановлена.\n.Строка с точкой в начале не теряется.\n."
    letter = answer_letter(make_appeal(), answer)

    await mailer.send(letter)

    (message,) = read_maildir(maildir)
    assert str(message["Subject"]) == "Ответ на ваше обращение от 23.11.2026 [ГЛ-3F2A9C1E-4B7D]"
    assert message["To"].addresses[0].addr_spec == "petrov@mail.test"
    assert message["From"].addresses[0].display_name == "Горячая линия 122"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    for part in (text, html):
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] in ("base64", "quoted-printable")
    text_content = text.get_content().replace("\r\n", "\n")
    assert text_content.startswith("Здравствуйте, Иван Сергеевич!")
    assert "Подача тепла восстановлена.\n.Строка с точкой в начале не теряется.\n." in (
        text_content)
    assert "Подача тепла восстановлена.<br>" in html.get_content()


async def test_message_id_is_derived_from_the_idempotency_key(
    mailer: SmtpMailer, maildir: Path,
) -> None:
    letter = plain_mail(key="appeal-1:request:ЖКХ")

    await mailer.send(letter)

    (message,) = read_maildir(maildir)
    assert message["Message-ID"] == mailer.message_id(letter)
    assert message["Message-ID"].endswith("@gateway.test>")


# --- retries and idempotency ------------------------------------------------------------


async def test_send_retried_after_dropped_connection_arrives_once(
    mailer: SmtpMailer, sink: RunningSink, maildir: Path,
) -> None:
    """The sink cuts the line after the whole message arrived but before accepting it.

    The mailer cannot know whether the server kept the message, so the first attempt is
    Ambiguous; here the server had not accepted it, so the retry is the only delivery.
    """
    sink.handler.drop_once = DropPoint.BEFORE_ACCEPT
    letter = plain_mail()

    with pytest.raises(Ambiguous):
        await mailer.send(letter)
    await mailer.send(letter)

    assert sink.handler.dropped == 1
    assert len(read_maildir(maildir)) == 1


async def test_drop_after_acceptance_is_deduplicated_by_message_id(
    mailer: SmtpMailer, sink: RunningSink, maildir: Path,
) -> None:
    """The server stored the message and the 250 was lost: the retry is a second copy.

    Both copies carry the same Message-ID, so a consumer that deduplicates by it (the
    sink, like many mail stores) keeps one.
    """
    sink.handler.drop_once = DropPoint.AFTER_ACCEPT
    letter = plain_mail()

    with pytest.raises(Ambiguous):
        await mailer.send(letter)
    await mailer.send(letter)

    assert (sink.handler.stored, sink.handler.duplicates) == (1, 1)
    assert len(read_maildir(maildir)) == 1


async def test_drop_while_naming_recipients_is_transient_and_retry_arrives_once(
    mailer: SmtpMailer, sink: RunningSink, maildir: Path,
) -> None:
    sink.handler.drop_once = DropPoint.AT_RCPT

    with pytest.raises(Transient) as caught:
        await mailer.send(plain_mail())
    assert not isinstance(caught.value, Ambiguous)
    await mailer.send(plain_mail())

    assert len(read_maildir(maildir)) == 1


async def test_no_reply_to_the_end_of_data_is_ambiguous(maildir: Path) -> None:
    """The server took the whole message and went silent: it may have queued it."""

    class StallingHandler(MaildirHandler):
        async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
            await asyncio.Event().wait()

    running = await start_sink("127.0.0.1", 0, maildir, handler=StallingHandler(maildir))
    try:
        async with SmtpMailer(settings_for(running.port, data_timeout_s=0.3)) as smtp_mailer:
            with pytest.raises(Ambiguous):
                await smtp_mailer.send(plain_mail())
    finally:
        await running.close()


async def test_sink_deduplicates_across_restarts(maildir: Path) -> None:
    letter = plain_mail()
    first = await start_sink("127.0.0.1", 0, maildir)
    async with SmtpMailer(settings_for(first.port)) as smtp_mailer:
        await smtp_mailer.send(letter)
    await first.close()

    second = await start_sink("127.0.0.1", 0, maildir)
    try:
        async with SmtpMailer(settings_for(second.port)) as smtp_mailer:
            await smtp_mailer.send(letter)
        assert second.handler.duplicates == 1
    finally:
        await second.close()
    assert len(read_maildir(maildir)) == 1


# --- classification ---------------------------------------------------------------------


async def test_unknown_mailbox_550_is_permanent(maildir: Path) -> None:
    handler = MaildirHandler(maildir, refuse_recipients={"nobody@gov.test"})
    running = await start_sink("127.0.0.1", 0, maildir, handler=handler)
    try:
        async with SmtpMailer(settings_for(running.port)) as smtp_mailer:
            with pytest.raises(Permanent, match="550"):
                await smtp_mailer.send(plain_mail(to=("nobody@gov.test",)))
            # The session was reset and carries the next letter.
            await smtp_mailer.send(plain_mail(key="k-2"))
            assert smtp_mailer.connections_opened == 1
    finally:
        await running.close()
    assert len(read_maildir(maildir)) == 1


async def test_one_refused_mailbox_does_not_stop_the_others(maildir: Path) -> None:
    handler = MaildirHandler(maildir, refuse_recipients={"roads-duty@gov.test"})
    running = await start_sink("127.0.0.1", 0, maildir, handler=handler)
    try:
        async with SmtpMailer(settings_for(running.port)) as smtp_mailer:
            await smtp_mailer.send(plain_mail(to=ROADS.recipients))
    finally:
        await running.close()
    (message,) = read_maildir(maildir)
    assert message["X-Sink-Rcpt-To"] == "roads@gov.test"


async def test_deferred_mailbox_4xx_is_transient_and_nothing_is_sent(maildir: Path) -> None:
    class DeferringHandler(MaildirHandler):
        async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # type: ignore[no-untyped-def]
            if address == "roads-duty@gov.test":
                return "450 4.2.1 Mailbox busy, try later"
            return await super().handle_RCPT(server, session, envelope, address, rcpt_options)

    running = await start_sink("127.0.0.1", 0, maildir, handler=DeferringHandler(maildir))
    try:
        async with SmtpMailer(settings_for(running.port)) as smtp_mailer:
            with pytest.raises(Transient, match="450") as caught:
                await smtp_mailer.send(plain_mail(to=ROADS.recipients))
    finally:
        await running.close()
    assert not isinstance(caught.value, Ambiguous)
    # roads@ was accepted but the transaction was reset: no one gets a partial letter.
    assert read_maildir(maildir) == []


async def test_connection_refused_is_transient() -> None:
    async with SmtpMailer(settings_for(free_port())) as smtp_mailer:
        with pytest.raises(Transient) as caught:
            await smtp_mailer.send(plain_mail())
    assert not isinstance(caught.value, Ambiguous)


async def test_server_that_never_greets_times_out_as_transient() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    try:
        settings = settings_for(port, connect_timeout_s=0.3, command_timeout_s=0.3)
        async with SmtpMailer(settings) as smtp_mailer:
            with pytest.raises(Transient) as caught:
                await smtp_mailer.send(plain_mail())
        assert not isinstance(caught.value, Ambiguous)
    finally:
        server.close()
        await server.wait_closed()


async def test_non_ascii_mailbox_name_is_permanent(mailer: SmtpMailer) -> None:
    """Issue 12: without SMTPUTF8 a Cyrillic mailbox name cannot be sent (intake refuses it
    by the same rule, gateway.domain.mailbox, so no accepted call's letter dies of it)."""
    with pytest.raises(Permanent):
        await mailer.send(plain_mail(to=("петров@почта.рф",)))


async def test_cyrillic_domain_is_sent_in_its_idna_form(
    mailer: SmtpMailer, maildir: Path,
) -> None:
    await mailer.send(plain_mail(to=("petrov@почта.рф",)))

    [message] = read_maildir(maildir)
    assert message["X-Sink-Rcpt-To"] == "petrov@xn--80a1acny.xn--p1ai"
    assert [a.addr_spec for a in message["To"].addresses] == ["petrov@xn--80a1acny.xn--p1ai"]


async def test_reserved_header_is_permanent(mailer: SmtpMailer) -> None:
    letter = OutgoingMail(to=("zhkh@gov.test",), subject="s", text="t",
                          headers={"Message-ID": "<mine@x>"})
    with pytest.raises(Permanent):
        await mailer.send(letter)


# --- connection pool --------------------------------------------------------------------


async def test_pool_reuses_one_connection_for_several_sends(
    mailer: SmtpMailer, sink: RunningSink, maildir: Path,
) -> None:
    for n in range(5):
        await mailer.send(plain_mail(key=f"k-{n}"))

    assert sink.connections == 1
    assert mailer.connections_opened == 1
    assert len(read_maildir(maildir)) == 5


@pytest.mark.parametrize("client_noticed", [True, False], ids=["noticed", "unnoticed"])
async def test_pool_replaces_a_connection_the_server_dropped_while_idle(
    mailer: SmtpMailer, sink: RunningSink, maildir: Path, client_noticed: bool,
) -> None:
    """Servers end idle sessions; the next letter must not fail because of it.

    Noticed: the client saw the close before the next send and opens a new session.
    Unnoticed: the close arrives while MAIL FROM is on the wire — nothing of the letter was
    sent yet, so the mailer reconnects and sends at once instead of reporting a failure.
    """
    await mailer.send(plain_mail(key="k-1"))
    sink.disconnect_all()
    if client_noticed:
        await asyncio.sleep(0.05)

    with structlog.testing.capture_logs() as events:
        await mailer.send(plain_mail(key="k-2"))

    reconnected = any(e["event"] == "email.reconnecting" for e in events)
    assert reconnected is not client_noticed
    assert sink.connections == 2
    assert len(read_maildir(maildir)) == 2


async def test_concurrent_sends_never_open_more_than_pool_size(
    sink: RunningSink, maildir: Path,
) -> None:
    async with SmtpMailer(settings_for(sink.port, pool_size=2)) as smtp_mailer:
        await asyncio.gather(*(smtp_mailer.send(plain_mail(key=f"k-{n}")) for n in range(8)))

    assert sink.connections <= 2
    assert len(read_maildir(maildir)) == 8


# --- authentication and TLS -------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
async def test_auth_with_the_right_password_delivers_and_a_wrong_one_is_transient(
    maildir: Path,
) -> None:
    running = await start_sink("127.0.0.1", 0, maildir, credentials={"gateway": "s3cret"})
    try:
        good = settings_for(running.port, username="gateway", password="s3cret")
        async with SmtpMailer(good) as smtp_mailer:
            await smtp_mailer.send(plain_mail())
        bad = settings_for(running.port, username="gateway", password="wrong")
        async with SmtpMailer(bad) as smtp_mailer:
            # The gateway's configuration is wrong, not the letter: wait, do not dead-letter.
            with pytest.raises(Transient, match="connect"):
                await smtp_mailer.send(plain_mail(key="k-2"))
    finally:
        await running.close()
    assert len(read_maildir(maildir)) == 1


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 made with the openssl command (as .ci/dovecot.sh does),
    so the test needs no Python package for it."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("STARTTLS test needs the openssl command to make a self-signed certificate")
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=gateway-sink",
         "-addext", "subjectAltName=IP:127.0.0.1", "-addext", "basicConstraints=critical,CA:TRUE",
         "-keyout", str(key_path), "-out", str(cert_path)],
        check=True, capture_output=True, timeout=30)
    return cert_path, key_path


CertFactory = Callable[[Path], tuple[Path, Path]]


@pytest.fixture
def cert_factory() -> CertFactory:
    return self_signed_cert


async def test_starttls_with_a_self_signed_certificate(
    tmp_path: Path, maildir: Path, cert_factory: CertFactory,
) -> None:
    cert_path, key_path = cert_factory(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert_path, key_path)
    running = await start_sink("127.0.0.1", 0, maildir, starttls_context=server_context,
                               credentials={"gateway": "s3cret"})
    try:
        settings = settings_for(running.port, tls=TlsMode.STARTTLS, ca_file=str(cert_path),
                                username="gateway", password="s3cret")
        async with SmtpMailer(settings) as smtp_mailer:
            await smtp_mailer.send(plain_mail())
        untrusted = settings_for(running.port, tls=TlsMode.STARTTLS)
        async with SmtpMailer(untrusted) as smtp_mailer:
            with pytest.raises(Transient, match="connect"):
                await smtp_mailer.send(plain_mail(key="k-2"))
    finally:
        await running.close()
    assert len(read_maildir(maildir)) == 1


# --- personal data ----------------------------------------------------------------------


async def test_nothing_about_the_letter_is_logged(mailer: SmtpMailer, sink: RunningSink) -> None:
    appeal = make_appeal()
    letter = answer_letter(appeal, "Подача тепла восстановлена.")
    sink.handler.drop_once = DropPoint.BEFORE_ACCEPT

    with structlog.testing.capture_logs() as events:
        with pytest.raises(Ambiguous):
            await mailer.send(letter)
        await mailer.send(letter)

    assert {e["event"] for e in events} >= {"email.send_failed", "email.sent"}
    logged = repr(events)
    for secret in ("petrov@mail.test", "Петров", "Иван", "+79001234567", "Гончарова",
                   "Подача тепла", "Ответ на ваше обращение", "Отопление"):
        assert secret not in logged
    sent = next(e for e in events if e["event"] == "email.sent")
    assert sent["recipient_count"] == 1
    assert f"<{sent['message_id']}@gateway.test>" == mailer.message_id(letter)


async def test_logged_ids_and_counts_survive_the_personal_data_masker(
    mailer: SmtpMailer,
) -> None:
    from gateway.logs import mask_personal_data

    letter = plain_mail(key="appeal-1:answer")
    with structlog.testing.capture_logs() as events:
        await mailer.send(letter)

    sent = dict(next(e for e in events if e["event"] == "email.sent"))
    masked = mask_personal_data(None, "info", dict(sent))
    assert masked == sent


# --- the aiosmtplib internals the mailer reaches into (issue 11) -----------------------------


def test_the_installed_aiosmtplib_has_the_protocol_parts_the_mailer_uses() -> None:
    # Failing here means aiosmtplib changed: revisit _transaction and the pin in pyproject.
    from importlib.metadata import version

    from adapters.email.mailer import missing_protocol_internals

    assert missing_protocol_internals() == (), (
        f"aiosmtplib {version('aiosmtplib')} lacks {missing_protocol_internals()}; the "
        "mailer falls back to SMTP.data and reports every loss after DATA as ambiguous")


@pytest.fixture
def without_protocol_internals(monkeypatch: pytest.MonkeyPatch) -> None:
    from adapters.email import mailer as mailer_module

    monkeypatch.setattr(mailer_module, "protocol_internals_available", lambda: False)


async def test_without_the_protocol_parts_letters_still_arrive_through_smtp_data(
    without_protocol_internals: None, mailer: SmtpMailer, maildir: Path,
) -> None:
    letter = OutgoingMail(to=("zhkh@gov.test",), subject="Проверка",
                          text=".точка в начале строки\nи вторая строка", idempotency_key="k-9")
    await mailer.send(letter)
    [received] = read_maildir(maildir)
    assert received["Message-ID"] == mailer.message_id(letter)
    body = received.get_body(("plain",))
    assert body is not None
    assert body.get_content().startswith(".точка в начале строки")


async def test_without_the_protocol_parts_a_lost_verdict_is_still_ambiguous(
    without_protocol_internals: None, mailer: SmtpMailer, sink: RunningSink, maildir: Path,
) -> None:
    sink.handler.drop_once = DropPoint.BEFORE_ACCEPT
    letter = plain_mail()
    with pytest.raises(Ambiguous):
        await mailer.send(letter)
    await mailer.send(letter)
    assert len(read_maildir(maildir)) == 1
