"""The outbox on PostgreSQL: replicas share the table and never queue behind each other.

Claims lock candidate rows with `FOR UPDATE SKIP LOCKED`, so concurrent replicas take
disjoint batches; lease times come from the database clock, so host clock skew cannot
expire a lease early; `enqueue` sends NOTIFY in the caller's transaction, so every
listening replica wakes when it commits.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import structlog
from sqlalchemy import ColumnElement, Float, cast, func, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import TextClause

from outbox.messages import Message
from outbox.sql_store import CLAIM_RETURNS, SqlOutboxStore, claimed_message

log = structlog.get_logger("outbox.postgres_store")

NOTIFY_CHANNEL = "outbox_messages"


# Transaction-local: no sequential scans or sorts for the claim, and no JIT (the
# planner's worst-case cost estimate for the ordered walk would buy ~30 ms of compiling).
_PLAN_SETTINGS = text(
    "SELECT set_config('enable_seqscan', 'off', true), set_config('enable_sort', 'off', true),"
    " set_config('enable_bitmapscan', 'off', true), set_config('jit', 'off', true)"
)


class PostgresOutboxStore(SqlOutboxStore):
    """PostgreSQL: replicas share the table; SKIP LOCKED keeps their claims disjoint.

    Without an explicit clock, lease times use the database clock, so replicas on hosts
    whose clocks disagree still agree on when a lease has expired.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        clock: Callable[[], float] | None = None,
        channel: str = NOTIFY_CHANNEL,
    ) -> None:
        super().__init__(engine, clock=clock)
        self.channel = channel
        self._claim_stmt = self._claim_sql()

    def _now(self) -> ColumnElement[float]:
        if self._clock is not None:
            return super()._now()
        return cast(func.extract("epoch", func.now()), Float)

    def _now_sql(self) -> ColumnElement[float]:
        return super()._now_sql() if self._clock is not None else self._now()

    def _now_params(self) -> dict[str, Any]:
        return super()._now_params() if self._clock is not None else {}

    async def _after_enqueue(self, conn: AsyncConnection) -> None:
        # Delivered at commit, to every listening replica (this process included).
        await conn.execute(text("SELECT pg_notify(:channel, '')"), {"channel": self.channel})

    def _claim_sql(self) -> TextClause:
        """The claim as written SQL: its plan matters more than its portability.

        The only good plan walks `ix_outbox_state_available` in due order, probes each
        candidate's appeal head, locks and stops after `limit` rows. The planner cannot
        estimate the head filter and, on a table with stale statistics (say a million
        rows enqueued since the last ANALYZE), prefers scanning and sorting everything:
        hundreds of ms per claim. `_PLAN_SETTINGS` takes that choice away for this
        transaction only. `id = ANY(ARRAY(...))` makes the locked batch an init-plan
        feeding a primary-key probe (a join would hash the whole table). The rows stay
        locked until commit, so the outer UPDATE needs no second state check.
        """
        now = ":now" if self._clock is not None else "EXTRACT(EPOCH FROM now())::float8"
        returned = ", ".join(f"o.{c.name}" for c in CLAIM_RETURNS)
        return text(
            f"""
            UPDATE outbox_messages AS o
               SET state = 'leased', lease_owner = :owner,
                   lease_expires_at = {now} + :lease_s,
                   attempts = o.attempts + 1, updated_at = {now}
             WHERE o.id = ANY(ARRAY(
                   SELECT m.id FROM outbox_messages AS m
                    WHERE m.state = 'pending' AND m.available_at <= {now}
                      AND m.id = (SELECT min(p.id) FROM outbox_messages AS p
                                   WHERE p.ordering_key = m.ordering_key
                                     AND p.state <> 'done'
                                     AND p.state <> 'cancelled')
                    ORDER BY m.available_at, m.id
                    LIMIT :limit
                      FOR UPDATE OF m SKIP LOCKED))
            RETURNING {returned}
            """  # noqa: S608 - only column names are interpolated
        )

    async def claim(self, owner: str, limit: int, lease_s: float) -> list[Message]:
        params: dict[str, Any] = {"owner": owner, "lease_s": lease_s, "limit": limit}
        if self._clock is not None:
            params["now"] = self._clock()
        async with self._write() as conn:
            await conn.execute(_PLAN_SETTINGS)
            result = await conn.execute(self._claim_stmt, params)
            return [claimed_message(r) for r in result]

    def notifications(self) -> contextlib.AbstractAsyncContextManager[asyncio.Event]:
        return self._pg_notifications()

    @contextlib.asynccontextmanager
    async def _pg_notifications(self) -> AsyncIterator[asyncio.Event]:
        """LISTEN on a dedicated connection, re-opened if it drops."""
        with self._subscribers.subscribed() as ev:
            stop = asyncio.Event()
            keeper = asyncio.create_task(self._listen(ev, stop), name="outbox-listen")
            try:
                yield ev
            finally:
                stop.set()
                keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keeper

    async def _listen(self, ev: asyncio.Event, stop: asyncio.Event) -> None:
        def _notified(*_args: object) -> None:
            ev.set()

        delay = 1.0
        while not stop.is_set():
            try:
                async with self.engine.connect() as conn:
                    raw = await conn.get_raw_connection()
                    driver: Any = raw.driver_connection
                    await driver.add_listener(self.channel, _notified)
                    # Rows committed while we were not listening are found by this wake.
                    ev.set()
                    delay = 1.0
                    try:
                        while not stop.is_set() and not driver.is_closed():
                            with contextlib.suppress(TimeoutError):
                                await asyncio.wait_for(stop.wait(), timeout=5.0)
                    finally:
                        if not driver.is_closed():
                            await driver.remove_listener(self.channel, _notified)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - polling covers us while we reconnect
                log.warning("outbox.listen_failed", error_type=type(exc).__name__)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                delay = min(delay * 2, 30.0)
