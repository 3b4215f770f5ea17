"""The intake rules of the regulations, as the domain states them (no HTTP, no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from gateway.domain.appeal import (
    AnswerChannel,
    Appeal,
    AppealStatus,
    Applicant,
    TransitionNotAllowed,
    Urgency,
    can_transition,
)
from gateway.domain.intake import (
    InvalidPhone,
    anonymity_refusal,
    normalise_phone,
    received_at_refusal,
    registered_late,
    with_normalised_phone,
)
from gateway.domain.mailbox import NotSendable, smtp_mailbox
from gateway.domain.route import Route

NOW = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)


def applicant(**fields: str | None) -> Applicant:
    values: dict[str, str | None] = {
        "last_name": "Пряников",
        "first_name": "Всеволод",
        "middle_name": "Аркадьевич",
        "phone": "+79175551234",
        "email": "v.pryanikov@example.ru",
        "postal_address": "432017, г. Ульяновск, ул. Кролюницкого, д. 17, кв. 42",
    }
    values.update(fields)
    return Applicant(**values)  # type: ignore[arg-type]


# --- anonymous calls [002: 2.8.4] --------------------------------------------------------


def test_a_named_caller_with_a_contact_for_the_answer_is_registered() -> None:
    for channel in AnswerChannel:
        assert anonymity_refusal(applicant(), channel, informational=False) is None


def test_a_call_without_a_last_name_is_refused_as_anonymous() -> None:
    refusal = anonymity_refusal(applicant(last_name=""), AnswerChannel.PHONE, False)

    assert refusal is not None
    assert refusal.code == "anonymous"
    assert set(refusal.fields) == {"applicant.last_name"}
    assert refusal.message


def test_a_call_without_a_first_name_is_refused_as_anonymous() -> None:
    refusal = anonymity_refusal(applicant(first_name="   "), AnswerChannel.PHONE, False)

    assert refusal is not None
    assert refusal.code == "anonymous"
    assert set(refusal.fields) == {"applicant.first_name"}


def test_a_call_with_no_name_at_all_names_both_missing_fields() -> None:
    refusal = anonymity_refusal(
        applicant(last_name="", first_name=""), AnswerChannel.PHONE, False)

    assert refusal is not None
    assert {"applicant.last_name", "applicant.first_name"} <= set(refusal.fields)


def test_the_middle_name_is_not_required() -> None:
    assert anonymity_refusal(applicant(middle_name=None), AnswerChannel.PHONE, False) is None


@pytest.mark.parametrize(
    ("channel", "missing_field"),
    [
        (AnswerChannel.PHONE, "phone"),
        (AnswerChannel.EMAIL, "email"),
        (AnswerChannel.POST, "postal_address"),
    ],
)
def test_a_call_without_a_contact_for_the_chosen_channel_is_refused_as_anonymous(
    channel: AnswerChannel, missing_field: str
) -> None:
    refusal = anonymity_refusal(applicant(**{missing_field: None}), channel, False)

    assert refusal is not None
    assert refusal.code == "anonymous"
    assert set(refusal.fields) == {f"applicant.{missing_field}"}
    assert channel.value in refusal.fields[f"applicant.{missing_field}"]


def test_a_contact_for_another_channel_does_not_count() -> None:
    caller = applicant(email=None, postal_address=None)  # only a phone

    refusal = anonymity_refusal(caller, AnswerChannel.EMAIL, False)

    assert refusal is not None
    assert refusal.code == "anonymous"
    assert "applicant.email" in refusal.fields


def test_a_blank_contact_is_no_contact() -> None:
    refusal = anonymity_refusal(applicant(phone="  "), AnswerChannel.PHONE, False)

    assert refusal is not None
    assert "applicant.phone" in refusal.fields


def test_a_forwarded_call_needs_an_answer_channel() -> None:
    refusal = anonymity_refusal(applicant(), None, informational=False)

    assert refusal is not None
    assert "answer_channel" in refusal.fields


def test_an_informational_call_needs_a_name_but_no_contact() -> None:
    caller = applicant(phone=None, email=None, postal_address=None)

    assert anonymity_refusal(caller, None, informational=True) is None


def test_an_informational_call_without_a_name_is_refused_as_anonymous() -> None:
    refusal = anonymity_refusal(
        applicant(last_name="", phone=None, email=None, postal_address=None), None, True)

    assert refusal is not None
    assert refusal.code == "anonymous"
    assert set(refusal.fields) == {"applicant.last_name"}


# --- phone numbers to E.164 --------------------------------------------------------------


@pytest.mark.parametrize(
    "typed",
    [
        "8 900 123-45-67",
        "+7 (900) 123 45 67",
        "9001234567",
        "89001234567",
        "+79001234567",
        "8-900-123-45-67",
        "7 900 123 45 67",
    ],
)
def test_russian_phone_spellings_are_normalised_to_e164(typed: str) -> None:
    assert normalise_phone(typed) == "+79001234567"


def test_a_landline_with_an_area_code_is_normalised_too() -> None:
    assert normalise_phone("8 (8422) 41-20-30") == "+78422412030"


@pytest.mark.parametrize("typed", ["12345", "не помню", "", "+7 900 123", "8 000 000-00-00"])
def test_an_invalid_phone_is_refused(typed: str) -> None:
    with pytest.raises(InvalidPhone):
        normalise_phone(typed)


def test_the_applicant_keeps_the_normalised_phone() -> None:
    normalised, refusal = with_normalised_phone(applicant(phone="8 900 123-45-67"))

    assert refusal is None
    assert normalised.phone == "+79001234567"


def test_an_invalid_phone_refusal_names_the_phone_field() -> None:
    _, refusal = with_normalised_phone(applicant(phone="12345"))

    assert refusal is not None
    assert refusal.code == "validation"
    assert set(refusal.fields) == {"applicant.phone"}


def test_an_applicant_without_a_phone_is_left_alone() -> None:
    same, refusal = with_normalised_phone(applicant(phone=None))

    assert refusal is None
    assert same.phone is None


# --- when the call arrived [001: 15] -----------------------------------------------------


def test_a_call_received_in_the_future_is_refused() -> None:
    refusal = received_at_refusal(NOW + timedelta(hours=1), NOW)

    assert refusal is not None
    assert set(refusal.fields) == {"received_at"}


def test_a_call_a_little_ahead_of_the_clock_is_accepted_as_clock_drift() -> None:
    assert received_at_refusal(NOW + timedelta(minutes=1), NOW) is None


def test_a_call_received_earlier_is_accepted() -> None:
    assert received_at_refusal(NOW - timedelta(days=3), NOW) is None


def test_a_call_from_more_than_a_year_ago_is_refused_as_a_mistyped_date() -> None:
    refusal = received_at_refusal(NOW - timedelta(days=400), NOW)

    assert refusal is not None
    assert set(refusal.fields) == {"received_at"}


def test_a_time_without_offset_is_refused() -> None:
    refusal = received_at_refusal(NOW.replace(tzinfo=None), NOW)

    assert refusal is not None
    assert "received_at" in refusal.fields


def test_a_call_registered_within_the_hour_is_on_time() -> None:
    assert not registered_late(NOW - timedelta(minutes=59), NOW)
    assert not registered_late(NOW - timedelta(hours=1), NOW)


def test_a_call_registered_more_than_an_hour_after_it_arrived_is_late() -> None:
    assert registered_late(NOW - timedelta(hours=1, seconds=1), NOW)


def test_lateness_is_judged_across_time_zones() -> None:
    moscow = timezone(timedelta(hours=3))
    received = datetime(2026, 11, 23, 9, 15, tzinfo=moscow)  # 06:15 UTC

    assert not registered_late(received, datetime(2026, 11, 23, 7, 0, tzinfo=UTC))
    assert registered_late(received, datetime(2026, 11, 23, 7, 16, tzinfo=UTC))


# --- appeal statuses ---------------------------------------------------------------------


def appeal(status: AppealStatus) -> Appeal:
    return Appeal(
        id="5f0c7c1e-3a57-4a59-9b55-2b1f0e0c9a01",
        hotline="122",
        journal_id="KRS-2026-000123",
        received_at=NOW,
        operator="Иванова А.А.",
        applicant=applicant(),
        problem_address=None,
        topic="Отопление",
        summary="нет отопления",
        repeat=False,
        urgency=Urgency.URGENT,
        answer_channel=AnswerChannel.PHONE,
        informational=False,
        status=status,
        route=Route.none(),
        due_at=None,
    )


@pytest.mark.parametrize(
    ("current", "wanted"),
    [
        (AppealStatus.ACCEPTED, AppealStatus.REGISTERED),
        (AppealStatus.ACCEPTED, AppealStatus.FAILED),
        (AppealStatus.REGISTERED, AppealStatus.IN_PROGRESS),
        (AppealStatus.IN_PROGRESS, AppealStatus.ANSWER_READY),
        (AppealStatus.ANSWER_READY, AppealStatus.DELIVERED),
        (AppealStatus.ANSWER_READY, AppealStatus.ANSWER_SENT),
        (AppealStatus.ANSWER_SENT, AppealStatus.DELIVERED),
        (AppealStatus.REGISTERED, AppealStatus.REJECTED),
        (AppealStatus.FAILED, AppealStatus.ACCEPTED),
    ],
)
def test_allowed_status_changes(current: AppealStatus, wanted: AppealStatus) -> None:
    assert can_transition(current, wanted)


@pytest.mark.parametrize(
    ("current", "wanted"),
    [
        (AppealStatus.DELIVERED, AppealStatus.IN_PROGRESS),
        (AppealStatus.DELIVERED, AppealStatus.ACCEPTED),
        (AppealStatus.REJECTED, AppealStatus.REGISTERED),
        (AppealStatus.JOURNALED, AppealStatus.ACCEPTED),
        (AppealStatus.JOURNALED, AppealStatus.REGISTERED),
        (AppealStatus.ANSWER_SENT, AppealStatus.IN_PROGRESS),
        (AppealStatus.ACCEPTED, AppealStatus.JOURNALED),
        (AppealStatus.REGISTERED, AppealStatus.ACCEPTED),
    ],
)
def test_refused_status_changes(current: AppealStatus, wanted: AppealStatus) -> None:
    assert not can_transition(current, wanted)

    refused = TransitionNotAllowed(current, wanted)
    assert current.value in str(refused)
    assert wanted.value in str(refused)


def test_an_informational_call_stays_journaled() -> None:
    for wanted in AppealStatus:
        if wanted is not AppealStatus.JOURNALED:
            assert not can_transition(AppealStatus.JOURNALED, wanted)


def test_every_status_has_its_transitions_declared() -> None:
    for status in AppealStatus:
        can_transition(status, AppealStatus.DELIVERED)  # no KeyError


@pytest.mark.parametrize(("typed", "sent"), [
    ("petrov@mail.ru", "petrov@mail.ru"),
    ("Petrov@Mail.RU", "Petrov@mail.ru"),
    ("petrov@почта.рф", "petrov@xn--80a1acny.xn--p1ai"),
])
def test_sendable_addresses_go_out_with_an_idna_domain(typed: str, sent: str) -> None:
    assert smtp_mailbox(typed) == sent


@pytest.mark.parametrize("typed", ["тест@пример.рф", "петров@mail.ru", "no-at-sign", "a@-bad-.рф"])
def test_addresses_plain_smtp_cannot_reach_are_not_sendable(typed: str) -> None:
    with pytest.raises(NotSendable):
        smtp_mailbox(typed)
