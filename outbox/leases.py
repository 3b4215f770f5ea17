"""Leases: how a worker proves a row is still its own while the handler runs.

A claim gives a row to one owner until `lease_expires_at`. The owner renews the lease by
heartbeat for as long as its handler runs, so a slow adapter call is never mistaken for
a crash; only a worker that stopped renewing (killed, frozen, partitioned) loses its rows,
and the next reclaim returns them to the queue.

Every outcome a worker writes is fenced by the pair (owner, attempt): the store accepts
it only while the row is still leased, by that owner, for that attempt. A worker whose
lease was reclaimed and handed to someone else can therefore never overwrite the newer
outcome, and the attempt number (which grows with every claim) fences off even the same
owner's stale task.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass

import structlog

log = structlog.get_logger("outbox.leases")


@dataclass(frozen=True, slots=True)
class Lease:
    """One claim of one row: the row id and the attempt number that claim created."""

    id: int
    attempt: int


def new_owner_id() -> str:
    """A lease owner unique to this dispatcher instance (host, pid and a random part).

    The random part makes a restarted process with a recycled pid a different owner, so
    it cannot complete rows its predecessor held.
    """
    host = socket.gethostname()[:32]
    return f"{host}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def heartbeat_interval(lease_s: float) -> float:
    """Renew three times per lease: two heartbeats may be lost before the lease lapses."""
    return lease_s / 3.0


RenewFn = Callable[[str, Collection[int], float], Awaitable[set[int]]]
LostFn = Callable[[set[int]], None]


class Heartbeat:
    """Renews the leases of rows in flight and reports the ones this owner lost.

    It renews every row the dispatcher still holds, including rows whose handler has
    finished but whose outcome is not written yet: until the outcome is in the database
    the row must stay ours.
    """

    def __init__(
        self,
        renew: RenewFn,
        owner: str,
        lease_s: float,
        held: Callable[[], Collection[int]],
        on_lost: LostFn,
        interval_s: float | None = None,
    ) -> None:
        self._renew = renew
        self._owner = owner
        self._lease_s = lease_s
        self._held = held
        self._on_lost = on_lost
        self.interval_s = interval_s if interval_s is not None else heartbeat_interval(lease_s)

    async def beat(self) -> None:
        """One renewal round: extend every held lease, report the ids no longer ours."""
        ids = set(self._held())
        if not ids:
            return
        still_ours = await self._renew(self._owner, ids, self._lease_s)
        lost = ids - still_ours
        # A row settled while the renewal ran is no longer held; it was not lost.
        lost &= set(self._held())
        if lost:
            self._on_lost(lost)

    async def run(self, stopping: asyncio.Event) -> None:
        """Beat until `stopping` is set; a failed renewal is retried on the next beat."""
        while not stopping.is_set():
            try:
                await asyncio.wait_for(stopping.wait(), timeout=self.interval_s)
                break
            except TimeoutError:
                pass
            try:
                await self.beat()
            except Exception as exc:  # noqa: BLE001 - the database may be briefly away
                log.warning("outbox.heartbeat_failed", error_type=type(exc).__name__)
