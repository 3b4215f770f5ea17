"""The status report for admins: outbox, pollers, appeals by status, overdue. No personal data.

Only counts, ages, component names and error classes go in; nothing read from an appeal's
personal fields is ever touched here.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from gateway.domain.ports import Clock
from gateway.services.polling import PollerHealth
from gateway.services.unit_of_work import Storage
from outbox import OutboxStats


class OutboxCounts(Protocol):
    async def stats(self) -> OutboxStats: ...


STATES = ("pending", "leased", "done", "dead", "cancelled")


def outbox_section(stats: OutboxStats) -> dict[str, Any]:
    """The contract's shape: totals by state, the oldest pending age, and the same by target."""
    return {
        **{state: stats.by_state.get(state, 0) for state in STATES},
        "oldest_pending_age_s": round(stats.oldest_pending_age_s or 0.0, 3),
        "by_target": {
            target: {state: counts.get(state, 0) for state in STATES}
            for target, counts in sorted(stats.by_target.items())
        },
    }


class StatusReport:
    def __init__(self, storage: Storage, outbox: OutboxCounts, clock: Clock, version: str,
                 pollers: Mapping[str, PollerHealth]) -> None:
        self._storage = storage
        self._outbox = outbox
        self._clock = clock
        self._version = version
        self._pollers = pollers

    async def report(self) -> dict[str, Any]:
        now = self._clock.now()
        async with self._storage.read() as uow:
            by_status = await uow.appeals.count_by_status()
            overdue = await uow.appeals.count_overdue()
            by_kind = {kind.value: count for kind, count in
                       (await uow.appeals.count_overdue_by_kind()).items()}
            # [001: 13–14] missed calls returned late count with the answers' callbacks.
            by_kind["callback"] = by_kind.get("callback", 0) + await uow.callbacks.count_late()
            interim_due = await uow.appeals.count_interim_due()
            known = {state.system: state for state in await uow.cursors.all()}
        pollers: dict[str, Any] = {}
        for system in sorted({*self._pollers, *known}):
            state = known.get(system)
            last_success: datetime | None = state.last_success_at if state else None
            error = state.last_error if state else None
            seen = self._pollers.get(system)
            if seen is not None and seen.last_error is not None and seen.last_error_at and (
                    last_success is None or seen.last_error_at > last_success):
                error = seen.last_error  # newer than what the database holds, if anything
            pollers[system] = {
                "last_success_at": last_success.isoformat() if last_success else None,
                "last_error": error,
                "lag_s": round((now - last_success).total_seconds(), 3) if last_success else None,
            }
            if seen is not None and seen.due_lag_s is not None:
                pollers[system]["due_lag_s"] = round(seen.due_lag_s(now), 3)
        return {
            "outbox": outbox_section(await self._outbox.stats()),
            "pollers": pollers,
            "appeals": {"by_status": by_status, "overdue": overdue,
                        "overdue_by_kind": by_kind, "interim_due": interim_due},
            "version": self._version,
        }
