"""The dispatcher: claims due rows, runs their handlers, writes the outcomes.

Four loops share one process:

- claim: leases up to `batch_size` due rows whenever fewer than `concurrency` are in
  flight; sleeps until a notification (new row committed, appeal unblocked) or the poll
  tick. It also reclaims expired leases of crashed workers every `reclaim_every_s`.
- handlers: one task per row, bounded by `concurrency`, with the row's ids bound to the
  structlog context of that task and nothing of its payload logged. At most
  `target_concurrency` of them call one target at a time: a wide `concurrency` makes
  claims come in large batches (cheap per row) without opening hundreds of requests to
  one remote system; the rest wait their turn in the process, their leases renewed.
- settle: writes finished outcomes in batches (one UPDATE for all completions), so the
  database sees a few statements per batch rather than one transaction per row.
- heartbeat: renews the lease of every row still held (running or awaiting settle); a row
  the database says we lost has its handler cancelled, since someone else now owns it.

Shutdown (`stop()`, which the daemon calls on SIGTERM): stop claiming, give running
handlers `shutdown_grace_s` to finish, cancel the rest and release their rows (the
attempt counts, since the effect may have started), write every outcome, then stop the
heartbeat. A SIGKILL skips all that; the leases then expire and other workers (or this
one after restart) reclaim the rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from outbox.handlers import Handlers, Registration
from outbox.leases import Heartbeat, heartbeat_interval, new_owner_id
from outbox.messages import Message, Settlement, Verdict
from outbox.metrics import OutboxMetrics
from outbox.retry import GiveUp, decide
from outbox.store import OutboxStore

log = structlog.get_logger("outbox.dispatcher")

# A dead-letter hook that failed is tried again this soon.
DEAD_HOOK_RETRY_S = 5.0


@dataclass(frozen=True, slots=True)
class DispatcherSettings:
    # Wide enough that claims and settles come in batches of hundreds (the per-row cost
    # of a drain is mostly statements: 32/100 drained ~2-3k rows/s, 256/250 above 5k/s
    # in bench.outbox); what reaches a remote system is bounded by `target_concurrency`.
    batch_size: int = 250
    concurrency: int = 256
    # Handlers of one target running at once (None: only `concurrency` bounds them).
    target_concurrency: int | None = 32
    lease_s: float = 60.0
    poll_interval_s: float = 0.5
    # Defaults derive from lease_s: renew 3× per lease, reclaim 4× per lease (≤ 5 s).
    heartbeat_s: float | None = None
    reclaim_every_s: float | None = None
    # Most outcomes written in one settle transaction.
    settle_batch: int = 1000
    shutdown_grace_s: float = 10.0

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.concurrency < 1:
            raise ValueError("batch_size and concurrency must be positive")
        if self.target_concurrency is not None and self.target_concurrency < 1:
            raise ValueError("target_concurrency must be positive")
        hb = self.heartbeat_s if self.heartbeat_s is not None else heartbeat_interval(self.lease_s)
        if hb >= self.lease_s:
            raise ValueError("the heartbeat must be shorter than the lease")

    @property
    def reclaim_interval(self) -> float:
        if self.reclaim_every_s is not None:
            return self.reclaim_every_s
        return min(self.lease_s / 4.0, 5.0)


class _InFlight:
    __slots__ = ("lost", "message", "settlement", "task")

    def __init__(self, message: Message) -> None:
        self.message = message
        self.task: asyncio.Task[None] | None = None
        self.settlement: Settlement | None = None
        self.lost = False


class Dispatcher:
    """Runs outbox rows through their handlers until stopped."""

    def __init__(
        self,
        store: OutboxStore,
        handlers: Handlers,
        *,
        settings: DispatcherSettings | None = None,
        owner: str | None = None,
        metrics: OutboxMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.handlers = handlers
        self.settings = settings if settings is not None else DispatcherSettings()
        self.owner = owner if owner is not None else new_owner_id()
        self.metrics = metrics
        self._clock = clock
        # Rows we hold: handler running, or finished and awaiting its settle write.
        self._inflight: dict[int, _InFlight] = {}
        # Handlers running now; `concurrency` bounds this, not the rows held.
        self._active = 0
        self._to_settle: list[_InFlight] = []
        self._per_target: dict[str, asyncio.Semaphore] = {}
        self._stopping = asyncio.Event()
        self._outcome_ready = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._wake: asyncio.Event | None = None
        self._finished = asyncio.Event()
        self._closing = False
        self._running = False
        self._refill_threshold = max(
            1, min(self.settings.batch_size, self.settings.concurrency) // 4
        )
        self._heartbeat = Heartbeat(
            store.renew,
            self.owner,
            self.settings.lease_s,
            held=self._held_ids,
            on_lost=self._leases_lost,
            interval_s=self.settings.heartbeat_s,
        )

    # -- public ------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    async def run(self) -> None:
        """Dispatch until `stop()` is called (or this task is cancelled)."""
        await self._run(until_idle=False)

    async def drain(self) -> None:
        """Dispatch until nothing is due and nothing is in flight (tests, one-shot tools)."""
        await self._run(until_idle=True)

    async def stop(self) -> None:
        """Stop claiming, finish or release in-flight rows, return when all is written."""
        self._stopping.set()
        if self._wake is not None:
            self._wake.set()
        self._slot_freed.set()
        if self._running:
            await self._finished.wait()

    # -- loops -------------------------------------------------------------------------

    async def _run(self, *, until_idle: bool) -> None:
        if self._running:
            raise RuntimeError("dispatcher already running")
        self._running = True
        self._finished.clear()
        hb_stop = asyncio.Event()
        heartbeat = asyncio.create_task(self._heartbeat.run(hb_stop), name="outbox-heartbeat")
        settler = asyncio.create_task(self._settle_loop(), name="outbox-settle")
        try:
            async with self.store.notifications() as wake:
                self._wake = wake
                if self._stopping.is_set():
                    wake.set()
                await self._claim_loop(wake, until_idle=until_idle)
        finally:
            try:
                await self._shutdown(settler)
            finally:
                hb_stop.set()
                await heartbeat
                self._wake = None
                # Ready to run again (tests drain repeatedly; a stop() before the
                # next run still ends that run at once).
                self._stopping.clear()
                self._closing = False
                self._running = False
                self._finished.set()

    async def _claim_loop(self, wake: asyncio.Event, *, until_idle: bool) -> None:
        s = self.settings
        last_reclaim = float("-inf")
        failures = 0
        while not self._stopping.is_set():
            if time.monotonic() - last_reclaim >= s.reclaim_interval:
                last_reclaim = time.monotonic()
                await self._reclaim()
            # A handler's slot frees when it returns, while its outcome is written in the
            # background; the second bound caps rows held if settling falls behind.
            free = min(s.concurrency - self._active, 2 * s.concurrency - len(self._inflight))
            # Under load, wait for a few free slots so claims come in useful batches
            # rather than one row per statement; an idle dispatcher claims at once.
            if free < (1 if self._active == 0 else self._refill_threshold):
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            wanted = min(s.batch_size, free)
            wake.clear()
            try:
                messages = await self.store.claim(self.owner, wanted, s.lease_s)
            except Exception as exc:  # noqa: BLE001 - keep dispatching once the database is back
                failures += 1
                log.error("outbox.claim_failed", error_type=type(exc).__name__)
                await self._pause(wake, min(s.poll_interval_s * 2**failures, 30.0))
                continue
            failures = 0
            for message in messages:
                self._start(message)
            if until_idle:
                if not messages:
                    if not self._inflight:
                        return
                    # Settling what runs may make the next row of an appeal due.
                    self._slot_freed.clear()
                    await self._slot_freed.wait()
            elif len(messages) < wanted:
                await self._pause(wake, s.poll_interval_s)

    async def _pause(self, wake: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=seconds)

    async def _reclaim(self) -> None:
        try:
            ids = await self.store.reclaim_expired()
        except Exception as exc:  # noqa: BLE001 - retried at the next interval
            log.warning("outbox.reclaim_failed", error_type=type(exc).__name__)
            return
        if ids:
            log.info("outbox.leases_reclaimed", count=len(ids))
            if self.metrics is not None:
                self.metrics.reclaimed.inc(len(ids))

    def _start(self, message: Message) -> None:
        stale = self._inflight.get(message.id)
        if stale is not None:
            # We claimed our own row again: its old lease lapsed while we were stalled.
            self._mark_lost(stale)
        entry = _InFlight(message)
        self._inflight[message.id] = entry
        self._active += 1
        entry.task = asyncio.create_task(self._execute(entry))
        if self.metrics is not None:
            self.metrics.of(message.target, message.action).claimed.inc()

    async def _execute(self, entry: _InFlight) -> None:
        try:
            await self._handle(entry)
        finally:
            self._active -= 1
            self._slot_freed.set()

    async def _handle(self, entry: _InFlight) -> None:
        m = entry.message
        structlog.contextvars.bind_contextvars(
            outbox_id=m.id, target=m.target, action=m.action, attempt=m.attempt
        )
        registration = self.handlers.get(m.target, m.action)
        if registration is None:
            log.warning("outbox.no_handler")
            self._finish(entry, Settlement.dead(m.lease, "no handler registered for this action"))
            return
        policy = registration.policy
        if m.attempt > policy.max_attempts:
            reason = (
                f"gave up after {m.attempt - 1} attempts that never finished "
                "(worker crashed or stalled)"
            )
            log.warning("outbox.dead_lettered", reason=reason)
            self._finish(entry, await self._give_up(registration, m, reason))
            return
        outcome = "ok"
        started = time.perf_counter()
        try:
            async with self._target_slot(m.target):
                started = time.perf_counter()
                if policy.timeout_s is not None:
                    async with asyncio.timeout(policy.timeout_s):
                        await registration.handler(m)
                else:
                    await registration.handler(m)
        except asyncio.CancelledError:
            if entry.lost:
                self._forget(entry)
                return
            # Shutdown: hand the row back; the attempt counts since the effect may have begun.
            outcome = "released"
            settlement = Settlement.release(m.lease)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a retry or a dead letter
            decision = decide(
                policy, exc, attempt=m.attempt, window_start=m.window_start, now=self._clock()
            )
            if isinstance(decision, GiveUp):
                outcome = "dead"
                log.warning("outbox.dead_lettered", reason=decision.reason)
                settlement = await self._give_up(registration, m, decision.reason)
            else:
                outcome = "retry"
                settlement = Settlement.retry(m.lease, decision.at, decision.reason)
                log.info(
                    "outbox.retry_scheduled",
                    reason=decision.reason,
                    delay_s=round(decision.delay, 3),
                )
        else:
            settlement = Settlement.done(m.lease)
        if self.metrics is not None:
            self.metrics.of(m.target, m.action).handler_seconds(outcome).observe(
                time.perf_counter() - started
            )
        self._finish(entry, settlement)

    def _target_slot(self, target: str) -> contextlib.AbstractAsyncContextManager[Any]:
        limit = self.settings.target_concurrency
        if limit is None or limit >= self.settings.concurrency:
            return contextlib.nullcontext()
        slot = self._per_target.get(target)
        if slot is None:
            slot = self._per_target[target] = asyncio.Semaphore(limit)
        return slot

    async def _give_up(self, registration: Registration, m: Message, reason: str) -> Settlement:
        """Dead, once the registration's hook has heard why; if the hook fails, the row
        comes back shortly and is given up again, so the hook runs until it succeeds."""
        if registration.on_dead is None:
            return Settlement.dead(m.lease, reason)
        try:
            await registration.on_dead(m, reason)
        except Exception as exc:  # noqa: BLE001 - the row returns; nothing is lost
            log.error("outbox.dead_hook_failed", error_type=type(exc).__name__)
            return Settlement.retry(m.lease, self._clock() + DEAD_HOOK_RETRY_S,
                                    f"{reason}; dead-letter hook failed: {type(exc).__name__}")
        return Settlement.dead(m.lease, reason)

    def _finish(self, entry: _InFlight, settlement: Settlement) -> None:
        if entry.lost:
            self._forget(entry)
            return
        entry.settlement = settlement
        self._to_settle.append(entry)
        self._outcome_ready.set()

    def _forget(self, entry: _InFlight) -> None:
        if self._inflight.get(entry.message.id) is entry:
            del self._inflight[entry.message.id]
            self._slot_freed.set()

    async def _settle_loop(self) -> None:
        s = self.settings
        failures = 0
        while True:
            if not self._to_settle:
                if self._closing:
                    return
                self._outcome_ready.clear()
                await self._outcome_ready.wait()
                continue
            batch = self._to_settle[: s.settle_batch]
            del self._to_settle[: s.settle_batch]
            live = [e for e in batch if not e.lost]
            for e in batch:
                if e.lost:
                    self._forget(e)
            if not live:
                continue
            try:
                accepted = await self.store.settle(
                    self.owner, [e.settlement for e in live if e.settlement is not None]
                )
            except Exception as exc:  # noqa: BLE001 - keep the outcomes and try again
                failures += 1
                log.error("outbox.settle_failed", error_type=type(exc).__name__, rows=len(live))
                self._to_settle[:0] = live
                if self._closing and failures >= 5:
                    # Leases will expire and the rows be reclaimed; nothing is lost.
                    log.error("outbox.settle_abandoned", rows=len(self._to_settle))
                    return
                await asyncio.sleep(min(0.1 * 2**failures, 5.0))
                continue
            failures = 0
            for e in live:
                self._account(e, accepted)
                self._forget(e)

    def _account(self, entry: _InFlight, accepted: set[int]) -> None:
        m = entry.message
        settlement = entry.settlement
        assert settlement is not None
        if m.id not in accepted:
            log.warning(
                "outbox.outcome_rejected",
                outbox_id=m.id,
                target=m.target,
                action=m.action,
                attempt=m.attempt,
                verdict=settlement.verdict.value,
            )
            if self.metrics is not None:
                self.metrics.of(m.target, m.action).rejected.inc()
            return
        if self.metrics is None:
            return
        if settlement.verdict is Verdict.DONE:
            self.metrics.of(m.target, m.action).completed.inc()
        elif settlement.verdict is Verdict.RETRY:
            self.metrics.of(m.target, m.action).retried.inc()
        elif settlement.verdict is Verdict.DEAD:
            self.metrics.of(m.target, m.action).dead_lettered.inc()

    # -- leases ------------------------------------------------------------------------

    def _held_ids(self) -> list[int]:
        return [i for i, e in self._inflight.items() if not e.lost]

    def _leases_lost(self, ids: set[int]) -> None:
        for i in ids:
            entry = self._inflight.get(i)
            if entry is not None:
                self._mark_lost(entry)

    def _mark_lost(self, entry: _InFlight) -> None:
        if entry.lost:
            return
        entry.lost = True
        m = entry.message
        log.warning(
            "outbox.lease_lost", outbox_id=m.id, target=m.target, action=m.action, attempt=m.attempt
        )
        if self.metrics is not None:
            self.metrics.leases_lost.inc()
        if entry.task is not None and not entry.task.done():
            entry.task.cancel()
        else:
            self._forget(entry)

    # -- shutdown ----------------------------------------------------------------------

    async def _shutdown(self, settler: asyncio.Task[None]) -> None:
        self._stopping.set()
        running = [e.task for e in self._inflight.values() if e.task is not None]
        running = [t for t in running if not t.done()]
        if running:
            _done, pending = await asyncio.wait(running, timeout=self.settings.shutdown_grace_s)
            if pending:
                log.info("outbox.releasing_in_flight", count=len(pending))
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        self._closing = True
        self._outcome_ready.set()
        await settler
