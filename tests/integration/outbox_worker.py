"""A daemon process for the crash and multi-process tests: a real dispatcher whose handler
behaves like an adapter honouring idempotency keys.

Every call is logged in `effect_calls` (the remote's access log: who, which attempt,
when it started and ended); the effect itself goes to `effects`, keyed by idempotency
key and written with ON CONFLICT DO NOTHING, as a remote that deduplicates by key would.
The tests then check: every row done, one effect per key, calls never overlapping.

    python -m tests.integration.outbox_worker --url URL [--lease 1.0] [--fail-rate 0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import signal
import time
from collections.abc import Awaitable, Callable

import structlog
import tenacity
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.storage.database import create_engine
from outbox import (
    Dispatcher,
    DispatcherSettings,
    Handlers,
    Message,
    Registration,
    RetryPolicy,
    SqlOutboxStore,
    Transient,
    store_for,
)

TARGET = "sim"
ACTIONS = ("register", "notify", "confirm")

EFFECT_TABLES = (
    """CREATE TABLE IF NOT EXISTS effects (
        idempotency_key VARCHAR(128) PRIMARY KEY,
        outbox_id BIGINT NOT NULL,
        seq BIGINT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS effect_calls (
        outbox_id BIGINT NOT NULL,
        idempotency_key VARCHAR(128) NOT NULL,
        attempt INTEGER NOT NULL,
        owner VARCHAR(64) NOT NULL,
        started_at DOUBLE PRECISION NOT NULL,
        finished_at DOUBLE PRECISION NOT NULL
    )""",
)


async def create_effect_tables(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        for ddl in ("DROP TABLE IF EXISTS effects", "DROP TABLE IF EXISTS effect_calls"):
            await conn.execute(text(ddl))
        for ddl in EFFECT_TABLES:
            await conn.execute(text(ddl))


def make_handler(
    store: SqlOutboxStore, owner: str, fail_rate: float, work_s: float
) -> Callable[[Message], Awaitable[None]]:
    # Nanosecond clock plus a counter: increasing across restarts of this worker.
    seq_source = (time.time_ns() + i for i in range(1 << 62))
    async def remote_call(m: Message) -> None:
        started = time.time()
        await asyncio.sleep(random.uniform(0, work_s))
        failed = random.random() < fail_rate
        async with store.transaction() as conn:
            await conn.execute(
                text("INSERT INTO effect_calls VALUES (:id, :k, :attempt, :owner, :s, :f)"),
                {
                    "id": m.id,
                    "k": m.idempotency_key,
                    "attempt": m.attempt,
                    "owner": owner,
                    "s": started,
                    "f": time.time(),
                },
            )
            if not failed:
                # The effect: once per idempotency key, like a deduplicating remote;
                # `seq` records the order effects happened in (per-appeal order check).
                await conn.execute(
                    text(
                        "INSERT INTO effects (idempotency_key, outbox_id, seq) "
                        "VALUES (:k, :id, :seq) ON CONFLICT (idempotency_key) DO NOTHING"
                    ),
                    {"k": m.idempotency_key, "id": m.id, "seq": next(seq_source)},
                )
        if failed:
            raise Transient("simulated 503")

    return remote_call


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--lease", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--fail-rate", type=float, default=0.0)
    parser.add_argument("--work", type=float, default=0.005, help="max seconds per call")
    parser.add_argument("--exit-when-idle", action="store_true")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    engine = create_engine(args.url, pool_size=args.concurrency + 5)
    store = store_for(engine)
    settings = DispatcherSettings(
        batch_size=args.batch,
        concurrency=args.concurrency,
        lease_s=args.lease,
        poll_interval_s=0.05,
        reclaim_every_s=args.lease / 4,
        shutdown_grace_s=2.0,
    )
    owner = f"worker-{os.getpid()}-{random.randrange(1 << 30)}"
    policy = RetryPolicy(max_attempts=1000, wait=tenacity.wait_random(0, 0.05), timeout_s=10)
    handler = make_handler(store, owner, args.fail_rate, args.work)
    handlers = Handlers(Registration(TARGET, a, handler, policy) for a in ACTIONS)
    dispatcher = Dispatcher(store, handlers, settings=settings, owner=owner)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, lambda: loop.create_task(dispatcher.stop()))
    print("ready", flush=True)
    if args.exit_when_idle:
        await dispatcher.drain()
    else:
        await dispatcher.run()
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
