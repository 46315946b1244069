"""Which database faults may pass and which need an operator.

A lost or refused connection, a reset, a serialization failure or deadlock, a locked SQLite
file: the next attempt may succeed, so runs retry them with backoff. A host name that does
not resolve, a failed authentication, an unknown database, a missing table, schema or
column, or a missing privilege never fix themselves: retrying only delays the alert and
floods the log, so the run fails at once with one line naming the setting to fix.
"""

from __future__ import annotations

import re

# SQLSTATE classes and codes that retrying never fixes.
PERMANENT_SQLSTATES = {
    "28000": "the database refused the login",
    "28P01": "authentication failed",
    "3D000": "the database does not exist",
    "3F000": "a schema is missing",
    "42P01": "a table is missing",
    "42703": "a column is missing",
    "42501": "a privilege is missing",
}
# Message patterns of the same faults where the driver gives no SQLSTATE (connection set-up, SQLite).
PERMANENT_MESSAGES = (
    ("failed to resolve host", "the host name does not resolve"),
    ("could not translate host name", "the host name does not resolve"),
    ("name or service not known", "the host name does not resolve"),
    ("nodename nor servname provided", "the host name does not resolve"),
    ("password authentication failed", "authentication failed"),
    ("authentication failed", "authentication failed"),
    ("no pg_hba.conf entry", "the database refused the login"),
    (r'role ".*" does not exist', "the database refused the login"),
    (r'database ".*" does not exist', "the database does not exist"),
    ("no such table", "a table is missing"),
    ("no such column", "a column is missing"),
    ("unable to open database file", "the database file cannot be opened"),
)


def _driver_error(error: BaseException) -> BaseException:
    return getattr(error, "orig", None) or error


def permanent_database_fault(error: BaseException) -> str | None:
    """What is permanently wrong behind a database error, or None when it may pass."""
    from sqlalchemy.exc import DBAPIError

    if not isinstance(error, DBAPIError):
        return None
    driver = _driver_error(error)
    sqlstate = getattr(driver, "sqlstate", None) or getattr(driver, "pgcode", None)
    if sqlstate in PERMANENT_SQLSTATES:
        return PERMANENT_SQLSTATES[sqlstate]
    message = str(driver).lower()
    for pattern, meaning in PERMANENT_MESSAGES:
        if re.search(pattern, message):
            return meaning
    return None


def fault_line(error: BaseException, meaning: str, setting: str = "OPS_DATABASE_URL") -> str:
    """One line for the run's failure: what is wrong, which setting to fix, the driver's word."""
    detail = " ".join(str(_driver_error(error)).split())
    return f"app database: {meaning} — check {setting} (not retried): {detail[:300]}"
