"""The acceptance script of issue 2 as a test: `gateway run` on an empty SQLite file, for real.

The gateway runs as a separate process, started the way an operator starts it, and is
driven over HTTP exactly as the contract says.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from gateway.storage.tables import metadata as gateway_metadata
from outbox import metadata as outbox_metadata
from tests.conftest import API_TOKENS, valid_call

OPERATOR = {"Authorization": "Bearer op"}
ADMIN = {"Authorization": "Bearer ad"}
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
# What the gateway must never print (the applicant of valid_call()).
PERSONAL = ["Пряников", "Всеволод", "5551234", "555-12-34", "vsevolod.pryanikov",
            "Кролюницкого", "Гончарова", "нет отопления"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def gateway_env(**variables: str) -> dict[str, str]:
    """The developer's environment without any GATEWAY_* setting, plus `variables`."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("GATEWAY_")}
    env.update(variables)
    return env


def gateway_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "gateway.cli", *args]


def run_gateway(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(gateway_command(*args), cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


@dataclass
class Running:
    process: subprocess.Popen[str]
    base_url: str
    database: Path

    def stop(self) -> tuple[int, str, str]:
        self.process.send_signal(signal.SIGTERM)
        stdout, stderr = self.process.communicate(timeout=STOP_TIMEOUT_S)
        return self.process.returncode, stdout, stderr


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    database = tmp_path / "gateway.db"
    port = free_port()
    env = gateway_env(
        GATEWAY_DATABASE_URL=f"sqlite+aiosqlite:///{database}",
        GATEWAY_HTTP__PORT=str(port),
        GATEWAY_API_TOKENS=API_TOKENS,
    )
    process = subprocess.Popen(gateway_command("run"), cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    gateway = Running(process, f"http://127.0.0.1:{port}", database)
    try:
        wait_until_healthy(gateway)
        yield gateway
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=STOP_TIMEOUT_S)


def wait_until_healthy(gateway: Running) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if gateway.process.poll() is not None:
            _, stderr = gateway.process.communicate()
            pytest.fail(f"gateway run exited with {gateway.process.returncode}: {stderr}")
        try:
            if httpx.get(f"{gateway.base_url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"gateway run did not answer /healthz within {START_TIMEOUT_S} s")


def test_gateway_run_takes_calls_on_an_empty_sqlite_file_and_stops_cleanly(
    running: Running,
) -> None:
    with httpx.Client(base_url=running.base_url, timeout=10) as http:
        now = time.time()
        received_at = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now - 60))
        call = valid_call(received_at=received_at)
        accepted = http.post("/api/v1/calls", json=call, headers=OPERATOR)
        duplicate = http.post("/api/v1/calls", json=call, headers=OPERATOR)
        anonymous_call = valid_call(received_at=received_at, journal_id="KRS-2026-000124")
        anonymous_call["applicant"] = {"last_name": "", "first_name": "",
                                       "phone": "+79175551234"}
        anonymous = http.post("/api/v1/calls", json=anonymous_call, headers=OPERATOR)
        malformed = http.post("/api/v1/calls", content=b'{"journal_id": ',
                              headers={**OPERATOR, "Content-Type": "application/json"})
        unauthorised = http.post("/api/v1/calls", json=call)
        ready = http.get("/readyz")
        status = http.get("/status", headers=ADMIN)

    assert accepted.status_code == 201, accepted.text
    appeal_id = accepted.json()["id"]
    assert accepted.json()["status"] == "accepted"
    assert accepted.json()["route"]["system"] == "pos"
    assert duplicate.status_code == 200
    assert duplicate.json() == accepted.json()
    assert anonymous.status_code == 422
    assert anonymous.json()["error"]["code"] == "anonymous"
    assert malformed.status_code == 422
    assert unauthorised.status_code == 401
    assert ready.status_code == 200
    assert status.status_code == 200
    report = status.json()
    assert sum(report["appeals"]["by_status"].values()) == 1
    outbox = report["outbox"]
    assert sum(outbox[state] for state in ("pending", "leased", "done", "dead")) == 1
    assert report["version"]
    for value in PERSONAL:
        assert value not in status.text

    code, stdout, stderr = running.stop()

    assert code == 0, stderr
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert lines, "gateway run logged nothing"
    events = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all("event" in event for event in events)
    assert appeal_id in stdout
    for value in PERSONAL:
        assert value not in stdout + stderr, value


def test_gateway_status_reads_the_database_after_a_run(running: Running) -> None:
    with httpx.Client(base_url=running.base_url, timeout=10) as http:
        received_at = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() - 60))
        assert http.post("/api/v1/calls", json=valid_call(received_at=received_at),
                         headers=OPERATOR).status_code == 201
    code, _, stderr = running.stop()
    assert code == 0, stderr

    shown = run_gateway(running.database.parent, gateway_env(
        GATEWAY_DATABASE_URL=f"sqlite+aiosqlite:///{running.database}"), "status")

    assert shown.returncode == 0, shown.stderr
    assert "outbox" in shown.stdout
    assert "appeals" in shown.stdout
    for value in PERSONAL:
        assert value not in shown.stdout


def test_db_upgrade_builds_the_schema_the_code_uses_on_a_fresh_file(tmp_path: Path) -> None:
    database = tmp_path / "fresh.db"
    env = gateway_env(GATEWAY_DATABASE_URL=f"sqlite+aiosqlite:///{database}")

    upgraded = run_gateway(tmp_path, env, "db", "upgrade")

    assert upgraded.returncode == 0, upgraded.stderr
    engine = create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            differences = compare_metadata(context, [gateway_metadata, outbox_metadata])
    finally:
        engine.dispose()
    # Tables and columns: a column the code reads but the migrations never made is a 500
    # on every call. (Index differences are a performance matter, checked elsewhere.)
    structural = [d for d in differences
                  if isinstance(d, tuple) and d[0] in {"add_table", "remove_table",
                                                       "add_column", "remove_column"}]
    assert structural == []

    again = run_gateway(tmp_path, env, "db", "upgrade")
    assert again.returncode == 0, again.stderr  # upgrading an up-to-date database is a no-op

    shown = run_gateway(tmp_path, env, "status")
    assert shown.returncode == 0, shown.stderr
    assert "outbox" in shown.stdout and "appeals" in shown.stdout
    assert "pending 0" in shown.stdout


def test_a_bad_setting_stops_gateway_run_with_a_message_naming_it(tmp_path: Path) -> None:
    env = gateway_env(
        GATEWAY_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}",
        GATEWAY_HTTP__PORT="abc",
    )

    result = run_gateway(tmp_path, env, "run")

    assert result.returncode != 0
    assert "GATEWAY_HTTP__PORT" in result.stderr or "http.port" in result.stderr
    assert not (tmp_path / "gateway.db").exists()  # nothing was started


def test_a_bad_token_setting_stops_gateway_run_without_echoing_the_token(
    tmp_path: Path,
) -> None:
    env = gateway_env(
        GATEWAY_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}",
        GATEWAY_API_TOKENS="root:very-secret-token",
    )

    result = run_gateway(tmp_path, env, "run")

    assert result.returncode != 0
    assert "GATEWAY_API_TOKENS" in result.stderr
    assert "very-secret-token" not in result.stderr + result.stdout
