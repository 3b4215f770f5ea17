"""ПОС EAS polling budget: requests per hour and lag with many open appeals, in virtual time.

    python -m bench.pos_eas_budget [--open 10000] [--hours 72] [--cap 1800] [--tick 300]

EAS has no list endpoint: every open appeal is read one by one (pos-eas.md §9.3). This
drives the adapter's own `PollSchedule` and `RateCap` over a virtual clock (no network,
no sleeping): the open appeals are spread over the last `--age-days` days, none changes
(the worst case for the back-off is a change on every read, measured with --churn), and
the poller walks them every `--tick` seconds as `gateway run` does. Prints JSON with the
requests per hour (max over any clock hour, and the average), the largest lag of a due
appeal seen at a tick start, and the cap.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from adapters.pos.eas_polling import HOUR, PollSchedule, RateCap


@dataclass
class BudgetResult:
    open_appeals: int
    hours: float
    cap_per_hour: float
    requests: int
    max_per_hour: int
    mean_per_hour: float
    max_lag_s: float
    lag_after_first_day_s: float


class _VirtualTime:
    def __init__(self) -> None:
        self.t = 0.0

    def monotonic(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds


async def simulate(open_appeals: int = 10_000, hours: float = 72.0, cap: float = 1800.0,
                   tick_s: float = 300.0, age_days: float = 30.0, churn: float = 0.0,
                   seed: int = 1) -> BudgetResult:
    rng = random.Random(seed)
    clock = _VirtualTime()
    start = datetime(2026, 12, 1, tzinfo=UTC)
    schedule = PollSchedule()
    rate = RateCap(cap, monotonic=clock.monotonic, sleep=clock.sleep)
    created = {f"{i}": start - timedelta(days=rng.uniform(0, age_days))
               for i in range(open_appeals)}
    answer_at = {k: v + timedelta(days=30) for k, v in created.items()}
    versions = dict.fromkeys(created, 0)
    per_hour: dict[int, int] = {}
    max_lag = lag_after_day = 0.0
    next_tick = 0.0
    while clock.t < hours * HOUR:
        clock.t = max(clock.t, next_tick)
        now = start + timedelta(seconds=clock.t)
        lag = schedule.lag_s(now)
        max_lag = max(max_lag, lag)
        if clock.t >= 24 * HOUR:
            lag_after_day = max(lag_after_day, lag)
        for pos_id in created:
            now = start + timedelta(seconds=clock.t)
            if not schedule.is_due(pos_id, now):
                continue
            await rate.acquire()
            if clock.t >= hours * HOUR:
                break
            hour = int(clock.t // HOUR)
            per_hour[hour] = per_hour.get(hour, 0) + 1
            if churn and rng.random() < churn:
                versions[pos_id] += 1
            schedule.record(pos_id, start + timedelta(seconds=clock.t),
                            created_at=created[pos_id], answer_at=answer_at[pos_id],
                            terminal=False, fingerprint=(versions[pos_id],))
        next_tick += tick_s
    total = sum(per_hour.values())
    return BudgetResult(open_appeals, hours, cap, total, max(per_hour.values(), default=0),
                        total / hours, max_lag, lag_after_day)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--open", type=int, default=10_000)
    parser.add_argument("--hours", type=float, default=72.0)
    parser.add_argument("--cap", type=float, default=1800.0)
    parser.add_argument("--tick", type=float, default=300.0)
    parser.add_argument("--age-days", type=float, default=30.0)
    parser.add_argument("--churn", type=float, default=0.0)
    args = parser.parse_args()
    result = asyncio.run(simulate(args.open, args.hours, args.cap, args.tick, args.age_days,
                                  args.churn))
    print(json.dumps(result.__dict__, indent=2))


if __name__ == "__main__":
    main()
