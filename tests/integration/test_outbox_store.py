"""The outbox store on real SQLite and PostgreSQL: claims, leases, fencing, order, replicas."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import tenacity
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.storage.database import create_engine
from outbox import (
    Dispatcher,
    DispatcherSettings,
    Handlers,
    Lease,
    Message,
    NewMessage,
    Registration,
    RetryPolicy,
    Settlement,
    SqlOutboxStore,
    State,
    Transient,
    metadata,
    outbox_messages,
    store_for,
)
from outbox.testing import ManualClock
from tests.integration.outbox_worker import ACTIONS, TARGET, create_effect_tables

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(name))


async def fresh_engine(url: str) -> AsyncEngine:
    engine = create_engine(url, pool_size=20)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.drop_all)
        await conn.run_sync(metadata.create_all)
    return engine


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    engine = await fresh_engine(db_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=time.time())


@pytest.fixture
def store(engine: AsyncEngine, clock: ManualClock) -> SqlOutboxStore:
    return store_for(engine, clock=clock)


def msg(key: str, action: str = "register", *, at: float | None = None) -> NewMessage:
    return NewMessage(
        ordering_key=key,
        target="pos",
        action=action,
        payload={"appeal_id": key},
        idempotency_key=f"{key}:{action}",
        available_at=at,
    )


async def enqueue(store: SqlOutboxStore, *messages: NewMessage) -> list[int]:
    async with store.engine.begin() as conn:
        return await store.enqueue(conn, list(messages))


async def state(store: SqlOutboxStore, message_id: int) -> State:
    record = await store.get(message_id)
    assert record is not None
    return record.state


async def test_rows_commit_or_roll_back_with_the_callers_transaction(store: SqlOutboxStore) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with store.engine.begin() as conn:
            await store.enqueue(conn, [msg("a1")])
            raise Boom
    assert await store.list_messages() == []
    ids = await enqueue(store, msg("a1"), msg("a2"))
    records = await store.list_messages()
    assert [r.id for r in records] == ids
    assert records[0].payload == {"appeal_id": "a1"} and records[0].state is State.PENDING


async def test_claims_lease_due_rows_once_in_batches(store: SqlOutboxStore) -> None:
    ids = await enqueue(store, *(msg(f"a{i}") for i in range(7)))
    first = await store.claim("w1", 5, 30)
    second = await store.claim("w2", 5, 30)
    assert len(first) == 5 and len(second) == 2
    assert sorted(m.id for m in first + second) == ids
    assert all(m.attempt == 1 for m in first + second)
    assert await store.claim("w3", 5, 30) == []
    record = await store.get(first[0].id)
    assert record is not None and record.lease_owner == "w1"
    assert record.lease_expires_at == pytest.approx(store.app_now() + 30)


async def test_rows_are_not_claimed_before_they_are_due(
    store: SqlOutboxStore, clock: ManualClock
) -> None:
    [later] = await enqueue(store, msg("a1", at=clock.now + 60))
    assert await store.claim("w", 10, 30) == []
    clock.advance(60)
    assert [m.id for m in await store.claim("w", 10, 30)] == [later]


async def test_one_appeals_rows_run_strictly_one_after_another(store: SqlOutboxStore) -> None:
    register, notify, confirm = await enqueue(
        store, msg("a1", "register"), msg("a1", "notify"), msg("a1", "confirm")
    )
    [other] = await enqueue(store, msg("a2"))
    claimed = await store.claim("w", 10, 30)
    assert sorted(m.id for m in claimed) == [register, other]
    assert await store.claim("w", 10, 30) == []
    [m] = [m for m in claimed if m.id == register]
    # A retry keeps the later rows waiting, too.
    retry = Settlement.retry(m.lease, store.app_now() - 1, "503")
    assert await store.settle("w", [retry]) == {m.id}
    [again] = await store.claim("w", 10, 30)
    assert again.id == register and again.attempt == 2
    assert await store.settle("w", [Settlement.done(again.lease)]) == {again.id}
    [nxt] = await store.claim("w", 10, 30)
    assert nxt.id == notify
    assert await store.settle("w", [Settlement.done(nxt.lease)]) == {nxt.id}
    assert [m.id for m in await store.claim("w", 10, 30)] == [confirm]


async def test_a_dead_row_blocks_its_appeal_until_redriven(store: SqlOutboxStore) -> None:
    register, notify = await enqueue(store, msg("a1", "register"), msg("a1", "notify"))
    [m] = await store.claim("w", 10, 30)
    outcome = Settlement.dead(m.lease, "permanent: 400 bad category")
    assert await store.settle("w", [outcome]) == {register}
    assert await store.claim("w", 10, 30) == []
    [dead] = await store.list_messages(State.DEAD)
    assert dead.id == register and dead.last_error == "permanent: 400 bad category"
    assert await store.redrive(register)
    assert not await store.redrive(register)
    [m] = await store.claim("w", 10, 30)
    assert m.id == register and m.attempt == 1  # a fresh budget after re-drive
    assert m.window_start > m.created_at or m.window_start == pytest.approx(m.created_at)
    assert await store.settle("w", [Settlement.done(m.lease)]) == {m.id}
    assert [x.id for x in await store.claim("w", 10, 30)] == [notify]


async def test_a_cancelled_dead_row_no_longer_blocks_its_appeal(store: SqlOutboxStore) -> None:
    """Issue 12: a row made moot by a later event is cancelled, not left to block."""
    answer, confirm = await enqueue(store, msg("a1", "answer"), msg("a1", "confirm"))
    [m] = await store.claim("w", 10, 30)
    await store.settle("w", [Settlement.dead(m.lease, "permanent: 550 mailbox unavailable")])
    assert await store.claim("w", 10, 30) == []

    async with store.engine.begin() as conn:
        assert await store.cancel(conn, ["a1:answer", "a1:confirm-not-there"], "moot") == 1

    assert await state(store, answer) is State.CANCELLED
    assert not await store.redrive(answer)  # cancelled is final
    assert [x.id for x in await store.claim("w", 10, 30)] == [confirm]
    async with store.engine.begin() as conn:
        # A running (leased) row is left to finish; its handler re-checks the appeal.
        assert await store.cancel(conn, ["a1:confirm"], "moot") == 0
    assert await state(store, confirm) is State.LEASED
    assert (await store.stats()).by_state.get("cancelled") == 1


async def test_retry_records_the_reason_and_the_due_time(
    store: SqlOutboxStore, clock: ManualClock
) -> None:
    [row_id] = await enqueue(store, msg("a1"))
    [m] = await store.claim("w", 1, 30)
    retry = Settlement.retry(m.lease, clock.now + 45, "429 Too Many Requests")
    assert await store.settle("w", [retry]) == {row_id}
    record = await store.get(row_id)
    assert record is not None
    assert record.state is State.PENDING and record.available_at == pytest.approx(clock.now + 45)
    assert record.last_error == "429 Too Many Requests" and record.lease_owner is None
    assert await store.claim("w", 1, 30) == []


async def test_expired_leases_are_reclaimed_and_live_ones_are_not(
    store: SqlOutboxStore, clock: ManualClock
) -> None:
    crashed_row, live_row, done_row = await enqueue(store, msg("a1"), msg("a2"), msg("a3"))
    claimed = {m.id: m for m in await store.claim("w", 10, 10)}
    assert await store.settle("w", [Settlement.done(claimed[done_row].lease)]) == {done_row}
    clock.advance(8)
    assert await store.renew("w", [live_row], 10) == {live_row}
    clock.advance(3)  # crashed_row's lease expired; live_row's was renewed
    assert await store.reclaim_expired() == [crashed_row]
    assert await store.reclaim_expired() == []
    assert await state(store, crashed_row) is State.PENDING
    assert await state(store, live_row) is State.LEASED
    assert await state(store, done_row) is State.DONE
    [again] = await store.claim("w2", 10, 10)
    assert again.id == crashed_row and again.attempt == 2


async def test_a_late_outcome_after_reclaim_is_rejected(
    store: SqlOutboxStore, clock: ManualClock
) -> None:
    [row_id] = await enqueue(store, msg("a1"))
    [slow] = await store.claim("slow-worker", 1, 5)
    clock.advance(6)
    assert await store.reclaim_expired() == [row_id]
    [fresh] = await store.claim("fresh-worker", 1, 5)
    # The slow worker wakes up: none of its outcomes may overwrite the new lease.
    for late in (
        Settlement.done(slow.lease),
        Settlement.retry(slow.lease, clock.now, "503"),
        Settlement.dead(slow.lease, "400"),
        Settlement.release(slow.lease),
    ):
        assert await store.settle("slow-worker", [late]) == set()
    assert await store.renew("slow-worker", [row_id], 5) == set()
    record = await store.get(row_id)
    assert record is not None and record.lease_owner == "fresh-worker"
    assert await store.settle("fresh-worker", [Settlement.dead(fresh.lease, "400")]) == {row_id}
    # And the fresh worker's outcome is final: a second one is refused as well.
    assert await store.settle("fresh-worker", [Settlement.done(fresh.lease)]) == set()
    assert await state(store, row_id) is State.DEAD


async def test_a_stale_attempt_of_the_same_owner_is_rejected(
    store: SqlOutboxStore, clock: ManualClock
) -> None:
    [row_id] = await enqueue(store, msg("a1"))
    [first] = await store.claim("w", 1, 5)
    clock.advance(6)
    await store.reclaim_expired()
    [second] = await store.claim("w", 1, 5)
    assert await store.settle("w", [Settlement.done(first.lease)]) == set()
    assert await store.settle("w", [Settlement.done(second.lease)]) == {row_id}
    assert second.lease == Lease(row_id, 2)


async def test_release_returns_rows_without_an_outcome(store: SqlOutboxStore) -> None:
    ids = await enqueue(store, msg("a1"), msg("a2"))
    claimed = await store.claim("w", 10, 30)
    assert await store.settle("w", [Settlement.release(m.lease) for m in claimed]) == set(ids)
    again = await store.claim("w", 10, 30)
    assert sorted(m.id for m in again) == ids and all(m.attempt == 2 for m in again)


async def test_stats_dead_letters_and_redrive_all(
    store: SqlOutboxStore, clock: ManualClock
) -> None:
    ids = await enqueue(store, *(msg(f"a{i}") for i in range(5)))
    await enqueue(
        store,
        NewMessage(ordering_key="b1", target="delo", action="register", payload={},
                   idempotency_key="b1"),
    )
    claimed = {m.id: m for m in await store.claim("w", 3, 30)}
    dead = [Settlement.dead(claimed[i].lease, "permanent: 400") for i in ids[:2]]
    assert await store.settle("w", dead) == set(ids[:2])
    clock.advance(30)
    stats = await store.stats()
    assert stats.by_state == {"pending": 3, "leased": 1, "done": 0, "dead": 2, "cancelled": 0}
    assert stats.by_target["pos"] == {"pending": 2, "leased": 1, "done": 0, "dead": 2,
                                      "cancelled": 0}
    assert stats.by_target["delo"]["pending"] == 1
    assert stats.oldest_pending_age_s == pytest.approx(30, abs=1)
    page = await store.list_messages(State.DEAD, limit=1)
    assert [r.id for r in page] == ids[:1]
    rest = await store.list_messages(State.DEAD, limit=10, after_id=page[0].id)
    assert [r.id for r in rest] == ids[1:2]
    assert await store.list_messages(State.DEAD, target="delo") == []
    assert await store.redrive_all_dead(target="delo") == 0
    assert await store.redrive_all_dead() == 2
    assert (await store.stats()).by_state["dead"] == 0


async def test_listeners_wake_when_rows_commit_not_before(store: SqlOutboxStore) -> None:
    async with store.notifications() as woken:
        await asyncio.sleep(0.2)  # the LISTEN connection is up
        woken.clear()
        async with store.engine.begin() as conn:
            await store.enqueue(conn, [msg("a1")])
            await asyncio.sleep(0.1)
            assert not woken.is_set()
        await asyncio.wait_for(woken.wait(), 2.0)


# -- replicas ------------------------------------------------------------------------


class Overlaps:
    """Records handler runs and every moment one row ran twice at once."""

    def __init__(self) -> None:
        self.running: set[int] = set()
        self.violations: list[int] = []
        self.runs: dict[int, int] = {}

    def handler(self, fail_rate: float) -> Callable[[Message], Any]:
        async def run(m: Message) -> None:
            if m.id in self.running:
                self.violations.append(m.id)
            self.running.add(m.id)
            try:
                await asyncio.sleep(random.uniform(0, 0.004))
                if random.random() < fail_rate:
                    raise Transient("simulated 503")
                self.runs[m.id] = self.runs.get(m.id, 0) + 1
            finally:
                self.running.discard(m.id)

        return run


@pytest.mark.parametrize("replicas", [2, 3])
async def test_replicas_never_run_a_row_twice_at_once(
    db_url: str, engine: AsyncEngine, replicas: int
) -> None:
    seeder = store_for(engine)
    keys = [f"a{i}" for i in range(200)]
    for action in ACTIONS:
        await enqueue(seeder, *(msg(k, action) for k in keys))
    overlaps = Overlaps()
    policy = RetryPolicy(max_attempts=1000, wait=tenacity.wait_fixed(0.01))
    handler = overlaps.handler(fail_rate=0.1)
    settings = DispatcherSettings(
        batch_size=20, concurrency=16, lease_s=5, poll_interval_s=0.02, reclaim_every_s=0.1
    )
    engines = [create_engine(db_url, pool_size=10) for _ in range(replicas)]
    dispatchers = [
        Dispatcher(
            store_for(e),
            Handlers(Registration("pos", a, handler, policy) for a in ACTIONS),
            settings=settings,
        )
        for e in engines
    ]
    tasks = [asyncio.create_task(d.run()) for d in dispatchers]
    try:
        deadline = time.monotonic() + 60
        while (await seeder.stats()).by_state["done"] < len(keys) * len(ACTIONS):
            assert time.monotonic() < deadline, "replicas did not finish"
            await asyncio.sleep(0.05)
    finally:
        for d in dispatchers:
            await d.stop()
        await asyncio.gather(*tasks)
        for e in engines:
            await e.dispose()
    assert overlaps.violations == []
    assert len(overlaps.runs) == len(keys) * len(ACTIONS)
    assert set(overlaps.runs.values()) == {1}  # no lease was ever lost, so no repeats
    # Per-appeal order held across replicas: ids of one key finished in id order.
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(
                    outbox_messages.c.ordering_key,
                    outbox_messages.c.id,
                    outbox_messages.c.finished_at,
                )
            )
        ).all()
    by_key: dict[str, list[tuple[int, float]]] = {}
    for key, row_id, finished in rows:
        by_key.setdefault(key, []).append((row_id, finished))
    for done in by_key.values():
        assert [i for i, _ in sorted(done, key=lambda x: x[1])] == sorted(i for i, _ in done)


def spawn_worker(url: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.outbox_worker", "--url", url, *extra],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def wait_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", f"worker failed to start: {line!r}"


@pytest.mark.postgres
async def test_worker_processes_on_postgres_never_run_a_row_twice_at_once(
    postgres_url: str,
) -> None:
    engine = await fresh_engine(postgres_url)
    await create_effect_tables(engine)
    store = store_for(engine)
    keys = [f"a{i}" for i in range(300)]
    for action in ACTIONS:
        await enqueue(
            store,
            *(
                NewMessage(k, TARGET, action, {}, idempotency_key=f"{k}:{action}")
                for k in keys
            ),
        )
    total = len(keys) * len(ACTIONS)
    # A few connections each: test runs at once share the server's max_connections.
    workers = [
        spawn_worker(postgres_url, "--fail-rate", "0.1", "--work", "0.01", "--lease", "5",
                     "--concurrency", "8", "--batch", "16")
        for _ in range(3)
    ]
    try:
        for w in workers:
            wait_ready(w)
        deadline = time.monotonic() + 90
        while (await store.stats()).by_state["done"] < total:
            assert time.monotonic() < deadline, "workers did not finish"
            assert all(w.poll() is None for w in workers), "a worker died"
            await asyncio.sleep(0.1)
    finally:
        for w in workers:
            if w.poll() is None:
                w.send_signal(signal.SIGTERM)
        for w in workers:
            w.wait(timeout=30)
    async with engine.connect() as conn:
        calls = (
            await conn.execute(
                text("SELECT outbox_id, owner, started_at, finished_at FROM effect_calls")
            )
        ).all()
        effects = (await conn.execute(text("SELECT count(*) FROM effects"))).scalar_one()
    await engine.dispose()
    assert effects == total
    owners = {owner for _, owner, _, _ in calls}
    assert len(owners) == 3, "every worker process took part"
    spans: dict[int, list[tuple[float, float]]] = {}
    for row_id, _, started, finished in calls:
        spans.setdefault(row_id, []).append((started, finished))
    for row_spans in spans.values():
        row_spans.sort()
        for (_, end), (start, _) in itertools.pairwise(row_spans):
            assert start >= end, "one row ran in two places at once"
