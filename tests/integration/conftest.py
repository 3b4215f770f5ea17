"""Fixtures shared by the integration tests."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """An empty, migrated database: a SQLite file, or this session's PostgreSQL database."""
    if request.param == "sqlite":
        url: str = request.getfixturevalue("migrated_sqlite_url")
    else:
        url = request.getfixturevalue("migrated_postgres_url")
    return url
