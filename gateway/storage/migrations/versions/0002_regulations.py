"""regulations: callbacks, interim answers, journal fields, overdue kinds, supervisor

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 02:00:00

Issue 13: the rules of 001 §12–§21 and appendix 2, 002 2.8.9–2.8.10 and 003 the audit
found missing: per-kind overdue flags, the callback term, interim answers, the journal's
own fields, the supervisor's resolution, and missed-call callback tasks.
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

_TIME = gateway.storage.types.UTCDateTime(timezone=True)
_FLAGS = ('feedback_overdue', 'request_overdue', 'registered_late', 'callback_late')


def upgrade() -> None:
    with op.batch_alter_table('appeals', schema=None) as batch_op:
        batch_op.add_column(sa.Column('callback_due_at', _TIME, nullable=True))
        batch_op.add_column(sa.Column('callbacks_from', _TIME, nullable=True))
        for flag in _FLAGS:
            batch_op.add_column(sa.Column(flag, sa.Boolean(), nullable=False,
                                          server_default=sa.false()))
        batch_op.add_column(sa.Column('interim_given_at', _TIME, nullable=True))
        batch_op.add_column(sa.Column('interim_expected_at', _TIME, nullable=True))
        batch_op.add_column(sa.Column('consultation_outcome', sa.String(length=32),
                                      nullable=True))
        batch_op.add_column(sa.Column('review_result', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('journal_comment', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('resolution', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('reroutes', sa.Integer(), nullable=False,
                                      server_default='0'))
    # The defaults only filled the existing rows; the code always writes these columns.
    with op.batch_alter_table('appeals', schema=None) as batch_op:
        for flag in (*_FLAGS, 'reroutes'):
            batch_op.alter_column(flag, server_default=None)
        batch_op.create_index('ix_appeals_feedback_due', ['feedback_due_at'], unique=False)
        batch_op.create_index('ix_appeals_request_due', ['request_due_at'], unique=False)
        batch_op.create_index('ix_appeals_callback_due', ['callback_due_at'], unique=False)

    op.create_table('interim_answers',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True,
              nullable=False),
    sa.Column('appeal_id', sa.String(length=36), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('expected_at', _TIME, nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('at', _TIME, nullable=False),
    sa.Column('by', sa.String(length=200), nullable=True),
    sa.Column('recorded_at', _TIME, nullable=False),
    sa.ForeignKeyConstraint(['appeal_id'], ['appeals.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('interim_answers', schema=None) as batch_op:
        batch_op.create_index('ix_interim_appeal', ['appeal_id', 'id'], unique=False)

    op.create_table('callback_tasks',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('hotline', sa.String(length=32), nullable=False),
    sa.Column('phone', sa.String(length=32), nullable=False),
    sa.Column('missed_at', _TIME, nullable=False),
    sa.Column('voicemail', sa.Text(), nullable=True),
    sa.Column('due_at', _TIME, nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('tries', sa.JSON(), nullable=False),
    sa.Column('next_attempt_at', _TIME, nullable=True),
    sa.Column('next_attempt_by', _TIME, nullable=True),
    sa.Column('late', sa.Boolean(), nullable=False),
    sa.Column('created_at', _TIME, nullable=False),
    sa.Column('updated_at', _TIME, nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('hotline', 'phone', 'missed_at', name='uq_callback_tasks_missed')
    )
    with op.batch_alter_table('callback_tasks', schema=None) as batch_op:
        batch_op.create_index('ix_callback_tasks_state', ['state', 'next_attempt_by'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('callback_tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_callback_tasks_state')
    op.drop_table('callback_tasks')
    with op.batch_alter_table('interim_answers', schema=None) as batch_op:
        batch_op.drop_index('ix_interim_appeal')
    op.drop_table('interim_answers')
    with op.batch_alter_table('appeals', schema=None) as batch_op:
        batch_op.drop_index('ix_appeals_callback_due')
        batch_op.drop_index('ix_appeals_request_due')
        batch_op.drop_index('ix_appeals_feedback_due')
        for column in ('reroutes', 'resolution', 'journal_comment', 'review_result',
                       'consultation_outcome', 'interim_expected_at', 'interim_given_at',
                       *reversed(_FLAGS), 'callbacks_from', 'callback_due_at'):
            batch_op.drop_column(column)
