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
)

metadata = MetaData()


class State(StrEnum):
    PENDING = "pending"
    LEASED = "leased"
    DONE = "done"
    DEAD = "dead"


outbox_messages = Table(
    "outbox_messages",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
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
    Index("ix_outbox_state_available", "state", "available_at"),
    Index("ix_outbox_ordering", "ordering_key", "id"),
    Index("ix_outbox_idempotency", "idempotency_key"),
)
