"""appeals: callbacks, delivery and the SLA reminder

The columns gateway/storage/tables.py gained with the delivery desk and the SLA watch;
without them every read of an appeal fails.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 09:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import gateway.storage.types

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('appeals', schema=None) as batch_op:
        batch_op.add_column(sa.Column('interim_reminded_at', gateway.storage.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('callback_attempts', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('next_callback_at', gateway.storage.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('needs_supervisor', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('delivered_at', gateway.storage.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('delivery_channel', sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('appeals', schema=None) as batch_op:
        batch_op.drop_column('delivery_channel')
        batch_op.drop_column('delivered_at')
        batch_op.drop_column('needs_supervisor')
        batch_op.drop_column('next_callback_at')
        batch_op.drop_column('callback_attempts')
        batch_op.drop_column('interim_reminded_at')
