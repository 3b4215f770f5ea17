"""Letters the gateway writes: requests to responsible persons and answers to applicants.

Why a module of its own: the wording of a letter is configuration (Russian templates in
`config/templates/`), while the rules of *what* goes into which letter are code and must
be testable without an SMTP server. This module turns an `Appeal` into `OutgoingMail`
values; `mailer.py` only transports them.

Templates are `string.Template` files, three per letter: `<name>.subject.txt`,
`<name>.txt` (plain text) and `<name>.html`. Every placeholder is checked when the
templates are loaded, so a typo fails at start-up, not in the middle of the night on the
first letter that needs it. Values are HTML-escaped for the HTML part; templates
themselves are trusted configuration.
"""

from __future__ import annotations

import hashlib
import html
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from adapters.errors import AdapterError
from gateway.domain.appeal import Appeal, Urgency
from gateway.domain.ports import OutgoingMail
from gateway.domain.route import EmailTarget

REFERENCE_PREFIX = "ГЛ"
# 12 hex digits of the appeal id (48 bits): short enough to read out on the phone, long
# enough that two open appeals practically never share one (1e5 open appeals → ~2e-5).
_REFERENCE_HEX = 12
_REFERENCE_RE = re.compile(rf"\[{REFERENCE_PREFIX}-([0-9A-Fa-f]{{8}}-?[0-9A-Fa-f]{{4}})\]")

# The placeholders each letter may use; anything else in a template is a start-up error.
_COMMON_FIELDS = frozenset(
    {"reference", "hotline", "journal_id", "received_at", "received_date", "topic",
     "summary", "problem_address", "hotline_name"}
)
LETTER_FIELDS: Mapping[str, frozenset[str]] = {
    "request": _COMMON_FIELDS | {
        "authority", "authorities", "due_at", "urgency", "repeat",
        "applicant_name", "applicant_phone", "applicant_email",
    },
    "answer": _COMMON_FIELDS | {"applicant_greeting_name", "answer_text"},
    "reminder": _COMMON_FIELDS | {"authority", "authorities", "due_at", "sent_at"},
}

_URGENCY_LABELS: Mapping[Urgency, str] = {
    Urgency.URGENT: "Срочно",  # [002: 2.8.7]
    Urgency.CONTROL: "Контроль",
}
_NOT_GIVEN = "не указан"


class TemplateError(AdapterError, ValueError):
    """A letter template is missing or uses a placeholder the letter does not provide."""


@dataclass(frozen=True, slots=True)
class Letter:
    """One rendered letter: what the recipient reads, before addressing."""

    subject: str
    text: str
    html: str


@dataclass(frozen=True, slots=True)
class _LetterTemplate:
    subject: string.Template
    text: string.Template
    html: string.Template


def default_templates_dir() -> Traversable:
    """`config/templates/`, found through the `config` package so it works when installed."""
    return resources.files("config").joinpath("templates")


def _moscow() -> tzinfo:
    """Moscow time unless the host lacks tz data; the fixed offset is the same since 2014."""
    try:
        return ZoneInfo("Europe/Moscow")
    except ZoneInfoNotFoundError:
        return timezone(timedelta(hours=3), "MSK")


class LetterTemplates:
    """The loaded and checked templates plus the few facts every letter shares.

    `tz` is the time zone the letters state times in — the hotline's region (Иркутск is
    UTC+8), not the server's; `hotline_name` signs the letters.
    """

    def __init__(
        self,
        directory: Traversable | None = None,
        *,
        tz: tzinfo | None = None,
        hotline_name: str = "Единый контакт-центр",
    ) -> None:
        self.directory = directory if directory is not None else default_templates_dir()
        self.tz = tz if tz is not None else _moscow()
        self.hotline_name = hotline_name
        self._templates = {name: self._load(name, fields) for name, fields in
                           LETTER_FIELDS.items()}

    def _load(self, name: str, fields: frozenset[str]) -> _LetterTemplate:
        parts: dict[str, string.Template] = {}
        for part, file_name in (("subject", f"{name}.subject.txt"), ("text", f"{name}.txt"),
                                ("html", f"{name}.html")):
            source = self.directory.joinpath(file_name)
            try:
                template = string.Template(source.read_text(encoding="utf-8"))
            except FileNotFoundError as exc:
                raise TemplateError(f"template {file_name} not found") from exc
            if not template.is_valid():
                raise TemplateError(f"template {file_name}: malformed placeholder")
            unknown = set(template.get_identifiers()) - fields
            if unknown:
                raise TemplateError(
                    f"template {file_name}: unknown placeholders {sorted(unknown)}; "
                    f"allowed: {sorted(fields)}"
                )
            parts[part] = template
        return _LetterTemplate(parts["subject"], parts["text"], parts["html"])

    def render(self, name: str, values: Mapping[str, str]) -> Letter:
        """Fill the templates of letter `name`; HTML gets escaped values, line breaks kept."""
        template = self._templates[name]
        # A header cannot hold line breaks; a summary pasted into a subject could.
        subject = " ".join(template.subject.substitute(values).split())
        text = template.text.substitute(values)
        html_values = {key: _html_value(value) for key, value in values.items()}
        return Letter(subject=subject, text=text, html=template.html.substitute(html_values))

    def local_time(self, moment: datetime) -> str:
        """`24.11.2026 16:00 (UTC+03:00)`: the offset is stated because regions differ."""
        if moment.tzinfo is None:
            raise ValueError("letters need aware datetimes; got a naive one")
        local = moment.astimezone(self.tz)
        offset = local.strftime("%z")
        return f"{local:%d.%m.%Y %H:%M} (UTC{offset[:3]}:{offset[3:]})"


    def local_date(self, moment: datetime) -> str:
        """`23.11.2026`, the day in the hotline's region."""
        if moment.tzinfo is None:
            raise ValueError("letters need aware datetimes; got a naive one")
        return f"{moment.astimezone(self.tz):%d.%m.%Y}"


def _html_value(value: str) -> str:
    return html.escape(value).replace("\r\n", "\n").replace("\n", "<br>\n")


def appeal_reference(appeal_id: str) -> str:
    """The reference put in subjects, e.g. `ГЛ-3F2A9C1E-4B7D`, from the appeal id.

    A reply that keeps the subject («Re: [ГЛ-…]») can be matched to the appeal even when
    the responder writes a new letter instead of replying (no In-Reply-To header).
    """
    hex_digits = appeal_id.replace("-", "").lower()
    if len(hex_digits) < _REFERENCE_HEX or any(c not in "0123456789abcdef" for c in
                                               hex_digits[:_REFERENCE_HEX]):
        raise ValueError("appeal ids are expected to be UUIDs")
    short = hex_digits[:_REFERENCE_HEX].upper()
    return f"{REFERENCE_PREFIX}-{short[:8]}-{short[8:]}"


def find_reference(subject: str) -> str | None:
    """The appeal-id prefix (`3f2a9c1e-4b7d`) a subject refers to, or None.

    Look the appeal up with `id LIKE '<prefix>%'`: the prefix is the start of the UUID.
    """
    match = _REFERENCE_RE.search(subject)
    if match is None:
        return None
    raw = match.group(1).replace("-", "").lower()
    return f"{raw[:8]}-{raw[8:]}"


def _common_values(appeal: Appeal, templates: LetterTemplates) -> dict[str, str]:
    return {
        "reference": appeal_reference(appeal.id),
        "hotline": appeal.hotline,
        "hotline_name": templates.hotline_name,
        "journal_id": appeal.journal_id,
        "received_at": templates.local_time(appeal.received_at),
        "received_date": templates.local_date(appeal.received_at),
        "topic": appeal.topic,
        "summary": appeal.summary,
        "problem_address": appeal.problem_address or _NOT_GIVEN,
    }


@cache
def _default_templates() -> LetterTemplates:
    """Loaded once, on first use, for callers that do not wire their own."""
    return LetterTemplates()


def _templates_or_default(templates: LetterTemplates | None) -> LetterTemplates:
    return templates if templates is not None else _default_templates()


def request_letters(
    appeal: Appeal,
    targets: tuple[EmailTarget, ...],
    due_at: datetime,
    *,
    templates: LetterTemplates | None = None,
) -> list[OutgoingMail]:
    """One request per competent authority, all at once [004: 10.1].

    Each authority gets its own letter (its own Message-ID), so one authority's refusing
    mail server does not hold back the others, and a retry resends only that one. The
    letter carries the applicant's contact on purpose: the responsible person may need to
    reach the applicant. `due_at` (1 working day, the 16:00 rule [004: 10.2]) is computed
    by the deadline code and only stated here.
    """
    if not targets:
        raise ValueError("no authority to send the request to")
    letters = _templates_or_default(templates)
    applicant = appeal.applicant
    values = _common_values(appeal, letters) | {
        "due_at": letters.local_time(due_at),
        "urgency": _URGENCY_LABELS[appeal.urgency],
        "repeat": "повторное" if appeal.repeat else "первичное",
        "authorities": ", ".join(t.authority for t in targets),
        "applicant_name": applicant.full_name,
        "applicant_phone": applicant.phone or _NOT_GIVEN,
        "applicant_email": applicant.email or _NOT_GIVEN,
    }
    mails: list[OutgoingMail] = []
    for target in targets:
        if not target.recipients:
            raise ValueError(f"authority {target.authority!r} has no responsible person")
        letter = letters.render("request", values | {"authority": target.authority})
        mails.append(OutgoingMail(
            to=target.recipients,
            subject=letter.subject,
            text=letter.text,
            html=letter.html,
            idempotency_key=f"{appeal.id}:request:{target.authority}",
            headers={"X-Gateway-Appeal": appeal.id},
        ))
    return mails


def answer_letter(
    appeal: Appeal,
    answer_text: str,
    *,
    templates: LetterTemplates | None = None,
) -> OutgoingMail:
    """The answer to an applicant who chose e-mail [004: 11].

    The idempotency key includes a digest of the answer, so a retried send of the same
    answer is the same letter, while a later, different answer (an interim answer with a
    new date, then the final one [002: 2.8.10]) is a new letter and is not deduplicated.
    Whitespace is normalised first so re-reading the answer from ПОС cannot split one
    answer into two letters.
    """
    applicant = appeal.applicant
    if not applicant.email:
        raise ValueError("the applicant gave no e-mail address")
    letters = _templates_or_default(templates)
    given = " ".join(p for p in (applicant.first_name, applicant.middle_name) if p)
    values = _common_values(appeal, letters) | {
        "applicant_greeting_name": given or applicant.full_name,
        "answer_text": answer_text.strip(),
    }
    letter = letters.render("answer", values)
    digest = hashlib.sha256(" ".join(answer_text.split()).encode("utf-8")).hexdigest()[:16]
    return OutgoingMail(
        to=(applicant.email,),
        subject=letter.subject,
        text=letter.text,
        html=letter.html,
        idempotency_key=f"{appeal.id}:answer:{digest}",
        headers={"X-Gateway-Appeal": appeal.id},
    )


class TemplateLetters:
    """The gateway's LetterComposer port over these templates: one letter at a time."""

    def __init__(self, templates: LetterTemplates | None = None) -> None:
        self._templates = templates if templates is not None else LetterTemplates()

    def request(self, appeal: Appeal, authority: str, recipients: tuple[str, ...],
                due_at: datetime | None) -> OutgoingMail:
        # Without a computed answer time the letter still states the appeal's own deadline.
        when = due_at or appeal.due_at or appeal.received_at
        # [004: 10.1] every letter names all the authorities the call went to.
        targets = _co_addressed(appeal, authority, recipients)
        key = f"{appeal.id}:request:{authority}"
        return next(mail for mail in request_letters(appeal, targets, when,
                                                     templates=self._templates)
                    if mail.idempotency_key == key)

    def reminder(self, appeal: Appeal, authority: str, recipients: tuple[str, ...],
                 due_at: datetime, sent_at: datetime) -> OutgoingMail:
        """[004: 10.2] the answer is late: a reminder to the same responsible persons, one
        per term (an extension's new term, once late, is reminded of again)."""
        templates = self._templates
        targets = _co_addressed(appeal, authority, recipients)
        letter = templates.render("reminder", _common_values(appeal, templates) | {
            "authority": authority,
            "authorities": ", ".join(t.authority for t in targets),
            "due_at": templates.local_time(due_at),
            "sent_at": templates.local_time(sent_at),
        })
        return OutgoingMail(
            to=recipients, subject=letter.subject, text=letter.text, html=letter.html,
            idempotency_key=f"{appeal.id}:reminder:{authority}:{due_at.isoformat()}",
            headers={"X-Gateway-Appeal": appeal.id},
        )

    def answer(self, appeal: Appeal, answer_text: str) -> OutgoingMail:
        return answer_letter(appeal, answer_text, templates=self._templates)


def _co_addressed(appeal: Appeal, authority: str,
                  recipients: tuple[str, ...]) -> tuple[EmailTarget, ...]:
    """The appeal's authorities, this one with the recipients it is sent to."""
    targets = tuple(EmailTarget(authority, recipients) if t.authority == authority else t
                    for t in appeal.route.email)
    if not any(t.authority == authority for t in targets):
        targets = (*targets, EmailTarget(authority, recipients))
    return targets
