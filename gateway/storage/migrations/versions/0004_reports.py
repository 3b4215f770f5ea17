"""reports: the PBX's call records and the scheduled report sends

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 12:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import gateway.storage.types

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('pbx_calls',
    sa.Column('uniqueid', sa.String(length=150), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('hotline', sa.String(length=32), nullable=False),
    sa.Column('direction', sa.String(length=8), nullable=False),
    sa.Column('caller', sa.String(length=64), nullable=True),
    sa.Column('started_at', gateway.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('answered', sa.Boolean(), nullable=False),
    sa.Column('billsec', sa.Integer(), nullable=False),
    sa.Column('disposition', sa.String(length=32), nullable=False),
    sa.Column('imported_at', gateway.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('uniqueid')
    )
    with op.batch_alter_table('pbx_calls', schema=None) as batch_op:
        batch_op.create_index('ix_pbx_calls_hotline_started', ['hotline', 'started_at'], unique=False)

    op.create_table('report_sends',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('hotline', sa.String(length=32), nullable=False),
    sa.Column('period', sa.String(length=32), nullable=False),
    sa.Column('due_at', gateway.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('enqueued_at', gateway.storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('late', sa.Boolean(), nullable=False),
    sa.Column('sent_at', gateway.storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('kind', 'hotline', 'period', name='uq_report_sends_period')
    )


def downgrade() -> None:
    op.drop_table('report_sends')
    with op.batch_alter_table('pbx_calls', schema=None) as batch_op:
        batch_op.drop_index('ix_pbx_calls_hotline_started')
    op.drop_table('pbx_calls')
