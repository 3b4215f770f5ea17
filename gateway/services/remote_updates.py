"""Applying what a target system says about appeals, from a poll or from an imported export.

The rules are the appeal's own (`Appeal.apply_remote`); this module finds the appeals a
page of changes speaks of, loading them together, and hands each change to its appeal.
Either door (the poller, `gateway pos import`) ends here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, tzinfo

import structlog

from gateway.domain import events as ev
from gateway.domain.appeal import Appeal
from gateway.domain.ports import ExternalUpdate
from gateway.services.unit_of_work import UnitOfWork

log = structlog.get_logger(__name__)

# Only «Дело» planned dates are executors' extensions that move our deadline.
EXTENDING_SYSTEMS = frozenset({"delo"})


async def apply_changes(
    uow: UnitOfWork, system: str, changes: Sequence[ExternalUpdate], now: datetime, *,
    zone_of: Callable[[str], tzinfo],
) -> int:
    """Applies a page of changes; the count that changed an appeal. Changes to records that
    are not ours (entered in ПОС by hand) or not yet recorded are skipped."""
    by_id = await uow.appeals.get_many([c.appeal_id for c in changes if c.appeal_id])
    by_external = await uow.appeals.by_external(
        system, [c.external_id for c in changes if not c.appeal_id or c.appeal_id not in by_id])
    applied = 0
    for change in changes:
        appeal = (by_id.get(change.appeal_id) if change.appeal_id else None) or by_external.get(
            change.external_id)
        if appeal is not None and _apply(appeal, system, change, now, zone_of):
            applied += 1
    return applied


def _apply(appeal: Appeal, system: str, change: ExternalUpdate, now: datetime,
           zone_of: Callable[[str], tzinfo]) -> bool:
    before = len(appeal.events)
    changed = appeal.apply_remote(change, now, extends_deadline=system in EXTENDING_SYSTEMS,
                                  zone=zone_of(appeal.hotline))
    for event in appeal.events[before:]:
        if isinstance(event, ev.DeliveryNotApplied):
            log.warning("poll.delivery_not_applied", system=system, appeal_id=appeal.id,
                        reason=event.reason)
    return changed
