"""the batch claim index also orders by id

A claim takes a batch's queued messages in id order. With (batch_id, status) alone PostgreSQL walks the
primary key and filters, which grows with the batch's position in the campaign; (batch_id, status, id) hands
it the rows in order. SQLite's index already ended in the rowid: the same index there.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 20:05:00
"""
from __future__ import annotations

from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('message') as batch_op:
        batch_op.drop_index('ix_message_batch_status')
        batch_op.create_index('ix_message_batch_status', ['batch_id', 'status', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('message') as batch_op:
        batch_op.drop_index('ix_message_batch_status')
        batch_op.create_index('ix_message_batch_status', ['batch_id', 'status'], unique=False)
