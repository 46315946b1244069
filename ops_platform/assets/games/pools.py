"""The prize pool rule: finalize the pool of one game type and period with its top scorer,
and find finalized pools whose winner has no such score (what the asset check reads)."""

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import Connection, text

from ops_platform.db.bad_rows import well_formed
from ops_platform.db.engine import as_utc, is_postgres, state_table
from ops_platform.db.schema import GAME_TYPES

FINAL_STATUSES = ("finalized", "no_winner")


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


def _in_period(connection: Connection) -> str:
    """The game's entries in [:start, :end); malformed ones (a NULL, negative or absurd
    score) are skipped, never winners, and counted apart in `bad_rows`."""
    return (
        "game_type = :game_type AND created_at >= :start AND created_at < :end "
        f"AND {well_formed(connection, 'leaderboard_entries')}"
    )


def _finalize_sql(source: str, in_period: str, pool_ok: str) -> str:
    """Set the period's top scorer: best score, the earliest on a tie (then the lowest id, so
    the subqueries pick the same row). A pool whose amount is malformed (`pool_ok` false:
    negative or absurd) stays open for a person and is counted in `bad_rows`. No CTE:
    Python's sqlite3 reports no rowcount for a statement that starts with WITH."""
    top = f"""
        SELECT {{column}} FROM {source}
        WHERE {in_period}
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
          AND {pool_ok}
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
        text(_finalize_sql(source, _in_period(connection), well_formed(connection, "prize_pools"))),
        {**key, "start": start, "end": end, "now": now},
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
            SELECT COUNT(*) FROM {source} WHERE {_in_period(connection)}
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


PERIOD_DAYS = {"daily": 1, "weekly": 7}


# Only recently finalized pools are checked against the scores: game_cleanup later deletes
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
