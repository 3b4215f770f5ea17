"""The monthly report [001: 18] for 100,000 calls: time and peak memory (target 10 s, 300 MB).

    python -m bench.reports [--calls 100000] [--postgres postgresql+asyncpg://.../db]

Seeds a fresh SQLite database (and, when a PostgreSQL server is reachable, a scratch
database on it, dropped afterwards) with a month of calls in every state, then builds the
monthly .xlsx in a fresh process, so its peak RSS is the report's and not the seeding's.
Prints JSON per database: seconds, peak RSS in MB, calls counted, file size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from gateway.storage.database import create_engine
from gateway.storage.migrate import upgrade
from gateway.storage.tables import appeals

MONTH = "2026-11"
START = datetime(2026, 10, 31, 21, 0, tzinfo=UTC)  # 1 November, 00:00 in Moscow
TOPICS = ["Отопление", "Транспорт", "Уборка снега", "Благоустройство придомовой территории; "
          "городов и поселков", "Горячее водоснабжение", "Прочие вопросы"]
EXECUTORS = ["Министерство ЖКХ", "Управление транспорта", "Администрация района",
             "Служба благоустройства"]
ROUTE: dict[str, Any] = {"system": "pos", "executor": "bench", "pos": None, "delo": None,
                         "email": [], "deadline_policy": "default"}


def _row(i: int, rng: random.Random) -> dict[str, Any]:
    received = START + timedelta(seconds=rng.randrange(30 * 24 * 3600))
    due = received + timedelta(days=rng.choice((1, 3, 10)))
    state = rng.random()
    ready = received + timedelta(hours=rng.uniform(1, 200)) if state < 0.7 else None
    delivered = ready + timedelta(hours=rng.uniform(0.5, 30)) if ready and state < 0.6 else None
    status = ("delivered" if delivered else "answer_ready" if ready
              else rng.choice(("registered", "in_progress", "accepted")))
    system = rng.choice(("pos", "pos", "delo", "email", "none"))
    return {
        "id": str(uuid.UUID(int=i + 1)), "hotline": "122", "journal_id": f"B-{i}",
        "idempotency_key": None, "content_hash": "0" * 64, "received_at": received,
        "operator": "Оператор", "applicant": {"last_name": "Иванов", "first_name": "Иван"},
        "problem_address": None, "topic": rng.choice(TOPICS), "summary": "bench",
        "repeat": False, "urgency": "control", "answer_channel": "phone",
        "informational": False, "status": status, "route": ROUTE, "route_system": system,
        "executor": rng.choice(EXECUTORS), "due_at": due, "feedback_due_at": None,
        "request_due_at": None, "overdue": ready is None and rng.random() < 0.3,
        "external_system": None, "external_id": None, "external_number": None,
        "external_stage": None, "answer_text": None, "answer_ready_at": ready,
        "interim_reminded_at": None, "callback_attempts": 0, "next_callback_at": None,
        "needs_supervisor": False, "delivered_at": delivered,
        "delivery_channel": "phone" if delivered else None,
        "created_at": received, "updated_at": received, "version": 1,
    }


async def seed(url: str, calls: int) -> None:
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    rng = random.Random(15)  # a fixed, reproducible data set
    try:
        for start in range(0, calls, 5000):
            rows = [_row(i, rng) for i in range(start, min(start + 5000, calls))]
            async with engine.begin() as conn:
                await conn.execute(insert(appeals), rows)
    finally:
        await engine.dispose()


async def measure(url: str) -> dict[str, Any]:
    """In a fresh process: the report as `gateway report monthly` builds it."""
    from adapters.reports.xlsx import XlsxReportWriter
    from config.calendar import build_work_calendar
    from config.settings import Settings
    from gateway.bootstrap import Adapters, bootstrap
    from gateway.domain.reporting import month

    settings = Settings(database_url=url)
    build_work_calendar()  # the calendar's first build is start-up, not the report
    gateway = bootstrap(settings, adapters=Adapters())
    assert gateway.reports is not None
    try:
        started = time.perf_counter()
        report = await gateway.reports.monthly("122", month(MONTH))
        content = XlsxReportWriter().monthly(report)
        seconds = time.perf_counter() - started
    finally:
        await gateway.close()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(peak_mb, 1),
            "calls": report.total, "file_kb": round(len(content) / 1024, 1)}


def _measure_in_child(url: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "bench.reports", "--measure", url],
                         check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


async def _postgres_scratch(server_url: str) -> str | None:
    import asyncpg  # type: ignore[import-untyped]
    from sqlalchemy.engine import make_url

    url = make_url(server_url)
    dsn = url.set(drivername="postgresql", database="postgres").render_as_string(False)
    name = f"bench_reports_{os.getpid()}"
    try:
        conn = await asyncpg.connect(dsn, timeout=5)
    except (OSError, asyncpg.PostgresError):
        return None
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return url.set(database=name).render_as_string(False)


async def _drop(db_url: str) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    url = make_url(db_url)
    conn = await asyncpg.connect(url.set(drivername="postgresql", database="postgres")
                                 .render_as_string(False), timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--postgres", default=os.environ.get(
        "GATEWAY_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(asyncio.run(measure(args.measure))))
        return
    results: dict[str, Any] = {"calls_seeded": args.calls}
    work = Path(tempfile.mkdtemp(prefix="bench-reports-"))
    sqlite_url = f"sqlite+aiosqlite:///{work / 'gateway.db'}"
    asyncio.run(seed(sqlite_url, args.calls))
    results["sqlite"] = _measure_in_child(sqlite_url)
    pg_url = asyncio.run(_postgres_scratch(args.postgres))
    if pg_url is None:
        results["postgresql"] = "not reachable"
    else:
        try:
            asyncio.run(seed(pg_url, args.calls))
            results["postgresql"] = _measure_in_child(pg_url)
        finally:
            asyncio.run(_drop(pg_url))
    print(json.dumps(results, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
