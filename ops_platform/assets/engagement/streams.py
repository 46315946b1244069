"""`stream_rankings` (every 10 minutes): the engagement score of every live or recently
ended stream from its `stream_events` in a trailing window; each event weighs `kind weight ×
value` (value is 1 for views, chats, follows and shares, the coins for a gift), decayed by its
age with a half-life; a malformed event (negative or absurd value) counts for nothing. Ranks
1..N with no gaps and no ties (equal scores: lower stream id first). Only the difference is
written (rows whose rank changed or whose score moved by 0.01 or more, new streams, streams no
longer eligible removed), in one transaction, so the app never reads a half ranking."""

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

import dagster as dg
from pydantic import Field
from sqlalchemy import Connection, text

from ops_platform.assets._sql_assets import (
    RuleConfig,
    RuleSummary,
    decay_params,
    decay_sql,
    latest_metadata,
    rule_asset,
    sync_table,
)
from ops_platform.db.bad_rows import well_formed
from ops_platform.db.engine import as_utc, utcnow
from ops_platform.markdown import markdown_table
from ops_platform.resources.database import Database

# Points per unit of `stream_events.value` (1 for most kinds; coins for gifts).
STREAM_EVENT_WEIGHTS: Mapping[str, float] = {
    "view": 1.0,
    "chat": 2.0,
    "gift": 1.0,
    "follow": 5.0,
    "share": 3.0,
}


# Scores are shown with two decimals; a score that moved by less keeps its row (its rank is
# always exact).
STREAM_SCORE_PRECISION = 0.01


@dataclass(frozen=True)
class RankingResult:
    streams_ranked: int
    seconds: float
    rows_written: int = 0  # inserted + updated + deleted
    rows_deleted: int = 0  # streams no longer eligible


def _stream_score_sql(bind) -> str:
    kind_weight = " ".join(f"WHEN '{kind}' THEN :w_{kind}" for kind in STREAM_EVENT_WEIGHTS)
    return f"""
        SELECT stream_id,
               SUM(CASE kind {kind_weight} ELSE 0.0 END
                   * value * {decay_sql(bind, "created_at")}) AS score
        FROM stream_events
        WHERE created_at >= :since AND created_at <= :now
          AND {well_formed(bind, "stream_events")}
        GROUP BY stream_id
    """


# Live streams, and streams that ended inside the window; not streams starting later.
ELIGIBLE_STREAM_SQL = (
    "(s.is_live OR s.ended_at >= :since) AND (s.started_at IS NULL OR s.started_at <= :now)"
)


def rank_streams(
    connection: Connection,
    now: datetime,
    window: timedelta,
    half_life: timedelta,
    weights: Mapping[str, float] = STREAM_EVENT_WEIGHTS,
    min_change: float = STREAM_SCORE_PRECISION,
) -> RankingResult:
    """Make `stream_rankings` the ranking as of `now`, inside the caller's transaction
    (readers see the old ranking until it commits): only rows whose rank changed or whose
    score moved by at least `min_change` are written, streams no longer eligible removed."""
    started = time.perf_counter()
    unknown = set(weights) - set(STREAM_EVENT_WEIGHTS)
    if unknown:
        raise ValueError(f"unknown stream event kinds in weights: {sorted(unknown)}")
    params = {
        "now": now,
        "since": now - window,
        **decay_params(now, half_life),
        **{
            f"w_{kind}": float(weights.get(kind, default))
            for kind, default in STREAM_EVENT_WEIGHTS.items()
        },
    }
    ranking = f"""
        SELECT s.id,
               COALESCE(e.score, 0.0),
               ROW_NUMBER() OVER (ORDER BY COALESCE(e.score, 0.0) DESC, s.id)
        FROM streams AS s
        LEFT JOIN ({_stream_score_sql(connection)}) AS e ON e.stream_id = s.id
        WHERE {ELIGIBLE_STREAM_SQL}
    """
    result = sync_table(
        connection,
        "stream_rankings",
        ranking,
        params,
        keys=("stream_id",),
        values=("score", "rank"),
        close_enough={"score": min_change},
    )
    return RankingResult(
        streams_ranked=result.rows,
        seconds=time.perf_counter() - started,
        rows_written=result.written,
        rows_deleted=result.deleted,
    )


def ranking_preview(connection: Connection, limit: int = 10) -> str:
    rows = connection.execute(
        text("""
            SELECT r.rank, r.stream_id, s.title, s.is_live, r.score
            FROM stream_rankings AS r LEFT JOIN streams AS s ON s.id = r.stream_id
            ORDER BY r.rank LIMIT :limit
        """),
        {"limit": limit},
    ).all()
    return markdown_table(
        ("rank", "stream", "title", "live", "score"),
        [
            (rank, sid, title, "yes" if live else "no", float(score))
            for rank, sid, title, live, score in rows
        ],
    )


class StreamRankingsConfig(RuleConfig):
    window_hours: float = Field(
        default=24.0, gt=0, le=24 * 30, description="Trailing window of events."
    )
    half_life_hours: float = Field(
        default=6.0, gt=0, description="An event's weight halves every half-life."
    )
    view_weight: float = Field(default=STREAM_EVENT_WEIGHTS["view"], ge=0)
    chat_weight: float = Field(default=STREAM_EVENT_WEIGHTS["chat"], ge=0)
    gift_weight: float = Field(
        default=STREAM_EVENT_WEIGHTS["gift"], ge=0, description="Points per coin gifted."
    )
    follow_weight: float = Field(default=STREAM_EVENT_WEIGHTS["follow"], ge=0)
    share_weight: float = Field(default=STREAM_EVENT_WEIGHTS["share"], ge=0)
    preview_rows: int = Field(default=10, ge=1, le=100)

    def weights(self) -> dict[str, float]:
        return {kind: getattr(self, f"{kind}_weight") for kind in STREAM_EVENT_WEIGHTS}

    def rule(self) -> Callable[[Connection, datetime], RankingResult]:
        """`rank_streams` with this configuration, for a connection and a time."""
        return partial(
            rank_streams,
            window=timedelta(hours=self.window_hours),
            half_life=timedelta(hours=self.half_life_hours),
            weights=self.weights(),
        )


def ranking_summary(
    connection: Connection, result: RankingResult, config: StreamRankingsConfig, now: datetime
) -> RuleSummary:
    active, top_score = connection.execute(
        text("SELECT SUM(CASE WHEN score > 0 THEN 1 ELSE 0 END), MAX(score) FROM stream_rankings")
    ).one()
    return RuleSummary(
        examined=result.streams_ranked,
        written=result.rows_written,
        figures={
            "streams_with_activity": int(active or 0),
            "top_score": float(top_score or 0.0),
            "window_hours": config.window_hours,
            "half_life_hours": config.half_life_hours,
        },
        preview=ranking_preview(connection, config.preview_rows),
        message=f"ranked {result.streams_ranked} streams ({active or 0} with activity), "
        f"{result.rows_written} rows written",
    )


stream_rankings = rule_asset(
    "stream_rankings",
    "engagement",
    "stream_rankings",
    ("streams", "stream_events"),
    StreamRankingsConfig,
    ranking_summary,
    description="Engagement score and rank of every live or recently ended stream, from views, "
    "chats, gifts, follows and shares in a trailing window with exponential time decay. "
    "Written to the `stream_rankings` table (one row per stream, ranks 1..N).",
)


@dg.asset_check(asset=stream_rankings, description="Ranks are 1..N with no gaps and no duplicates.")
def stream_ranks_dense_and_unique(database: Database) -> dg.AssetCheckResult:
    with database.connect() as connection:
        rows, distinct_ranks, low, high = connection.execute(
            text("SELECT COUNT(*), COUNT(DISTINCT rank), MIN(rank), MAX(rank) FROM stream_rankings")
        ).one()
    passed = rows == distinct_ranks and (rows == 0 or (low == 1 and high == rows))
    return dg.AssetCheckResult(
        passed=passed,
        metadata={
            "rows": rows,
            "distinct_ranks": distinct_ranks,
            "min_rank": low or 0,
            "max_rank": high or 0,
        },
    )


@dg.asset_check(
    asset=stream_rankings,
    description="Exactly one row per stream that was live or recently ended when the ranking was computed.",
)
def one_ranking_row_per_stream(
    context: dg.AssetCheckExecutionContext, database: Database
) -> dg.AssetCheckResult:
    # Unchanged rows keep the time they were last written: the ranking's own time is the
    # latest materialization's.
    latest = latest_metadata(context, stream_rankings)
    window_hours = float(latest.get("window_hours", StreamRankingsConfig().window_hours))
    with database.connect() as connection:
        computed_at = as_utc(latest.get("computed_at")) or as_utc(
            connection.execute(text("SELECT MAX(computed_at) FROM stream_rankings")).scalar()
        )
        if computed_at is None:
            computed_at = utcnow()
        params = {"now": computed_at, "since": computed_at - timedelta(hours=window_hours)}
        missing = connection.execute(
            text(f"""
                SELECT COUNT(*) FROM streams AS s
                WHERE {ELIGIBLE_STREAM_SQL}
                  AND NOT EXISTS (SELECT 1 FROM stream_rankings AS r WHERE r.stream_id = s.id)
            """),
            params,
        ).scalar()
        extra = connection.execute(
            text(f"""
                SELECT COUNT(*) FROM stream_rankings AS r
                WHERE NOT EXISTS (SELECT 1 FROM streams AS s WHERE s.id = r.stream_id AND {ELIGIBLE_STREAM_SQL})
            """),
            params,
        ).scalar()
    return dg.AssetCheckResult(
        passed=missing == 0 and extra == 0,
        metadata={"eligible_streams_missing": missing, "rows_not_eligible": extra},
    )
