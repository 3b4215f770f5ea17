"""A local SMTP server that keeps every letter in a Maildir: the demo's and the tests' inbox.

Why: `gateway demo` and the integration tests must show real SMTP traffic — the letters
the gateway would send to authorities and applicants — without a real mail server. The
sink is aiosmtpd in the caller's event loop, storing each message with the stdlib
`mailbox.Maildir`, so anyone can read the result with a mail client or `mailbox`.

It behaves like a mail store that deduplicates by Message-ID: a message whose Message-ID
was already stored is acknowledged (250) and dropped. That is the consumer side of the
mailer's idempotency — a resend after an ambiguous failure carries the same Message-ID.

For tests it can also misbehave on purpose, once each time it is armed (`drop_once`):
hang up while recipients are named, after the whole message arrived but before storing
it, or after storing it but before the 250 reply; and refuse chosen recipients with 550.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import mailbox
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from enum import StrEnum
from pathlib import Path
from ssl import SSLContext
from typing import Any

import structlog
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from adapters.email.mailer import loggable_id

_log: Any = structlog.get_logger("adapters.email.sink")
_HEADER_PARSER = BytesHeaderParser()
_REFUSED_REPLY = "550 5.1.1 Mailbox unavailable"
_SINK_HOSTNAME = "gateway-sink"  # avoids a reverse-DNS lookup for the greeting


class DropPoint(StrEnum):
    """Where the sink hangs up when armed, and what the client can know afterwards."""

    AT_RCPT = "at_rcpt"  # before DATA: nothing accepted, the client knows it
    BEFORE_ACCEPT = "before_accept"  # body received, not stored, no reply: ambiguous
    AFTER_ACCEPT = "after_accept"  # stored, no reply: ambiguous, the resend is a duplicate


def _message_id(raw: bytes) -> str | None:
    value = _HEADER_PARSER.parsebytes(raw).get("Message-ID")
    return str(value).strip() if value else None


class MaildirHandler:
    """The aiosmtpd handler: store, deduplicate, and misbehave when told to."""

    def __init__(
        self,
        maildir_path: str | Path,
        *,
        refuse_recipients: Iterable[str] = (),
        drop_once: DropPoint | None = None,
    ) -> None:
        # mailbox.Maildir(create=True) skips an existing directory, even an empty one.
        for sub in ("tmp", "new", "cur"):
            (Path(maildir_path) / sub).mkdir(parents=True, exist_ok=True)
        self.maildir = mailbox.Maildir(str(maildir_path), create=False)
        self.refuse_recipients = {r.lower() for r in refuse_recipients}
        self.drop_once = drop_once  # fires once, then resets to None
        self.stored = 0
        self.duplicates = 0
        self.dropped = 0
        # Seeded from the Maildir so a restarted demo sink still deduplicates.
        self._seen: set[str] = set()
        for key in self.maildir.iterkeys():
            with self.maildir.get_file(key) as handle:
                known = _message_id(handle.read())
            if known:
                self._seen.add(known)

    def _drop(self, server: SMTP, point: DropPoint) -> bool:
        if self.drop_once is not point:
            return False
        self.drop_once = None
        self.dropped += 1
        transport = server.transport
        if isinstance(transport, asyncio.Transport):
            transport.abort()  # no reply, no FIN handshake: a cut line
        elif transport is not None:
            transport.close()
        return True

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str,
        rcpt_options: list[str],
    ) -> str:
        if self._drop(server, DropPoint.AT_RCPT):
            await asyncio.Event().wait()  # the connection is gone; aiosmtpd cancels us
        if address.lower() in self.refuse_recipients:
            return _REFUSED_REPLY
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(
        self, server: SMTP, session: Session, envelope: Envelope,
    ) -> str:
        if self._drop(server, DropPoint.BEFORE_ACCEPT):
            await asyncio.Event().wait()
        raw = envelope.original_content or b""
        known = _message_id(raw)
        if known is not None and known in self._seen:
            self.duplicates += 1
            _log.info("sink.duplicate_dropped", message_id=loggable_id(known))
        else:
            if known is not None:
                self._seen.add(known)
            trace = (
                f"Return-Path: <{envelope.mail_from or ''}>\r\n"
                f"X-Sink-Rcpt-To: {', '.join(envelope.rcpt_tos)}\r\n"
            ).encode("ascii", "replace")
            try:
                # Maildir files use the local line ends; the message arrives with CRLF.
                await asyncio.to_thread(self.maildir.add, (trace + raw).replace(b"\r\n", b"\n"))
            except BaseException:
                if known is not None:
                    self._seen.discard(known)
                raise
            self.stored += 1
            _log.info("sink.stored", message_id=loggable_id(known or ""),
                      recipient_count=len(envelope.rcpt_tos))
        if self._drop(server, DropPoint.AFTER_ACCEPT):
            await asyncio.Event().wait()
        return "250 OK: queued"


@dataclass(slots=True)
class RunningSink:
    """A started sink: where it listens and what it has seen."""

    host: str
    port: int
    handler: MaildirHandler
    _server: asyncio.Server
    _sessions: weakref.WeakSet[SMTP] = field(default_factory=weakref.WeakSet)
    connections: int = 0  # SMTP sessions accepted so far

    def disconnect_all(self) -> None:
        """Drop every open session, as a server does to idle clients."""
        for session in list(self._sessions):
            if session.transport is not None:
                session.transport.close()

    async def close(self) -> None:
        self.disconnect_all()
        self._server.close()
        await self._server.wait_closed()


async def start_sink(
    host: str,
    port: int,
    maildir_path: str | Path,
    *,
    handler: MaildirHandler | None = None,
    starttls_context: SSLContext | None = None,
    implicit_tls_context: SSLContext | None = None,
    credentials: Mapping[str, str] | None = None,
) -> RunningSink:
    """Listen in the running loop; `port=0` picks a free port (see `RunningSink.port`).

    `starttls_context` offers STARTTLS (and then requires it); `credentials` (user →
    password) requires AUTH — over plain text only when no TLS is configured, which is
    acceptable on loopback and nowhere else.
    """
    loop = asyncio.get_running_loop()
    handler = handler or MaildirHandler(maildir_path)
    tls_offered = starttls_context is not None or implicit_tls_context is not None

    def authenticate(server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                     auth_data: Any) -> AuthResult:
        if credentials is None or not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", "replace")
        expected = credentials.get(login)
        ok = expected is not None and hmac.compare_digest(
            expected.encode("utf-8"), auth_data.password)
        return AuthResult(success=ok, handled=False)

    def make_session() -> SMTP:
        session = SMTP(
            handler,
            hostname=_SINK_HOSTNAME,
            tls_context=starttls_context,
            require_starttls=starttls_context is not None,
            authenticator=authenticate if credentials is not None else None,
            auth_required=credentials is not None,
            auth_require_tls=tls_offered,
            loop=loop,
        )
        running.connections += 1
        running._sessions.add(session)
        return session

    server = await loop.create_server(make_session, host, port, ssl=implicit_tls_context)
    bound_port = int(server.sockets[0].getsockname()[1])
    running = RunningSink(host=host, port=bound_port, handler=handler, _server=server)
    _log.info("sink.listening", host=host, port=bound_port)
    return running


async def run_sink(host: str, port: int, maildir_path: str | Path) -> None:
    """Serve until cancelled: the form `gateway demo` runs next to the daemon."""
    running = await start_sink(host, port, maildir_path)
    try:
        await asyncio.Event().wait()
    finally:
        await running.close()


def main(argv: list[str] | None = None) -> None:
    """`python -m adapters.email.sink --port 2525 --maildir ./demo-mail`."""
    parser = argparse.ArgumentParser(description="Local SMTP sink writing a Maildir")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--maildir", default="./demo-maildir")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_sink(args.host, args.port, args.maildir))


if __name__ == "__main__":
    main()
