"""SIGKILL the dispatcher daemon at random moments and check nothing is lost or doubled.

A worker subprocess (tests/integration/outbox_worker.py) delivers a few thousand rows to
a remote that deduplicates by idempotency key and logs every call. We kill it with
SIGKILL several times mid-run, restart it each time, and finally stop it with SIGTERM.
Then: every row is done, each idempotency key has exactly one effect, effects of one
appeal happened in order, a row delivered once was called once, and no row was ever
running in two places at once.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import signal
import time

import pytest
from sqlalchemy import text

from outbox import NewMessage, State, store_for
from tests.integration.outbox_worker import ACTIONS, TARGET, create_effect_tables
from tests.integration.test_outbox_store import (  # noqa: F401 - db_url is a fixture
    db_url,
    fresh_engine,
    spawn_worker,
    wait_ready,
)

APPEALS = 1000
KILLS = 6


@pytest.mark.slow
async def test_sigkilled_daemon_loses_nothing_and_duplicates_no_effect(
    db_url: str,  # noqa: F811 - the fixture imported above
) -> None:
    url = db_url
    db = url.split(":")[0]
    rng = random.Random()
    engine = await fresh_engine(url)
    await create_effect_tables(engine)
    store = store_for(engine)
    keys = [f"appeal-{i}" for i in range(APPEALS)]
    async with engine.begin() as conn:
        for action in ACTIONS:
            await store.enqueue(
                conn, [NewMessage(k, TARGET, action, {}, f"{k}:{action}") for k in keys]
            )
    total = APPEALS * len(ACTIONS)
    worker_args = ("--lease", "1.0", "--concurrency", "16", "--batch", "16",
                   "--work", "0.02", "--fail-rate", "0.05")

    kills = 0
    for _ in range(KILLS):
        worker = spawn_worker(url, *worker_args)
        wait_ready(worker)
        await asyncio.sleep(rng.uniform(0.2, 0.9))
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        kills += 1
        if (await store.stats()).by_state["done"] == total:
            break
    progress_while_killing = (await store.stats()).by_state["done"]

    worker = spawn_worker(url, *worker_args)
    try:
        wait_ready(worker)
        deadline = time.monotonic() + 120
        while (await store.stats()).by_state["done"] < total:
            assert time.monotonic() < deadline, "rows still unfinished"
            assert worker.poll() is None, "worker died"
            await asyncio.sleep(0.1)
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0

    stats = await store.stats()
    assert stats.by_state == {
        State.PENDING.value: 0, State.LEASED.value: 0, State.DONE.value: total, State.DEAD.value: 0,
        State.CANCELLED.value: 0,
    }
    async with engine.connect() as conn:
        effects = (
            await conn.execute(text("SELECT idempotency_key, seq FROM effects"))
        ).all()
        calls = (
            await conn.execute(
                text(
                    "SELECT c.outbox_id, c.started_at, c.finished_at, o.attempts "
                    "FROM effect_calls c JOIN outbox_messages o ON o.id = c.outbox_id"
                )
            )
        ).all()
    await engine.dispose()

    # Exactly one effect per idempotency key, for every row.
    assert len(effects) == total
    assert {k for k, _ in effects} == {f"{k}:{a}" for k in keys for a in ACTIONS}
    # Per-appeal order: register, then notify, then confirm.
    seq = dict(effects)
    for k in keys:
        assert seq[f"{k}:register"] < seq[f"{k}:notify"] < seq[f"{k}:confirm"]
    # Repeated calls only where a row was claimed again (crash or retry).
    calls_per_row: dict[int, list[tuple[float, float]]] = {}
    attempts: dict[int, int] = {}
    for row_id, started, finished, row_attempts in calls:
        calls_per_row.setdefault(row_id, []).append((started, finished))
        attempts[row_id] = row_attempts
    assert len(calls_per_row) == total
    for row_id, spans in calls_per_row.items():
        assert len(spans) <= attempts[row_id]
        spans.sort()
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end, "one row ran in two places at once"
    redelivered = sum(1 for spans in calls_per_row.values() if len(spans) > 1)
    print(
        f"{db}: {kills} SIGKILLs, {progress_while_killing}/{total} done while killing, "
        f"{redelivered} rows called more than once, {len(calls)} calls"
    )
