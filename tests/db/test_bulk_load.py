"""Frames written by COPY binary, COPY text and executemany read back as the same rows."""

from datetime import UTC, datetime

import numpy as np
from sqlalchemy import select

from ops_platform.db import schema
from ops_platform.db.bulk_load import Frame, copy_frame_postgres, insert_frame_sqlite
from ops_platform.db.engine import as_utc, is_postgres

CREATED = np.array(
    ["2026-01-31T23:59:59", "1999-12-31T00:00:00", "2026-06-01T12:00:00"], dtype="datetime64[s]"
)


def _frame(first_id: int) -> Frame:
    return Frame(
        "realtime_events",
        {
            "id": np.arange(first_id, first_id + 3, dtype=np.int64),
            "channel": ["tab\there", "back\\slash and new\nline", "ünïcode ✓"],
            "event": np.array(["a", "", "c"], dtype=object),
            "payload": ['{"k": [1, 2]}', None, '{"name": "Zoë"}'],
            "created_at": CREATED,
            "published_at": np.array(["2026-02-01T00:00:05", "NaT", "NaT"], dtype="datetime64[s]"),
        },
    )


def _rows(engine, first_id: int) -> list[tuple]:
    table = schema.realtime_events
    with engine.connect() as connection:
        rows = connection.execute(
            select(
                table.c.channel,
                table.c.event,
                table.c.payload,
                table.c.created_at,
                table.c.published_at,
            )
            .where(table.c.id >= first_id, table.c.id < first_id + 3)
            .order_by(table.c.id)
        ).all()
    return [(c, e, p, as_utc(created), as_utc(published)) for c, e, p, created, published in rows]


EXPECTED = [
    (
        "tab\there",
        "a",
        {"k": [1, 2]},
        datetime(2026, 1, 31, 23, 59, 59, tzinfo=UTC),
        datetime(2026, 2, 1, 0, 0, 5, tzinfo=UTC),
    ),
    ("back\\slash and new\nline", "", None, datetime(1999, 12, 31, tzinfo=UTC), None),
    ("ünïcode ✓", "c", {"name": "Zoë"}, datetime(2026, 6, 1, 12, tzinfo=UTC), None),
]


def test_every_path_writes_the_same_rows(engine):
    if is_postgres(engine):
        with engine.begin() as connection:
            dbapi = connection.connection.driver_connection
            copy_frame_postgres(dbapi, _frame(1), schema.realtime_events)  # binary
            copy_frame_postgres(dbapi, _frame(11))  # text
        assert _rows(engine, 11) == EXPECTED
    else:
        with engine.begin() as connection:
            insert_frame_sqlite(connection.connection.driver_connection, _frame(1))
    assert _rows(engine, 1) == EXPECTED


def test_masked_integers_and_floats_become_nulls(engine):
    frame = Frame(
        "stream_events",
        {
            "id": np.array([1, 2], dtype=np.int64),
            "stream_id": np.array([7, 8], dtype=np.int64),
            "user_id": np.ma.MaskedArray([5, 0], mask=[False, True]),
            "kind": ["view", "gift"],
            "value": np.array([1.0, 2.5]),
            "created_at": CREATED[:2],
        },
    )
    with engine.begin() as connection:
        dbapi = connection.connection.driver_connection
        if is_postgres(engine):
            copy_frame_postgres(dbapi, frame, schema.stream_events, freeze=False)
        else:
            insert_frame_sqlite(dbapi, frame)
    table = schema.stream_events
    with engine.connect() as connection:
        rows = connection.execute(select(table.c.user_id, table.c.value).order_by(table.c.id)).all()
    assert [tuple(r) for r in rows] == [(5, 1.0), (None, 2.5)]


def test_an_empty_frame_writes_nothing(engine):
    frame = Frame("security_alerts", {})
    with engine.begin() as connection:
        dbapi = connection.connection.driver_connection
        written = (
            copy_frame_postgres(dbapi, frame)
            if is_postgres(engine)
            else insert_frame_sqlite(dbapi, frame)
        )
    assert written == 0
