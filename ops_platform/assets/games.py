"""Arcade assets: hourly `leaderboards`, and the prize pools finalized per
period and game type, `daily_prize_pools` (00:00 UTC, yesterday) and `weekly_prize_pools`
(Mondays 00:00 UTC, last week).

- `leaderboards`: for every game type × period (daily = this UTC day, weekly = this week from
  Monday, alltime) the top players by best score, ranked with ROW_NUMBER() (equal scores:
  whoever reached it first), written to `leaderboard_standings`: only the places that
  changed, in one transaction.
- Prize pools: partition = (period start date, game type). The partition's pool row in
  `prize_pools` is created if the app never opened it, then finalized with the top scorer of
  the period (ties: the earliest score wins); a period without scores is `no_winner`. A pool
  that is already finalized (or `no_winner`) is never changed again, so re-materializing,
  backfilling or a catch-up run cannot move a prize. Each partition is its own transaction:
  a failing game type or day is reported and the others are still finalized. The assets take
  a single-run backfill policy, so `dagster asset materialize --partition-range` works from the
  CLI; a run over a range yields one materialization per partition that succeeded. Periods
  older than 30 days also read `leaderboard_entries_archive` (game_cleanup's archive).
"""

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import dagster as dg
from pydantic import Field
from sqlalchemy import Connection, text

from ops_platform.assets._ranges import RANGE_IN_ONE_RUN
from ops_platform.assets._sql_assets import OWNERS, SyncResult, sync_table
from ops_platform.assets.app_tables import app_table_keys
from ops_platform.db.bad_rows import JOB_TABLES, bad_rows_metadata, no_bad_rows_check
from ops_platform.db.engine import as_utc, is_postgres, state_table, utcnow
from ops_platform.db.schema import GAME_TYPES
from ops_platform.markdown import markdown_table
from ops_platform.resources.database import Database
from ops_platform.retries import (
    MAX_TRANSIENT_RETRIES,
    backoff_seconds,
    is_transient,
    transient_retries,
)
from ops_platform.schedules.catalog import asset_pool, op_tags
from ops_platform.settings import partitions_start

BOARD_PERIODS = ("daily", "weekly", "alltime")
FINAL_STATUSES = ("finalized", "no_winner")

# First day of the prize pool partitions; the first weekly pool is the first Monday from it.
PRIZE_POOLS_START_DATE = partitions_start()  # OPS_PARTITIONS_START

GAME_TYPE_PARTITIONS = dg.StaticPartitionsDefinition(list(GAME_TYPES))
DAILY_POOL_PARTITIONS = dg.MultiPartitionsDefinition(
    {
        "date": dg.DailyPartitionsDefinition(start_date=PRIZE_POOLS_START_DATE),
        "game_type": GAME_TYPE_PARTITIONS,
    }
)
# Weeks start on Monday (day_offset=1); the date key is that Monday.
WEEKLY_POOL_PARTITIONS = dg.MultiPartitionsDefinition(
    {
        "date": dg.WeeklyPartitionsDefinition(start_date=PRIZE_POOLS_START_DATE, day_offset=1),
        "game_type": GAME_TYPE_PARTITIONS,
    }
)


# --- leaderboards ---------------------------------------------------------------------
def period_starts(now: datetime) -> dict[str, datetime | None]:
    """Start of each board's period as of `now` (UTC): this day, this week from Monday, all time."""
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return {"daily": day, "weekly": day - timedelta(days=day.weekday()), "alltime": None}


def _game_types_sql() -> str:
    return ", ".join(f"'{game}'" for game in GAME_TYPES)


# Columns: game_type, period, rank (the key), player_address, score, period_start.
STANDINGS_SQL = f"""
    WITH entries AS (
        SELECT 'daily' AS period, game_type, player_address, score, created_at, id
        FROM leaderboard_entries WHERE created_at >= :daily_start AND created_at <= :now
        UNION ALL
        SELECT 'weekly', game_type, player_address, score, created_at, id
        FROM leaderboard_entries WHERE created_at >= :weekly_start AND created_at <= :now
        UNION ALL
        SELECT 'alltime', game_type, player_address, score, created_at, id
        FROM leaderboard_entries WHERE created_at <= :now
    ),
    best AS (  -- each player's best score on the board, the earliest if repeated
        SELECT period, game_type, player_address, score, created_at,
               ROW_NUMBER() OVER (PARTITION BY period, game_type, player_address
                                  ORDER BY score DESC, created_at, id) AS pick
        FROM entries WHERE game_type IN ({_game_types_sql()})
    ),
    ranked AS (
        SELECT period, game_type, player_address, score,
               ROW_NUMBER() OVER (PARTITION BY period, game_type
                                  ORDER BY score DESC, created_at, player_address) AS rank
        FROM best WHERE pick = 1
    )
    SELECT game_type, period, rank, player_address, score,
           CASE period WHEN 'daily' THEN :daily_date WHEN 'weekly' THEN :weekly_date END
    FROM ranked WHERE rank <= :top_n
"""


def compute_standings(connection: Connection, now: datetime, top_n: int = 100) -> SyncResult:
    """Make `leaderboard_standings` the boards as of `now` inside the caller's transaction
    (readers see the old boards until it commits), writing only the places whose player,
    score or period changed, and removing places beyond the boards' new ends."""
    if top_n < 1:
        raise ValueError(f"top_n must be at least 1, got {top_n}")
    starts = period_starts(now)
    params = {
        "now": now,
        "top_n": top_n,
        "daily_start": starts["daily"],
        "weekly_start": starts["weekly"],
        "daily_date": starts["daily"].date(),
        "weekly_date": starts["weekly"].date(),
    }
    return sync_table(
        connection,
        state_table(connection, "leaderboard_standings"),
        STANDINGS_SQL,
        params,
        keys=("game_type", "period", "rank"),
        values=("player_address", "score", "period_start"),
    )


def board_sizes(connection: Connection) -> dict[tuple[str, str], int]:
    rows = connection.execute(
        text(
            "SELECT game_type, period, COUNT(*) "
            f"FROM {state_table(connection, 'leaderboard_standings')} GROUP BY game_type, period"
        )
    ).all()
    sizes = {(game, period): 0 for game in GAME_TYPES for period in BOARD_PERIODS}
    sizes.update({(game, period): count for game, period, count in rows})
    return sizes


def standings_preview(connection: Connection, top: int = 3) -> str:
    rows = connection.execute(
        text(f"""
            SELECT game_type, period, rank, player_address, score
            FROM {state_table(connection, "leaderboard_standings")}
            WHERE rank <= :top ORDER BY game_type, period, rank
        """),
        {"top": top},
    ).all()
    return markdown_table(("game", "period", "rank", "player", "score"), rows)


class LeaderboardsConfig(dg.Config):
    top_n: int = Field(default=100, ge=1, le=10_000, description="Players kept per board.")


@dg.asset(
    pool=asset_pool("leaderboards"),
    op_tags=op_tags("leaderboards"),
    group_name="games",
    owners=OWNERS,
    kinds={"sql", "postgres"},
    deps=app_table_keys("leaderboard_entries"),
    description=(
        "Standings of every game type × period (daily, weekly, alltime): each player's best "
        "score ranked with ROW_NUMBER(), top N per board, written to `leaderboard_standings`."
    ),
    metadata={"dagster/table_name": "leaderboard_standings"},
)
def leaderboards(
    context: dg.AssetExecutionContext, config: LeaderboardsConfig, database: Database
) -> dg.MaterializeResult:
    now = utcnow()
    started = time.perf_counter()
    with transient_retries(context), database.begin() as connection:
        result = compute_standings(connection, now, config.top_n)
    seconds = time.perf_counter() - started
    with database.connect() as connection:
        sizes = board_sizes(connection)
        preview = standings_preview(connection)
    context.log.info(
        f"{result.rows} standings rows on {len(sizes)} boards, {result.written} written, "
        f"in {seconds:.2f}s"
    )
    return dg.MaterializeResult(
        metadata={
            "row_count": result.rows,
            "rows_examined": result.rows,
            "rows_written": result.written,
            "boards": len(sizes),
            "empty_boards": sum(1 for count in sizes.values() if count == 0),
            **bad_rows_metadata(database.engine, JOB_TABLES["leaderboards"], context.log.warning),
            "duration_s": round(seconds, 3),
            "computed_at": now.isoformat(),
            "board_sizes": dg.MetadataValue.md(
                markdown_table(
                    ("game", "period", "players"),
                    [(g, p, n) for (g, p), n in sorted(sizes.items())],
                )
            ),
            "preview": dg.MetadataValue.md(
                f"Top 3 of every board as of {now:%Y-%m-%d %H:%M} UTC\n\n{preview}"
            ),
        }
    )


@dg.asset_check(
    asset=leaderboards,
    description="Every game type × period board can be read (top entry query works).",
)
def every_board_readable(database: Database) -> dg.AssetCheckResult:
    unreadable: list[str] = []
    leaders = 0
    with database.connect() as connection:
        standings = state_table(connection, "leaderboard_standings")
        for game in GAME_TYPES:
            for period in BOARD_PERIODS:
                try:
                    top = connection.execute(
                        text(f"""
                            SELECT rank, player_address, score FROM {standings}
                            WHERE game_type = :game AND period = :period ORDER BY rank LIMIT 1
                        """),
                        {"game": game, "period": period},
                    ).first()
                    leaders += top is not None
                except (
                    Exception
                ) as error:  # the check reports it, the asset stays readable otherwise
                    connection.rollback()
                    unreadable.append(f"{game}/{period}: {error.__class__.__name__}")
    return dg.AssetCheckResult(
        passed=not unreadable,
        metadata={
            "boards": len(GAME_TYPES) * len(BOARD_PERIODS),
            "boards_with_a_leader": leaders,
            "unreadable": ", ".join(unreadable) or "none",
        },
    )


@dg.asset_check(
    asset=leaderboards, description="On every board the ranks are 1..N with no gaps or duplicates."
)
def leaderboard_ranks_dense(database: Database) -> dg.AssetCheckResult:
    with database.connect() as connection:
        rows = connection.execute(
            text(f"""
                SELECT game_type, period, COUNT(*), COUNT(DISTINCT rank), MIN(rank), MAX(rank)
                FROM {state_table(connection, "leaderboard_standings")} GROUP BY game_type, period
            """)
        ).all()
    broken = [
        f"{game}/{period}"
        for game, period, count, distinct, low, high in rows
        if not (count == distinct and low == 1 and high == count)
    ]
    return dg.AssetCheckResult(
        passed=not broken,
        metadata={"boards_checked": len(rows), "boards_not_dense": ", ".join(broken) or "none"},
    )


# --- prize pools ----------------------------------------------------------------------
@dataclass(frozen=True)
class PoolResult:
    game_type: str
    period: str
    period_start: date
    status: str
    winner_address: str | None
    winning_score: int | None
    total_amount: float
    finalized_at: datetime | None
    finalized_now: bool  # False: the pool was already final and was left alone
    entries_in_period: int


# game_cleanup moves leaderboard entries older than 90 days (its default) to the archive: an
# older period (a backfill, or a catch-up after a long outage) is read from both tables.
READ_ARCHIVE_FOR_PERIODS_OLDER_THAN = timedelta(days=30)
ENTRIES_WITH_ARCHIVE = """(
    SELECT id, game_type, player_address, score, created_at FROM leaderboard_entries
    UNION ALL
    SELECT a.id, a.game_type, a.player_address, a.score, a.created_at FROM {archive} AS a
    WHERE NOT EXISTS (SELECT 1 FROM leaderboard_entries AS e WHERE e.id = a.id)
) AS entries"""


def _entries_source(connection: Connection, start: datetime, now: datetime) -> str:
    if start < now - READ_ARCHIVE_FOR_PERIODS_OLDER_THAN:
        return ENTRIES_WITH_ARCHIVE.format(
            archive=state_table(connection, "leaderboard_entries_archive")
        )
    return "leaderboard_entries"


def _finalize_sql(source: str) -> str:
    """Set the period's top scorer: best score, the earliest on a tie (then the lowest id, so
    the subqueries pick the same row). No CTE: Python's sqlite3 reports no rowcount for a
    statement that starts with WITH."""
    top = f"""
        SELECT {{column}} FROM {source}
        WHERE game_type = :game_type AND created_at >= :start AND created_at < :end
        ORDER BY score DESC, created_at, id
        LIMIT 1
    """
    return f"""
        UPDATE prize_pools
        SET status = CASE WHEN EXISTS ({top.format(column="1")}) THEN 'finalized' ELSE 'no_winner' END,
            winner_address = ({top.format(column="player_address")}),
            winning_score = ({top.format(column="score")}),
            finalized_at = :now
        WHERE game_type = :game_type AND period = :period AND period_start = :period_start
          AND status NOT IN ({", ".join(f"'{s}'" for s in FINAL_STATUSES)})
    """


def finalize_prize_pool(
    connection: Connection,
    game_type: str,
    period: str,
    start: datetime,
    end: datetime,
    now: datetime,
) -> PoolResult:
    """Finalize the pool of `game_type` for the period [start, end) inside the caller's
    transaction: create it if missing, set the top scorer (or `no_winner`) unless final."""
    if game_type not in GAME_TYPES:
        raise ValueError(f"unknown game type {game_type!r}; game types are {', '.join(GAME_TYPES)}")
    if period not in ("daily", "weekly"):
        raise ValueError(f"unknown prize pool period {period!r}; periods are daily, weekly")
    if end > now:
        raise ValueError(
            f"the {period} {game_type} period starting {start:%Y-%m-%d} is not over until {end:%Y-%m-%d %H:%M} UTC"
        )
    key = {"game_type": game_type, "period": period, "period_start": start.date()}
    connection.execute(
        text("""
            INSERT INTO prize_pools (game_type, period, period_start, total_amount, status)
            VALUES (:game_type, :period, :period_start, 0, 'open')
            ON CONFLICT (game_type, period, period_start) DO NOTHING
        """),
        key,
    )
    source = _entries_source(connection, start, now)
    changed = connection.execute(
        text(_finalize_sql(source)), {**key, "start": start, "end": end, "now": now}
    ).rowcount
    status, winner, score, amount, finalized_at = connection.execute(
        text("""
            SELECT status, winner_address, winning_score, total_amount, finalized_at FROM prize_pools
            WHERE game_type = :game_type AND period = :period AND period_start = :period_start
        """),
        key,
    ).one()
    entries = connection.execute(
        text(f"""
            SELECT COUNT(*) FROM {source}
            WHERE game_type = :game_type AND created_at >= :start AND created_at < :end
        """),
        {"game_type": game_type, "start": start, "end": end},
    ).scalar()
    return PoolResult(
        game_type=game_type,
        period=period,
        period_start=start.date(),
        status=status,
        winner_address=winner,
        winning_score=None if score is None else int(score),
        total_amount=float(amount or 0),
        finalized_at=as_utc(finalized_at),
        finalized_now=bool(changed),
        entries_in_period=int(entries),
    )


def _pool_metadata(result: PoolResult, end: datetime) -> dict:
    return {
        "status": result.status,
        "winner_address": result.winner_address or "-",
        "winning_score": result.winning_score if result.winning_score is not None else -1,
        "total_amount": result.total_amount,
        "finalized_now": result.finalized_now,
        "rows_written": int(result.finalized_now),
        "entries_in_period": result.entries_in_period,
        "period_start": result.period_start.isoformat(),
        "period_end": end.isoformat(),
        "finalized_at": result.finalized_at.isoformat() if result.finalized_at else "-",
    }


def _range_metadata(results: list[tuple[str, PoolResult]], seconds: float) -> dict:
    """Metadata of a run over several partitions (backfill): counts and every pool."""
    return {
        "pools": len(results),
        "finalized_now": sum(r.finalized_now for _, r in results),
        "rows_written": sum(r.finalized_now for _, r in results),
        "already_final": sum(not r.finalized_now for _, r in results),
        "with_winner": sum(r.status == "finalized" for _, r in results),
        "no_winner": sum(r.status == "no_winner" for _, r in results),
        "duration_s": round(seconds, 3),
        "preview": dg.MetadataValue.md(
            markdown_table(
                ("partition", "status", "winner", "score", "this run"),
                [
                    (
                        key,
                        r.status,
                        r.winner_address,
                        r.winning_score,
                        "finalized" if r.finalized_now else "unchanged",
                    )
                    for key, r in results
                ],
            )
        ),
    }


def materialize_pools(
    context: dg.AssetExecutionContext,
    database: Database,
    period: str,
    partitions_def: dg.MultiPartitionsDefinition,
) -> Iterator[dg.MaterializeResult | dg.AssetMaterialization]:
    """Finalize every partition of the run (one, or a range from a backfill), each in its own
    transaction. All succeeded: one materialization (the partition's pool, or a summary of the
    range) and the asset checks run. Some failed: a materialization for each partition that
    succeeded, then a failure naming every one that did not."""
    started = time.perf_counter()
    time_dim = partitions_def.time_window_dimension
    now = utcnow()
    results: list[tuple[str, PoolResult, datetime]] = []
    failures: list[tuple[str, Exception]] = []
    for partition_key in context.partition_keys:
        keys = partitions_def.get_partition_key_from_str(partition_key).keys_by_dimension
        game_type, window = (
            keys["game_type"],
            time_dim.partitions_def.time_window_for_partition_key(keys[time_dim.name]),
        )
        try:
            with database.begin() as connection:
                result = finalize_prize_pool(
                    connection, game_type, period, window.start, window.end, now
                )
        except Exception as error:
            context.log.error(
                f"{period} prize pool {partition_key} failed: {error.__class__.__name__}: {error}"
            )
            failures.append((partition_key, error))
            continue
        if len(context.partition_keys) <= 10:  # a backfill's range is summed up below instead
            verb = "finalized" if result.finalized_now else "already final, unchanged"
            context.log.info(
                f"{period} pool {game_type} {result.period_start}: {result.status} ({verb}), "
                f"winner {result.winner_address or '-'} score {result.winning_score}"
            )
        results.append((partition_key, result, window.end))
    if len(context.partition_keys) > 10:
        context.log.info(
            f"{len(results)} of {len(context.partition_keys)} {period} pools done: "
            f"{sum(r.finalized_now for _, r, _ in results)} finalized by this run, the others already final"
        )
    if failures:
        for partition_key, result, end in results:
            yield dg.AssetMaterialization(
                asset_key=context.asset_key,
                partition=partition_key,
                metadata=_pool_metadata(result, end),
            )
        _raise_for(context, period, failures, len(context.partition_keys))
    if len(results) == 1:
        _, result, end = results[0]
        yield dg.MaterializeResult(
            metadata={
                **_pool_metadata(result, end),
                "duration_s": round(time.perf_counter() - started, 3),
            }
        )
    else:
        yield dg.MaterializeResult(
            metadata=_range_metadata([(k, r) for k, r, _ in results], time.perf_counter() - started)
        )


def _raise_for(context, period: str, failures: list[tuple[str, Exception]], total: int) -> None:
    transient = [error for _, error in failures if is_transient(error)]
    if len(transient) == len(failures) and context.retry_number < MAX_TRANSIENT_RETRIES:
        # Only lost connections and the like: retry the run (final pools are left alone).
        raise dg.RetryRequested(
            max_retries=MAX_TRANSIENT_RETRIES, seconds_to_wait=backoff_seconds(context.retry_number)
        ) from transient[0]
    listed = "; ".join(f"{key}: {error.__class__.__name__}: {error}" for key, error in failures)
    raise dg.Failure(
        description=f"{len(failures)} of {total} {period} prize pools failed (the others were finalized): {listed}",
        metadata={"failed_partitions": ", ".join(key for key, _ in failures)},
    )


def _pool_asset(
    name: str, period: str, partitions_def: dg.MultiPartitionsDefinition, description: str
):
    @dg.asset(
        name=name,
        pool=asset_pool(name),
        op_tags=op_tags(name),
        group_name="games",
        owners=OWNERS,
        kinds={"sql", "postgres"},
        deps=app_table_keys("leaderboard_entries", "leaderboard_entries_archive", "prize_pools"),
        partitions_def=partitions_def,
        backfill_policy=RANGE_IN_ONE_RUN,
        output_required=False,
        description=description,
        metadata={"dagster/table_name": "prize_pools"},
    )
    def _asset(context: dg.AssetExecutionContext, database: Database):
        yield from materialize_pools(context, database, period, partitions_def)

    return _asset


daily_prize_pools = _pool_asset(
    "daily_prize_pools",
    "daily",
    DAILY_POOL_PARTITIONS,
    "Finalizes each day's prize pool per game type with the day's top scorer (earliest score "
    "wins a tie); a day without scores is `no_winner`. Partitioned by UTC day × game type; a "
    "finalized pool is never changed again. Table `prize_pools` (period 'daily').",
)
weekly_prize_pools = _pool_asset(
    "weekly_prize_pools",
    "weekly",
    WEEKLY_POOL_PARTITIONS,
    "Finalizes each week's (Monday to Monday, UTC) prize pool per game type with the week's "
    "top scorer (earliest score wins a tie); a week without scores is `no_winner`. Partitioned "
    "by week × game type; a finalized pool is never changed again. Table `prize_pools` (period 'weekly').",
)


PERIOD_DAYS = {"daily": 1, "weekly": 7}
# Only recently finalized pools are checked against the scores: game_cleanup later deletes
# entries whose session is gone, so an old pool's winning row may no longer exist.
SCORED_WINNER_LOOKBACK = timedelta(days=2)


def _period_bounds_sql(bind, days: int) -> tuple[str, str]:
    """SQL of the UTC start and end of a pool's period (`p.period_start` + `days`)."""
    if is_postgres(bind):
        return (
            "(p.period_start::timestamp AT TIME ZONE 'UTC')",
            f"((p.period_start + {days})::timestamp AT TIME ZONE 'UTC')",
        )
    return "p.period_start", f"date(p.period_start, '+{days} days')"


def winners_without_a_score(connection: Connection, period: str, since: datetime) -> list[str]:
    """Pools of `period` finalized since `since` whose winner has no entry with the winning
    score, in that game, inside the pool's period (live or archived entries)."""
    start, end = _period_bounds_sql(connection, PERIOD_DAYS[period])
    entries = ENTRIES_WITH_ARCHIVE.format(
        archive=state_table(connection, "leaderboard_entries_archive")
    )
    rows = connection.execute(
        text(f"""
            SELECT p.game_type, p.period_start FROM prize_pools AS p
            WHERE p.period = :period AND p.status = 'finalized' AND p.finalized_at >= :since
              AND NOT EXISTS (
                SELECT 1 FROM {entries}
                WHERE entries.game_type = p.game_type
                  AND entries.player_address = p.winner_address
                  AND entries.score = p.winning_score
                  AND entries.created_at >= {start} AND entries.created_at < {end})
            ORDER BY p.period_start, p.game_type
        """),
        {"period": period, "since": since},
    ).all()
    return [f"{game}:{day}" for game, day in rows]


def _one_winner_check(asset, period: str):
    @dg.asset_check(
        asset=asset,
        name="one_winner_per_finalized_pool",
        blocking=True,
        description=f"Blocking: every finalized {period} pool has exactly one winner and score, "
        "and (pools finalized in the last 2 days) the winner scored it in that game and period; "
        "`no_winner` pools have none; one pool per game type and period. A failure fails the "
        "run (alerted) and stops anything downstream.",
    )
    def _check(database: Database) -> dg.AssetCheckResult:
        with database.connect() as connection:
            unscored = winners_without_a_score(
                connection, period, utcnow() - SCORED_WINNER_LOOKBACK
            )
            pools, without_winner, no_winner_with_one, unstamped = connection.execute(
                text("""
                    SELECT COUNT(*),
                           SUM(CASE WHEN status = 'finalized' AND (winner_address IS NULL OR winning_score IS NULL) THEN 1 ELSE 0 END),
                           SUM(CASE WHEN status = 'no_winner' AND winner_address IS NOT NULL THEN 1 ELSE 0 END),
                           SUM(CASE WHEN status IN ('finalized', 'no_winner') AND finalized_at IS NULL THEN 1 ELSE 0 END)
                    FROM prize_pools WHERE period = :period
                """),
                {"period": period},
            ).one()
            duplicated = connection.execute(
                text("""
                    SELECT COUNT(*) FROM (
                        SELECT game_type, period_start FROM prize_pools WHERE period = :period
                        GROUP BY game_type, period_start HAVING COUNT(*) > 1) AS d
                """),
                {"period": period},
            ).scalar()
        problems = {
            "finalized_without_winner": int(without_winner or 0),
            "no_winner_with_a_winner": int(no_winner_with_one or 0),
            "final_without_finalized_at": int(unstamped or 0),
            "duplicated_pools": int(duplicated or 0),
            "winner_without_a_score": len(unscored),
        }
        return dg.AssetCheckResult(
            passed=not any(problems.values()),
            metadata={"pools": pools, **problems, "unscored_pools": ", ".join(unscored) or "none"},
        )

    return _check


defs = dg.Definitions(
    assets=[leaderboards, daily_prize_pools, weekly_prize_pools],
    asset_checks=[
        every_board_readable,
        leaderboard_ranks_dense,
        _one_winner_check(daily_prize_pools, "daily"),
        _one_winner_check(weekly_prize_pools, "weekly"),
        no_bad_rows_check(leaderboards, "leaderboards"),
    ],
)
