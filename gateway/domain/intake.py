"""What makes a call registrable, from the regulations, before anything is stored.

Field-level shape (types, lengths) is checked by the API's wire models; this module holds
the rules of the domain, so they read the same whatever door a call comes through (the
HTTP intake or an imported journal file). A door hands over a `NewCall`; its normalised
form is what is stored, and what tells a repeat from a different call.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import phonenumbers

from gateway.domain.appeal import AnswerChannel, Applicant, JournalEntry, Urgency
from gateway.domain.mailbox import NotSendable, smtp_mailbox
from gateway.errors import GatewayError

# [001: 15] a call must be in the tracking system within 1 hour of its arrival.
REGISTRATION_WINDOW = timedelta(hours=1)
# Operators' clocks drift; a call "from the future" beyond this is a typing error.
CLOCK_SKEW_ALLOWANCE = timedelta(minutes=5)
# A call journaled more than a year after it arrived is a mistyped date, not a late entry.
MAX_CALL_AGE = timedelta(days=366)
DEFAULT_PHONE_REGION = "RU"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class NewCall:
    """A call as the operator reported it: the command to register it, whatever the door."""

    journal_id: str
    hotline: str
    received_at: datetime
    operator: str
    applicant: Applicant
    problem_address: str | None
    topic: str
    summary: str
    repeat: bool = False
    urgency: Urgency = Urgency.CONTROL
    answer_channel: AnswerChannel | None = None  # None: not said
    informational: bool = False
    journal: JournalEntry = field(default_factory=JournalEntry)  # [001: appendix 2]

    def effective_answer_channel(self) -> AnswerChannel | None:
        """A hotline call: unless the operator says otherwise, the answer comes back by phone;
        an informational call is answered on the spot and needs no channel."""
        if self.answer_channel is not None or self.informational:
            return self.answer_channel
        return AnswerChannel.PHONE


def without_invisible(text: str) -> str:
    """The text without format characters (Unicode Cf: zero-width space and joiners, BOM,
    direction marks): they show as nothing, so a name made of them is no name."""
    if text.isascii():
        return text
    return "".join(c for c in text if unicodedata.category(c) != "Cf")


def _present(value: str | None) -> bool:
    """A blank string, or one of invisible characters only, is absent."""
    return value is not None and bool(without_invisible(value).strip())


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a call cannot be taken as it is: `code` for machines, `message` for the operator."""

    code: str
    message: str
    fields: dict[str, str]


class InvalidPhone(GatewayError, ValueError):
    pass


def normalise_phone(raw: str, region: str = DEFAULT_PHONE_REGION) -> str:
    """E.164 (+79001234567) from what an operator typed (8 900 123-45-67, +7 (900) ...)."""
    try:
        parsed = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone("not a phone number") from exc
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidPhone("not a valid phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def with_normalised_phone(applicant: Applicant) -> tuple[Applicant, Refusal | None]:
    if applicant.phone is None:
        return applicant, None
    try:
        phone = normalise_phone(applicant.phone)
    except InvalidPhone as exc:
        return applicant, Refusal(
            "validation",
            "Телефон заявителя указан неверно / the applicant's phone number is not valid",
            {"applicant.phone": str(exc)},
        )
    return replace(applicant, phone=phone), None


def anonymity_refusal(
    applicant: Applicant, answer_channel: AnswerChannel | None, informational: bool,
    journal_only: bool = False,
) -> Refusal | None:
    """[002: 2.8.4] calls with no full name, or no contact for the answer, are not registered.

    Every call taken is journaled [001: 15]: an informational call, or one journaled only
    (an unproductive call, «Нерезультативный звонок»), may have no name; it needs a contact
    only for a channel the operator chose. Only registration needs a name.
    """
    if informational or journal_only:
        if answer_channel is None or not informational:
            return None
        contact = {AnswerChannel.PHONE: ("applicant.phone", applicant.phone),
                   AnswerChannel.EMAIL: ("applicant.email", applicant.email),
                   AnswerChannel.POST: ("applicant.postal_address", applicant.postal_address)}
        name, value = contact[answer_channel]
        if _present(value):
            return None
        return Refusal("anonymous", "Нет контакта для выбранного канала ответа "
                       "/ no contact for the chosen answer channel",
                       {name: f"required: the answer goes by {answer_channel.value}"})
    fields: dict[str, str] = {}
    if not _present(applicant.last_name):
        fields["applicant.last_name"] = "required: anonymous calls are not registered"
    if not _present(applicant.first_name):
        fields["applicant.first_name"] = "required: anonymous calls are not registered"
    if answer_channel is None and not informational:
        fields["answer_channel"] = "required: how should the answer reach the applicant?"
    contact_field = {
        AnswerChannel.PHONE: ("applicant.phone", applicant.phone),
        AnswerChannel.EMAIL: ("applicant.email", applicant.email),
        AnswerChannel.POST: ("applicant.postal_address", applicant.postal_address),
    }
    if answer_channel is not None:
        name, value = contact_field[answer_channel]
        if not _present(value):
            fields[name] = f"required: the answer goes by {answer_channel.value}"
    if not fields:
        return None
    return Refusal(
        "anonymous",
        "Анонимное обращение не регистрируется: нужны ФИО и контакт для ответа "
        "/ anonymous call: a full name and a contact for the answer are required",
        fields,
    )


def received_at_refusal(received_at: datetime, now: datetime) -> Refusal | None:
    if received_at.tzinfo is None:
        return Refusal(
            "validation",
            "Время звонка без часового пояса / received_at needs a UTC offset",
            {"received_at": "give the time with an offset, e.g. 2026-11-23T09:15:00+03:00"},
        )
    if received_at - now > CLOCK_SKEW_ALLOWANCE:
        return Refusal(
            "validation",
            "Время звонка в будущем / received_at is in the future",
            {"received_at": "the call cannot have arrived later than now"},
        )
    if now - received_at > MAX_CALL_AGE:
        return Refusal(
            "validation",
            "Время звонка больше года назад: проверьте дату "
            "/ received_at is more than a year ago: check the date",
            {"received_at": "more than a year ago"},
        )
    return None


def later_time_refusal(
    field: str, at: datetime, received_at: datetime, now: datetime
) -> Refusal | None:
    """A time reported about a call already taken (a callback try, the answer's delivery)
    lies between the call and now; anything else is a typing error, and a delivery dated
    2100 would be passed on to ПОС as it is."""
    if at.tzinfo is None:
        return Refusal("validation", f"Время без часового пояса / {field} needs a UTC offset",
                       {field: "give the time with an offset, e.g. 2026-11-23T09:15:00+03:00"})
    if at - now > CLOCK_SKEW_ALLOWANCE:
        return Refusal("validation", f"Время в будущем / {field} is in the future",
                       {field: "cannot be later than now"})
    if at < received_at:
        return Refusal("validation", f"Время раньше звонка / {field} is before the call",
                       {field: "cannot be earlier than the call was received"})
    return None


def email_refusal(applicant: Applicant) -> Refusal | None:
    """An e-mail the gateway could never send to is refused now, not found out when the
    answer letter dies (`gateway.domain.mailbox`: the same rule as the mailer's)."""
    if applicant.email is None:
        return None
    try:
        smtp_mailbox(applicant.email)
    except NotSendable as exc:
        return Refusal("validation",
                       "На этот адрес e-mail нельзя отправить ответ / the answer cannot be "
                       "sent to this e-mail address", {"applicant.email": str(exc)})
    return None


def registered_late(received_at: datetime, now: datetime) -> bool:
    """[001: 15] more than an hour between the call and its registration: worth an audit entry."""
    return now - received_at > REGISTRATION_WINDOW


def normalised(call: NewCall, topic: str | None = None) -> tuple[NewCall, Refusal | None]:
    """The call as it is stored: phone in E.164, e-mail in lower case, the effective answer
    channel, and `topic` (the dictionary's own spelling) when known. A phone that is not
    valid is kept as typed, with the refusal that says so."""
    applicant, refusal = with_normalised_phone(call.applicant)
    if applicant.email is not None:
        applicant = replace(applicant, email=applicant.email.lower())
    return replace(call, applicant=applicant, answer_channel=call.effective_answer_channel(),
                   topic=topic or call.topic), refusal


def content_hash(call: NewCall) -> str:
    """What tells a repeat from a different call under the same journal id or key: taken
    over the normalised call, so `8 917 ...` and `+7917...`, or the same moment written in
    another UTC offset, are the same call."""
    applicant = call.applicant
    content = [
        call.journal_id, call.hotline, _instant(call.received_at), call.operator,
        [applicant.last_name, applicant.first_name, applicant.middle_name, applicant.phone,
         applicant.email, applicant.postal_address],
        call.problem_address, call.topic, call.summary, call.repeat, call.urgency.value,
        call.answer_channel.value if call.answer_channel else None, call.informational,
    ]
    journal = call.journal
    if journal != JournalEntry():
        # Only when given: the hashes of calls taken before these fields existed stay valid.
        content.append([
            journal.consultation_outcome.value if journal.consultation_outcome else None,
            journal.review_result.value if journal.review_result else None, journal.comment])
    canonical = json.dumps(content, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def _instant(moment: datetime) -> str:
    """Microseconds since the epoch: one spelling per instant, and no overflow at year 1."""
    if moment.tzinfo is None:
        return moment.isoformat()
    return str((moment - _EPOCH) // timedelta(microseconds=1))
