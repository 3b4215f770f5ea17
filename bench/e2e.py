"""End to end: intake → registered in the ПОС simulator, beside a bare httpx client.

    python -m bench.e2e [--calls 2000] [--concurrency 32] [--rate 100] [--seconds 10]

Three processes on loopback: the ПОС simulator, `gateway run` on a fresh SQLite file, and
this one (the load). Prints JSON with:
- bare: creates/s a bare httpx client gets from the same simulator;
- gateway: calls/s from the first POST until every call is registered in ПОС;
- ratio: gateway / bare (DESIGN target ≥ 0.60);
- latency: intake → registered at a steady `--rate` calls/s, from the gateway's own status
  history (p50/p99 ms; target p99 < 50 ms at 100 calls/s).
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


def _latencies(db: Path, ids: list[str]) -> list[float]:
    """Intake → registered in ms, from the gateway's status history (its own clock)."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT a.id, a.created_at, h.at FROM appeals a JOIN appeal_status_history h "
            "ON h.appeal_id = a.id AND h.status = 'registered'").fetchall()
    wanted = set(ids)
    out = []
    for appeal_id, created, registered in rows:
        if appeal_id in wanted:
            delta = datetime.fromisoformat(registered) - datetime.fromisoformat(created)
            out.append(delta.total_seconds() * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    sim_port, gw_port = _free_port(), _free_port()
    sim_url, base = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{gw_port}"
    env = {**os.environ, "GATEWAY_LOG_LEVEL": "warning"}
    gw_env = {
        **env,
        "GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{work / 'gateway.db'}",
        "GATEWAY_HTTP__PORT": str(gw_port),
        "GATEWAY_API_TOKENS": f"operator:{TOKEN},admin:{ADMIN}",
        "GATEWAY_POS__BASE_URL": sim_url,
        "GATEWAY_POS__TOKEN": SIM_TOKEN,
        "GATEWAY_POS__POLL_INTERVAL_S": "3600",  # measure forwarding, not polling
    }
    gateway_cmd = [sys.executable, "-m", "gateway.cli"]
    with _process([*gateway_cmd, "sim", "pos", "--port", str(sim_port)], env, work):
        _wait_http(f"{sim_url}/_sim/stats")
        # The gateway starts first: its start-up poll then finds an empty simulator rather
        # than paging through the bare client's messages while it is being measured.
        with _process([*gateway_cmd, "run"], gw_env, work):
            _wait_http(f"{base}/healthz")
            bare = asyncio.run(_bare(sim_url, args.calls, args.concurrency))
            gateway = asyncio.run(_gateway(base, args.calls, args.concurrency))
            ids = asyncio.run(_steady(base, args.rate, args.seconds))
        latencies = sorted(_latencies(work / "gateway.db", ids))
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
        "cpu_count": os.cpu_count(),
    }, indent=2))


if __name__ == "__main__":
    main()
