"""What intake needs from routing and deadlines, as small interfaces the wiring fills in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Protocol

from gateway.domain.appeal import Urgency
from gateway.domain.deadlines import (
    CallbackRule,
    DeadlinePolicies,
    compute_deadlines,
    request_answer_deadline,
)
from gateway.domain.ports import WorkCalendar
from gateway.domain.route import Route


class RoutePlanner(Protocol):
    def route(self, topic: str, hotline: str, informational: bool,
              at: datetime | None = None) -> Route:
        """Raises gateway.domain.routing.UnknownTopic for a topic not in the dictionary.
        `at`: when the call came (the health institutions' hours [004: 12])."""
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

    @property
    def calendar(self) -> WorkCalendar:
        return self._calendar

    @property
    def callback_rule(self) -> CallbackRule:
        return self._policies.callback

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

    def request_answer_due(self, sent_at: datetime, route: Route, hotline: str) -> datetime | None:
        """[004: 10.2] the answer to a request: 1 working day, after 16:00 by 16:00 next day."""
        policy = self._policies.named(route.deadline_policy)
        if policy.request is None:
            return None
        return request_answer_deadline(sent_at, policy, self._calendar,
                                       self._zone_of(hotline)).due_at

    def request_answer_latest(self, sent_at: datetime, route: Route,
                              hotline: str) -> datetime | None:
        """[004: 10.3] no extension passes 5 working days from the request."""
        policy = self._policies.named(route.deadline_policy)
        if policy.request is None:
            return None
        return request_answer_deadline(sent_at, policy, self._calendar,
                                       self._zone_of(hotline)).latest_at
