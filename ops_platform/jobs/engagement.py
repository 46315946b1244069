"""Streaming engagement state: thrones and festivals.

Each state change and the `realtime_events` outbox row announcing it are written in the
same transaction, so the app never hears of a change that did not happen or misses one
that did; `realtime_publish` delivers the outbox.

- `throne_expiry`: active thrones with `expires_at <= now` become inactive; one
  `throne:expired` event each on channel `stream:<stream_id>` with payload
  `{throneId, streamId, holderId, totalCoins}`. Active thrones with no expiry are bad
  rows: kept and counted.
- `festival_activation`: festivals with `start_at <= now <= end_at` become active, those
  with `end_at < now` inactive; a festival's gifts follow it. Only festivals that change
  get a `festival:activated` / `festival:ended` event (channel `festivals`, payload
  `{festivalId, name, theme}`), so re-runs publish nothing twice. The theme of the active
  festival (the most recently started one with a theme, if several overlap) is recorded
  in `app_state` under `active_theme`; with none active the value is NULL. Festivals
  with no start or end, or ending before they start, are bad rows: kept and counted.
"""

from datetime import datetime

import dagster as dg
from sqlalchemy import Connection, Engine, text

from ops_platform.db.batch_steps import Follower, OutboxEvent, update_batch
from ops_platform.db.batching import BatchResult, count_rows, dry_run_results, run_in_batches
from ops_platform.db.engine import state_table
from ops_platform.jobs._cleanup import RuleOutcome, rule_job
from ops_platform.jobs._common import GuardedJobConfig
from ops_platform.log_line import LogLine

ACTIVE_THEME_KEY = "active_theme"


def _with_events(
    engine: Engine,
    table: str,
    where: str,
    params: dict,
    label: str,
    event: OutboxEvent,
    config: GuardedJobConfig,
    set_sql: str,
    followers: tuple[Follower, ...] = (),
    log: LogLine | None = None,
) -> list[BatchResult]:
    """Update the rows matching `where` in batches, with followers and one event per row."""
    if config.dry_run:
        results = dry_run_results(engine, table, where, params, label=label, followers=followers)
        results.append(
            BatchResult(
                table="realtime_events",
                label=f"{label}_events",
                matched=results[0].matched,
                inserts=True,
            )
        )
        return results
    results = run_in_batches(
        engine,
        table,
        where,
        params,
        lambda connection, batch_where, batch_params: _rename_events(
            update_batch(
                connection,
                table,
                set_sql,
                batch_where,
                batch_params,
                label=label,
                event=event,
                followers=followers,
            ),
            label,
        ),
        batch_size=config.batch_size,
        progress=log,
        label=label,
        tables={**{f.name: f.table for f in followers}, f"{label}_events": "realtime_events"},
    )
    return results


def _rename_events(changed: dict[str, int], label: str) -> dict[str, int]:
    """Report the outbox rows of each rule under their own label, e.g. thrones_expired_events."""
    if "realtime_events" in changed:
        changed[f"{label}_events"] = changed.pop("realtime_events")
    return changed


# --- thrones ------------------------------------------------------------------------------

THRONE_EXPIRED = OutboxEvent(
    event="throne:expired",
    channel_sql="COALESCE('stream:' || CAST(stream_id AS VARCHAR(20)), 'thrones')",
    payload={
        "throneId": "id",
        "streamId": "stream_id",
        "holderId": "holder_id",
        "totalCoins": "total_coins",
    },
)


class ThroneExpiryConfig(GuardedJobConfig):
    pass


def deactivate_expired_thrones(
    engine: Engine, config: ThroneExpiryConfig, now: datetime, log: LogLine | None = None
) -> RuleOutcome:
    """Deactivate thrones past expires_at and write a throne:expired event for each."""
    results = _with_events(
        engine,
        "thrones",
        "is_active AND expires_at <= :now",
        {"now": now},
        "thrones_expired",
        THRONE_EXPIRED,
        config,
        "is_active = false",
        log=log,
    )
    bad = count_rows(engine, "thrones", "is_active AND expires_at IS NULL", {})
    return RuleOutcome(results, {"thrones_skipped_null_expiry": bad})


throne_expiry = rule_job(
    "throne_expiry",
    "expire_thrones",
    deactivate_expired_thrones,
    description="Deactivate expired thrones and publish throne:expired.",
)


# --- festivals ----------------------------------------------------------------------------

FESTIVAL_PAYLOAD = {"festivalId": "id", "name": "name", "theme": "theme"}
IN_WINDOW = "start_at <= :now AND end_at >= :now"
ENDED = "end_at < :now AND start_at <= end_at"
BAD_WINDOW = "(start_at IS NULL OR end_at IS NULL OR start_at > end_at)"


def festival_change(change: str, window: str, active: bool, gifts_label: str):
    """(label, WHERE, set, event, gift follower) of the festivals in `window` whose
    `is_active` becomes `active`: only those not yet so, and their gifts with them."""
    becomes = f"is_active = {'true' if active else 'false'}"
    was = "NOT is_active" if active else "is_active"
    return (
        f"festivals_{change}",
        f"{was} AND {window}",
        becomes,
        OutboxEvent(f"festival:{change}", "'festivals'", FESTIVAL_PAYLOAD),
        Follower("gifts", "festival_id", becomes, was, label=gifts_label),
    )


# Activation first, then the end.
FESTIVAL_CHANGES = (
    festival_change("activated", IN_WINDOW, True, "gifts_activated"),
    festival_change("ended", ENDED, False, "gifts_deactivated"),
)


class FestivalActivationConfig(GuardedJobConfig):
    pass


def active_theme(connection: Connection, now: datetime) -> str | None:
    """Theme of the festival in its window (after the rules ran, every such festival is
    active); of overlapping ones, the most recently started one with a theme."""
    return connection.execute(
        text(
            f"SELECT theme FROM festivals WHERE {IN_WINDOW} AND theme IS NOT NULL "
            "ORDER BY start_at DESC, id DESC LIMIT 1"
        ),
        {"now": now},
    ).scalar()


def record_active_theme(engine: Engine, now: datetime, dry_run: bool) -> BatchResult:
    """Upsert `app_state.active_theme` if it differs; reports 1 row changed or 0."""
    result = BatchResult(table="app_state", label="active_theme")
    app_state = state_table(engine, "app_state")
    with engine.begin() as connection:
        theme = active_theme(connection, now)
        current = connection.execute(
            text(f"SELECT value FROM {app_state} WHERE key = :key"), {"key": ACTIVE_THEME_KEY}
        ).first()
        if current is not None and current[0] == theme:
            return result
        result.matched = 1
        if dry_run:
            return result
        connection.execute(
            text(
                f"INSERT INTO {app_state} (key, value, updated_at) VALUES (:key, :value, :now) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
            ),
            {"key": ACTIVE_THEME_KEY, "value": theme, "now": now},
        )
        result.changed = 1
    return result


def update_festival_states(
    engine: Engine, config: FestivalActivationConfig, now: datetime, log: LogLine | None = None
) -> RuleOutcome:
    """Activate festivals in their window and end past ones, with their gifts, theme and events."""
    params = {"now": now}
    results = [
        result
        for label, where, set_sql, event, gifts in FESTIVAL_CHANGES
        for result in _with_events(
            engine, "festivals", where, params, label, event, config, set_sql, (gifts,), log=log
        )
    ]
    results.append(record_active_theme(engine, now, config.dry_run))
    bad = count_rows(engine, "festivals", BAD_WINDOW, {})
    return RuleOutcome(results, {"festivals_skipped_bad_window": bad})


festival_activation = rule_job(
    "festival_activation",
    "activate_festivals",
    update_festival_states,
    description="Activate and end festivals and their gifts and theme.",
)


defs = dg.Definitions(jobs=[throne_expiry, festival_activation])
