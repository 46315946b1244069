"""The least privilege the jobs need on Postgres, as SQL a DBA runs once.

The jobs' role reads and writes the contract's app tables (SELECT, INSERT, UPDATE, DELETE;
the sequences of their ids for the rows it inserts) and owns the project's own schema, where
`db upgrade` creates the project's tables. It needs no superuser, no CREATE on the database
and no DDL on any app table. `database_maintenance` VACUUMs only tables it owns and reports
the others.
"""

from __future__ import annotations

from ops_platform.db import schema


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def grant_statements(role: str, app_schema: str, state_schema: str) -> list[str]:
    """What a DBA runs (as the app tables' owner or a superuser) for the jobs' `role`."""
    role_q, app_q = _quote(role), _quote(app_schema)
    tables = ", ".join(f"{app_q}.{_quote(name)}" for name in schema.CONTRACT_TABLES)
    return [
        f"CREATE SCHEMA IF NOT EXISTS {_quote(state_schema)} AUTHORIZATION {role_q}",
        f"GRANT USAGE ON SCHEMA {app_q} TO {role_q}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON {tables} TO {role_q}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {app_q} TO {role_q}",
    ]
