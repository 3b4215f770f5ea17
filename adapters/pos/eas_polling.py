"""The polling budget for ПОС EAS: which open appeal to read now, and how fast overall.

EAS has no list and no `updated_since` (pos-eas.md §5.3, §9.3): every open appeal costs
one GET per read, so cost = open appeals × reads per day. Two parts keep it bounded:

* `PollSchedule` — per appeal, the next read is due after an interval chosen by the
  appeal's age and ПОС's own `answerAt`, doubled for every read that changed nothing,
  never again after a terminal code;
* `RateCap` — a token bucket over all reads: at most `per_hour`, so a burst of due
  appeals is spread over time instead of hitting ПОС at once.

In memory only: after a restart every open appeal is due once, which the cap spreads.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

HOUR = 3600.0


@dataclass(slots=True)
class _Entry:
    next_due: datetime
    unchanged: int = 0
    terminal: bool = False
    fingerprint: tuple[object, ...] = ()


@dataclass(frozen=True, slots=True)
class ScheduleSettings:
    young_s: float = 1 * HOUR  # appeals under a day old
    middle_s: float = 4 * HOUR  # under a week
    old_s: float = 12 * HOUR  # older
    near_deadline_s: float = 1 * HOUR  # within `near_deadline_days` of ПОС's answerAt
    near_deadline_days: float = 2.0
    max_interval_s: float = 24 * HOUR  # the back-off's ceiling
    max_backoff_steps: int = 3


class PollSchedule:
    def __init__(self, settings: ScheduleSettings | None = None) -> None:
        self._s = settings or ScheduleSettings()
        self._entries: dict[str, _Entry] = {}

    def is_due(self, pos_id: str, now: datetime) -> bool:
        entry = self._entries.get(pos_id)
        if entry is None:
            return True  # never read by this process
        return not entry.terminal and entry.next_due <= now

    def lag_s(self, now: datetime) -> float:
        """How long the most overdue appeal has waited past its due time: /status's lag."""
        due = [e.next_due for e in self._entries.values() if not e.terminal and e.next_due <= now]
        return max(((now - d).total_seconds() for d in due), default=0.0)

    def record(self, pos_id: str, now: datetime, *, created_at: datetime | None,
               answer_at: datetime | None, terminal: bool,
               fingerprint: tuple[object, ...]) -> datetime | None:
        """After a read: when the appeal is due next (None: never, it is terminal)."""
        entry = self._entries.get(pos_id)
        if entry is None:
            entry = self._entries[pos_id] = _Entry(next_due=now)
            unchanged = 0
        else:
            unchanged = entry.unchanged + 1 if entry.fingerprint == fingerprint else 0
        entry.unchanged, entry.fingerprint, entry.terminal = unchanged, fingerprint, terminal
        if terminal:
            return None
        entry.next_due = now + timedelta(seconds=self.interval_s(
            now, created_at=created_at, answer_at=answer_at, unchanged=unchanged))
        return entry.next_due

    def interval_s(self, now: datetime, *, created_at: datetime | None,
                   answer_at: datetime | None, unchanged: int) -> float:
        s = self._s
        age_days = (now - created_at).total_seconds() / 86_400 if created_at else 0.0
        base = s.young_s if age_days < 1 else s.middle_s if age_days < 7 else s.old_s
        base *= float(2 ** min(unchanged, s.max_backoff_steps))
        # Just before ПОС's own deadline the answer is most likely: read more often. Past
        # it, the back-off applies again (an overdue appeal is not read hourly forever).
        if answer_at is not None and 0 <= (answer_at - now).total_seconds() < \
                s.near_deadline_days * 86_400:
            base = min(base, s.near_deadline_s)
        return min(base, s.max_interval_s)

    def forget(self, pos_id: str) -> None:
        self._entries.pop(pos_id, None)


class RateCap:
    """A token bucket: `per_hour` requests an hour, bursts of at most `burst`."""

    def __init__(self, per_hour: float, *, burst: float = 10.0,
                 monotonic: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        if per_hour <= 0:
            raise ValueError("the request-rate cap must be positive")
        self._rate = per_hour / HOUR
        self._burst = max(1.0, burst)
        self._tokens = self._burst
        self._monotonic = monotonic
        self._sleep = sleep
        self._at = monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = self._monotonic()
                self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
                self._at = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await self._sleep((1 - self._tokens) / self._rate)
