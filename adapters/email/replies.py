"""Reading an official's reply letter: the raw RFC 5322 bytes to an `IncomingMail`.

Why a module of its own: regional mail arrives in every shape — KOI8-R and Windows-1251
bodies, mislabelled charsets, HTML only, the whole request quoted below the answer,
malformed MIME — and none of that may stop the mailbox reader. So this never raises:
whatever cannot be read becomes an `IncomingMail` with a `problem`, which the service
leaves for an operator. Only the reply's own text is kept; the quoted request (our own
letter, with the applicant's personal data) is cut off.

Attachments: the document formats the regulation names (002 4.5: .doc, .docx, .pdf) are
kept up to a size cap; anything else is counted, not stored.
"""

from __future__ import annotations

import email
import email.header
import email.policy
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime
from html.parser import HTMLParser

from adapters.email.letters import find_reference
from gateway.domain.ports import IncomingMail, MailAttachment

# [002: 4.5] the document formats an answer comes in.
DEFAULT_ATTACHMENT_TYPES = frozenset({".doc", ".docx", ".pdf"})
DEFAULT_MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
MAX_TEXT_CHARS = 100_000  # an answer longer than this is cut (and said so)

_MESSAGE_ID_RE = re.compile(r"<[^<>\s]{1,250}>")
# Where the quoted original begins, in the clients officials use (Outlook, Thunderbird,
# mail.ru, Yandex), in Russian and English.
_QUOTE_STARTS = [
    re.compile(r"^-{2,}\s*(Original Message|Исходное сообщение|Пересылаемое сообщение|"
               r"Forwarded message)\s*-{2,}", re.IGNORECASE),
    re.compile(r"^(On|Le|Am)\s.+\s(wrote|écrit|schrieb)\s*:\s*$", re.IGNORECASE),
    re.compile(r"^.{0,120}(писал|написал|пишет|wrote)\s*\(?а?\)?\s*:\s*$", re.IGNORECASE),
    re.compile(r"^(От|From)\s*:\s*\S.*$", re.IGNORECASE),
    re.compile(r"^_{10,}\s*$"),
]
_FALLBACK_CHARSETS = ("utf-8", "windows-1251", "koi8-r")


class _HtmlText(HTMLParser):
    """HTML to plain text: block elements become line breaks, quotes and scripts vanish."""

    _BLOCKS = frozenset({"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "table"})
    _SKIPPED = frozenset({"script", "style", "head", "title", "blockquote"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = " ".join(v or "" for k, v in attrs if k == "class")
        if tag in self._SKIPPED or "gmail_quote" in classes or "moz-cite-prefix" in classes:
            self._skipping += 1
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIPPED or (self._skipping and tag == "div"):
            self._skipping = max(0, self._skipping - 1)
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    parser = _HtmlText()
    try:
        parser.feed(markup)
        parser.close()
    except (AssertionError, ValueError):  # malformed markup: keep what was read
        pass
    text = "".join(parser.parts).replace("\xa0", " ")
    return "\n".join(line.strip() for line in text.splitlines())


def own_text(text: str) -> str:
    """The reply without the quoted request: '>' lines and everything after the first
    line that starts a quotation are dropped; blank runs collapsed."""
    kept: list[str] = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        stripped = line.strip()
        if any(pattern.match(stripped) for pattern in _QUOTE_STARTS):
            break
        if stripped.startswith(">"):
            continue
        kept.append(line.rstrip())
    result = re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()
    if len(result) > MAX_TEXT_CHARS:
        result = result[:MAX_TEXT_CHARS] + "\n[…]"
    return result


def decode_part(part: Message) -> str:
    """The part's text in its declared charset, or, when that is unknown or wrong, in the
    first of UTF-8, Windows-1251, KOI8-R that fits (Windows-1251 fits any bytes)."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    declared = part.get_content_charset()
    for charset in ((declared,) if declared else ()) + _FALLBACK_CHARSETS:
        try:
            return payload.decode(charset)
        except (LookupError, UnicodeDecodeError):
            continue
    return payload.decode("utf-8", errors="replace")


def _header(message: Message, name: str) -> str:
    """The header decoded (RFC 2047 words, and raw 8-bit bytes some clients send)."""
    try:
        value = message.get(name)
    except (ValueError, TypeError, IndexError, AttributeError):
        return ""
    return _decoded_header(value) if value is not None else ""


def _ids(value: str) -> list[str]:
    return _MESSAGE_ID_RE.findall(value)


def _sender(message: Message) -> str:
    found = getaddresses([_header(message, "From")])
    return found[0][1].strip().lower() if found and found[0][1] else ""


def _received_at(message: Message) -> datetime | None:
    try:
        moment = parsedate_to_datetime(_header(message, "Date"))
    except (ValueError, TypeError, IndexError):
        return None
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _parts(message: Message) -> Iterator[Message]:
    for part in message.walk():
        if not part.is_multipart():
            yield part


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except (ValueError, TypeError, IndexError, AttributeError):
        return None
    return str(name).strip() if name else None


def read_reply(uid: int, raw: bytes, *, allowed_types: frozenset[str] = DEFAULT_ATTACHMENT_TYPES,
               max_attachment_bytes: int = DEFAULT_MAX_ATTACHMENT_BYTES) -> IncomingMail:
    """Never raises: a message that cannot be read carries its `problem`."""
    try:
        message = email.message_from_bytes(raw, policy=email.policy.compat32)
    except Exception:  # noqa: BLE001 - any parser failure is the message's, not ours
        return IncomingMail(uid, None, (), "", "", "", None, problem="malformed")
    message_id = next(iter(_ids(_header(message, "Message-ID"))), None)
    thread = _ids(_header(message, "In-Reply-To")) + list(
        reversed(_ids(_header(message, "References"))))
    subject = _header(message, "Subject")
    base = IncomingMail(uid, message_id, tuple(dict.fromkeys(thread)), _sender(message),
                        subject, "", _received_at(message),
                        reference=find_reference(subject))
    try:
        plain: str | None = None
        html: str | None = None
        attachments: list[MailAttachment] = []
        skipped = 0
        for part in _parts(message):
            name = _filename(part)
            disposition = (part.get("Content-Disposition") or "").split(";")[0].strip().lower()
            if name or disposition == "attachment":
                data = part.get_payload(decode=True)
                suffix = ("." + name.rsplit(".", 1)[-1].lower()) if name and "." in name else ""
                if (isinstance(data, bytes) and name and suffix in allowed_types
                        and len(data) <= max_attachment_bytes):
                    attachments.append(MailAttachment(
                        _decoded_header(name), part.get_content_type(), data))
                else:
                    skipped += 1
                continue
            content_type = part.get_content_type()
            if content_type == "text/plain" and plain is None:
                plain = decode_part(part)
            elif content_type == "text/html" and html is None:
                html = decode_part(part)
        text = plain if plain is not None and plain.strip() else html_to_text(html or "")
        return replace(base, text=own_text(text), attachments=tuple(attachments),
                        skipped_attachments=skipped)
    except Exception:  # noqa: BLE001 - a broken body is the message's problem
        return replace(base, problem="malformed")


def _decoded_header(value: str | email.header.Header) -> str:
    """RFC 2047 words decoded, with the same charset fallbacks as bodies; raw 8-bit bytes
    (sent by some clients against the RFC) are decoded first, then the words in them."""
    text = value if isinstance(value, str) else _joined(value)
    return _joined(text).strip()


def _joined(value: str | email.header.Header) -> str:
    try:
        pieces = email.header.decode_header(value)
    except (ValueError, LookupError, UnicodeError, TypeError):
        return str(value)
    out: list[str] = []
    for chunk, charset in pieces:
        if isinstance(chunk, str):
            out.append(chunk)
            continue
        # Unencoded text beside encoded words comes back as raw-unicode-escape bytes.
        first = (charset,) if charset else ("raw-unicode-escape",)
        for candidate in first + _FALLBACK_CHARSETS:
            try:
                out.append(chunk.decode(candidate))
                break
            except (LookupError, UnicodeDecodeError):
                continue
    return "".join(out)


def headers_only(uid: int, raw_headers: bytes, problem: str) -> IncomingMail:
    """A message not fetched whole (too large): what its headers say, and why."""
    mail = read_reply(uid, raw_headers)
    return replace(mail, text="", attachments=(), problem=problem)
