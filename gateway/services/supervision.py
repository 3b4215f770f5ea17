"""The supervisor's decisions on appeals the regular flow cannot finish.

An answer nobody could be reached for after three callbacks [001: 13] is closed as
unreachable, rescheduled, or (when forwarding failed or the target system rejected it)
re-routed with a new registration; a rejection may instead be closed with the citizen
told the reason, through the usual delivery desk.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import structlog

from gateway.domain.appeal import Appeal, AppealStatus, ResolveRefused
from gateway.domain.ports import Clock
from gateway.domain.routing import UnknownTopic
from gateway.services.planning import DeadlinePlanner, RoutePlanner
from gateway.services.unit_of_work import Storage

log = structlog.get_logger(__name__)

ACTIONS = ("close_unreachable", "reschedule", "reroute")


@dataclass(frozen=True, slots=True)
class Resolution:
    action: str
    reason: str
    until: datetime | None = None
    topic: str | None = None


class MissingField(ResolveRefused):
    def __init__(self, name: str, why: str) -> None:
        super().__init__(why)
        self.field = name


class Supervision:
    def __init__(self, storage: Storage, clock: Clock, routes: RoutePlanner,
                 deadlines: DeadlinePlanner) -> None:
        self._storage = storage
        self._clock = clock
        self._routes = routes
        self._deadlines = deadlines

    async def resolve(self, appeal_id: str, resolution: Resolution, actor: str) -> Appeal:
        """Raises LookupError, ResolveRefused (MissingField) or UnknownTopic."""
        now = self._clock.now()
        async with self._storage.write() as uow:
            appeal = await uow.appeals.get(appeal_id)
            if appeal is None:
                raise LookupError(appeal_id)
            self._apply(appeal, resolution, now, actor)
        log.info("supervisor.resolved", appeal_id=appeal_id, action=resolution.action,
                 status=appeal.status.value)
        return appeal

    def _apply(self, appeal: Appeal, r: Resolution, now: datetime, actor: str) -> None:
        if r.action == "close_unreachable":
            if appeal.status is AppealStatus.REJECTED:
                appeal.close_rejected(r.reason, now, actor)  # the citizen is told why
            else:
                appeal.close_unreachable(r.reason, now, actor)
        elif r.action == "reschedule":
            if r.until is None:
                raise MissingField("until", "reschedule needs `until`")
            if r.until <= now:
                raise MissingField("until", "`until` must be in the future")
            appeal.reschedule_callback(r.until, r.reason, now, actor)
        elif r.action == "reroute":
            topic = self._routes.canonical_topic(r.topic or appeal.topic)
            route = self._routes.route(topic, appeal.hotline, False)
            if route.system.value == "none":
                raise ResolveRefused("the topic is journaled only: nothing to route to")
            planned = self._deadlines.plan(now, appeal.urgency, route, appeal.hotline)
            appeal.reroute(route, topic, planned.due_at, r.reason, now, actor)
        else:  # the wire model allows only ACTIONS
            raise ResolveRefused(f"unknown action {r.action}")


__all__ = ["ACTIONS", "MissingField", "Resolution", "Supervision", "UnknownTopic"]
