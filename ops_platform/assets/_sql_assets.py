"""Small pieces the set-based engagement and games assets share: the owners and the
time-decay SQL (the one dialect difference of their rules)."""

import math
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine

from ops_platform.db.engine import is_postgres

OWNERS = ["team:platform"]

# exp() below this underflows on Postgres ("value out of range"); the weight is ~1e-304.
_MIN_EXPONENT = -700.0


def decay_sql(bind: Engine | Connection, column_sql: str) -> str:
    """SQL factor `0.5 ** (age / half_life)` for a timestamp column, where the age is
    `:now_epoch` (seconds) minus the column and `:neg_decay_rate` is `-ln 2 / half_life_s`.

    Postgres reads the epoch with date_part (double precision; EXTRACT returns numeric,
    which is several times slower); SQLite stores text timestamps, read with julianday.
    """
    if is_postgres(bind):
        epoch, floor = f"date_part('epoch', {column_sql})", "GREATEST"
    else:
        epoch, floor = f"((julianday({column_sql}) - 2440587.5) * 86400.0)", "MAX"
    return f"EXP({floor}({_MIN_EXPONENT}, :neg_decay_rate * (:now_epoch - {epoch})))"


def decay_params(now: datetime, half_life: timedelta) -> dict:
    """Bound parameters `decay_sql` needs."""
    if half_life.total_seconds() <= 0:
        raise ValueError(f"half-life must be positive, got {half_life}")
    return {
        "now_epoch": now.timestamp(),
        "neg_decay_rate": -math.log(2) / half_life.total_seconds(),
    }
