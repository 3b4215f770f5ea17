"""Shared fixtures: real databases only (SQLite files, the local PostgreSQL server)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

POSTGRES_URL_ENV = "GATEWAY_TEST_POSTGRES_URL"
REQUIRE_POSTGRES_ENV = "GATEWAY_TEST_REQUIRE_POSTGRES"
DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def _postgres_reachable(url: str) -> str | None:
    """None when reachable, else why not."""
    import asyncpg

    dsn = url.replace("postgresql+asyncpg://", "postgresql://")

    async def probe() -> None:
        conn = await asyncpg.connect(dsn, timeout=3)
        await conn.close()

    try:
        asyncio.run(probe())
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        return f"{type(exc).__name__}: {exc}"
    return None


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The PostgreSQL server for multi-replica tests; CI sets GATEWAY_TEST_REQUIRE_POSTGRES=1."""
    url = os.environ.get(POSTGRES_URL_ENV, DEFAULT_POSTGRES_URL)
    problem = _postgres_reachable(url)
    if problem is not None:
        message = f"PostgreSQL at {url} is not reachable ({problem}); set {POSTGRES_URL_ENV}"
        if os.environ.get(REQUIRE_POSTGRES_ENV) == "1":
            pytest.fail(message)
        pytest.skip(message)
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    yield f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
