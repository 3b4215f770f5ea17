"""End to end: intake → registered in the ПОС simulator, beside a bare httpx client.

    python -m bench.e2e [--calls 2000] [--concurrency 32] [--rate 100] [--seconds 10]
                        [--database-url postgresql+asyncpg://.../empty_db]

Three processes on loopback: the ПОС simulator, `gateway run` on a fresh SQLite file (or
the database given, migrated first; use an empty one), and this one (the load). Prints
JSON with:
- bare: creates/s a bare httpx client gets from the same simulator;
- gateway: calls/s from the first POST until every call is registered in ПОС;
- ratio: gateway / bare (DESIGN target ≥ 0.60);
- latency: intake → registered at a steady `--rate` calls/s, from the gateway's own status
  history (p50/p99 ms; target p99 < 50 ms at 100 calls/s);
- cpu_ms_per_call: CPU time (user + system, from /proc) the gateway process spent per
  call, in the burst and at the steady rate (target ≤ 2 ms): the figure a noisy machine
  changes least.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

SIM_TOKEN = "pos-sim-token"
TOKEN = "bench-operator"
ADMIN = "bench-admin"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


@contextlib.contextmanager
def _process(args: list[str], env: dict[str, str], cwd: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _call(n: int) -> dict[str, Any]:
    return {
        "journal_id": f"BENCH-{uuid.uuid4().hex[:12]}-{n}",
        "hotline": "122",
        "received_at": datetime.now(UTC).isoformat(),
        "operator": "Оператор",
        "applicant": {"last_name": "Иванов", "first_name": "Иван", "phone": "+79005550000"},
        "problem_address": "г. Примерск, ул. Образцовая, 1",
        "topic": "Отопление",
        "summary": "Нет отопления",
        "answer_channel": "phone",
    }


async def _bare(sim_url: str, calls: int, concurrency: int) -> float:
    """A bare client creating messages straight in the simulator, same concurrency."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=sim_url, limits=limits, timeout=30,
                                 headers={"Authorization": f"Bearer {SIM_TOKEN}"}) as client:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for n in range(calls):
            queue.put_nowait(n)

        async def worker() -> None:
            while not queue.empty():
                n = queue.get_nowait()
                key = uuid.uuid4().hex
                response = await client.post(
                    "/api/v1/messages", headers={"Idempotency-Key": key},
                    json={"source": "operator", "external_id": key, "category_id": 101,
                          "subcategory_id": 10105, "organization_id": 5001,
                          "text": f"Центр мониторинга 112. bench {n}",
                          "problem_address": "г. Примерск",
                          "applicant": {"last_name": "Иванов", "first_name": "Иван",
                                        "phone": "+79005550000"},
                          "received_at": datetime.now(UTC).isoformat()})
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return calls / (time.perf_counter() - started)


async def _registered(client: httpx.AsyncClient) -> int:
    status = (await client.get("/status", headers={"Authorization": f"Bearer {ADMIN}"})).json()
    by_status: dict[str, int] = status["appeals"]["by_status"]
    return sum(v for k, v in by_status.items() if k != "accepted")


async def _gateway(base: str, calls: int, concurrency: int) -> float:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30,
                                 headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        before = await _registered(client)
        queue: asyncio.Queue[int] = asyncio.Queue()
        for n in range(calls):
            queue.put_nowait(n)

        async def worker() -> None:
            while not queue.empty():
                n = queue.get_nowait()
                response = await client.post("/api/v1/calls", json=_call(n))
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        while await _registered(client) < before + calls:  # noqa: ASYNC110 - another process
            await asyncio.sleep(0.05)
        return calls / (time.perf_counter() - started)


async def _steady(base: str, rate: float, seconds: float) -> list[str]:
    """Calls at a steady rate; returns their ids."""
    ids: list[str] = []
    async with httpx.AsyncClient(base_url=base, timeout=30,
                                 headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        async def one(n: int) -> None:
            response = await client.post("/api/v1/calls", json=_call(n))
            response.raise_for_status()
            ids.append(response.json()["id"])

        tasks = []
        started = time.perf_counter()
        for n in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, started + n / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(one(n)))
        await asyncio.gather(*tasks)
        target = len(ids)
        while await _registered(client) < target:  # noqa: ASYNC110 - another process
            await asyncio.sleep(0.05)
    return ids


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (getrusage sees only this one)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # Fields 14 and 15 of proc(5) (utime, stime); [0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_LATENCY_SQL = ("SELECT a.id, a.created_at, h.at FROM appeals a JOIN appeal_status_history h "
                "ON h.appeal_id = a.id AND h.status = 'registered'")


def _moment(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


async def _latency_rows(url: str) -> list[Any]:
    from sqlalchemy import text

    from gateway.storage.database import create_engine

    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return list(await conn.execute(text(_LATENCY_SQL)))
    finally:
        await engine.dispose()


def _latencies(url: str, ids: list[str]) -> list[float]:
    """Intake → registered in ms, from the gateway's status history (its own clock)."""
    if url.startswith("sqlite"):
        with sqlite3.connect(url.split("///", 1)[1]) as conn:
            rows = conn.execute(_LATENCY_SQL).fetchall()
    else:
        rows = asyncio.run(_latency_rows(url))
    wanted = set(ids)
    out = []
    for appeal_id, created, registered in rows:
        if appeal_id in wanted:
            delta = _moment(registered) - _moment(created)
            out.append(delta.total_seconds() * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--database-url", default=None,
                        help="the gateway's database (default: a fresh SQLite file)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    sim_port, gw_port = _free_port(), _free_port()
    sim_url, base = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{gw_port}"
    env = {**os.environ, "GATEWAY_LOG_LEVEL": "warning"}
    database_url = args.database_url or f"sqlite+aiosqlite:///{work / 'gateway.db'}"
    gw_env = {
        **env,
        "GATEWAY_DATABASE_URL": database_url,
        "GATEWAY_HTTP__PORT": str(gw_port),
        "GATEWAY_API_TOKENS": f"operator:{TOKEN},admin:{ADMIN}",
        "GATEWAY_POS__BASE_URL": sim_url,
        "GATEWAY_POS__TOKEN": SIM_TOKEN,
        "GATEWAY_POS__POLL_INTERVAL_S": "3600",  # measure forwarding, not polling
    }
    gateway_cmd = [sys.executable, "-m", "gateway.cli"]
    if not database_url.startswith("sqlite"):
        subprocess.run([*gateway_cmd, "db", "upgrade"], env=gw_env, cwd=work, check=True,
                       stdout=subprocess.DEVNULL)
    with _process([*gateway_cmd, "sim", "pos", "--port", str(sim_port)], env, work):
        _wait_http(f"{sim_url}/_sim/stats")
        # The gateway starts first: its start-up poll then finds an empty simulator rather
        # than paging through the bare client's messages while it is being measured.
        with _process([*gateway_cmd, "run"], gw_env, work) as gw:
            _wait_http(f"{base}/healthz")
            bare = asyncio.run(_bare(sim_url, args.calls, args.concurrency))
            cpu = _cpu_s(gw.pid)
            gateway = asyncio.run(_gateway(base, args.calls, args.concurrency))
            burst_cpu = _cpu_s(gw.pid) - cpu
            cpu = _cpu_s(gw.pid)
            ids = asyncio.run(_steady(base, args.rate, args.seconds))
            steady_cpu = _cpu_s(gw.pid) - cpu
        latencies = sorted(_latencies(database_url, ids))
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else None
    print(json.dumps({
        "calls": args.calls,
        "concurrency": args.concurrency,
        "bare_httpx_creates_per_s": round(bare, 1),
        "gateway_intake_to_registered_per_s": round(gateway, 1),
        "ratio": round(gateway / bare, 3),
        "steady_rate_per_s": args.rate,
        "steady_calls": len(ids),
        "latency_ms_p50": round(statistics.median(latencies), 2) if latencies else None,
        "latency_ms_p99": round(p99, 2) if p99 is not None else None,
        "cpu_ms_per_call_burst": round(burst_cpu / args.calls * 1000, 3),
        "cpu_ms_per_call_steady": round(steady_cpu / max(1, len(ids)) * 1000, 3),
        "database": database_url.split("+")[0].split(":")[0],
        "cpu_count": os.cpu_count(),
    }, indent=2))


if __name__ == "__main__":
    main()
