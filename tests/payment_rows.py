"""Rows of the app's `payments` table for tests: pending and never checked unless a row says
otherwise."""

from sqlalchemy import insert

from ops_platform.db import schema


def payment_row(id, provider_ref, created_at, next_check_at=None, **columns) -> dict:
    return {
        "id": id,
        "provider_ref": provider_ref,
        "created_at": created_at,
        "next_check_at": next_check_at,
    } | columns


def insert_payments(engine, *rows, **defaults) -> None:
    """Inserts `rows` over a pending, never-checked payment of user 1 and `defaults`."""
    base = {"user_id": 1, "status": "pending", "check_count": 0, "next_check_at": None} | defaults
    with engine.begin() as connection:
        connection.execute(insert(schema.payments), [base | row for row in rows])
