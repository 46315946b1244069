"""The app database contract (SPEC §3) and the tables the jobs write.

Revision ID: 0001_contract
Revises:
Create Date: 2026-11-23

Until the first release this revision is the schema snapshot: it creates every table of
`ops_platform.db.schema` that does not exist yet. Changes after a release get revisions of
their own.
"""

from alembic import op

from ops_platform.db.schema import metadata

revision = "0001_contract"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    metadata.create_all(bind=op.get_bind(), checkfirst=True)


def downgrade() -> None:
    metadata.drop_all(bind=op.get_bind(), checkfirst=True)
