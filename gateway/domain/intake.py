"""What makes a call registrable, from the regulations, before anything is stored.

Field-level shape (types, lengths) is checked by the API's wire models; this module holds
the rules of the domain, so they read the same whatever door a call comes through (the
HTTP intake or an imported journal file).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import phonenumbers

from gateway.domain.appeal import AnswerChannel, Applicant
from gateway.errors import GatewayError

# [001: 15] a call must be in the tracking system within 1 hour of its arrival.
REGISTRATION_WINDOW = timedelta(hours=1)
# Operators' clocks drift; a call "from the future" beyond this is a typing error.
CLOCK_SKEW_ALLOWANCE = timedelta(minutes=5)
# A call journaled more than a year after it arrived is a mistyped date, not a late entry.
MAX_CALL_AGE = timedelta(days=366)
DEFAULT_PHONE_REGION = "RU"


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
    applicant: Applicant, answer_channel: AnswerChannel | None, informational: bool
) -> Refusal | None:
    """[002: 2.8.4] calls with no full name, or no contact for the answer, are not registered.

    An informational call is answered on the spot, so it needs no contact for an answer
    unless the operator chose a channel; it still needs the caller's name for the journal.
    """
    fields: dict[str, str] = {}
    if not applicant.last_name.strip():
        fields["applicant.last_name"] = "required: anonymous calls are not registered"
    if not applicant.first_name.strip():
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
        if not (value and value.strip()):
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


def registered_late(received_at: datetime, now: datetime) -> bool:
    """[001: 15] more than an hour between the call and its registration: worth an audit entry."""
    return now - received_at > REGISTRATION_WINDOW
