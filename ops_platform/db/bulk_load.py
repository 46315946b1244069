"""Bulk loading of column-oriented data: COPY on Postgres, chunked executemany on SQLite.

A `Frame` is one table's rows as columns (numpy arrays or lists). The column's type says
how its values are written:

- integer arrays; a `np.ma.MaskedArray` of integers for a nullable column (masked = NULL)
- float arrays (NaN = NULL)
- bool arrays
- `datetime64[s]` arrays for timestamps, UTC (NaT = NULL)
- `datetime64[D]` arrays for dates (NaT = NULL)
- lists or object arrays of `str` (None = NULL); JSON columns hold their JSON text

Values are converted a chunk at a time with numpy, never one Python call per value, so a
million-row table costs seconds, not minutes. Postgres gets COPY's binary format (nothing
for the server to parse); a column type the binary encoder does not know (numeric) makes
that table go as COPY text. SQLite gets Python values, timestamps in the text form the
engine's datetime adapter uses. Timestamp text goes through lookup tables of day and
time-of-day strings instead of one `strftime` per value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np

CHUNK_ROWS = 200_000
DAY_SECONDS = 86_400
PG_NULL = "\\N"


@dataclass
class Frame:
    table: str
    columns: dict[str, object]
    # Set for the project's own tables (its schema, or the attached SQLite file).
    schema: str | None = None

    @property
    def sql_name(self) -> str:
        return (f'"{self.schema}".' if self.schema else "") + f'"{self.table}"'

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0


@cache
def _time_of_day_text(suffix: str) -> np.ndarray:
    """'HH:MM:SS<suffix>' for every second of a day, indexed by second of the day."""
    times = [
        f"{h:02d}:{m:02d}:{s:02d}{suffix}" for h in range(24) for m in range(60) for s in range(60)
    ]
    return np.array(times, dtype=object)


class _TimestampText:
    """Formats `datetime64[s]` values as text through day and time-of-day lookup tables."""

    def __init__(self, suffix: str):
        self._time_of_day = _time_of_day_text(suffix)

    def format(self, values: np.ndarray, null) -> np.ndarray:
        missing = np.isnat(values)
        seconds = np.where(missing, 0, values.astype("datetime64[s]").astype(np.int64))
        days = seconds // DAY_SECONDS
        first, last = int(days.min()), int(days.max())
        day_text = np.datetime_as_string(np.arange(first, last + 1).astype("datetime64[D]"))
        day_prefix = np.array([d + " " for d in day_text.tolist()], dtype=object)
        text = day_prefix[days - first] + self._time_of_day[seconds - days * DAY_SECONDS]
        if missing.any():
            text[missing] = null
        return text


def _escape_copy_text(values: list) -> list:
    # COPY text format: backslash, tab, newline and carriage return must be escaped.
    joined = "".join(filter(None, values))
    if not any(ch in joined for ch in "\\\t\n\r"):
        return values
    return [
        None
        if v is None
        else v.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
        for v in values
    ]


class _Formatter:
    """Turns a column slice into a list of Python values for one dialect."""

    def __init__(self, *, copy_text: bool):
        self.copy_text = copy_text
        self.null = PG_NULL if copy_text else None
        # Postgres reads an explicit UTC offset; SQLite gets the exact text form that
        # SQLAlchemy and the engine's datetime adapter use, so string comparisons hold.
        self._timestamps = _TimestampText("+00" if copy_text else ".000000")

    def column(self, values) -> list:
        if isinstance(values, np.ma.MaskedArray):
            return self._masked_ints(values)
        if isinstance(values, np.ndarray) and values.dtype != object:
            kind = values.dtype.kind
            if kind == "M":
                if values.dtype == np.dtype("datetime64[D]"):
                    return self._dates(values)
                return self._timestamps.format(values, self.null).tolist()
            if kind == "b":
                return (
                    np.where(values, "t", "f").tolist()
                    if self.copy_text
                    else values.astype(np.int8).tolist()
                )
            if kind in "iu":
                return list(map(str, values.tolist())) if self.copy_text else values.tolist()
            if kind == "f":
                return self._floats(values)
            raise TypeError(f"unsupported column dtype {values.dtype}")
        values = list(values)
        if self.copy_text:
            values = _escape_copy_text(values)
            return [self.null if v is None else v for v in values]
        return values

    def _masked_ints(self, values: np.ma.MaskedArray) -> list:
        data = values.data.astype(np.int64).tolist()
        return self._with_nulls(data, np.ma.getmaskarray(values), str)

    def _floats(self, values: np.ndarray) -> list:
        return self._with_nulls(values.tolist(), np.isnan(values), repr)

    def _with_nulls(self, values: list, missing: np.ndarray, as_text: Callable) -> list:
        """`values` (as text for COPY) with the null marker where `missing`."""
        out = np.array(list(map(as_text, values)) if self.copy_text else values, dtype=object)
        out[missing] = self.null
        return out.tolist()

    def _dates(self, values: np.ndarray) -> list:
        missing = np.isnat(values)
        out = np.datetime_as_string(values).astype(object)
        out[missing] = self.null
        return out.tolist()


def _chunks(frame: Frame, formatter: _Formatter):
    """Yield each chunk of the frame as a list of formatted columns."""
    total = len(frame)
    for start in range(0, total, CHUNK_ROWS):
        stop = min(start + CHUNK_ROWS, total)
        yield [formatter.column(values[start:stop]) for values in frame.columns.values()]


def _quoted(names) -> str:
    return ", ".join(f'"{name}"' for name in names)


def copy_frame_postgres(dbapi_connection, frame: Frame, table=None, *, freeze: bool = False) -> int:
    """COPY the frame into its table over a psycopg 3 connection; returns rows written.

    With the SQLAlchemy `table` given and every column type supported, rows go in COPY's
    binary format (built with numpy, nothing parsed by the server); otherwise as text.
    A queued writer sends data from a worker thread, so building the next chunk here
    overlaps with the server storing the previous one.
    """
    from psycopg.copy import QueuedLibpqWriter

    if not len(frame):
        return 0
    kinds = _binary_kinds(frame, table) if table is not None else None
    options = ["FORMAT binary"] if kinds else []
    if freeze:
        options.append("FREEZE")
    statement = f"COPY {frame.sql_name} ({_quoted(frame.columns)}) FROM STDIN"
    if options:
        statement += f" WITH ({', '.join(options)})"
    with dbapi_connection.cursor() as cursor:
        with cursor.copy(statement, writer=QueuedLibpqWriter(cursor)) as copy:
            if kinds:
                copy.write(BINARY_SIGNATURE)
                for start in range(0, len(frame), CHUNK_ROWS):
                    copy.write(
                        _binary_rows(frame, kinds, start, min(start + CHUNK_ROWS, len(frame)))
                    )
                copy.write(BINARY_TRAILER)
            else:
                formatter = _Formatter(copy_text=True)
                for columns in _chunks(frame, formatter):
                    copy.write("\n".join(map("\t".join, zip(*columns))) + "\n")
    return len(frame)


# --- COPY binary format ----------------------------------------------------------------
BINARY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8  # signature, flags, no header extension
BINARY_TRAILER = b"\xff\xff"
PG_EPOCH_SECONDS = 946_684_800  # 2000-01-01, where Postgres counts timestamps and dates from
_FIXED_WIDTH = {
    "int8": ">i8",
    "int4": ">i4",
    "float8": ">f8",
    "bool": "u1",
    "timestamp": ">i8",
    "date": ">i4",
}


def _binary_kinds(frame: Frame, table) -> list[str] | None:
    """The wire type of each frame column, or None when one is not supported (e.g. numeric)."""
    from sqlalchemy import (
        JSON,
        BigInteger,
        Boolean,
        Date,
        DateTime,
        Float,
        Integer,
        SmallInteger,
        String,
    )
    from sqlalchemy.dialects.postgresql import JSONB, REAL

    kinds = []
    for name in frame.columns:
        column_type = table.c[name].type
        # Wire formats that differ from what is built here (jsonb's version byte, 4-byte
        # floats): the whole frame goes as text, which the server parses into any type.
        if isinstance(column_type, (JSONB, REAL)):
            return None
        if isinstance(column_type, Boolean):
            kinds.append("bool")
        elif isinstance(column_type, BigInteger):
            kinds.append("int8")
        elif isinstance(column_type, Integer) and not isinstance(column_type, SmallInteger):
            kinds.append("int4")
        elif isinstance(column_type, Float):
            kinds.append("float8")
        elif isinstance(column_type, DateTime):
            kinds.append("timestamp")
        elif isinstance(column_type, Date):
            kinds.append("date")
        elif isinstance(column_type, (String, JSON)):
            kinds.append("text")
        else:
            return None
    return kinds


def _binary_field(values, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(n × width payload bytes, n lengths with -1 for NULL) of one column slice."""
    n = len(values)
    if kind == "text":
        items = values.tolist() if isinstance(values, np.ndarray) else list(values)
        missing = np.fromiter((v is None for v in items), dtype=bool, count=n)
        if missing.any():
            items = ["" if v is None else v for v in items]
        try:
            raw = np.array(items, dtype="S")
        except UnicodeEncodeError:
            raw = np.array([v.encode() for v in items], dtype="S")
        width = max(raw.dtype.itemsize, 1)
        payload = (
            raw.view(np.uint8).reshape(n, raw.dtype.itemsize)
            if raw.dtype.itemsize
            else np.zeros((n, 1), np.uint8)
        )
        lengths = (
            np.char.str_len(raw).astype(np.int64) if raw.dtype.itemsize else np.zeros(n, np.int64)
        )
        return payload[:, :width], np.where(missing, -1, lengths)
    if isinstance(values, np.ma.MaskedArray):
        missing, data = np.ma.getmaskarray(values), values.data
    elif kind == "timestamp":
        missing = np.isnat(values)
        data = (values.astype("datetime64[s]").astype(np.int64) - PG_EPOCH_SECONDS) * 1_000_000
    elif kind == "date":
        missing = np.isnat(values)
        data = values.astype("datetime64[D]").astype(np.int64) - PG_EPOCH_SECONDS // DAY_SECONDS
    elif kind == "float8":
        missing, data = np.isnan(values), values
    else:
        missing, data = np.zeros(n, dtype=bool), values
    wire = np.dtype(_FIXED_WIDTH[kind])
    payload = np.ascontiguousarray(data.astype(wire)).view(np.uint8).reshape(n, wire.itemsize)
    return payload, np.where(missing, -1, wire.itemsize)


def _binary_rows(frame: Frame, kinds: list[str], start: int, stop: int) -> bytes:
    """Rows [start, stop) in COPY binary format.

    Every field gets a fixed-width slot in an n × width byte matrix (length word, then
    payload); a mask keeps the bytes each row really uses, and boolean indexing flattens
    the kept bytes row by row: exactly the wire format, without a loop over rows.
    """
    n = stop - start
    fields = [
        _binary_field(values[start:stop], kind)
        for values, kind in zip(frame.columns.values(), kinds)
    ]
    width = 2 + sum(4 + payload.shape[1] for payload, _ in fields)
    matrix = np.zeros((n, width), dtype=np.uint8)
    keep = np.zeros((n, width), dtype=bool)
    matrix[:, :2] = np.frombuffer(np.array(len(fields), dtype=">i2").tobytes(), dtype=np.uint8)
    keep[:, :2] = True
    offset = 2
    for payload, lengths in fields:
        size = payload.shape[1]
        matrix[:, offset : offset + 4] = lengths.astype(">i4").view(np.uint8).reshape(n, 4)
        matrix[:, offset + 4 : offset + 4 + size] = payload
        keep[:, offset : offset + 4] = True
        keep[:, offset + 4 : offset + 4 + size] = np.arange(size) < lengths[:, None]
        offset += 4 + size
    return matrix[keep].tobytes()


def insert_frame_sqlite(dbapi_connection, frame: Frame) -> int:
    """executemany the frame into its table in chunks (inside the caller's transaction)."""
    if not len(frame):
        return 0
    placeholders = ", ".join("?" for _ in frame.columns)
    statement = f"INSERT INTO {frame.sql_name} ({_quoted(frame.columns)}) VALUES ({placeholders})"
    formatter = _Formatter(copy_text=False)
    cursor = dbapi_connection.cursor()
    try:
        for columns in _chunks(frame, formatter):
            cursor.executemany(statement, zip(*columns))
    finally:
        cursor.close()
    return len(frame)
