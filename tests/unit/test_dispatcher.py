"""The dispatcher over the in-memory store: outcomes, order, leases, shutdown, logs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import structlog
import tenacity
from prometheus_client import generate_latest

from outbox import (
    Dispatcher,
    DispatcherSettings,
    Handlers,
    Lease,
    Message,
    NewMessage,
    OutboxMetrics,
    Permanent,
    Registration,
    RetryPolicy,
    Settlement,
    State,
    Transient,
)
from outbox.testing import InMemoryStore, ManualClock

FAST = DispatcherSettings(batch_size=10, concurrency=8, lease_s=30.0, poll_interval_s=0.01)
NO_JITTER = RetryPolicy(max_attempts=5, wait=tenacity.wait_exponential(multiplier=10, max=100))


async def wait_until(predicate: Callable[[], Any], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


def msg(key: str, action: str = "register", **payload: Any) -> NewMessage:
    return NewMessage(
        ordering_key=key,
        target="pos",
        action=action,
        payload=payload,
        idempotency_key=f"{key}:{action}",
    )


class Running:
    """A dispatcher running in the background for the duration of a test."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Dispatcher:
        self.task = asyncio.create_task(self.dispatcher.run())
        return self.dispatcher

    async def __aexit__(self, *exc: object) -> None:
        await self.dispatcher.stop()
        assert self.task is not None
        await self.task


def handlers_for(
    handler: Callable[[Message], Awaitable[None]], policy: RetryPolicy = NO_JITTER
) -> Handlers:
    return Handlers(
        [
            Registration("pos", "register", handler, policy),
            Registration("pos", "notify", handler, policy),
            Registration("pos", "confirm", handler, policy),
        ]
    )


def state_of(store: InMemoryStore, message_id: int) -> State:
    return store.rows[message_id].state


async def test_completes_rows_and_counts_them_in_metrics() -> None:
    store = InMemoryStore()
    seen: list[int] = []

    async def handler(m: Message) -> None:
        seen.append(m.id)

    ids = await store.enqueue(None, [msg(f"a{i}") for i in range(25)])
    metrics = OutboxMetrics()
    dispatcher = Dispatcher(store, handlers_for(handler), settings=FAST, metrics=metrics)
    await dispatcher.drain()
    assert sorted(seen) == ids
    assert all(state_of(store, i) is State.DONE for i in ids)
    await metrics.refresh(store)
    text = generate_latest(metrics.registry).decode()
    assert 'outbox_completed_total{action="register",target="pos"} 25.0' in text
    assert 'outbox_rows_by_state{state="done"} 25.0' in text
    assert "outbox_handler_seconds_bucket" in text


async def test_transient_failure_is_retried_after_the_backoff() -> None:
    clock = ManualClock()
    store = InMemoryStore(clock)
    calls: list[int] = []

    async def flaky(m: Message) -> None:
        calls.append(m.attempt)
        if m.attempt < 3:
            raise Transient("503 from ПОС")

    [row_id] = await store.enqueue(None, [msg("a1")])
    dispatcher = Dispatcher(store, handlers_for(flaky), settings=FAST, clock=clock)
    await dispatcher.drain()
    row = store.rows[row_id]
    assert row.state is State.PENDING
    assert row.available_at == clock.now + 10  # first backoff step
    assert row.last_error == "503 from ПОС"
    clock.advance(9)
    await dispatcher.drain()
    assert calls == [1]
    clock.advance(1)
    await dispatcher.drain()
    assert calls == [1, 2]
    assert store.rows[row_id].available_at == clock.now + 20
    clock.advance(20)
    await dispatcher.drain()
    assert calls == [1, 2, 3]
    assert state_of(store, row_id) is State.DONE


async def test_retry_after_from_the_remote_is_honoured() -> None:
    clock = ManualClock()
    store = InMemoryStore(clock)

    async def throttled(m: Message) -> None:
        if m.attempt == 1:
            raise Transient("429", retry_after=120.0)

    [row_id] = await store.enqueue(None, [msg("a1")])
    dispatcher = Dispatcher(store, handlers_for(throttled), settings=FAST, clock=clock)
    await dispatcher.drain()
    assert store.rows[row_id].available_at == clock.now + 120.0
    clock.advance(119)
    await dispatcher.drain()
    assert state_of(store, row_id) is State.PENDING
    clock.advance(1)
    await dispatcher.drain()
    assert state_of(store, row_id) is State.DONE


async def test_permanent_failure_is_dead_lettered_and_redrive_runs_it_again() -> None:
    store = InMemoryStore()
    fixed = False

    async def handler(m: Message) -> None:
        if not fixed:
            raise Permanent("400: category not allowed for this organization")

    [row_id] = await store.enqueue(None, [msg("a1")])
    dispatcher = Dispatcher(store, handlers_for(handler), settings=FAST)
    await dispatcher.drain()
    [dead] = await store.list_messages(State.DEAD)
    assert dead.id == row_id and dead.attempts == 1
    assert dead.last_error is not None and "category not allowed" in dead.last_error
    fixed = True
    assert await store.redrive(row_id)
    assert not await store.redrive(row_id)
    await dispatcher.drain()
    record = await store.get(row_id)
    assert record is not None and record.state is State.DONE
    assert record.attempts == 1 and record.redriven_at is not None


async def test_exhausted_attempts_dead_letter_the_row() -> None:
    clock = ManualClock()
    store = InMemoryStore(clock)

    async def down(m: Message) -> None:
        raise ConnectionResetError(104, "reset")

    policy = RetryPolicy(max_attempts=3, wait=tenacity.wait_fixed(1))
    [row_id] = await store.enqueue(None, [msg("a1")])
    dispatcher = Dispatcher(store, handlers_for(down, policy), settings=FAST, clock=clock)
    for _ in range(3):
        await dispatcher.drain()
        clock.advance(1)
    row = store.rows[row_id]
    assert row.state is State.DEAD and row.attempts == 3
    assert row.last_error is not None and "ConnectionResetError" in row.last_error


async def test_unknown_action_is_dead_lettered_not_dropped() -> None:
    store = InMemoryStore()

    async def handler(m: Message) -> None:
        raise AssertionError("must not run")

    [row_id] = await store.enqueue(None, [msg("a1", action="archive")])
    await Dispatcher(store, handlers_for(handler), settings=FAST).drain()
    row = store.rows[row_id]
    assert row.state is State.DEAD
    assert row.last_error == "no handler registered for this action"


async def test_actions_of_one_appeal_run_in_order_even_across_retries() -> None:
    clock = ManualClock()
    store = InMemoryStore(clock)
    log: list[tuple[str, str, str]] = []
    running: set[str] = set()

    async def handler(m: Message) -> None:
        assert m.ordering_key not in running, "two actions of one appeal at once"
        running.add(m.ordering_key)
        try:
            log.append((m.ordering_key, m.action, "start"))
            await asyncio.sleep(0)
            if m.action == "register" and m.attempt == 1 and m.ordering_key.endswith(("1", "4")):
                raise Transient("503")
            log.append((m.ordering_key, m.action, "done"))
        finally:
            running.discard(m.ordering_key)

    for i in range(6):
        await store.enqueue(
            None, [msg(f"a{i}", "register"), msg(f"a{i}", "notify"), msg(f"a{i}", "confirm")]
        )
    dispatcher = Dispatcher(store, handlers_for(handler), settings=FAST, clock=clock)
    await dispatcher.drain()
    clock.advance(100)
    await dispatcher.drain()
    assert all(r.state is State.DONE for r in store.rows.values())
    for i in range(6):
        done = [action for key, action, what in log if key == f"a{i}" and what == "done"]
        assert done == ["register", "notify", "confirm"]
        starts = [action for key, action, what in log if key == f"a{i}" and what == "start"]
        assert starts[-2:] == ["notify", "confirm"]


async def test_a_dead_row_holds_back_later_rows_of_its_appeal_until_redriven() -> None:
    store = InMemoryStore()
    broken = True
    ran: list[str] = []

    async def handler(m: Message) -> None:
        if m.action == "register" and broken:
            raise Permanent("400")
        ran.append(f"{m.ordering_key}:{m.action}")

    first, _second = await store.enqueue(None, [msg("a1", "register"), msg("a1", "notify")])
    await store.enqueue(None, [msg("a2", "notify")])
    dispatcher = Dispatcher(store, handlers_for(handler), settings=FAST)
    await dispatcher.drain()
    assert ran == ["a2:notify"]
    broken = False
    await store.redrive(first)
    await dispatcher.drain()
    assert ran == ["a2:notify", "a1:register", "a1:notify"]


async def test_handlers_run_concurrently_up_to_the_bound() -> None:
    store = InMemoryStore()
    now_running = 0
    peak = 0

    async def handler(m: Message) -> None:
        nonlocal now_running, peak
        now_running += 1
        peak = max(peak, now_running)
        await asyncio.sleep(0.01)
        now_running -= 1

    await store.enqueue(None, [msg(f"a{i}") for i in range(40)])
    settings = DispatcherSettings(batch_size=5, concurrency=6, poll_interval_s=0.01)
    await Dispatcher(store, handlers_for(handler), settings=settings).drain()
    assert peak == 6
    assert all(r.state is State.DONE for r in store.rows.values())


async def test_one_target_gets_at_most_target_concurrency_handlers_at_once() -> None:
    store = InMemoryStore()
    running: dict[str, int] = {"pos": 0, "delo": 0}
    peak: dict[str, int] = {"pos": 0, "delo": 0}

    async def handler(m: Message) -> None:
        running[m.target] += 1
        peak[m.target] = max(peak[m.target], running[m.target])
        await asyncio.sleep(0.01)
        running[m.target] -= 1

    await store.enqueue(None, [
        NewMessage(ordering_key=f"{t}{i}", target=t, action="register", payload={},
                   idempotency_key=f"{t}{i}:register")
        for t in ("pos", "delo") for i in range(30)
    ])
    handlers = Handlers([Registration(t, "register", handler, NO_JITTER) for t in ("pos", "delo")])
    settings = DispatcherSettings(batch_size=50, concurrency=40, target_concurrency=4,
                                  poll_interval_s=0.01)
    await Dispatcher(store, handlers, settings=settings).drain()
    assert peak == {"pos": 4, "delo": 4}
    assert all(r.state is State.DONE for r in store.rows.values())


async def test_heartbeat_keeps_a_slow_handlers_lease_so_nobody_reclaims_it() -> None:
    store = InMemoryStore()  # real clock: leases really expire without heartbeats
    runs: list[str] = []

    async def slow(m: Message) -> None:
        runs.append("start")
        await asyncio.sleep(1.0)
        runs.append("end")

    settings = DispatcherSettings(
        batch_size=1, concurrency=1, lease_s=0.3, poll_interval_s=0.02, reclaim_every_s=0.05
    )
    await store.enqueue(None, [msg("a1")])
    one = Dispatcher(store, handlers_for(slow), settings=settings)
    two = Dispatcher(store, handlers_for(slow), settings=settings)
    async with Running(one), Running(two):
        await wait_until(lambda: runs == ["start", "end"] and store.rows[1].state is State.DONE)
    assert runs == ["start", "end"]
    assert store.rows[1].attempts == 1


async def test_a_lost_lease_cancels_the_handler_and_its_late_outcome_is_refused() -> None:
    clock = ManualClock()
    store = InMemoryStore(clock)
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def stuck(m: Message) -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    [row_id] = await store.enqueue(None, [msg("a1")])
    settings = DispatcherSettings(lease_s=30, heartbeat_s=0.02, poll_interval_s=0.01)
    dispatcher = Dispatcher(store, handlers_for(stuck), settings=settings, clock=clock)
    async with Running(dispatcher):
        await started.wait()
        stale = store.rows[row_id]
        lease_attempt = stale.attempts
        # The worker froze past its lease; another replica reclaims and takes the row.
        clock.advance(31)
        assert await store.reclaim_expired() == [row_id]
        [taken] = await store.claim("other-replica", 10, 30)
        await asyncio.wait_for(cancelled.wait(), 2)
        await wait_until(lambda: dispatcher.in_flight == 0)
    assert taken.attempt == lease_attempt + 1
    row = store.rows[row_id]
    assert row.state is State.LEASED and row.lease_owner == "other-replica"
    stale_outcome = Settlement.done(Lease(row_id, lease_attempt))
    assert await store.settle(dispatcher.owner, [stale_outcome]) == set()
    assert await store.settle("other-replica", [Settlement.done(taken.lease)]) == {row_id}


async def test_rows_whose_earlier_attempts_never_finished_are_dead_lettered() -> None:
    clock = ManualClock()
    store = InMemoryStore(clock)
    policy = RetryPolicy(max_attempts=2)

    async def handler(m: Message) -> None:
        raise AssertionError("must not run a third time")

    [row_id] = await store.enqueue(None, [msg("a1")])
    for _ in range(2):  # two workers crashed holding it
        await store.claim("crashed", 1, 10)
        clock.advance(11)
        await store.reclaim_expired()
    await Dispatcher(store, handlers_for(handler, policy), settings=FAST, clock=clock).drain()
    row = store.rows[row_id]
    assert row.state is State.DEAD
    assert row.last_error is not None and "never finished" in row.last_error


async def test_stop_lets_quick_handlers_finish_and_releases_the_stuck_ones() -> None:
    store = InMemoryStore()
    started: set[str] = set()

    async def handler(m: Message) -> None:
        started.add(m.ordering_key)
        await asyncio.sleep(0.05 if m.ordering_key == "quick" else 60)

    quick, stuck = await store.enqueue(None, [msg("quick"), msg("stuck")])
    settings = DispatcherSettings(poll_interval_s=0.01, shutdown_grace_s=0.3)
    dispatcher = Dispatcher(store, handlers_for(handler), settings=settings)
    task = asyncio.create_task(dispatcher.run())
    await wait_until(lambda: started == {"quick", "stuck"})
    await dispatcher.stop()
    await task
    assert store.rows[quick].state is State.DONE
    released = store.rows[stuck]
    assert released.state is State.PENDING and released.lease_owner is None
    assert released.attempts == 1  # the cancelled attempt may have had an effect
    await store.enqueue(None, [msg("later")])
    await asyncio.sleep(0.05)
    assert store.rows[3].state is State.PENDING  # no claims after stop


async def test_new_rows_are_picked_up_without_waiting_for_the_poll_tick() -> None:
    store = InMemoryStore()
    done = asyncio.Event()

    async def handler(m: Message) -> None:
        done.set()

    settings = DispatcherSettings(poll_interval_s=30.0)
    dispatcher = Dispatcher(store, handlers_for(handler), settings=settings)
    async with Running(dispatcher):
        await asyncio.sleep(0.05)
        await store.enqueue(None, [msg("a1")])
        await asyncio.wait_for(done.wait(), 2.0)


@pytest.fixture
def captured() -> Any:
    capture = structlog.testing.LogCapture()
    structlog.configure(processors=[structlog.contextvars.merge_contextvars, capture])
    yield capture.entries
    structlog.reset_defaults()


async def test_logs_carry_row_ids_and_never_the_payload(captured: list[dict[str, Any]]) -> None:
    clock = ManualClock()
    store = InMemoryStore(clock)

    async def handler(m: Message) -> None:
        structlog.get_logger("adapter").info("adapter.called")
        raise Transient("503")

    [row_id] = await store.enqueue(None, [msg("a1", phone="+79161234567", name="Иванов")])
    await Dispatcher(store, handlers_for(handler), settings=FAST, clock=clock).drain()
    by_event = {e["event"]: e for e in captured}
    for event in ("adapter.called", "outbox.retry_scheduled"):
        entry = by_event[event]
        assert entry["outbox_id"] == row_id
        assert entry["target"] == "pos" and entry["action"] == "register"
        assert entry["attempt"] == 1
    assert by_event["outbox.retry_scheduled"]["reason"] == "503"
    flat = repr(captured)
    assert "+79161234567" not in flat and "Иванов" not in flat


async def test_stats_report_counts_and_oldest_pending_age() -> None:
    clock = ManualClock()
    store = InMemoryStore(clock)
    await store.enqueue(None, [msg("a1"), msg("a2")])
    clock.advance(42)
    stats = await store.stats()
    assert stats.by_state == {"pending": 2, "leased": 0, "done": 0, "dead": 0, "cancelled": 0}
    assert stats.by_target["pos"]["pending"] == 2
    assert stats.oldest_pending_age_s == 42


async def test_a_given_up_row_tells_its_dead_letter_hook_before_it_is_dead() -> None:
    store = InMemoryStore()
    heard: list[tuple[int, str]] = []

    async def handler(m: Message) -> None:
        raise Permanent("400: category not allowed")

    async def on_dead(m: Message, reason: str) -> None:
        heard.append((m.id, reason))

    [row_id] = await store.enqueue(None, [msg("a1")])
    handlers = Handlers([Registration("pos", "register", handler, NO_JITTER, on_dead=on_dead)])
    await Dispatcher(store, handlers, settings=FAST).drain()

    assert state_of(store, row_id) is State.DEAD
    assert heard == [(row_id, "permanent: 400: category not allowed")]


async def test_a_failing_dead_letter_hook_brings_the_row_back_until_the_hook_succeeds() -> None:
    clock = ManualClock()
    store = InMemoryStore(clock=clock)
    calls = 0

    async def handler(m: Message) -> None:
        raise Permanent("400: refused")

    async def on_dead(m: Message, reason: str) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("database briefly unavailable")

    [row_id] = await store.enqueue(None, [msg("a1")])
    handlers = Handlers([Registration("pos", "register", handler, NO_JITTER, on_dead=on_dead)])
    dispatcher = Dispatcher(store, handlers, settings=FAST, clock=clock)
    await dispatcher.drain()
    assert state_of(store, row_id) is State.PENDING  # not silently dead: the hook must hear

    clock.advance(10)
    await dispatcher.drain()

    assert state_of(store, row_id) is State.DEAD
    assert calls == 2
