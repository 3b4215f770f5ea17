"""Re-driving dead letters, for the admin API and the CLI alike.

A re-drive gives the row a fresh retry budget and, for an action that forwards the call,
puts its failed appeal back to accepted; both are audited. The row is re-driven first: a
crash before the appeal is updated leaves it failed until the row succeeds, which then
registers it (failed → registered is allowed), so nothing is left inconsistent for long.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.domain.ports import Clock, ExternalRef
from gateway.services import outbox_actions
from gateway.services.unit_of_work import AuditEntry, Storage
from outbox import MessageRecord, OutboxStore, State

# The actions whose death fails the appeal, and whose re-drive puts it back.
_FORWARDING = {outbox_actions.POS_REGISTER, outbox_actions.DELO_REGISTER,
               outbox_actions.EMAIL_REQUEST}
_PAGE = 500
# How a create parked for a person starts its reason (adapters/pos/eas_client.py): such
# a row is re-driven only one by one, after someone checked the remote ("not there").
AMBIGUOUS = "ambiguous:"


def is_parked(last_error: str | None) -> bool:
    """A create parked as ambiguous (the outbox prefixes the outcome's kind)."""
    return (last_error or "").removeprefix("permanent:").lstrip().startswith(AMBIGUOUS)


class NotDead(Exception):
    """Only dead rows can be re-driven."""

    def __init__(self, state: str) -> None:
        super().__init__(state)
        self.state = state


@dataclass(frozen=True, slots=True)
class RedriveAll:
    rows: int
    appeals: int


class OutboxAdmin:
    def __init__(self, outbox: OutboxStore, storage: Storage, clock: Clock) -> None:
        self._outbox = outbox
        self._storage = storage
        self._clock = clock

    async def redrive(self, message_id: int, actor: str) -> MessageRecord:
        """Raises LookupError (no such row) or NotDead."""
        row = await self._outbox.get(message_id)
        if row is None:
            raise LookupError(message_id)
        if not await self._outbox.redrive(message_id):
            current = await self._outbox.get(message_id)
            raise NotDead(current.state if current else "missing")
        await self._after_redrive([row], actor, {"outbox_id": message_id, "target": row.target,
                                                 "action": row.action})
        refreshed = await self._outbox.get(message_id)
        assert refreshed is not None
        return refreshed

    async def redrive_all_dead(self, actor: str) -> RedriveAll:
        dead: list[MessageRecord] = []
        after: int | None = None
        while True:
            page = await self._outbox.list_messages(State.DEAD, limit=_PAGE, after_id=after)
            dead.extend(page)
            if len(page) < _PAGE:
                break
            after = page[-1].id
        parked = [row for row in dead if is_parked(row.last_error)]
        if not parked:
            count = await self._outbox.redrive_all_dead()
            appeals = await self._after_redrive(dead, actor, {"count": count})
            return RedriveAll(count, appeals)
        # Never a blind resend: ambiguous creates wait for a person's check in the remote.
        redriven = [row for row in dead if row not in parked
                    and await self._outbox.redrive(row.id)]
        appeals = await self._after_redrive(redriven, actor, {"count": len(redriven)}) \
            if redriven else 0
        return RedriveAll(len(redriven), appeals)

    async def record_found(self, appeal_id: str, system: str, external_id: str,
                           actor: str) -> bool:
        """A person found the parked create in the remote: the appeal is registered with
        that id and nothing is sent (a later re-drive of the row sees it registered).
        False when there is no such appeal."""
        now = self._clock.now()
        async with self._storage.write() as uow:
            appeal = await uow.appeals.get(appeal_id)
            if appeal is None:
                return False
            appeal.register(ExternalRef(system, external_id, external_id), now)
            uow.audit(AuditEntry(now, actor, "forwarding.found_remote", appeal_id,
                                 {"system": system, "external_id": external_id}))
        return True

    async def _after_redrive(self, rows: list[MessageRecord], actor: str,
                             detail: dict[str, object]) -> int:
        now = self._clock.now()
        forwarding = {row.ordering_key: row for row in rows
                      if (row.target, row.action) in _FORWARDING}
        async with self._storage.write() as uow:
            found = await uow.appeals.get_many(sorted(forwarding))
            for appeal_id, appeal in found.items():
                row = forwarding[appeal_id]
                appeal.forwarding_redriven(f"{row.target}.{row.action}", now, actor)
            single = rows[0].ordering_key if len(rows) == 1 else None
            uow.audit(AuditEntry(now, actor, "outbox.redriven", single, dict(detail)))
        return len(found)
