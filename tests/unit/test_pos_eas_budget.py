"""The EAS polling budget: per-appeal reads stay under the cap with 10,000 open appeals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from adapters.pos.eas_polling import PollSchedule
from bench.pos_eas_budget import simulate

NOW = datetime(2026, 12, 1, tzinfo=UTC)


async def test_the_polling_budget_holds_under_10000_open_appeals() -> None:
    result = await simulate(open_appeals=10_000, hours=30, cap=1800.0)

    assert result.max_per_hour <= 1800 + 10  # the cap, plus one burst
    # After the first day (every appeal due at once after a start), nothing waits an hour.
    assert result.lag_after_first_day_s < 3600
    assert result.requests > 10_000  # every open appeal was read, some more than once


def test_unchanged_appeals_back_off_and_terminal_ones_stop() -> None:
    schedule = PollSchedule()
    created = NOW - timedelta(days=10)
    intervals = []
    at = NOW
    for _ in range(5):
        due = schedule.record("1", at, created_at=created, answer_at=None, terminal=False,
                              fingerprint=("TAKE_TO_WORK", 2))
        assert due is not None
        intervals.append((due - at).total_seconds())
        at = due
    assert intervals == sorted(intervals) and intervals[-1] > intervals[0]
    assert schedule.record("1", at, created_at=created, answer_at=None, terminal=True,
                           fingerprint=("SEND_RESPONSE", 3)) is None
    assert not schedule.is_due("1", at + timedelta(days=365))


def test_reads_quicken_just_before_pos_answer_at() -> None:
    schedule = PollSchedule()
    created = NOW - timedelta(days=20)
    far = schedule.interval_s(NOW, created_at=created, answer_at=NOW + timedelta(days=10),
                              unchanged=3)
    near = schedule.interval_s(NOW, created_at=created, answer_at=NOW + timedelta(hours=20),
                               unchanged=3)
    assert near < far
