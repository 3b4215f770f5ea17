"""The intake rules of the regulations, as the domain states them (no HTTP, no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from gateway.domain.appeal import (
    AnswerChannel,
    AppealStatus,
    Applicant,
    TransitionNotAllowed,
    Urgency,
    can_transition,
)
from gateway.domain.intake import (
    InvalidPhone,
    NewCall,
    anonymity_refusal,
    content_hash,
    later_time_refusal,
    normalise_phone,
    normalised,
    received_at_refusal,
    registered_late,
    with_normalised_phone,
    without_invisible,
)
from gateway.domain.mailbox import NotSendable, smtp_mailbox

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


def test_an_informational_call_needs_no_contact() -> None:
    caller = applicant(phone=None, email=None, postal_address=None)

    assert anonymity_refusal(caller, None, informational=True) is None


def test_every_call_taken_is_journaled_so_an_informational_call_needs_no_name() -> None:
    """[001: 15] «все звонки, принятые сотрудниками, фиксируются»; only registration needs
    a name [002: 2.8.4]."""
    nameless = applicant(last_name="", first_name="", phone=None, email=None,
                         postal_address=None)

    assert anonymity_refusal(nameless, None, True) is None


def test_an_unproductive_call_journaled_only_needs_no_name() -> None:
    """[001: appendix 2] the topic «Нерезультативный звонок»: journaled, nobody to answer."""
    nameless = applicant(last_name="", first_name="", phone=None, email=None,
                         postal_address=None)

    assert anonymity_refusal(nameless, AnswerChannel.PHONE, False, journal_only=True) is None


def test_a_call_to_register_without_a_name_is_still_anonymous() -> None:
    """[002: 2.8.4] «Анонимные обращения … не регистрируются»."""
    refusal = anonymity_refusal(applicant(last_name=""), AnswerChannel.PHONE, False)

    assert refusal is not None and refusal.code == "anonymous"
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


# --- invisible characters and blanks (the contract: "A blank string is absent") ---------


@pytest.mark.parametrize("name", ["\u200b", "\ufeff", "\u200c\u200d", "\u2060 \u00ad", " ", ""])
def test_a_name_of_invisible_characters_is_no_name(name: str) -> None:
    refusal = anonymity_refusal(applicant(last_name=name), AnswerChannel.PHONE, False)

    assert refusal is not None
    assert refusal.code == "anonymous"
    assert set(refusal.fields) == {"applicant.last_name"}


def test_a_contact_of_invisible_characters_is_no_contact() -> None:
    refusal = anonymity_refusal(applicant(email="\u200b\ufeff"), AnswerChannel.EMAIL, False)

    assert refusal is not None
    assert set(refusal.fields) == {"applicant.email"}


def test_invisible_characters_are_taken_out_and_visible_ones_kept() -> None:
    assert without_invisible("\ufeffПря\u200bников\u200d") == "Пряников"
    assert without_invisible("Иванова А.А. — 122") == "Иванова А.А. — 122"
    assert without_invisible("plain ascii") == "plain ascii"


# --- repeats: the same call, spelt another way ---------------------------------------------

MOSCOW = timezone(timedelta(hours=3))


def new_call(**fields: object) -> NewCall:
    values: dict[str, object] = {
        "journal_id": "KRS-2026-000123",
        "hotline": "122",
        "received_at": datetime(2026, 11, 23, 9, 15, tzinfo=MOSCOW),
        "operator": "Иванова А.А.",
        "applicant": applicant(phone="8 917 555-12-34"),
        "problem_address": "г. Ульяновск, ул. Гончарова, 38",
        "topic": "Отопление",
        "summary": "В квартире нет отопления третий день",
        "urgency": Urgency.URGENT,
        "answer_channel": AnswerChannel.PHONE,
    }
    values.update(fields)
    return NewCall(**values)  # type: ignore[arg-type]


def fingerprint(call: NewCall, topic: str | None = "Отопление") -> str:
    return content_hash(normalised(call, topic)[0])


@pytest.mark.parametrize("again", [
    new_call(applicant=applicant(phone="+79175551234")),
    new_call(applicant=applicant(phone="8 917 555-12-34",
                                 email="V.Pryanikov@EXAMPLE.ru")),
    new_call(received_at=datetime(2026, 11, 23, 6, 15, tzinfo=UTC)),
    new_call(received_at=datetime(2026, 11, 23, 8, 15, tzinfo=timezone(timedelta(hours=2)))),
    new_call(answer_channel=None),  # not said: by phone, as the first time said it
], ids=["phone", "email case", "UTC", "another offset", "default channel"])
def test_a_repeat_spelt_differently_has_the_same_content_hash(again: NewCall) -> None:
    assert fingerprint(again) == fingerprint(new_call())


def test_a_topic_in_another_case_hashes_alike_once_the_dictionary_spells_it() -> None:
    assert fingerprint(new_call(topic="отопление")) == fingerprint(new_call())


@pytest.mark.parametrize("other", [
    new_call(summary="Течёт крыша"),
    new_call(received_at=datetime(2026, 11, 23, 9, 16, tzinfo=MOSCOW)),
    new_call(answer_channel=AnswerChannel.EMAIL),
    new_call(applicant=applicant(phone="+79175551235")),
    new_call(urgency=Urgency.CONTROL),
], ids=["summary", "minute", "channel", "phone", "urgency"])
def test_a_different_call_has_another_content_hash(other: NewCall) -> None:
    assert fingerprint(other) != fingerprint(new_call())


def test_the_content_hash_of_a_time_at_the_edge_of_the_calendar_does_not_overflow() -> None:
    edge = new_call(received_at=datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))))

    assert len(fingerprint(edge)) == 64


def test_normalising_keeps_an_invalid_phone_as_typed_with_its_refusal() -> None:
    call, refusal = normalised(new_call(applicant=applicant(phone="12-34")))

    assert call.applicant.phone == "12-34"
    assert refusal is not None and "applicant.phone" in refusal.fields


def test_normalising_gives_the_stored_spelling() -> None:
    call, refusal = normalised(
        new_call(applicant=applicant(email="A@B.RU"), answer_channel=None, topic="отопление"),
        "Отопление")

    assert refusal is None
    assert call.applicant.phone == "+79175551234"
    assert call.applicant.email == "a@b.ru"
    assert call.answer_channel is AnswerChannel.PHONE
    assert call.topic == "Отопление"


def test_an_informational_call_keeps_no_answer_channel() -> None:
    assert new_call(answer_channel=None, informational=True).effective_answer_channel() is None


# --- times reported after the call: callback tries, deliveries -----------------------------

RECEIVED = NOW - timedelta(hours=2)


def test_a_time_between_the_call_and_now_is_accepted() -> None:
    assert later_time_refusal("at", NOW - timedelta(hours=1), RECEIVED, NOW) is None
    assert later_time_refusal("at", RECEIVED, RECEIVED, NOW) is None


def test_a_time_a_little_ahead_of_the_clock_is_accepted_as_clock_drift() -> None:
    assert later_time_refusal("delivered_at", NOW + timedelta(minutes=4), RECEIVED, NOW) is None


@pytest.mark.parametrize("at", [
    NOW + timedelta(minutes=6), datetime(2100, 1, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-14))),
])
def test_a_time_in_the_future_is_refused_by_field(at: datetime) -> None:
    refusal = later_time_refusal("delivered_at", at, RECEIVED, NOW)

    assert refusal is not None
    assert set(refusal.fields) == {"delivered_at"}


@pytest.mark.parametrize("at", [
    RECEIVED - timedelta(seconds=1), datetime(1990, 1, 1, tzinfo=UTC),
    datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))),
])
def test_a_time_before_the_call_is_refused_by_field(at: datetime) -> None:
    refusal = later_time_refusal("at", at, RECEIVED, NOW)

    assert refusal is not None
    assert set(refusal.fields) == {"at"}


def test_a_reported_time_without_offset_is_refused() -> None:
    refusal = later_time_refusal("at", NOW.replace(tzinfo=None), RECEIVED, NOW)

    assert refusal is not None and "at" in refusal.fields


# --- appeal statuses ---------------------------------------------------------------------


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
