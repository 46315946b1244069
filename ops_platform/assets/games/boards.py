"""`leaderboards` (hourly): for every game type × period (daily = this UTC day, weekly = this
week from Monday, alltime) the top players by best score, ranked with ROW_NUMBER() (equal
scores: whoever reached it first), written to `leaderboard_standings`: only the places that
changed, in one transaction."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial

import dagster as dg
from pydantic import Field
from sqlalchemy import Connection, text

from ops_platform.assets._sql_assets import (
    RuleConfig,
    RuleSummary,
    SyncResult,
    rule_asset,
    sync_table,
)
from ops_platform.db.bad_rows import well_formed
from ops_platform.db.engine import state_table
from ops_platform.db.schema import GAME_TYPES
from ops_platform.markdown import markdown_table
from ops_platform.resources.database import Database

BOARD_PERIODS = ("daily", "weekly", "alltime")


def period_starts(now: datetime) -> dict[str, datetime | None]:
    """Start of each board's period as of `now` (UTC): this day, this week from Monday, all time."""
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return {"daily": day, "weekly": day - timedelta(days=day.weekday()), "alltime": None}


def _game_types_sql() -> str:
    return ", ".join(f"'{game}'" for game in GAME_TYPES)


def standings_sql(bind) -> str:
    """Columns: game_type, period, rank (the key), player_address, score, period_start.
    Malformed entries (a NULL, negative or absurd score) are never ranked; `bad_rows` counts
    them."""
    entries = f"leaderboard_entries WHERE {well_formed(bind, 'leaderboard_entries')} AND"
    return f"""
    WITH entries AS (
        SELECT 'daily' AS period, game_type, player_address, score, created_at, id
        FROM {entries} created_at >= :daily_start AND created_at <= :now
        UNION ALL
        SELECT 'weekly', game_type, player_address, score, created_at, id
        FROM {entries} created_at >= :weekly_start AND created_at <= :now
        UNION ALL
        SELECT 'alltime', game_type, player_address, score, created_at, id
        FROM {entries} created_at <= :now
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
        standings_sql(connection),
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


class LeaderboardsConfig(RuleConfig):
    top_n: int = Field(default=100, ge=1, le=10_000, description="Players kept per board.")

    def rule(self) -> Callable[[Connection, datetime], SyncResult]:
        """`compute_standings` with this configuration, for a connection and a time."""
        return partial(compute_standings, top_n=self.top_n)


def boards_summary(
    connection: Connection, result: SyncResult, config: LeaderboardsConfig, now: datetime
) -> RuleSummary:
    sizes = board_sizes(connection)
    table = markdown_table(
        ("game", "period", "players"), [(g, p, n) for (g, p), n in sorted(sizes.items())]
    )
    return RuleSummary(
        examined=result.rows,
        written=result.written,
        figures={
            "boards": len(sizes),
            "empty_boards": sum(1 for count in sizes.values() if count == 0),
            "board_sizes": dg.MetadataValue.md(table),
        },
        preview=f"Top 3 of every board as of {now:%Y-%m-%d %H:%M} UTC\n\n"
        + standings_preview(connection),
        message=f"{result.rows} standings rows on {len(sizes)} boards, {result.written} written",
    )


leaderboards = rule_asset(
    "leaderboards",
    "games",
    "leaderboard_standings",
    ("leaderboard_entries",),
    LeaderboardsConfig,
    boards_summary,
    description="Standings of every game type × period (daily, weekly, alltime): each player's "
    "best score ranked with ROW_NUMBER(), top N per board, written to `leaderboard_standings`.",
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
