"""The outbox's storage interface: what the dispatcher, the gateway and the admin API use.

Every state transition is fenced: a store accepts a claim, renewal or outcome only while
the row is in the state it expects (and, for a worker's outcome, still leased by that
owner for that attempt), so concurrent workers, reclaims and late completions can race
freely: whichever write lands first wins and the loser learns it from the result.

Per-appeal order: a row is due only when no earlier row with the same `ordering_key` is
unfinished (pending, leased or dead). A dead row therefore holds back its appeal's later
actions until an admin re-drives it.

Implementations: `SQLiteOutboxStore` and `PostgresOutboxStore` (over `SqlOutboxStore`),
and `outbox.testing.InMemoryStore` for tests without a database.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import Collection, Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from outbox.messages import Message, MessageRecord, NewMessage, OutboxStats, Settlement
from outbox.schema import State


class OutboxStore(abc.ABC):
    """The outbox's storage. All methods but `enqueue` run their own short transaction."""

    @abc.abstractmethod
    async def cancel(self, conn: AsyncConnection, idempotency_keys: Sequence[str],
                     reason: str) -> int:
        """Inside the caller's transaction: rows with these keys that have not run (pending)
        or were given up (dead) become cancelled with the reason; how many did. A leased row
        is left to finish: its handler re-checks whether it is still needed."""

    @abc.abstractmethod
    async def enqueue(self, conn: AsyncConnection, messages: Sequence[NewMessage]) -> list[int]:
        """Insert rows inside the caller's transaction, so they commit with its state change.

        Rows of one `ordering_key` run in id order, so the caller must serialise
        enqueues per key (e.g. update the appeal row first in the same transaction).
        """

    @abc.abstractmethod
    async def claim(self, owner: str, limit: int, lease_s: float) -> list[Message]:
        """Lease up to `limit` due rows whose earlier rows (same ordering key) are done."""

    @abc.abstractmethod
    async def renew(self, owner: str, ids: Collection[int], lease_s: float) -> set[int]:
        """Extend the leases `owner` still holds; returns those ids (the rest were lost)."""

    @abc.abstractmethod
    async def settle(self, owner: str, settlements: Sequence[Settlement]) -> set[int]:
        """Write outcomes in one transaction; returns ids whose lease was still valid.

        An outcome is accepted only while the row is leased by `owner` for that attempt.
        """

    @abc.abstractmethod
    async def reclaim_expired(self) -> list[int]:
        """Return rows whose lease is still held and expired to the queue."""

    @abc.abstractmethod
    async def stats(self) -> OutboxStats: ...

    @abc.abstractmethod
    async def list_messages(
        self,
        state: State | None = None,
        *,
        target: str | None = None,
        limit: int = 100,
        after_id: int | None = None,
    ) -> list[MessageRecord]:
        """Rows in id order, paged by `after_id` (keyset, stable while rows change)."""

    @abc.abstractmethod
    async def get(self, message_id: int) -> MessageRecord | None: ...

    @abc.abstractmethod
    async def redrive(self, message_id: int) -> bool:
        """Dead → pending with a fresh attempt budget; False when the row is not dead."""

    @abc.abstractmethod
    async def redrive_all_dead(self, *, target: str | None = None) -> int: ...

    @abc.abstractmethod
    def notifications(self) -> contextlib.AbstractAsyncContextManager[asyncio.Event]:
        """An event set whenever new rows may have become due (best effort, never needed
        for correctness: dispatchers still poll)."""
