"""Deadlines of an appeal, computed in working days in the hotline's time zone."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.deadlines import DeadlinesConfigError, load_deadline_policies
from gateway.calendar import HolidaysWorkCalendar
from gateway.domain.appeal import Urgency
from gateway.domain.deadlines import (
    DEFAULT_DAY_ENDS_AT,
    CalendarDays,
    CallbackRule,
    DeadlinePolicies,
    DeadlinePolicy,
    Minutes,
    RequestRule,
    UnknownDeadlinePolicy,
    WorkingDays,
    WorkingDaysWithCutoff,
    compute_deadlines,
    next_callback_attempt,
    request_answer_deadline,
    term_end,
)

MOSCOW = ZoneInfo("Europe/Moscow")
YEKATERINBURG = ZoneInfo("Asia/Yekaterinburg")
KALININGRAD = ZoneInfo("Europe/Kaliningrad")
VLADIVOSTOK = ZoneInfo("Asia/Vladivostok")

CALENDAR = HolidaysWorkCalendar()
POLICIES = load_deadline_policies()
DEFAULT = POLICIES.named("default")
EMAIL = POLICIES.named("email")
CALLBACK = POLICIES.callback


def msk(year: int, month: int, day: int, hour: int = 10, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=MOSCOW)


def end_of(day: date, tz: ZoneInfo = MOSCOW) -> datetime:
    return datetime.combine(day, DEFAULT_DAY_ENDS_AT, tzinfo=tz)


# The answer's control term [002: 2.8.7]


def test_urgent_call_is_due_in_five_working_days() -> None:
    # Mon 2025-03-03; Saturday 2025-03-08 is a holiday, its day off moved to June 13.
    deadlines = compute_deadlines(msk(2025, 3, 3), Urgency.URGENT, DEFAULT, CALENDAR, MOSCOW)
    assert deadlines.due_at == end_of(date(2025, 3, 10))


def test_control_call_is_due_in_ten_calendar_days() -> None:
    deadlines = compute_deadlines(msk(2025, 3, 3), Urgency.CONTROL, DEFAULT, CALENDAR, MOSCOW)
    assert deadlines.due_at == end_of(date(2025, 3, 13))


def test_control_term_ending_on_a_day_off_ends_on_the_next_working_day() -> None:
    # 2025-12-25 + 10 days = Sunday 2026-01-04, inside the New Year days off.
    deadlines = compute_deadlines(msk(2025, 12, 25), Urgency.CONTROL, DEFAULT, CALENDAR, MOSCOW)
    assert deadlines.due_at == end_of(date(2026, 1, 12))


def test_control_term_can_be_kept_literal_without_rolling_to_a_working_day() -> None:
    literal = CalendarDays(10, roll_to_working_day=False)
    assert term_end(literal, msk(2025, 12, 25), CALENDAR, MOSCOW) == end_of(date(2026, 1, 4))


def test_urgent_call_before_new_year_skips_the_new_year_days_off() -> None:
    deadlines = compute_deadlines(msk(2025, 12, 29), Urgency.URGENT, DEFAULT, CALENDAR, MOSCOW)
    assert deadlines.due_at == end_of(date(2026, 1, 15))


def test_urgent_call_before_may_skips_the_may_holidays() -> None:
    # Apr 30, May 4, 5, 6, 7 (May 1-3 off in 2026).
    deadlines = compute_deadlines(msk(2026, 4, 29), Urgency.URGENT, DEFAULT, CALENDAR, MOSCOW)
    assert deadlines.due_at == end_of(date(2026, 5, 7))


def test_a_call_on_a_day_off_starts_counting_on_the_next_working_day() -> None:
    saturday = msk(2025, 3, 15, 11)
    deadlines = compute_deadlines(saturday, Urgency.URGENT, DEFAULT, CALENDAR, MOSCOW)
    assert deadlines.due_at == end_of(date(2025, 3, 21))


# Feedback to the citizen [001: 21]


def test_feedback_is_due_in_three_working_days_from_the_call() -> None:
    deadlines = compute_deadlines(msk(2025, 12, 30), Urgency.URGENT, DEFAULT, CALENDAR, MOSCOW)
    assert deadlines.feedback_due_at == end_of(date(2026, 1, 14))


def test_feedback_after_the_may_holidays_skips_victory_day_observed() -> None:
    # Thu 2026-05-07 -> Fri May 8, (Sat 9, Sun 10, Mon 11 off), Tue 12, Wed 13.
    deadlines = compute_deadlines(msk(2026, 5, 7), Urgency.CONTROL, DEFAULT, CALENDAR, MOSCOW)
    assert deadlines.feedback_due_at == end_of(date(2026, 5, 13))


def test_a_day_count_deadline_ends_when_the_policy_says_the_working_day_ends() -> None:
    policy = DeadlinePolicy(name="short-day", day_ends_at=time(17, 0))
    deadlines = compute_deadlines(msk(2025, 3, 3), Urgency.URGENT, policy, CALENDAR, MOSCOW)
    assert deadlines.due_at == datetime(2025, 3, 10, 17, 0, tzinfo=MOSCOW)


def test_the_default_policy_has_no_information_request() -> None:
    deadlines = compute_deadlines(msk(2025, 3, 3), Urgency.URGENT, DEFAULT, CALENDAR, MOSCOW)
    assert deadlines.request_due_at is None
    assert deadlines.policy == "default"


# Information requests [002: 2.8.9; 004: 10.1-10.3]


def test_an_email_request_is_due_within_fifteen_minutes_of_the_call() -> None:
    deadlines = compute_deadlines(msk(2025, 3, 3), Urgency.URGENT, EMAIL, CALENDAR, MOSCOW)
    assert deadlines.request_due_at == msk(2025, 3, 3, 10, 15)


def test_an_email_request_counts_minutes_across_midnight_and_days_off() -> None:
    deadlines = compute_deadlines(
        msk(2025, 12, 31, 23, 50), Urgency.URGENT, EMAIL, CALENDAR, MOSCOW
    )
    assert deadlines.request_due_at == msk(2026, 1, 1, 0, 5)


def test_a_delo_request_is_due_within_one_working_day() -> None:
    delo = POLICIES.named("delo")
    deadlines = compute_deadlines(msk(2025, 3, 7), Urgency.URGENT, delo, CALENDAR, MOSCOW)
    assert deadlines.request_due_at == end_of(date(2025, 3, 10))


def test_a_request_before_the_cutoff_is_answered_the_same_working_day() -> None:
    answer = request_answer_deadline(msk(2025, 3, 3, 10), EMAIL, CALENDAR, MOSCOW)
    assert answer.due_at == end_of(date(2025, 3, 3))


def test_a_request_at_exactly_sixteen_is_not_after_the_cutoff() -> None:
    answer = request_answer_deadline(msk(2025, 3, 3, 16, 0), EMAIL, CALENDAR, MOSCOW)
    assert answer.due_at == end_of(date(2025, 3, 3))


def test_a_request_after_sixteen_is_due_by_sixteen_of_the_next_working_day() -> None:
    answer = request_answer_deadline(msk(2025, 3, 3, 16, 1), EMAIL, CALENDAR, MOSCOW)
    assert answer.due_at == msk(2025, 3, 4, 16, 0)


def test_a_request_after_sixteen_on_friday_is_due_by_sixteen_on_monday() -> None:
    answer = request_answer_deadline(msk(2025, 3, 7, 17, 30), EMAIL, CALENDAR, MOSCOW)
    assert answer.due_at == msk(2025, 3, 10, 16, 0)


def test_a_request_after_sixteen_before_new_year_is_due_after_the_holidays() -> None:
    answer = request_answer_deadline(msk(2025, 12, 30, 17), EMAIL, CALENDAR, MOSCOW)
    assert answer.due_at == msk(2026, 1, 12, 16, 0)


def test_a_request_on_a_day_off_is_due_at_the_end_of_the_next_working_day() -> None:
    answer = request_answer_deadline(msk(2026, 5, 9, 12), EMAIL, CALENDAR, MOSCOW)
    assert answer.due_at == end_of(date(2026, 5, 12))


def test_no_answer_may_come_later_than_five_working_days_after_the_request() -> None:
    answer = request_answer_deadline(msk(2025, 3, 3, 10), EMAIL, CALENDAR, MOSCOW)
    assert answer.latest_at == end_of(date(2025, 3, 7))


def test_a_policy_without_requests_has_no_request_answer_deadline() -> None:
    with pytest.raises(ValueError, match="no information request"):
        request_answer_deadline(msk(2025, 3, 3), DEFAULT, CALENDAR, MOSCOW)


# Missed calls [001: 13]


def test_a_missed_call_is_returned_by_noon_of_the_next_working_day() -> None:
    attempt = next_callback_attempt(msk(2025, 3, 5, 10), [], CALLBACK, CALENDAR, MOSCOW)
    assert attempt is not None
    assert attempt.number == 1
    assert attempt.not_before == msk(2025, 3, 5, 10)
    assert attempt.not_after == msk(2025, 3, 6, 12)


def test_a_call_missed_on_friday_evening_is_returned_by_monday_noon() -> None:
    attempt = next_callback_attempt(msk(2025, 3, 7, 19), [], CALLBACK, CALENDAR, MOSCOW)
    assert attempt is not None
    assert attempt.not_after == msk(2025, 3, 10, 12)


def test_a_call_missed_before_new_year_is_returned_after_the_holidays() -> None:
    attempt = next_callback_attempt(msk(2025, 12, 30, 15), [], CALLBACK, CALENDAR, MOSCOW)
    assert attempt is not None
    assert attempt.not_after == msk(2026, 1, 12, 12)


def test_an_unanswered_callback_is_tried_again_thirty_to_sixty_minutes_later() -> None:
    missed = msk(2025, 3, 5, 10)
    attempt = next_callback_attempt(missed, [msk(2025, 3, 6, 9)], CALLBACK, CALENDAR, MOSCOW)
    assert attempt is not None
    assert attempt.number == 2
    assert (attempt.not_before, attempt.not_after) == (msk(2025, 3, 6, 9, 30), msk(2025, 3, 6, 10))


def test_the_third_try_follows_the_second() -> None:
    missed = msk(2025, 3, 5, 10)
    tries = [msk(2025, 3, 6, 9), msk(2025, 3, 6, 9, 45)]
    attempt = next_callback_attempt(missed, tries, CALLBACK, CALENDAR, MOSCOW)
    assert attempt is not None
    assert attempt.number == 3
    assert attempt.not_before == msk(2025, 3, 6, 10, 15)
    assert attempt.not_after == msk(2025, 3, 6, 10, 45)


def test_after_two_more_tries_the_callbacks_stop() -> None:
    missed = msk(2025, 3, 5, 10)
    tries = [msk(2025, 3, 6, 9), msk(2025, 3, 6, 9, 45), msk(2025, 3, 6, 10, 30)]
    assert next_callback_attempt(missed, tries, CALLBACK, CALENDAR, MOSCOW) is None


def test_callback_attempts_out_of_order_are_refused() -> None:
    missed = msk(2025, 3, 5, 10)
    tries = [msk(2025, 3, 6, 10), msk(2025, 3, 6, 9)]
    with pytest.raises(ValueError, match="in order"):
        next_callback_attempt(missed, tries, CALLBACK, CALENDAR, MOSCOW)


# Time zones: the day and the clock are the hotline's


def test_a_call_at_2330_moscow_is_already_the_next_day_in_yekaterinburg() -> None:
    call = msk(2025, 3, 3, 23, 30)  # Monday in Moscow, Tuesday 01:30 in Yekaterinburg
    in_moscow = compute_deadlines(call, Urgency.URGENT, DEFAULT, CALENDAR, MOSCOW)
    in_yekaterinburg = compute_deadlines(call, Urgency.URGENT, DEFAULT, CALENDAR, YEKATERINBURG)
    assert in_moscow.feedback_due_at == end_of(date(2025, 3, 6))
    assert in_yekaterinburg.feedback_due_at == end_of(date(2025, 3, 7), YEKATERINBURG)


def test_the_same_moment_is_monday_in_kaliningrad_and_tuesday_in_vladivostok() -> None:
    call = datetime(2025, 3, 3, 16, 30, tzinfo=UTC)  # 18:30 Kaliningrad, 02:30 Vladivostok
    west = compute_deadlines(call, Urgency.URGENT, EMAIL, CALENDAR, KALININGRAD)
    east = compute_deadlines(call, Urgency.URGENT, EMAIL, CALENDAR, VLADIVOSTOK)
    assert west.due_at == end_of(date(2025, 3, 10), KALININGRAD)
    assert east.due_at == end_of(date(2025, 3, 11), VLADIVOSTOK)
    assert west.request_due_at == east.request_due_at == call + timedelta(minutes=15)


def test_the_cutoff_is_the_hotline_s_local_sixteen() -> None:
    sent = datetime(2025, 3, 3, 13, 30, tzinfo=UTC)  # 16:30 Moscow, 15:30 Kaliningrad
    assert request_answer_deadline(sent, EMAIL, CALENDAR, MOSCOW).due_at == msk(2025, 3, 4, 16)
    in_kaliningrad = request_answer_deadline(sent, EMAIL, CALENDAR, KALININGRAD).due_at
    assert in_kaliningrad == end_of(date(2025, 3, 3), KALININGRAD)


def test_deadlines_are_given_in_the_hotline_s_time_zone() -> None:
    call = datetime(2025, 3, 3, 7, 0, tzinfo=UTC)
    deadlines = compute_deadlines(call, Urgency.URGENT, EMAIL, CALENDAR, VLADIVOSTOK)
    assert deadlines.due_at.tzinfo is VLADIVOSTOK
    assert deadlines.request_due_at is not None
    assert deadlines.request_due_at.tzinfo is VLADIVOSTOK
    assert deadlines.request_due_at.hour == 17 and deadlines.request_due_at.minute == 15


# Naive datetimes: their zone would be a guess


def test_a_naive_call_time_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        compute_deadlines(datetime(2025, 3, 3, 10), Urgency.URGENT, DEFAULT, CALENDAR, MOSCOW)


def test_naive_times_are_refused_everywhere() -> None:
    naive = datetime(2025, 3, 3, 10)
    aware = msk(2025, 3, 3)
    with pytest.raises(ValueError, match="aware"):
        request_answer_deadline(naive, EMAIL, CALENDAR, MOSCOW)
    with pytest.raises(ValueError, match="aware"):
        next_callback_attempt(naive, [], CALLBACK, CALENDAR, MOSCOW)
    with pytest.raises(ValueError, match="aware"):
        next_callback_attempt(aware, [naive], CALLBACK, CALENDAR, MOSCOW)
    with pytest.raises(ValueError, match="aware"):
        term_end(WorkingDays(1), naive, CALENDAR, MOSCOW)


# Overrides from decrees newer than the package


def test_an_override_day_off_moves_the_deadline() -> None:
    calendar = HolidaysWorkCalendar(extra_days_off=[date(2025, 3, 4)])
    deadlines = compute_deadlines(msk(2025, 3, 3), Urgency.URGENT, DEFAULT, calendar, MOSCOW)
    assert deadlines.due_at == end_of(date(2025, 3, 11))


def test_an_override_working_saturday_brings_the_deadline_forward() -> None:
    calendar = HolidaysWorkCalendar(extra_working_days=[date(2026, 1, 10)])
    deadlines = compute_deadlines(msk(2025, 12, 30), Urgency.URGENT, DEFAULT, calendar, MOSCOW)
    assert deadlines.feedback_due_at == end_of(date(2026, 1, 13))


# Policies


def test_routes_refer_to_policies_by_name() -> None:
    assert set(POLICIES.names) >= {"default", "delo", "email", "health"}
    with pytest.raises(UnknownDeadlinePolicy, match="'pos-special'"):
        POLICIES.named("pos-special")


def test_the_shipped_policies_follow_the_regulations() -> None:
    assert DEFAULT.urgent == WorkingDays(5)
    assert DEFAULT.control == CalendarDays(10)
    assert DEFAULT.feedback == WorkingDays(3)
    assert EMAIL.request == RequestRule(
        send_within=Minutes(15),
        answer_within=WorkingDaysWithCutoff(1, time(16, 0)),
        longest_answer=WorkingDaysWithCutoff(5, time(16, 0)),
    )
    assert POLICIES.callback == CallbackRule()


def test_a_default_policy_is_required() -> None:
    with pytest.raises(ValueError, match="'default'"):
        DeadlinePolicies(policies=(DeadlinePolicy(name="email"),))


def test_a_policy_name_may_be_defined_once() -> None:
    with pytest.raises(ValueError, match="defined twice"):
        DeadlinePolicies(policies=(DeadlinePolicy(name="default"), DeadlinePolicy(name="default")))


def test_a_cutoff_after_the_end_of_the_working_day_is_refused() -> None:
    rule = RequestRule(send_within=Minutes(15), answer_within=WorkingDaysWithCutoff(1, time(19)))
    with pytest.raises(ValueError, match="cutoff"):
        DeadlinePolicy(name="late", request=rule)


@pytest.mark.parametrize("term", [lambda: WorkingDays(0), lambda: CalendarDays(-1),
                                  lambda: Minutes(0), lambda: WorkingDaysWithCutoff(0)])
def test_empty_terms_are_refused(term: Callable[[], object]) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        term()


# The deadlines file


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "deadlines.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_policy_may_end_its_working_day_at_another_time(tmp_path: Path) -> None:
    path = write(tmp_path, """
day_ends_at = "17:00"
[policies.default]
urgent = { working_days = 5 }
control = { calendar_days = 10, roll_to_working_day = false }
[policies.late]
urgent = { working_days = 5 }
control = { calendar_days = 10 }
day_ends_at = "18:30"
""")
    policies = load_deadline_policies(path)
    assert policies.named("default").day_ends_at == time(17, 0)
    assert policies.named("default").control == CalendarDays(10, roll_to_working_day=False)
    assert policies.named("default").feedback is None
    assert policies.named("late").day_ends_at == time(18, 30)


def test_a_file_without_a_default_policy_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "[policies.email]\nurgent = { working_days = 5 }\n"
                           "control = { calendar_days = 10 }\n")
    with pytest.raises(DeadlinesConfigError, match=r"policies\.default is required") as caught:
        load_deadline_policies(path)
    assert str(path) in str(caught.value)


def test_a_term_with_two_units_is_refused_naming_it(tmp_path: Path) -> None:
    path = write(tmp_path, "[policies.default]\nurgent = { working_days = 5, minutes = 3 }\n"
                           "control = { calendar_days = 10 }\n")
    with pytest.raises(DeadlinesConfigError, match=r"policies\.default\.urgent.*exactly one"):
        load_deadline_policies(path)


def test_a_cutoff_on_calendar_days_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "[policies.default]\nurgent = { working_days = 5 }\n"
                           'control = { calendar_days = 10, cutoff = "16:00" }\n')
    with pytest.raises(DeadlinesConfigError, match=r"policies\.default\.control.*cutoff"):
        load_deadline_policies(path)


def test_a_cutoff_after_the_working_day_is_refused_naming_the_policy(tmp_path: Path) -> None:
    path = write(tmp_path, """
[policies.default]
urgent = { working_days = 5 }
control = { calendar_days = 10 }
[policies.email.request]
send_within = { minutes = 15 }
answer_within = { working_days = 1, cutoff = "19:00" }
""")
    with pytest.raises(DeadlinesConfigError, match=r"policies\.email"):
        load_deadline_policies(path)


def test_an_unknown_key_in_the_deadlines_file_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "[policies.default]\nurgent = { working_days = 5 }\n"
                           "control = { calendar_days = 10 }\nreminder = { minutes = 5 }\n")
    with pytest.raises(DeadlinesConfigError, match="reminder"):
        load_deadline_policies(path)


def test_a_deadlines_file_that_is_not_toml_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "[policies.default\n")
    with pytest.raises(DeadlinesConfigError, match="not valid TOML"):
        load_deadline_policies(path)


# Properties

moments = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31), timezones=st.just(UTC)
)
zones = st.sampled_from([MOSCOW, YEKATERINBURG, KALININGRAD, VLADIVOSTOK])
policies = st.sampled_from([POLICIES.named(name) for name in POLICIES.names])
urgencies = st.sampled_from(list(Urgency))


@given(start=moments, days=st.integers(min_value=1, max_value=60), tz=zones)
def test_a_working_day_deadline_is_a_working_day_at_or_after_the_start(
    start: datetime, days: int, tz: ZoneInfo,
) -> None:
    due = term_end(WorkingDays(days), start, CALENDAR, tz)
    assert CALENDAR.is_working_day(due.date())
    assert due.date() > start.astimezone(tz).date()
    assert due >= start


@given(start=moments, urgency=urgencies, policy=policies, tz=zones)
def test_no_deadline_is_before_the_call(
    start: datetime, urgency: Urgency, policy: DeadlinePolicy, tz: ZoneInfo,
) -> None:
    deadlines = compute_deadlines(start, urgency, policy, CALENDAR, tz)
    for due in (deadlines.due_at, deadlines.feedback_due_at, deadlines.request_due_at):
        assert due is None or due >= start


@given(start=moments, later=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=20)),
       urgency=urgencies, policy=policies, tz=zones)
def test_a_later_call_is_never_due_earlier(
    start: datetime, later: timedelta, urgency: Urgency, policy: DeadlinePolicy, tz: ZoneInfo,
) -> None:
    first = compute_deadlines(start, urgency, policy, CALENDAR, tz)
    second = compute_deadlines(start + later, urgency, policy, CALENDAR, tz)
    assert first.due_at <= second.due_at
    if first.feedback_due_at is not None and second.feedback_due_at is not None:
        assert first.feedback_due_at <= second.feedback_due_at


@given(sent=moments, later=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=10)),
       tz=zones)
def test_a_later_request_is_never_due_earlier_across_the_cutoff(
    sent: datetime, later: timedelta, tz: ZoneInfo,
) -> None:
    first = request_answer_deadline(sent, EMAIL, CALENDAR, tz)
    second = request_answer_deadline(sent + later, EMAIL, CALENDAR, tz)
    assert first.due_at is not None and second.due_at is not None
    assert first.latest_at is not None and second.latest_at is not None
    assert sent <= first.due_at <= second.due_at
    assert first.due_at <= first.latest_at <= second.latest_at
