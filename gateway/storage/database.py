"""One place that creates the database engine, with the pragmas SQLite needs to serve well,
and the time bounds that turn a held lock or a dead server into a quick refusal."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, exc, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from gateway.storage.sqlite_trips import internals_available, one_trip_connector

SQLITE_BUSY_TIMEOUT_MS = 10_000


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long a statement may wait; 0 for the PostgreSQL ones means no limit.

    Without them one transaction holding a table lock stalls every request behind it for
    as long as it holds it (43 s of hung intake in issue 12).
    """

    statement_s: float = 30.0  # PostgreSQL statement_timeout
    lock_s: float = 5.0  # PostgreSQL lock_timeout
    connect_s: float = 5.0  # PostgreSQL: connecting to the server
    busy_s: float = SQLITE_BUSY_TIMEOUT_MS / 1000  # SQLite: waiting for the write lock


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def _ms(seconds: float) -> str:
    return str(round(seconds * 1000))


def create_engine(
    url: str, *, pool_size: int = 10, timeouts: Timeouts | None = None
) -> AsyncEngine:
    """An engine for the URL: SQLite in WAL with a busy timeout, or PostgreSQL via asyncpg
    with statement and lock timeouts.

    SQL parameters are kept out of error messages: they hold personal data, and error
    messages end up in logs.
    """
    timeouts = timeouts or Timeouts()
    if is_sqlite(url):
        timeout_s = timeouts.busy_s
        busy_ms = _ms(timeouts.busy_s)
        parsed = make_url(url)
        if parsed.database in (None, "", ":memory:") or parsed.query or (
                not internals_available()):  # the stock path (see sqlite_trips)
            engine = create_async_engine(url, connect_args={"timeout": timeout_s},
                                         hide_parameters=True)
        else:  # a plain file: statements in one trip each (see sqlite_trips)
            engine = create_async_engine(
                url, async_creator=one_trip_connector(parsed.database, timeout_s=timeout_s),
                hide_parameters=True)

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            # WAL: readers never block the single writer; NORMAL is durable in WAL mode.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    # Server-side limits: the server cancels the statement and says so (57014 / 55P03),
    # which the API answers with 503 and Retry-After; the connection stays usable.
    server_settings = {"statement_timeout": _ms(timeouts.statement_s),
                       "lock_timeout": _ms(timeouts.lock_s)}
    engine = create_async_engine(
        url, pool_size=pool_size, max_overflow=pool_size,
        pool_timeout=max(timeouts.lock_s, timeouts.connect_s, 1.0) * 2,
        connect_args={"server_settings": server_settings, "timeout": timeouts.connect_s},
        hide_parameters=True)

    @event.listens_for(engine.sync_engine, "checkout")
    def _drop_closed(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        # Instead of pool_pre_ping, whose round trip per checkout halved single-row
        # intake: asyncpg already knows, without asking the server, that the server hung
        # up (restart, terminated backend); the pool then opens a fresh connection. A
        # connection that dies silently fails on use: the pool invalidates it and the
        # request gets 503 "connection_lost" (unavailable_reason), the outbox retries.
        if dbapi_connection.driver_connection.is_closed():
            raise exc.DisconnectionError("the server closed this connection")

    return engine


# PostgreSQL SQLSTATEs that mean "not now" rather than "wrong": the request may be retried.
_PG_UNAVAILABLE = {
    "57014": "timeout",  # query_canceled: statement_timeout
    "55P03": "locked",  # lock_not_available: lock_timeout
    "40P01": "locked",  # deadlock_detected
    "40001": "locked",  # serialization_failure
    "25006": "read_only",  # read_only_sql_transaction: a standby, or read-only by setting
    "53100": "disk_full",
    "53200": "out_of_memory",
    "53300": "too_many_connections",
    "57P01": "shutting_down", "57P02": "shutting_down", "57P03": "starting_up",
    "58030": "io_error",
}
# SQLite primary result codes (sqlite.org/rescode.html) with the same meaning.
_SQLITE_UNAVAILABLE = {
    sqlite3.SQLITE_BUSY: "locked",
    sqlite3.SQLITE_LOCKED: "locked",
    sqlite3.SQLITE_READONLY: "read_only",
    sqlite3.SQLITE_IOERR: "io_error",
    sqlite3.SQLITE_FULL: "disk_full",
    sqlite3.SQLITE_CANTOPEN: "io_error",
}


def unavailable_reason(error: BaseException) -> str | None:
    """Why the database cannot take the request now (a timeout, a lock, a read-only or full
    disk, a lost server), or None when the error is something else.

    Such errors are the database's state, not the request's fault nor a bug: the API
    answers them with 503 and Retry-After. The reason is a fixed word, safe to log.
    """
    if isinstance(error, exc.TimeoutError):  # no pooled connection came free in time
        return "timeout"
    if isinstance(error, exc.DBAPIError):
        if error.connection_invalidated:
            return "connection_lost"
        return unavailable_reason(error.orig) if error.orig is not None else None
    if isinstance(error, sqlite3.Error):
        code = getattr(error, "sqlite_errorcode", None)
        return _SQLITE_UNAVAILABLE.get(code & 0xFF) if isinstance(code, int) else None
    sqlstate = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
    if isinstance(sqlstate, str):
        if sqlstate.startswith("08"):  # connection_exception
            return "connection_lost"
        return _PG_UNAVAILABLE.get(sqlstate)
    # Connecting failed (asyncpg raises these unwrapped). Not ConnectionError at large:
    # a client hanging up mid-request raises ConnectionResetError, and that is no outage.
    if isinstance(error, (ConnectionRefusedError, TimeoutError)):
        return "unreachable"
    return None
