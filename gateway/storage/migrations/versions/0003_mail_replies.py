"""mail replies: letters to officials, the mailbox's processed messages, unmatched replies,
attachments; the request's send time and late-answer reminder on appeals [004: 10]

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 02:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import gateway.storage.types

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def _time() -> gateway.storage.types.UTCDateTime:
    return gateway.storage.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table('appeals', schema=None) as batch_op:
        batch_op.add_column(sa.Column('request_sent_at', _time(), nullable=True))
        batch_op.add_column(sa.Column('request_reminded_at', _time(), nullable=True))

    op.create_table('mail_letters',
    sa.Column('message_id', sa.String(length=250), nullable=False),
    sa.Column('appeal_id', sa.String(length=36), nullable=False),
    sa.Column('authority', sa.String(length=300), nullable=False),
    sa.Column('recipients', sa.JSON(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('sent_at', _time(), nullable=False),
    sa.ForeignKeyConstraint(['appeal_id'], ['appeals.id'], ),
    sa.PrimaryKeyConstraint('message_id')
    )
    with op.batch_alter_table('mail_letters', schema=None) as batch_op:
        batch_op.create_index('ix_mail_letters_appeal', ['appeal_id'], unique=False)

    op.create_table('mail_seen',
    sa.Column('id', _BigId, autoincrement=True, nullable=False),
    sa.Column('mailbox', sa.String(length=200), nullable=False),
    sa.Column('uidvalidity', sa.BigInteger(), nullable=False),
    sa.Column('uid', sa.BigInteger(), nullable=False),
    sa.Column('message_id', sa.String(length=250), nullable=True),
    sa.Column('outcome', sa.String(length=32), nullable=False),
    sa.Column('appeal_id', sa.String(length=36), nullable=True),
    sa.Column('seen_at', _time(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('mailbox', 'uidvalidity', 'uid', name='uq_mail_seen_uid')
    )
    with op.batch_alter_table('mail_seen', schema=None) as batch_op:
        batch_op.create_index('ix_mail_seen_message_id', ['message_id'], unique=False)

    op.create_table('mail_unmatched',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('received_at', _time(), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('sender', sa.Text(), nullable=False),
    sa.Column('subject', sa.Text(), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('appeal_id', sa.String(length=36), nullable=True),
    sa.Column('assigned_to', sa.String(length=36), nullable=True),
    sa.Column('assigned_at', _time(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('mail_unmatched', schema=None) as batch_op:
        batch_op.create_index('ix_mail_unmatched_open', ['assigned_to', 'received_at'],
                              unique=False)

    op.create_table('mail_attachments',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('appeal_id', sa.String(length=36), nullable=True),
    sa.Column('unmatched_id', sa.String(length=36), nullable=True),
    sa.Column('filename', sa.Text(), nullable=False),
    sa.Column('content_type', sa.String(length=200), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.Column('received_at', _time(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('mail_attachments', schema=None) as batch_op:
        batch_op.create_index('ix_mail_attachments_appeal', ['appeal_id'], unique=False)
        batch_op.create_index('ix_mail_attachments_unmatched', ['unmatched_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('mail_attachments', schema=None) as batch_op:
        batch_op.drop_index('ix_mail_attachments_unmatched')
        batch_op.drop_index('ix_mail_attachments_appeal')
    op.drop_table('mail_attachments')
    with op.batch_alter_table('mail_unmatched', schema=None) as batch_op:
        batch_op.drop_index('ix_mail_unmatched_open')
    op.drop_table('mail_unmatched')
    with op.batch_alter_table('mail_seen', schema=None) as batch_op:
        batch_op.drop_index('ix_mail_seen_message_id')
    op.drop_table('mail_seen')
    with op.batch_alter_table('mail_letters', schema=None) as batch_op:
        batch_op.drop_index('ix_mail_letters_appeal')
    op.drop_table('mail_letters')
    with op.batch_alter_table('appeals', schema=None) as batch_op:
        batch_op.drop_column('request_reminded_at')
        batch_op.drop_column('request_sent_at')
