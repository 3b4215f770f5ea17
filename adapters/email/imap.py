"""The contact centre's mailbox over IMAP: the `Mailbox` port the reply reader polls.

Client: the standard library's `imaplib`, run in a worker thread (`asyncio.to_thread`).
Why not an async client: the maintained one, aioimaplib, is GPL-3.0 licensed, which this
project does not take in; a poll once a minute fetching a few letters gains nothing from
being async, and `imaplib` is maintained with Python itself, speaks IMAPS (`IMAP4_SSL`)
and STARTTLS, and needs no dependency. Each poll opens one session, reads, and logs out,
so a server restart or a dropped connection costs one failed poll, never a stuck reader.

What it promises: messages are read with BODY.PEEK (the \\Seen flag stays as it was), the
folder is selected read-only, and nothing is deleted unless `delete_processed` is set
(then only after the gateway committed what it took from them). A message larger than
`max_message_bytes` is not downloaded: its headers are, and it is handed on as
`too_large` for an operator.

Personal data: no address, subject or text is logged — only UIDs, counts and the phase.
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import re
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import structlog

from adapters.email.replies import (
    DEFAULT_ATTACHMENT_TYPES,
    DEFAULT_MAX_ATTACHMENT_BYTES,
    headers_only,
    read_reply,
)
from adapters.errors import AdapterError
from gateway.domain.ports import IncomingMail, MailBatch

_log: Any = structlog.get_logger("adapters.email.imap")

_UIDVALIDITY_RE = re.compile(rb"UIDVALIDITY (\d+)")
_SIZE_RE = re.compile(rb"UID (\d+) RFC822\.SIZE (\d+)|RFC822\.SIZE (\d+) UID (\d+)")


class ImapSecurity(StrEnum):
    NONE = "none"  # only for a server on the same host or a test
    STARTTLS = "starttls"  # upgrade after connecting (port 143); required, not optional
    TLS = "tls"  # IMAPS, TLS from the first byte (port 993)


@dataclass(frozen=True, slots=True)
class ImapSettings:
    host: str
    port: int
    username: str
    password: str
    security: ImapSecurity = ImapSecurity.TLS
    folder: str = "INBOX"
    timeout_s: float = 30.0
    validate_certs: bool = True
    ca_file: str | None = None
    delete_processed: bool = False
    max_message_bytes: int = 25 * 1024 * 1024
    max_attachment_bytes: int = DEFAULT_MAX_ATTACHMENT_BYTES
    attachment_types: frozenset[str] = DEFAULT_ATTACHMENT_TYPES


class MailboxError(AdapterError):
    """The mailbox could not be read this time; the reason names the phase, not data."""


class ImapMailbox:
    """`Mailbox` on one IMAP folder."""

    def __init__(self, settings: ImapSettings) -> None:
        self._settings = settings
        self.name = settings.folder

    async def fetch_after(self, uidvalidity: int | None, last_uid: int,
                          limit: int) -> MailBatch:
        return await asyncio.to_thread(self._fetch_after, uidvalidity, last_uid, limit)

    async def settle(self, uids: Sequence[int]) -> None:
        if self._settings.delete_processed and uids:
            await asyncio.to_thread(self._delete, list(uids))

    async def aclose(self) -> None:
        """Nothing stays open between polls."""

    # -- in the worker thread ---------------------------------------------------------------

    def _connect(self) -> imaplib.IMAP4:
        s = self._settings
        context = ssl.create_default_context(cafile=s.ca_file)
        if not s.validate_certs:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        phase = "connect"
        try:
            client: imaplib.IMAP4
            if s.security is ImapSecurity.TLS:
                client = imaplib.IMAP4_SSL(s.host, s.port, ssl_context=context,
                                           timeout=s.timeout_s)
            else:
                client = imaplib.IMAP4(s.host, s.port, timeout=s.timeout_s)
                if s.security is ImapSecurity.STARTTLS:
                    phase = "starttls"
                    client.starttls(ssl_context=context)
            phase = "login"
            client.login(s.username, s.password)
            return client
        except (imaplib.IMAP4.error, OSError, ssl.SSLError) as exc:
            raise MailboxError(f"imap {phase} failed: {type(exc).__name__}") from None

    def _select(self, client: imaplib.IMAP4, *, readonly: bool) -> int:
        status, _ = client.select(_quoted(self._settings.folder), readonly=readonly)
        if status != "OK":
            raise MailboxError("imap select failed")
        _, data = client.response("UIDVALIDITY")
        raw = data[0] if data else None
        if isinstance(raw, bytes) and raw.isdigit():
            return int(raw)
        status, data = client.status(_quoted(self._settings.folder), "(UIDVALIDITY)")
        found = _UIDVALIDITY_RE.search(data[0] if data and isinstance(data[0], bytes) else b"")
        if status != "OK" or found is None:
            raise MailboxError("imap server gave no UIDVALIDITY")
        return int(found.group(1))

    def _fetch_after(self, uidvalidity: int | None, last_uid: int, limit: int) -> MailBatch:
        client = self._connect()
        try:
            current = self._select(client, readonly=True)
            after = last_uid if current == uidvalidity else 0
            status, data = client.uid("SEARCH", f"UID {after + 1}:*")
            if status != "OK":
                raise MailboxError("imap search failed")
            # "n:*" names the last message even when its UID is below n (RFC 3501 6.4.8).
            uids = sorted(int(u) for u in (data[0] or b"").split() if int(u) > after)[:limit]
            messages = [self._fetch_one(client, uid) for uid in uids]
            _log.info("imap.fetched", count=len(messages), uidvalidity_changed=(
                uidvalidity is not None and current != uidvalidity))
            return MailBatch(current, messages)
        except (imaplib.IMAP4.error, OSError) as exc:
            raise MailboxError(f"imap fetch failed: {type(exc).__name__}") from None
        finally:
            _logout(client)

    def _fetch_one(self, client: imaplib.IMAP4, uid: int) -> IncomingMail:
        s = self._settings
        status, data = client.uid("FETCH", str(uid), "(RFC822.SIZE)")
        size = _size(data) if status == "OK" else None
        if size is not None and size > s.max_message_bytes:
            status, data = client.uid("FETCH", str(uid), "(BODY.PEEK[HEADER])")
            return headers_only(uid, _literal(data), "too_large")
        status, data = client.uid("FETCH", str(uid), "(BODY.PEEK[])")
        raw = _literal(data) if status == "OK" else b""
        if not raw:
            return headers_only(uid, b"", "malformed")
        return read_reply(uid, raw, allowed_types=s.attachment_types,
                          max_attachment_bytes=s.max_attachment_bytes)

    def _delete(self, uids: list[int]) -> None:
        client = self._connect()
        try:
            self._select(client, readonly=False)
            client.uid("STORE", ",".join(map(str, uids)), "+FLAGS", "(\\Deleted)")
            client.expunge()
            _log.info("imap.deleted", count=len(uids))
        except (imaplib.IMAP4.error, OSError) as exc:
            raise MailboxError(f"imap delete failed: {type(exc).__name__}") from None
        finally:
            _logout(client)


def _quoted(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _size(data: list[Any]) -> int | None:
    for item in data:
        line = item[0] if isinstance(item, tuple) else item
        if isinstance(line, bytes):
            found = _SIZE_RE.search(line)
            if found:
                return int(found.group(2) or found.group(3))
    return None


def _literal(data: list[Any]) -> bytes:
    """The message bytes of a FETCH response: the literal of its first tuple."""
    for item in data:
        if isinstance(item, tuple) and len(item) > 1 and isinstance(item[1], bytes):
            return item[1]
    return b""


def _logout(client: imaplib.IMAP4) -> None:
    with contextlib.suppress(imaplib.IMAP4.error, OSError):
        client.logout()
