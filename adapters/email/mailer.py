"""SMTP transport for the gateway's letters: the `Mailer` port on aiosmtplib.

Why this is more than `aiosmtplib.send`: the outbox retries, so every send must say
precisely how it failed, and a retried send must not become a second letter in anyone's
inbox. What SMTP lets us promise, and what it does not:

* A 250 reply to the end of DATA means the server took responsibility for the message
  (RFC 5321 §6.1). It does not mean the mailbox got it: a relay may still bounce it later
  to the envelope sender. Bounces are not read by the gateway.
* Until the server has seen the final "." of DATA it cannot have accepted the message,
  so every failure up to there (connection refused, timeouts, 4xx replies, a drop while
  naming recipients) is `Transient`: retrying cannot duplicate.
* A reply of 4xx/5xx to the end of DATA is a clear "not accepted" (`Transient` /
  `Permanent`).
* A connection lost, or a timeout, after the final "." was written and before the reply
  arrived is the one window SMTP leaves open (RFC 1047): the server may or may not have
  queued the message. That is `Ambiguous`. SMTP offers no way to ask afterwards, so the
  retry sends the message again with the *same* Message-ID (derived from
  `OutgoingMail.idempotency_key`); consumers that deduplicate by Message-ID (our sink,
  many mail stores, the reply matcher) see one letter. A recipient whose mail system
  does not deduplicate may see two copies — at most one extra per lost reply.
* 5xx replies to MAIL, RCPT or DATA are `Permanent`: the letter as addressed will never
  be accepted (unknown mailbox, message too large). Failures while setting up the session
  — TLS, EHLO, authentication, or 530/534/535/538 "authentication required" replies —
  are about the gateway's configuration, not the letter, so they are `Transient`: the
  letters wait for an admin instead of being dead-lettered one by one.
* With several recipients, a 4xx for any of them aborts the transaction (RSET) and the
  whole letter is retried later, so nobody gets it twice; a 5xx for some of them while
  others are accepted sends to the accepted ones and logs how many were refused; a 5xx
  for all of them is `Permanent`.

Personal data (152-ФЗ): neither the letter, its subject nor any address is logged or put
into an outcome's reason — only the Message-ID (a hash), recipient counts, the SMTP
phase and the reply code. Server reply texts are dropped after the connection is set up
because they often quote the recipient's address.
"""

from __future__ import annotations

import asyncio
import base64
import email.policy
import functools
import hashlib
import inspect
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from enum import StrEnum
from typing import Any

import aiosmtplib
import structlog

from gateway.domain.mailbox import NotSendable, smtp_mailbox
from gateway.domain.ports import Clock, OutgoingMail
from outbox import Ambiguous, Permanent, Transient

_log: Any = structlog.get_logger("adapters.email")

# CRLF line ends as SMTP wants them; 7-bit bodies (base64/quoted-printable) so that a
# server without 8BITMIME cannot mangle the Cyrillic text.
_POLICY = email.policy.SMTP.clone(cte_type="7bit")

# Headers the mailer owns: a caller overriding them would break idempotency or addressing.
_RESERVED_HEADERS = frozenset(
    {"from", "to", "cc", "bcc", "subject", "date", "message-id", "reply-to", "sender",
     "mime-version", "content-type", "content-transfer-encoding"}
)
# Replies that mean "this session is not allowed to send", i.e. our configuration.
_SETUP_CODES = frozenset({530, 534, 535, 538})
_SERVICE_CLOSING = 421
_START_MAIL_INPUT = 354
_COMPLETED = 250

_ADDRESS_RE = re.compile(r"^[^@\s<>()\[\],;:\"\\]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*$")
_LINE_END_RE = re.compile(rb"\r\n|\r|\n")


class TlsMode(StrEnum):
    """How the connection is protected."""

    NONE = "none"  # plain SMTP: only for the local sink and trusted relays
    # Upgrade after connecting (submission port 587); required, never opportunistic.
    STARTTLS = "starttls"
    IMPLICIT = "tls"  # TLS from the first byte (port 465)


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    """What the mailer needs; the wiring fills it from `GATEWAY_SMTP__*` settings."""

    host: str
    port: int
    sender: str  # the From header, e.g. "Горячая линия 122 <hotline@example.ru>"
    tls: TlsMode = TlsMode.STARTTLS
    username: str | None = None
    password: str | None = None
    reply_to: str | None = None  # where responsible persons' answers should go
    message_id_domain: str | None = None  # the right side of Message-IDs; default: sender's
    local_hostname: str | None = None  # EHLO name; default: the host's FQDN
    validate_certs: bool = True
    ca_file: str | None = None  # CA bundle for a private/self-signed server certificate
    connect_timeout_s: float = 10.0
    command_timeout_s: float = 30.0
    data_timeout_s: float = 120.0  # the reply to the end of DATA may take a while
    pool_size: int = 2
    max_idle_s: float = 60.0  # servers drop idle sessions; do not reuse older ones


class _Phase(StrEnum):
    CONNECT = "connect"  # TCP, TLS, EHLO, AUTH
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"  # the DATA command, before the server said 354
    BODY = "body"  # after the final "." was sent, waiting for the verdict


class _Failure(Exception):
    """What went wrong, without any text from the server beyond the reply code.

    Internal: mapped to Transient / Permanent / Ambiguous in `_outcome` only.
    """

    def __init__(self, phase: _Phase, code: int | None, detail: str = "") -> None:
        super().__init__(phase.value)
        self.phase = phase
        self.code = code  # None: the connection was lost or timed out
        self.detail = detail


@dataclass(slots=True)
class _Connection:
    client: aiosmtplib.SMTP
    idle_since: float = 0.0


@dataclass(frozen=True, slots=True)
class _Accepted:
    accepted: int
    refused: int


def message_id_for(idempotency_key: str, domain: str) -> str:
    """The Message-ID every attempt of one logical letter carries.

    A hash, not the key itself: the key holds authority names in Cyrillic, which a
    Message-ID cannot, and the hash reveals nothing about the appeal. Base32 rather than
    hex so the id never holds a long run of digits the log masker would take for a phone
    number.
    """
    digest = hashlib.sha256(idempotency_key.encode("utf-8")).digest()[:20]
    token = base64.b32encode(digest).decode("ascii").lower()
    return f"<gw.{token}@{domain}>"


def loggable_id(message_id: str) -> str:
    """The Message-ID's left part: unique, and not shaped like an e-mail address.

    The log masker (gateway.logs) hides anything that looks like an address, which a
    whole Message-ID does.
    """
    return message_id.strip().strip("<>").partition("@")[0]


def compose(
    mail: OutgoingMail,
    *,
    sender: str,
    message_id: str,
    date: datetime,
    reply_to: str | None = None,
) -> bytes:
    """The RFC 5322 message: plain text, plus an HTML alternative when there is one, and
    any attachments.

    Raises `Permanent`: a letter that cannot be composed now never will be.
    """
    for name in mail.headers:
        if name.lower() in _RESERVED_HEADERS:
            raise Permanent(f"letter sets the reserved header {name}")
    message = EmailMessage(policy=_POLICY)
    try:
        message["From"] = sender
        message["To"] = ", ".join(mail.to)
        message["Subject"] = mail.subject
        message["Date"] = format_datetime(date)
        message["Message-ID"] = message_id
        if reply_to:
            message["Reply-To"] = reply_to
        for name, value in mail.headers.items():
            message[name] = value
        message.set_content(mail.text)
        if mail.html is not None:
            message.add_alternative(mail.html, subtype="html")
        for attachment in mail.attachments:
            maintype, _, subtype = attachment.media_type.partition("/")
            message.add_attachment(attachment.content, maintype=maintype,
                                   subtype=subtype or "octet-stream",
                                   filename=attachment.filename)
        return message.as_bytes()
    except (ValueError, TypeError) as exc:
        # The exception text may quote a header value; keep only its type.
        raise Permanent(f"letter cannot be composed ({type(exc).__name__})") from None


# What `_transaction` uses of aiosmtplib beyond its documented API: `SMTP.protocol`,
# `SMTPProtocol.write` and `SMTPProtocol.read_response`. Present in the pinned range
# (pyproject.toml); without them the mailer falls back to `SMTP.data`
# (tests/integration/test_email_smtp.py).


def missing_protocol_internals() -> tuple[str, ...]:
    from aiosmtplib.protocol import SMTPProtocol

    missing = []
    if "protocol" not in vars(aiosmtplib.SMTP()):
        missing.append("SMTP.protocol")
    if not callable(getattr(SMTPProtocol, "write", None)):
        missing.append("SMTPProtocol.write")
    if not inspect.iscoroutinefunction(getattr(SMTPProtocol, "read_response", None)):
        missing.append("SMTPProtocol.read_response")
    return tuple(missing)


@functools.cache
def protocol_internals_available() -> bool:
    return not missing_protocol_internals()


def _data_block(payload: bytes) -> bytes:
    """The message as sent after 354: CRLF lines, leading dots doubled, then "."."""
    lines = _LINE_END_RE.split(payload)
    if lines and lines[-1] == b"":
        lines.pop()
    stuffed = [b"." + line if line.startswith(b".") else line for line in lines]
    return b"\r\n".join(stuffed) + b"\r\n.\r\n"


def _checked_recipients(to: Sequence[str]) -> tuple[str, ...]:
    """ASCII mailboxes, Cyrillic domains in IDNA form (`gateway.domain.mailbox`, the rule
    intake applies too): without SMTPUTF8 nothing else can be sent."""
    if not to:
        raise Permanent("letter has no recipient")
    sendable = []
    for address in to:
        try:
            mailbox = smtp_mailbox(address)
        except NotSendable as exc:
            raise Permanent(f"a recipient address cannot be sent to: {exc}") from None
        if _ADDRESS_RE.match(mailbox) is None:
            raise Permanent("a recipient address is not a plain ASCII mailbox")
        sendable.append(mailbox)
    # One RCPT per distinct mailbox; the order is kept for the To header.
    return tuple(dict.fromkeys(sendable))


class SmtpMailer:
    """Sends `OutgoingMail` over a small pool of SMTP sessions.

    Why a pool: requests go to several authorities at once and answers come in bursts
    after a poll; opening TCP+TLS+AUTH per letter costs several round trips and trips
    rate limits on submission servers. At most `pool_size` sessions are open; an idle
    session is reused while younger than `max_idle_s`; a session that failed is closed;
    a reused session the server dropped while idle is replaced transparently (nothing was
    sent on it, so that retry cannot duplicate).
    """

    def __init__(self, settings: SmtpSettings, *, clock: Clock | None = None) -> None:
        if settings.pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        envelope_from = parseaddr(settings.sender)[1]
        if "@" not in envelope_from or not envelope_from.isascii():
            raise ValueError("sender must contain a plain ASCII e-mail address")
        self._settings = settings
        self._envelope_from = envelope_from
        self._domain = settings.message_id_domain or envelope_from.rpartition("@")[2]
        self._clock = clock
        self._slots = asyncio.Semaphore(settings.pool_size)
        self._idle: list[_Connection] = []
        self._closed = False
        self.connections_opened = 0  # for tests and metrics: how often the pool connected

    async def __aenter__(self) -> SmtpMailer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def message_id(self, mail: OutgoingMail) -> str:
        """The Message-ID `send` will use, for storing it to match replies later."""
        if not mail.idempotency_key:
            raise ValueError("only letters with an idempotency key have a stable Message-ID")
        return message_id_for(mail.idempotency_key, self._domain)

    async def send(self, mail: OutgoingMail) -> None:
        """Hand the letter to the SMTP server, or raise Transient / Permanent / Ambiguous."""
        if self._closed:
            raise Transient("mailer is shut down")
        recipients = _checked_recipients(mail.to)
        if mail.idempotency_key:
            message_id = self.message_id(mail)
        else:
            # No key, no idempotency: a retry will be a second letter.
            message_id = make_msgid(domain=self._domain)
        now = self._clock.now() if self._clock is not None else datetime.now(UTC)
        # The To header names the mailboxes as sent (IDNA domains), not as typed.
        payload = compose(replace(mail, to=recipients), sender=self._settings.sender,
                          message_id=message_id, date=now, reply_to=self._settings.reply_to)
        log = _log.bind(message_id=loggable_id(message_id), recipient_count=len(recipients))
        try:
            result, reused = await self._send_pooled(recipients, payload)
        except _Failure as failure:
            outcome = _outcome(failure)
            log.warning("email.send_failed", phase=failure.phase.value, code=failure.code,
                        outcome=type(outcome).__name__.lower())
            raise outcome from None
        log.info("email.sent", accepted=result.accepted, refused=result.refused,
                 reused_connection=reused)

    async def aclose(self) -> None:
        """Say QUIT to idle sessions; sessions in use close when their send ends."""
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            try:
                await connection.client.quit(timeout=2.0)
            except (aiosmtplib.SMTPException, OSError):
                connection.client.close()

    async def _send_pooled(self, recipients: tuple[str, ...],
                           payload: bytes) -> tuple[_Accepted, bool]:
        async with self._slots:
            connection, reused = await self._acquire()
            try:
                try:
                    result = await self._transaction(connection.client, recipients, payload)
                except _Failure as failure:
                    if not (reused and failure.phase is _Phase.MAIL
                            and failure.code in (None, _SERVICE_CLOSING)):
                        raise
                    # The server ended the idle session; nothing was sent on it.
                    _log.info("email.reconnecting", reason="pooled session was closed")
                    connection.client.close()
                    connection, reused = await self._open(), False
                    result = await self._transaction(connection.client, recipients, payload)
            except _Failure:
                self._release(connection)
                raise
            except BaseException:
                # Cancelled or a bug mid-transaction: the session state is unknown.
                connection.client.close()
                raise
            self._release(connection)
            return result, reused

    async def _acquire(self) -> tuple[_Connection, bool]:
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()  # the most recently used one is the likeliest alive
            if (connection.client.is_connected
                    and now - connection.idle_since < self._settings.max_idle_s):
                return connection, True
            connection.client.close()
        return await self._open(), False

    def _release(self, connection: _Connection) -> None:
        if self._closed or not connection.client.is_connected:
            connection.client.close()
            return
        connection.idle_since = time.monotonic()
        self._idle.append(connection)

    async def _open(self) -> _Connection:
        s = self._settings
        client = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            username=s.username,
            password=s.password,
            local_hostname=s.local_hostname,
            timeout=s.command_timeout_s,
            use_tls=s.tls is TlsMode.IMPLICIT,
            start_tls=s.tls is TlsMode.STARTTLS,
            validate_certs=s.validate_certs,
            cert_bundle=s.ca_file,
        )
        try:
            await client.connect(timeout=s.connect_timeout_s)
            if client.is_ehlo_or_helo_needed:
                # Greet now, so a refused greeting counts as set-up, not as a refused letter.
                try:
                    await client.ehlo()
                except aiosmtplib.SMTPHeloError:
                    await client.helo()
        except aiosmtplib.SMTPResponseException as exc:
            client.close()
            raise _Failure(_Phase.CONNECT, exc.code, type(exc).__name__) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            # Refused, unreachable, timed out, TLS failed, AUTH not offered. No recipient
            # has been named yet, so the text is safe and tells the admin what to fix.
            client.close()
            raise _Failure(_Phase.CONNECT, None,
                           f"{type(exc).__name__}: {str(exc)[:160]}") from None
        self.connections_opened += 1
        return _Connection(client)

    async def _transaction(self, client: aiosmtplib.SMTP, recipients: tuple[str, ...],
                           payload: bytes) -> _Accepted:
        """MAIL, RCPT…, DATA, body — tracking the phase so failures can be classified."""
        timeout = self._settings.command_timeout_s
        phase = _Phase.MAIL
        try:
            try:
                await client.mail(self._envelope_from, timeout=timeout)
            except aiosmtplib.SMTPSenderRefused as exc:
                await self._reset_or_close(client)
                raise _Failure(phase, exc.code) from None

            phase = _Phase.RCPT
            accepted = 0
            temporary: int | None = None
            permanent: int | None = None
            refused = 0
            for address in recipients:
                try:
                    await client.rcpt(address, timeout=timeout)
                    accepted += 1
                except aiosmtplib.SMTPRecipientRefused as exc:
                    if exc.code == _SERVICE_CLOSING:
                        raise _Failure(phase, exc.code) from None
                    refused += 1
                    if exc.code < 500:
                        temporary = temporary or exc.code
                    else:
                        permanent = permanent or exc.code
            if temporary is not None or accepted == 0:
                await self._reset_or_close(client)
                raise _Failure(phase, temporary if temporary is not None else permanent)

            if not protocol_internals_available():
                # aiosmtplib's own DATA cannot tell a loss before 354 from one after the
                # final ".", so every loss from here on counts as after the body.
                phase = _Phase.BODY
                reply = await client.data(payload, timeout=self._settings.data_timeout_s)
                if reply.code != _COMPLETED:
                    raise _Failure(phase, reply.code)
                return _Accepted(accepted=accepted, refused=refused)

            phase = _Phase.DATA
            reply = await client.execute_command(b"DATA", timeout=timeout)
            if reply.code != _START_MAIL_INPUT:
                await self._reset_or_close(client)
                raise _Failure(phase, reply.code)

            # From here on the server may accept the message at any moment, so the
            # client's command helpers (which cannot tell 354-time from reply-time
            # failures) are not used; the body goes straight to the session.
            protocol = client.protocol
            if protocol is None:
                raise aiosmtplib.SMTPServerDisconnected("connection lost after 354")
            protocol.write(_data_block(payload))  # raises when the session is gone: not sent
            phase = _Phase.BODY
            reply = await protocol.read_response(timeout=self._settings.data_timeout_s)
            if reply.code != _COMPLETED:
                raise _Failure(phase, reply.code)
            return _Accepted(accepted=accepted, refused=refused)
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError,
                OSError) as exc:
            client.close()
            raise _Failure(phase, None, type(exc).__name__) from None
        except aiosmtplib.SMTPResponseException as exc:
            client.close()
            # aiosmtplib reports an unreadable reply with a code below 200: no verdict.
            raise _Failure(phase, exc.code if exc.code >= 200 else None,
                           type(exc).__name__) from None
        except aiosmtplib.SMTPException as exc:
            # A protocol-level surprise (malformed reply, unsupported command): no verdict.
            client.close()
            raise _Failure(phase, None, type(exc).__name__) from None

    async def _reset_or_close(self, client: aiosmtplib.SMTP) -> None:
        """Abort the transaction so the session can carry the next letter."""
        try:
            await client.rset(timeout=self._settings.command_timeout_s)
        except (aiosmtplib.SMTPException, OSError):
            client.close()


def _outcome(failure: _Failure) -> Transient | Permanent:
    """The one place SMTP failures become outbox outcomes (rules in the module docstring)."""
    where = f"smtp {failure.phase.value}"
    code = failure.code
    if failure.phase is _Phase.CONNECT:
        reply = f" {code}" if code is not None else ""
        return Transient(f"{where}{reply}: session not established ({failure.detail})")
    if code is None:
        if failure.phase is _Phase.BODY:
            return Ambiguous(f"{where}: connection lost after the message was sent "
                             f"({failure.detail}); the retry reuses the Message-ID")
        return Transient(f"{where}: connection lost ({failure.detail})")
    if code >= 500 and code not in _SETUP_CODES:
        return Permanent(f"{where}: refused with {code}")
    return Transient(f"{where}: deferred with {code}")
