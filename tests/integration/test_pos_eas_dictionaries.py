"""ПОС's EAS dictionaries: synced from the simulator, stored whole, and compared with the
routing table by `gateway routes check`; the daemon syncs at start."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from adapters.pos.eas_client import EasClient
from adapters.pos.eas_dictionaries import CategoryUse, category_problems, load
from adapters.pos.eas_simulator import SIM_KEY, EasSimulator, create_eas_app
from config.settings import PosEasSettings, PosSettings, Settings
from gateway.bootstrap import bootstrap, sync_pos_dictionaries

GATEWAY = Path(sys.executable).with_name("gateway")
SECRETS = {"client_id": "sim-client", "client_secret": "sim-secret",
           "oauth_client": "sim-oauth", "oauth_secret": "sim-oauth-secret"}


@pytest.fixture
async def simulator() -> AsyncIterator[tuple[str, EasSimulator]]:
    server = TestServer(create_eas_app())
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/"), server.app[SIM_KEY]
    finally:
        await server.close()


def client_for(url: str) -> EasClient:
    return EasClient(url, region_id=73, **SECRETS)


async def test_sync_stores_the_regions_and_the_regions_subjects_and_subsubjects(
        simulator: tuple[str, EasSimulator], tmp_path: Path) -> None:
    url, sim = simulator
    sim.subjects[73][0]["deleted"] = True  # 101 retired
    target = tmp_path / "var" / "pos-dictionaries.json"

    async with client_for(url) as client:
        synced = await sync_pos_dictionaries(client, target)

    stored = load(target)
    assert stored == synced
    assert [r.id for r in stored.regions] == [73] and stored.region_id == 73
    assert {s.id for s in stored.subjects} >= {101, 199}
    assert next(s for s in stored.subjects if s.id == 101).deleted
    heating = next(s for s in stored.subsubjects if s.id == 10101)
    assert heating.subject_id == 101
    assert category_problems(stored, [
        CategoryUse("rule A", 102, 10201),  # fine
        CategoryUse("rule B", 101, 10101),  # retired category
        CategoryUse("rule C", 555, 10202),  # unknown category
        CategoryUse("rule D", 103, 10201),  # subcategory of another category
        CategoryUse("rule E", 103, 99999),  # unknown subcategory
    ]) == [
        "rule B: category 101 is retired in ПОС",
        "rule C: category 555 is not among ПОС's subjects of region 73",
        "rule D: subcategory 10201 belongs to ПОС category 102, not 103",
        "rule E: subcategory 99999 is not among ПОС's subsubjects of region 73",
    ]


def run_gateway(*argv: str, url: str, dictionaries: Path, cwd: Path
                ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env |= {"GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{cwd / 'gateway.db'}",
            "GATEWAY_POS__BASE_URL": url, "GATEWAY_POS__DIALECT": "eas",
            "GATEWAY_POS__EAS__REGION_ID": "73",
            "GATEWAY_POS__EAS__DICTIONARIES_FILE": str(dictionaries),
            **{f"GATEWAY_POS__EAS__{k.upper()}": v for k, v in SECRETS.items()}}
    return subprocess.run([str(GATEWAY), *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60, check=False)


async def test_routes_check_reports_table_categories_absent_from_the_synced_dictionary(
        simulator: tuple[str, EasSimulator], tmp_path: Path) -> None:
    url, sim = simulator
    dictionaries = tmp_path / "pos-dictionaries.json"

    unsynced = await asyncio.to_thread(run_gateway, "routes", "check", url=url,
                                       dictionaries=dictionaries, cwd=tmp_path)
    assert unsynced.returncode == 0, unsynced.stdout + unsynced.stderr
    assert "not synced yet" in unsynced.stdout

    synced = await asyncio.to_thread(run_gateway, "pos", "sync-dictionaries", url=url,
                                     dictionaries=dictionaries, cwd=tmp_path)
    assert synced.returncode == 0, synced.stderr
    clean = await asyncio.to_thread(run_gateway, "routes", "check", url=url,
                                    dictionaries=dictionaries, cwd=tmp_path)
    assert clean.returncode == 0, clean.stdout
    assert "Every ПОС category and subcategory of the table is in them" in clean.stdout

    sim.subjects[73] = [s for s in sim.subjects[73] if s["id"] != 103]  # ПОС dropped roads
    await asyncio.to_thread(run_gateway, "pos", "sync-dictionaries", url=url,
                            dictionaries=dictionaries, cwd=tmp_path)
    stale = await asyncio.to_thread(run_gateway, "routes", "check", url=url,
                                    dictionaries=dictionaries, cwd=tmp_path)
    assert stale.returncode == 1
    assert "category 103 is not among ПОС's subjects of region 73" in stale.stdout


async def test_the_daemon_syncs_the_dictionaries_when_it_starts(
        simulator: tuple[str, EasSimulator], tmp_path: Path) -> None:
    from gateway.storage.migrate import upgrade

    url, _ = simulator
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    await asyncio.to_thread(upgrade, database_url)
    target = tmp_path / "pos-dictionaries.json"
    settings = Settings(database_url=database_url, pos=PosSettings(
        base_url=url, dialect="eas", eas=PosEasSettings(
            region_id=73, dictionaries_file=target,
            **{k: SecretStr(v) for k, v in SECRETS.items()})))
    gw = bootstrap(settings, registry=CollectorRegistry())
    try:
        await gw.daemon.start()
        async with asyncio.timeout(30):
            while not target.exists():  # noqa: ASYNC110 - a file, no event to wait on
                await asyncio.sleep(0.05)
    finally:
        with contextlib.suppress(Exception):
            await gw.daemon.stop()
        await gw.close()
    stored = load(target)
    assert stored is not None and stored.subjects
