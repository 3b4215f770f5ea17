"""Shared fixtures: real databases only (SQLite files, the local PostgreSQL server)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import Table, func, select

from config.settings import Settings
from gateway.clock import ManualClock

if TYPE_CHECKING:
    from gateway.bootstrap import Gateway

POSTGRES_URL_ENV = "GATEWAY_TEST_POSTGRES_URL"
REQUIRE_POSTGRES_ENV = "GATEWAY_TEST_REQUIRE_POSTGRES"
DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def _plain_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


def _postgres_reachable(url: str) -> str | None:
    """None when reachable, else why not."""
    import asyncpg

    async def probe() -> None:
        conn = await asyncpg.connect(_plain_dsn(url), timeout=3)
        await conn.close()

    try:
        asyncio.run(probe())
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        return f"{type(exc).__name__}: {exc}"
    return None


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    """The server for PostgreSQL tests; CI sets GATEWAY_TEST_REQUIRE_POSTGRES=1.

    Its database is only where the suite connects to create and drop its own (see
    `postgres_url`); no test writes to it, so runs sharing a server cannot collide.
    """
    url = os.environ.get(POSTGRES_URL_ENV, DEFAULT_POSTGRES_URL)
    problem = _postgres_reachable(url)
    if problem is not None:
        message = f"PostgreSQL at {url} is not reachable ({problem}); set {POSTGRES_URL_ENV}"
        if os.environ.get(REQUIRE_POSTGRES_ENV) == "1":
            pytest.fail(message)
        pytest.skip(message)
    return url


@pytest.fixture(scope="session")
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A PostgreSQL database of this test run's own (gw_test_<pid>_<random>), created on
    the server at the start and dropped at the end, open connections and all.

    Every PostgreSQL test, and every worker process such a test starts, uses it, so two
    runs at once on one server (two developers, CI beside a local run) never share tables.
    """
    import asyncpg
    from sqlalchemy.engine import make_url

    name = f"gw_test_{os.getpid()}_{secrets.token_hex(4)}"

    async def admin(statement: str) -> None:
        conn = await asyncpg.connect(_plain_dsn(postgres_server_url), timeout=10)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres_server_url).set(database=name).render_as_string(
            hide_password=False
        )
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    yield f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"


# --- a running gateway API on a real database --------------------------------------------
#
# On PostgreSQL: this run's own database (`postgres_url`), emptied and migrated before
# each test by `migrated_postgres_url`.

API_TOKENS = "operator:op,delivery:dl,supervisor:sv,admin:ad"
OPERATOR = {"Authorization": "Bearer op"}
DELIVERY = {"Authorization": "Bearer dl"}
SUPERVISOR = {"Authorization": "Bearer sv"}
ADMIN = {"Authorization": "Bearer ad"}
# Monday 2026-11-23, 10:00 in Moscow: a working day, within the hour after the call below.
FIXED_NOW = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
HEATING = "Отопление"  # config/routing.toml sends it to ПОС
INFORMATIONAL_TOPIC = "Справочная информация (адреса, телефоны, режим работы)"


def valid_call(**overrides: Any) -> dict[str, Any]:
    """A call every rule accepts; `overrides` replace top-level fields."""
    body: dict[str, Any] = {
        "journal_id": "KRS-2026-000123",
        "hotline": "122",
        "received_at": "2026-11-23T09:15:00+03:00",
        "operator": "Иванова А.А.",
        "applicant": {
            "last_name": "Пряников",
            "first_name": "Всеволод",
            "middle_name": "Аркадьевич",
            "phone": "8 917 555-12-34",
            "email": "vsevolod.pryanikov@example.ru",
            "postal_address": "432017, г. Ульяновск, ул. Кролюницкого, д. 17, кв. 42",
        },
        "problem_address": "г. Ульяновск, ул. Гончарова, 38",
        "topic": HEATING,
        "summary": "В квартире нет отопления третий день, батареи холодные",
        "repeat": False,
        "urgency": "urgent",
        "answer_channel": "phone",
        "informational": False,
    }
    body.update(overrides)
    return body


@pytest.fixture
def migrated_postgres_url(postgres_url: str) -> str:
    """This run's PostgreSQL database, emptied and migrated to the head revision."""
    import asyncpg

    from gateway.storage.migrate import upgrade

    async def reset() -> None:
        conn = await asyncpg.connect(_plain_dsn(postgres_url), timeout=10)
        try:
            await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        finally:
            await conn.close()

    asyncio.run(reset())
    upgrade(postgres_url)
    return postgres_url


@pytest.fixture(scope="session")
def _migrated_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from gateway.storage.migrate import upgrade

    path = tmp_path_factory.mktemp("template") / "gateway.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture
def migrated_sqlite_url(tmp_path: Path, _migrated_sqlite_template: Path) -> str:
    """An empty SQLite file at the head revision (a copy of one migrated per session)."""
    import shutil

    path = tmp_path / "gateway.db"
    shutil.copyfile(_migrated_sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


@dataclass
class RunningApi:
    """A gateway built by `bootstrap` on a real database, served over real HTTP."""

    gateway: Gateway
    client: TestClient[web.Request, web.Application]

    async def count(self, table: Table) -> int:
        async with self.gateway.engine.connect() as conn:
            result = await conn.execute(select(func.count()).select_from(table))
            return int(result.scalar_one())

    async def appeal_count(self) -> int:
        from gateway.storage.tables import appeals

        return await self.count(appeals)

    async def outbox_count(self) -> int:
        from outbox import outbox_messages

        return await self.count(outbox_messages)


@contextlib.asynccontextmanager
async def running_api(
    database_url: str, clock: ManualClock | None = None, **settings_: Any
) -> AsyncIterator[RunningApi]:
    """The gateway wired the way the CLI wires it, with a manual clock; `settings_` are
    further Settings fields."""
    from gateway.bootstrap import bootstrap

    settings = Settings(database_url=database_url, api_tokens=API_TOKENS, **settings_)
    gateway = bootstrap(settings, clock=clock or ManualClock(FIXED_NOW))
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(gateway.app))
    await client.start_server()
    try:
        yield RunningApi(gateway, client)
    finally:
        await client.close()
        await gateway.close()


StartApi = Callable[..., Awaitable[RunningApi]]


@pytest.fixture
async def start_api() -> AsyncIterator[StartApi]:
    """start_api(database_url, clock=None, **settings) -> RunningApi, closed after the test."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(
            database_url: str, clock: ManualClock | None = None, **settings: Any
        ) -> RunningApi:
            return await stack.enter_async_context(running_api(database_url, clock, **settings))

        yield start


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Tests that call configure_logging leave the root logger and structlog as they were."""
    import logging

    import structlog

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    config = structlog.get_config()
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.configure(**config)


# --- a real IMAP server (Dovecot) for the mail reader ------------------------------------
from tests.imap_server import imap_server  # noqa: E402, F401 - a fixture
