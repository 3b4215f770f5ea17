"""Outbox benchmark: throughput, HTTP overhead against a bare client, memory at 1M rows.

    python -m bench.outbox                       # everything, figures as JSON
    python -m bench.outbox --scenario noop --db postgres --workers 4 --rows 100000
    python -m bench.outbox --scenario http --rows 5000
    python -m bench.outbox --scenario rss --rss-rows 1000000

Scenarios (targets from DESIGN.md §4):
- noop: rows claimed and completed per second with a no-op handler, by worker PROCESSES
  started beforehand and released together (start-up is not measured). Targets:
  ≥ 5,000/s on SQLite; ≥ 5,000/s on PostgreSQL with 4 workers.
- http: an aiohttp server on loopback (own process); first a bare httpx client posts N
  requests, then the dispatcher delivers N outbox rows whose handler posts the same
  request with the same client settings. The figure is the ratio of the two rates.
- enqueue: single-row intake, the common case: one transaction per row (the caller's
  `store.transaction()` + `enqueue`), `--enqueue-concurrency` writers; rows/s.
- rss: 1,000,000 pending rows, a daemon process running the dispatcher for a while;
  its peak RSS (target < 200 MB) and how many rows it completed meanwhile.

Timing lives here only; tests never assert on it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import structlog

from config.settings import OutboxSettings
from gateway.storage.database import create_engine
from outbox import (
    Dispatcher,
    DispatcherSettings,
    Handlers,
    Message,
    OutboxMetrics,
    Registration,
    RetryPolicy,
    metadata,
    store_for,
)

DEFAULT_PG_URL = os.environ.get(
    "GATEWAY_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
TARGET = "bench"
ACTION = "deliver"
REPO = Path(__file__).resolve().parents[1]


def quiet_logs() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


# -- seeding -------------------------------------------------------------------------


async def reset_table(url: str) -> None:
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.drop_all)
        await conn.run_sync(metadata.create_all)
    await engine.dispose()


def _rows(count: int, now: float) -> list[tuple[Any, ...]]:
    # One appeal per row: a register action each, the common case at intake.
    return [
        (f"appeal-{i}", TARGET, ACTION, f'{{"appeal_id": {i}}}', f"appeal-{i}:{ACTION}",
         "pending", 0, now, now, now)
        for i in range(count)
    ]


COLUMNS = ("ordering_key", "target", "action", "payload", "idempotency_key", "state",
           "attempts", "available_at", "created_at", "updated_at")


async def seed(url: str, count: int) -> None:
    """Bulk-load pending rows (the intake path is not what is measured here)."""
    await reset_table(url)
    now = time.time()
    chunk = 100_000
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1]
        with sqlite3.connect(path) as db:
            placeholders = ", ".join("?" * len(COLUMNS))
            sql = f"INSERT INTO outbox_messages ({', '.join(COLUMNS)}) VALUES ({placeholders})"
            for start in range(0, count, chunk):
                db.executemany(sql, _rows(min(chunk, count - start), now))
                db.commit()
        return
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        for start in range(0, count, chunk):
            rows = _rows(min(chunk, count - start), now)
            await conn.copy_records_to_table("outbox_messages", records=rows, columns=COLUMNS)
        await conn.execute("ANALYZE outbox_messages")
    finally:
        await conn.close()


async def count_done(url: str) -> dict[str, int]:
    engine = create_engine(url)
    stats = await store_for(engine).stats()
    await engine.dispose()
    return stats.by_state


# -- worker processes ----------------------------------------------------------------


def _settings(args: argparse.Namespace) -> DispatcherSettings:
    return DispatcherSettings(
        batch_size=args.batch,
        concurrency=args.concurrency,
        target_concurrency=args.target_concurrency,
        lease_s=30.0,
        poll_interval_s=0.05,
    )


async def _noop(_m: Message) -> None:
    return None


async def worker_main(args: argparse.Namespace) -> None:
    """Wait for "go" on stdin, drain the outbox, report how many rows this worker did."""
    quiet_logs()
    engine = create_engine(args.url, pool_size=8)
    store = store_for(engine)
    metrics = OutboxMetrics()
    handlers = Handlers([Registration(TARGET, ACTION, _noop, RetryPolicy())])
    dispatcher = Dispatcher(store, handlers, settings=_settings(args), metrics=metrics)
    # Warm the pool and the statement cache so the measured run starts hot.
    await store.reclaim_expired()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    started = time.perf_counter()
    await dispatcher.drain()
    elapsed = time.perf_counter() - started
    done = metrics.completed.labels(TARGET, ACTION)._value.get()
    print(json.dumps({"done": int(done), "seconds": elapsed}), flush=True)
    await engine.dispose()


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.outbox", *args],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


async def bench_noop(url: str, rows: int, workers: int, args: argparse.Namespace) -> dict[str, Any]:
    await seed(url, rows)
    procs = [
        spawn("--role", "worker", "--url", url, "--concurrency", str(args.concurrency),
              "--target-concurrency", str(args.target_concurrency), "--batch", str(args.batch))
        for _ in range(workers)
    ]
    for p in procs:
        assert p.stdout is not None
        line = p.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"worker did not start: {line!r}")
    started = time.perf_counter()
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    per_worker = []
    for p in procs:
        assert p.stdout is not None
        per_worker.append(json.loads(p.stdout.readline()))
        p.wait()
    elapsed = time.perf_counter() - started
    states = await count_done(url)
    return {
        "db": url.split("+")[0],
        "workers": workers,
        "rows": rows,
        "seconds": round(elapsed, 3),
        "msg_per_s": round(rows / elapsed),
        "all_done": states["done"] == rows,
        "per_worker_done": [w["done"] for w in per_worker],
        "batch_size": args.batch,
        "concurrency": args.concurrency,
        "target_concurrency": args.target_concurrency,
    }


# -- single-row enqueue --------------------------------------------------------------


async def bench_enqueue(url: str, rows: int, args: argparse.Namespace) -> dict[str, Any]:
    from outbox import NewMessage

    await reset_table(url)
    engine = create_engine(url, pool_size=8)
    store = store_for(engine)
    await store.reclaim_expired()  # pool and caches warm
    counter = iter(range(rows))

    async def writer() -> None:
        for i in counter:
            message = NewMessage(ordering_key=f"appeal-{i}", target=TARGET, action=ACTION,
                                 payload={"appeal_id": i}, idempotency_key=f"appeal-{i}:x")
            async with store.transaction() as conn:
                await store.enqueue(conn, [message])

    started = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(args.enqueue_concurrency)))
    elapsed = time.perf_counter() - started
    pending = (await store.stats()).by_state["pending"]
    await engine.dispose()
    return {
        "db": url.split("+")[0],
        "rows": rows,
        "writers": args.enqueue_concurrency,
        "rows_per_s": round(rows / elapsed),
        "all_pending": pending == rows,
    }


# -- HTTP ----------------------------------------------------------------------------


def server_main(port: int) -> None:
    from aiohttp import web

    async def register(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"id": body.get("key"), "status": "registered"}, status=201)

    app = web.Application()
    app.router.add_post("/register", register)
    print("ready", flush=True)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def bench_http(url: str, rows: int, args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    port = free_port()
    server = spawn("--role", "server", "--port", str(port))
    assert server.stdout is not None
    server.stdout.readline()
    base = f"http://127.0.0.1:{port}"
    limits = httpx.Limits(max_connections=args.http_concurrency,
                          max_keepalive_connections=args.http_concurrency)
    try:
        async with httpx.AsyncClient(base_url=base, limits=limits) as client:
            for _ in range(50):  # connections up before either run
                while True:
                    try:
                        (await client.post("/register", json={"key": "warm"})).raise_for_status()
                        break
                    except httpx.ConnectError:
                        await asyncio.sleep(0.05)

            # Bare client: `http_concurrency` coroutines posting as fast as they can.
            counter = iter(range(rows))

            async def pump() -> None:
                for i in counter:
                    r = await client.post("/register", json={"key": f"appeal-{i}"})
                    r.raise_for_status()

            started = time.perf_counter()
            await asyncio.gather(*(pump() for _ in range(args.http_concurrency)))
            bare = rows / (time.perf_counter() - started)

            # The same requests through the outbox.
            await seed(url, rows)
            engine = create_engine(url, pool_size=8)
            store = store_for(engine)

            async def deliver(m: Message) -> None:
                r = await client.post("/register", json={"key": m.idempotency_key})
                r.raise_for_status()

            settings = DispatcherSettings(
                batch_size=args.batch, concurrency=args.http_concurrency, poll_interval_s=0.05
            )
            dispatcher = Dispatcher(
                store, Handlers([Registration(TARGET, ACTION, deliver)]), settings=settings
            )
            started = time.perf_counter()
            await dispatcher.drain()
            through_outbox = rows / (time.perf_counter() - started)
            states = (await store.stats()).by_state
            await engine.dispose()
    finally:
        server.terminate()
        server.wait()
    return {
        "db": url.split("+")[0],
        "rows": rows,
        "http_concurrency": args.http_concurrency,
        "bare_httpx_req_per_s": round(bare),
        "outbox_msg_per_s": round(through_outbox),
        "ratio": round(through_outbox / bare, 3),
        "all_done": states["done"] == rows,
    }


# -- memory --------------------------------------------------------------------------


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


async def daemon_main(args: argparse.Namespace) -> None:
    """The gateway's outbox half: dispatcher plus a /status-style stats read every 5 s."""
    quiet_logs()
    engine = create_engine(args.url, pool_size=8)
    store = store_for(engine)
    metrics = OutboxMetrics()
    handlers = Handlers([Registration(TARGET, ACTION, _noop)])
    dispatcher = Dispatcher(store, handlers, settings=_settings(args), metrics=metrics)
    task = asyncio.create_task(dispatcher.run())
    print("ready", flush=True)
    deadline = time.monotonic() + args.rss_seconds
    while time.monotonic() < deadline:
        await metrics.refresh(store)
        await asyncio.sleep(5.0)
    await dispatcher.stop()
    await task
    done = metrics.completed.labels(TARGET, ACTION)._value.get()
    print(json.dumps({"done": int(done)}), flush=True)
    await engine.dispose()


async def bench_rss(url: str, rows: int, args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    await seed(url, rows)
    seeded_in = time.perf_counter() - started
    proc = spawn("--role", "daemon", "--url", url, "--concurrency", str(args.concurrency),
                 "--target-concurrency", str(args.target_concurrency), "--batch", str(args.batch),
                 "--rss-seconds", str(args.rss_seconds))
    assert proc.stdout is not None
    proc.stdout.readline()
    samples = []
    while proc.poll() is None:
        try:
            samples.append(rss_mb(proc.pid))
            peak = rss_mb(proc.pid, "VmHWM")
        except (FileNotFoundError, ProcessLookupError):
            break
        await asyncio.sleep(0.2)
        if len(samples) > 2 and samples[-1] == 0.0:
            break
    result = json.loads(proc.stdout.readline())
    proc.wait()
    return {
        "db": url.split("+")[0],
        "pending_rows_at_start": rows,
        "seeded_in_s": round(seeded_in, 1),
        "run_seconds": args.rss_seconds,
        "rows_completed_during_run": result["done"],
        "rss_peak_mb": round(peak, 1),
        "rss_last_mb": round(samples[-1], 1) if samples else None,
    }


# -- main ----------------------------------------------------------------------------


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.outbox", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", choices=["all", "noop", "enqueue", "http", "rss"],
                   default="all")
    p.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes (default: 1 on SQLite, 1 and 4 on PostgreSQL)")
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--http-rows", type=int, default=5_000)
    p.add_argument("--enqueue-rows", type=int, default=5_000)
    p.add_argument("--enqueue-concurrency", type=int, default=1)
    p.add_argument("--rss-rows", type=int, default=1_000_000)
    p.add_argument("--rss-seconds", type=float, default=20.0)
    # The daemon's shipped defaults: the benchmark measures what a user runs.
    shipped = OutboxSettings()
    p.add_argument("--concurrency", type=int, default=shipped.concurrency)
    p.add_argument("--target-concurrency", type=int, default=shipped.target_concurrency)
    p.add_argument("--batch", type=int, default=shipped.batch_size)
    p.add_argument("--http-concurrency", type=int, default=32)
    p.add_argument("--pg-url", default=DEFAULT_PG_URL)
    p.add_argument("--sqlite-path", default=None)
    # Internal: child processes.
    p.add_argument("--role", choices=["main", "worker", "server", "daemon"], default="main",
                   help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    return p.parse_args()


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    tmp = tempfile.mkdtemp(prefix="outbox-bench-")
    sqlite_url = f"sqlite+aiosqlite:///{args.sqlite_path or os.path.join(tmp, 'bench.db')}"
    dbs = {"sqlite": [sqlite_url], "postgres": [args.pg_url],
           "both": [sqlite_url, args.pg_url]}[args.db]
    out: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "targets": {
            "noop_sqlite_msg_per_s": 5000,
            "noop_postgres_4_workers_msg_per_s": 5000,
            "http_ratio_vs_bare_httpx": 0.6,
            "rss_mb_with_1M_pending": 200,
        },
    }
    if args.scenario in ("all", "noop"):
        runs = []
        for url in dbs:
            counts = [args.workers] if args.workers else (
                [1] if url.startswith("sqlite") else [1, 4])
            for n in counts:
                runs.append(await bench_noop(url, args.rows, n, args))
        out["noop"] = runs
    if args.scenario in ("all", "enqueue"):
        out["enqueue"] = [await bench_enqueue(url, args.enqueue_rows, args) for url in dbs]
    if args.scenario in ("all", "http"):
        out["http"] = [await bench_http(url, args.http_rows, args) for url in dbs]
    if args.scenario in ("all", "rss"):
        out["rss"] = [await bench_rss(url, args.rss_rows, args) for url in dbs[:1]]
    return out


def main() -> None:
    args = parse()
    if args.role == "worker":
        asyncio.run(worker_main(args))
    elif args.role == "daemon":
        asyncio.run(daemon_main(args))
    elif args.role == "server":
        server_main(args.port)
    else:
        quiet_logs()
        print(json.dumps(asyncio.run(main_async(args)), indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
