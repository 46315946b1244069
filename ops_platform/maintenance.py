"""Maintenance windows: one durable switch that holds the platform's jobs still.

A window is a row of `maintenance_windows` (the project's own schema of the app database), so
it is the same for the daemon, the webserver, every code server and the command line, and it
survives their restarts. While a window is active (`starts_at <= now < ends_at`, not ended by
`resume`), every schedule and sensor whose job belongs to one of its groups skips its ticks
with the window's reason and end as the skip message, and the runs of those groups already
queued wait in the run queue until it ends (ops_platform.held_runs), like a run a schedule or
sensor (the reports' automation sensors too) submits during it; a run launched by hand
during the window runs. Each schedule's own on/off state in the Dagster instance is not
touched. A planned window (`--from`) starts by itself, one whose end passes ends by itself.
After a window the catch-up sensors request every partition that
fell due inside it, once, oldest first; an unpartitioned job runs at its next tick, once.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache

import dagster as dg
from sqlalchemy import and_, or_, select, update

from ops_platform.db import schema
from ops_platform.db.engine import as_utc, make_engine, utcnow
from ops_platform.settings import GROUPS, Settings

logger = logging.getLogger(__name__)

ALL = "*"  # `groups` of a window over every group
GROUP_TAG = "ops/group"  # a sensor without a job (an alert) names its group with this tag


class MaintenancePolicy(dg.ConfigurableResource):
    """The windows' rules a run needs: the maximum length (OPS_MAINTENANCE_MAX_HOURS)."""

    max_hours: int = 24


class WindowError(ValueError):
    """A window that cannot be opened as asked (bad time, too long, unknown group)."""


@dataclass(frozen=True)
class Window:
    id: int
    created_by: str
    reason: str
    groups: tuple[str, ...]  # every group when the window is over all
    all_groups: bool
    starts_at: datetime
    ends_at: datetime
    created_at: datetime
    ended_at: datetime | None = None

    def covers(self, group: str) -> bool:
        return self.all_groups or group in self.groups

    def active(self, at: datetime) -> bool:
        return self.ended_at is None and self.starts_at <= at < self.ends_at

    def planned(self, at: datetime) -> bool:
        return self.ended_at is None and at < self.starts_at

    @property
    def scope(self) -> str:
        return "all groups" if self.all_groups else ", ".join(self.groups)

    def describe(self) -> str:
        return (
            f"maintenance window #{self.id} ({self.scope}) by {self.created_by}: {self.reason}; "
            f"{self.starts_at:%Y-%m-%d %H:%M} to {self.ends_at:%Y-%m-%d %H:%M} UTC"
        )

    def skip_message(self) -> str:
        return (
            f"paused by maintenance window #{self.id} ({self.scope}): {self.reason} — until "
            f"{self.ends_at:%Y-%m-%d %H:%M} UTC or `ops-platform resume` (by {self.created_by})"
        )


# --- parsing ---------------------------------------------------------------------------------
_DURATION = re.compile(r"^\s*(?:(\d+)\s*d)?\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m(?:in)?)?\s*$")


def parse_duration(text: str) -> timedelta:
    """`90m`, `2h`, `1h30m`, `1d`."""
    match = _DURATION.match(text.lower())
    if not match or not any(match.groups()):
        raise WindowError(f"duration {text!r} is not like 90m, 2h, 1h30m or 1d")
    days, hours, minutes = (int(part or 0) for part in match.groups())
    duration = timedelta(days=days, hours=hours, minutes=minutes)
    if duration <= timedelta(0):
        raise WindowError(f"duration {text!r} is not positive")
    return duration


def parse_time(text: str) -> datetime:
    """An ISO 8601 time (`2026-12-03T02:00`, `2026-12-03 02:00+01:00`); without a zone, UTC."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise WindowError(f"time {text!r} is not ISO 8601, e.g. 2026-12-03T02:00 (UTC)") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parse_groups(groups: Iterable[str] | str | None) -> tuple[str, ...] | None:
    """Group names, checked; None or `*`/`all`: every group."""
    if groups is None:
        return None
    names = [g.strip() for g in (groups.split(",") if isinstance(groups, str) else groups)]
    names = [g for g in names if g]
    if not names or any(g in (ALL, "all") for g in names):
        return None
    unknown = [g for g in names if g not in GROUPS]
    if unknown:
        raise WindowError(f"unknown group(s) {', '.join(unknown)}; groups are {', '.join(GROUPS)}")
    return tuple(dict.fromkeys(names))


def window_bounds(
    now: datetime,
    max_hours: int,
    starts: datetime | None = None,
    until: datetime | None = None,
    duration: timedelta | None = None,
) -> tuple[datetime, datetime]:
    """(start, end) of a window: from `starts` (default now) for `duration`, or to `until`.
    Without either it lasts the maximum length; `--for` may not exceed it (`--until` may:
    naming the end is the explicit choice)."""
    start = starts or now
    limit = timedelta(hours=max_hours)
    if until is not None and duration is not None:
        raise WindowError("give --until or --for, not both")
    if duration is not None and duration > limit:
        raise WindowError(
            f"--for {duration} is longer than the maximum window of {max_hours} h "
            "(OPS_MAINTENANCE_MAX_HOURS); name the end with --until to go beyond it"
        )
    end = until if until is not None else start + (duration or limit)
    if end <= now:
        raise WindowError(f"the window would end in the past ({end:%Y-%m-%d %H:%M} UTC)")
    if end <= start:
        raise WindowError(f"the window would end ({end:%Y-%m-%d %H:%M} UTC) before it starts")
    return start, end


# --- the table -------------------------------------------------------------------------------
def _window(row) -> Window:
    all_groups = row.groups == ALL
    return Window(
        id=row.id,
        created_by=row.created_by,
        reason=row.reason,
        groups=GROUPS if all_groups else tuple(row.groups.split(",")),
        all_groups=all_groups,
        starts_at=as_utc(row.starts_at),
        ends_at=as_utc(row.ends_at),
        created_at=as_utc(row.created_at),
        ended_at=as_utc(row.ended_at),
    )


def open_window(
    engine,
    *,
    groups: Sequence[str] | None,
    reason: str,
    by: str,
    starts_at: datetime,
    ends_at: datetime,
    now: datetime | None = None,
) -> Window:
    """Insert a window (groups None: every group)."""
    if not reason.strip():
        raise WindowError("a window needs a --reason (it is the skip message of every tick)")
    table = schema.maintenance_windows
    values = dict(
        created_by=by[:200],
        reason=reason.strip(),
        groups=ALL if groups is None else ",".join(groups),
        starts_at=starts_at,
        ends_at=ends_at,
        created_at=now or utcnow(),
    )
    with engine.begin() as connection:
        new_id = connection.execute(table.insert().values(**values)).inserted_primary_key[0]
        row = connection.execute(select(table).where(table.c.id == new_id)).one()
    return _window(row)


def open_windows(engine, now: datetime, recent: timedelta | None = None) -> list[Window]:
    """Windows not ended by `resume` whose end has not passed (active and planned), oldest
    start first; with `recent`, also those that ended (or were resumed) within it."""
    table = schema.maintenance_windows
    current = and_(table.c.ended_at.is_(None), table.c.ends_at > now)
    where = current
    if recent is not None:
        since = now - recent
        where = or_(
            current,
            table.c.ended_at >= since,
            and_(table.c.ended_at.is_(None), table.c.ends_at >= since),
        )
    with engine.connect() as connection:
        rows = connection.execute(
            select(table).where(where).order_by(table.c.starts_at, table.c.id)
        ).all()
    return [_window(row) for row in rows]


def active_windows(engine, now: datetime) -> list[Window]:
    return [w for w in open_windows(engine, now) if w.active(now)]


def paused_groups(windows: Iterable[Window], now: datetime) -> dict[str, Window]:
    """Each group inside an active window -> the window (the one ending last)."""
    paused: dict[str, Window] = {}
    for window in sorted(windows, key=lambda w: w.ends_at):
        if window.active(now):
            for group in window.groups:
                paused[group] = window
    return paused


def end_windows(
    engine, *, groups: Sequence[str] | None, by: str, now: datetime
) -> tuple[list[Window], list[Window]]:
    """End the active and planned windows over `groups` (None: every window). A window over
    more groups than those resumed is ended and reopened for the others, same reason and end.
    Returns (ended windows, reopened windows)."""
    table = schema.maintenance_windows
    resumed = set(GROUPS if groups is None else groups)
    ended, reopened = [], []
    for window in open_windows(engine, now):
        if not resumed & set(window.groups):
            continue
        with engine.begin() as connection:
            done = connection.execute(
                update(table)
                .where(table.c.id == window.id, table.c.ended_at.is_(None))
                .values(ended_at=now, ended_by=by[:200])
            ).rowcount
        if not done:
            continue  # someone else ended it meanwhile
        ended.append(window)
        rest = [g for g in window.groups if g not in resumed]
        if rest:
            reopened.append(
                open_window(
                    engine,
                    groups=rest,
                    reason=window.reason,
                    by=window.created_by,
                    # Paused since the window began: a run launched by hand in it stays
                    # the operator's choice, not a queued run to hold.
                    starts_at=window.starts_at,
                    ends_at=window.ends_at,
                    now=now,
                )
            )
    return ended, reopened


# --- the window over a group now --------------------------------------------------------------
@cache
def engine_for(url: str):
    """One small pool per database for the window lookups of every tick of this process."""
    return make_engine(url)


def _no_database(url: str) -> bool:
    """A SQLite file not created yet holds no window (and a lookup must not create it)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return parsed.get_backend_name() == "sqlite" and not (
        parsed.database and os.path.exists(parsed.database)
    )


def window_over(settings: Settings, group: str | None, now: datetime | None = None):
    """The active window over `group` (None: none). A lookup that fails (the database down,
    or not upgraded yet) holds nothing (no tick, no submitted run): the runs it lets through
    fail and alert as they would without windows, where a silently held one would hide the
    outage."""
    if group is None or _no_database(settings.app_database_url):
        return None
    now = now or utcnow()
    try:
        windows = active_windows(engine_for(settings.app_database_url), now)
    except Exception as error:
        logger.warning("cannot read the maintenance windows (%s): nothing held", error)
        return None
    return paused_groups(windows, now).get(group)


# --- visible: metrics, the alert sensor -------------------------------------------------------
def maintenance_family(engine, now: datetime):
    """`ops_maintenance_active{group}`: 1 while a window holds the group, else 0."""
    from prometheus_client.core import GaugeMetricFamily

    gauge = GaugeMetricFamily(
        "ops_maintenance_active",
        "1 while a maintenance window holds the group's schedules and sensors, else 0.",
        labels=["group"],
    )
    paused = paused_groups(active_windows(engine, now), now)
    for group in GROUPS:
        gauge.add_metric([group], 1 if group in paused else 0)
    return gauge


def windows_by_id(engine, ids: Iterable[int]) -> dict[int, Window]:
    table = schema.maintenance_windows
    ids = list(ids)
    if not ids:
        return {}
    with engine.connect() as connection:
        rows = connection.execute(select(table).where(table.c.id.in_(ids))).all()
    return {row.id: _window(row) for row in rows}
