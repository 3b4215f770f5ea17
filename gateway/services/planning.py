"""What intake needs from routing and deadlines, as small interfaces the wiring fills in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Protocol

from gateway.domain.appeal import Urgency
from gateway.domain.deadlines import DeadlinePolicies, compute_deadlines
from gateway.domain.ports import WorkCalendar
from gateway.domain.route import Route


class RoutePlanner(Protocol):
    def route(self, topic: str, hotline: str, informational: bool) -> Route:
        """Raises gateway.domain.routing.UnknownTopic for a topic not in the dictionary."""
        ...

    def canonical_topic(self, name: str) -> str: ...


@dataclass(frozen=True, slots=True)
class PlannedDeadlines:
    due_at: datetime | None
    feedback_due_at: datetime | None = None
    request_due_at: datetime | None = None


class DeadlinePlanner(Protocol):
    def plan(
        self, received_at: datetime, urgency: Urgency, route: Route, hotline: str
    ) -> PlannedDeadlines: ...


class PolicyDeadlines:
    """Deadlines by the policy the route names, in the hotline's own time zone."""

    def __init__(
        self, policies: DeadlinePolicies, calendar: WorkCalendar, zone_of: Callable[[str], tzinfo]
    ) -> None:
        self._policies = policies
        self._calendar = calendar
        self._zone_of = zone_of

    def plan(
        self, received_at: datetime, urgency: Urgency, route: Route, hotline: str
    ) -> PlannedDeadlines:
        if route.system.value == "none":
            return PlannedDeadlines(due_at=None)  # journaled only: nothing to wait for
        deadlines = compute_deadlines(
            received_at, urgency, self._policies.named(route.deadline_policy),
            self._calendar, self._zone_of(hotline),
        )
        return PlannedDeadlines(deadlines.due_at, deadlines.feedback_due_at,
                                deadlines.request_due_at)
