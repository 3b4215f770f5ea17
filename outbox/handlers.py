"""The table of what runs for each (target, action), with that action's retry policy.

The gateway's wiring builds one `Handlers` table; the dispatcher looks rows up in it. A
row whose action is in no table (say an older replica meets an action a newer one
enqueued) is dead-lettered with that reason, visible to admins and re-drivable once a
replica that knows it runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from outbox.messages import Message
from outbox.retry import DEFAULT_POLICY, RetryPolicy

Handler = Callable[[Message], Awaitable[None]]
# Told, before the row is settled dead, why it was given up; must be safe to run twice.
DeadLetterHook = Callable[[Message, str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Registration:
    """One action: its handler, its retry policy, and who hears when it is given up
    (`on_dead`: the gateway marks the appeal failed, so the loss is seen, not silent)."""

    target: str
    action: str
    handler: Handler
    policy: RetryPolicy = field(default=DEFAULT_POLICY)
    on_dead: DeadLetterHook | None = None


class Handlers:
    """(target, action) → handler and policy."""

    def __init__(self, registrations: Iterable[Registration] = ()) -> None:
        self._table: dict[tuple[str, str], Registration] = {}
        for registration in registrations:
            self.add(registration)

    def add(self, registration: Registration) -> None:
        key = (registration.target, registration.action)
        if key in self._table:
            raise ValueError(f"handler for {key} registered twice")
        self._table[key] = registration

    def get(self, target: str, action: str) -> Registration | None:
        return self._table.get((target, action))

