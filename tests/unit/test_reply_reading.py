"""Reading an official's reply letter: whatever arrives, the reader gets the reply's own
text or a stated problem, never an exception."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from adapters.email.replies import html_to_text, own_text, read_reply

ANSWER = "Отлов собак запланирован на 25.11.2026."


def letter(body: str, *, charset: str = "utf-8", subtype: str = "plain",
           subject: str = "RE: [ГЛ-3F2A9C1E-4B7D] Запрос") -> bytes:
    message = EmailMessage()
    message["From"] = "Ветслужба <Hotline@Vet.Example.ru>"
    message["Subject"] = subject
    message["Message-ID"] = "<reply-1@vet.example.ru>"
    message["In-Reply-To"] = "<gw.request@gateway.test>"
    message["References"] = "<gw.first@gateway.test> <gw.request@gateway.test>"
    message["Date"] = "Tue, 24 Nov 2026 12:00:00 +0300"
    message.set_content(body, subtype=subtype, charset=charset)
    return message.as_bytes()


@pytest.mark.parametrize("charset", ["koi8-r", "windows-1251", "utf-8"])
def test_regional_charsets_are_read(charset: str) -> None:
    mail = read_reply(7, letter(ANSWER, charset=charset))

    assert mail.text == ANSWER
    assert (mail.uid, mail.problem, mail.sender) == (7, None, "hotline@vet.example.ru")
    assert mail.message_id == "<reply-1@vet.example.ru>"
    assert mail.in_reply_to == ("<gw.request@gateway.test>", "<gw.first@gateway.test>")
    assert mail.reference == "3f2a9c1e-4b7d"
    assert mail.received_at is not None


def test_a_body_in_the_wrong_declared_charset_is_still_read() -> None:
    raw = (b"From: a@b.ru\r\nContent-Type: text/plain; charset=utf-8\r\n"
           b"Content-Transfer-Encoding: 8bit\r\n\r\n" + "Ответ".encode("windows-1251"))
    assert read_reply(1, raw).text == "Ответ"


def test_the_quoted_request_is_cut_off() -> None:
    body = (f"{ANSWER}\n\nС уважением, Петров\n\n-----Original Message-----\nFrom: hotline\n"
            "> Заявитель: Пряников\n")
    assert own_text(body) == f"{ANSWER}\n\nС уважением, Петров"
    assert own_text(f"{ANSWER}\n\n24.11.2026, 10:00, hotline@gw.ru пишет:\n> текст") == ANSWER
    assert own_text(f"> цитата\n{ANSWER}") == ANSWER


def test_html_only_replies_become_text_without_the_quote() -> None:
    markup = (f"<html><head><style>p{{}}</style></head><body><p>{ANSWER}</p>"
              "<p>Начальник&nbsp;отдела</p><blockquote>Заявитель: Пряников</blockquote>"
              "</body></html>")
    mail = read_reply(1, letter(markup, subtype="html"))

    assert mail.text == f"{ANSWER}\n\nНачальник отдела"
    assert "Пряников" not in html_to_text(markup)


def test_a_reply_without_text_has_empty_text() -> None:
    assert read_reply(1, letter("> only the quote\n")).text == ""


def test_documents_are_kept_and_other_attachments_counted() -> None:
    message = EmailMessage()
    message["From"] = "a@b.ru"
    message.set_content(ANSWER)
    message.add_attachment(b"%PDF", maintype="application", subtype="pdf", filename="Ответ.PDF")
    message.add_attachment(b"MZ", maintype="application", subtype="octet-stream",
                           filename="run.exe")
    message.add_attachment(b"x" * 100, maintype="application", subtype="msword",
                           filename="big.doc")

    mail = read_reply(1, message.as_bytes(), max_attachment_bytes=50)

    assert [(a.filename, a.data) for a in mail.attachments] == [("Ответ.PDF", b"%PDF")]
    assert mail.skipped_attachments == 2


@pytest.mark.parametrize("raw", [
    b"",
    b"\x00\xff\xfe garbage",
    b"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain; "
    b"charset=x-unknown\r\n\r\n\xd0\xee\r\n--b",
    b"Subject: =?koi8-r?Q?=broken\r\nFrom: <<<>>>\r\nDate: yesterday\r\n\r\nbody",
])
def test_malformed_messages_never_raise(raw: bytes) -> None:
    mail = read_reply(3, raw)
    assert mail.uid == 3
