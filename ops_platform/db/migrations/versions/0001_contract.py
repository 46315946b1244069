"""The app database contract: create the contract tables that do not exist yet.

Create Date: 2026-11-23

On an empty database (the demo, tests) this creates every contract table with its indexes.
On the app's own database the tables it already has are left exactly as they are — no
column, index or row is touched; `ops-platform db check` reports what they lack. The
contract's tables are fixed, so this revision reads them from `ops_platform.db.schema`.
"""

from ops_platform.db.migration_support import app_tables_present, create_table_with_indexes
from ops_platform.db.schema import metadata

revision = "0001_contract"
down_revision = None


def upgrade() -> None:
    present = app_tables_present()
    for table in metadata.sorted_tables:
        if table.name not in present:
            create_table_with_indexes(table)


def downgrade() -> None:
    # The app's tables and rows are never dropped by the project.
    pass
