"""The outbox table: rows written in the same transaction as the state change that causes them.

Times are epoch seconds (double): cheap to compare in the claim query on both SQLite and
PostgreSQL, and free of time-zone conversions on the hot path.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData()


class State(StrEnum):
    PENDING = "pending"
    LEASED = "leased"
    DONE = "done"
    DEAD = "dead"
    # Made moot by a later event (the answer reached the citizen another way): finished,
    # never run, and no longer holding back its appeal's later rows.
    CANCELLED = "cancelled"


FINISHED = (State.DONE, State.CANCELLED)


outbox_messages = Table(
    "outbox_messages",
    metadata,
    Column(
        "id",
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    # Rows with the same key run strictly in id order (one appeal's actions).
    Column("ordering_key", String(64), nullable=False),
    Column("target", String(32), nullable=False),
    Column("action", String(64), nullable=False),
    # Only ids and small parameters: handlers load personal data at send time.
    Column("payload", JSON, nullable=False),
    Column("idempotency_key", String(128), nullable=False),
    Column("state", String(16), nullable=False, server_default=State.PENDING.value),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("available_at", Float, nullable=False),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_expires_at", Float, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("finished_at", Float, nullable=True),
    # Set by a re-drive: the retry budget (attempts, max age) starts again from here.
    Column("redriven_at", Float, nullable=True),
    # The claim walks this in due order and stops after one batch.
    Index("ix_outbox_state_available", "state", "available_at", "id"),
    # Unfinished rows per key: the claim's "is this row the head of its appeal?" probe
    # reads the first entry; finished rows drop out, so the index stays small.
    Index(
        "ix_outbox_unfinished_key",
        "ordering_key",
        "id",
        sqlite_where=text("state <> 'done'"),
        postgresql_where=text("state <> 'done'"),
    ),
    Index("ix_outbox_idempotency", "idempotency_key"),
)
