"""Engagement assets: `stream_rankings` every 10 minutes and `user_trust_scores`
every 30 minutes, each one set-based statement written back to the table the app reads.

- `stream_rankings`: engagement score of every live or recently ended stream from its
  `stream_events` in a trailing window; each event weighs `kind weight × value` (value is 1
  for views, chats, follows and shares, the coins for a gift), decayed by its age with a
  half-life. Ranks 1..N with no gaps and no ties (equal scores: lower stream id first). Only
  the difference is written (rows whose rank changed or whose score moved by 0.01 or more,
  new streams, streams no longer eligible removed), in one transaction, so the app never
  reads a half ranking.
- `user_trust_scores`: `base + Σ weight × 0.5^(age / half-life)` over the user's
  `reputation_events` up to now, clamped to 0–100; a user without events gets the neutral
  base score. Every score is recomputed, but only written (with `trust_score_updated_at`)
  where it moved by at least its display precision, 0.01, or was last written more than
  24 h ago, and for new users: in 30 minutes few rounded scores change, and rewriting a
  million rows for nothing costs the database a full table of dead rows each run.
"""

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import dagster as dg
from pydantic import Field
from sqlalchemy import Connection, text

from ops_platform.assets._sql_assets import (
    OWNERS,
    create_temp_table,
    decay_params,
    decay_sql,
    sync_table,
)
from ops_platform.assets.app_tables import app_table_keys
from ops_platform.db.bad_rows import (
    ABSURD_EVENT_VALUE,
    ABSURD_WEIGHT,
    JOB_TABLES,
    bad_rows_metadata,
    no_bad_rows_check,
)
from ops_platform.db.engine import as_utc, greatest, is_postgres, least, utcnow
from ops_platform.markdown import markdown_table
from ops_platform.resources.database import Database
from ops_platform.retries import transient_retries
from ops_platform.schedules.catalog import asset_pool, op_tags

# Points per unit of `stream_events.value` (1 for most kinds; coins for gifts).
STREAM_EVENT_WEIGHTS: Mapping[str, float] = {
    "view": 1.0,
    "chat": 2.0,
    "gift": 1.0,
    "follow": 5.0,
    "share": 3.0,
}


# --- stream_rankings ------------------------------------------------------------------
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
                   * {greatest(bind, "value", "0.0")} * {decay_sql(bind, "created_at")}) AS score
        FROM stream_events
        WHERE created_at >= :since AND created_at <= :now AND value <= {ABSURD_EVENT_VALUE}
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


class StreamRankingsConfig(dg.Config):
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


@dg.asset(
    pool=asset_pool("stream_rankings"),
    op_tags=op_tags("stream_rankings"),
    group_name="engagement",
    owners=OWNERS,
    kinds={"sql", "postgres"},
    deps=app_table_keys("streams", "stream_events"),
    description=(
        "Engagement score and rank of every live or recently ended stream, from views, chats, "
        "gifts, follows and shares in a trailing window with exponential time decay. "
        "Written to the `stream_rankings` table (one row per stream, ranks 1..N)."
    ),
    metadata={"dagster/table_name": "stream_rankings"},
)
def stream_rankings(
    context: dg.AssetExecutionContext, config: StreamRankingsConfig, database: Database
) -> dg.MaterializeResult:
    now = utcnow()
    with transient_retries(context), database.begin() as connection:
        result = rank_streams(
            connection,
            now,
            timedelta(hours=config.window_hours),
            timedelta(hours=config.half_life_hours),
            config.weights(),
        )
    with database.connect() as connection:
        active, top_score = connection.execute(
            text(
                "SELECT SUM(CASE WHEN score > 0 THEN 1 ELSE 0 END), MAX(score) FROM stream_rankings"
            )
        ).one()
        preview = ranking_preview(connection, config.preview_rows)
    context.log.info(
        f"ranked {result.streams_ranked} streams ({active or 0} with activity), "
        f"{result.rows_written} rows written, in {result.seconds:.2f}s"
    )
    return dg.MaterializeResult(
        metadata={
            "row_count": result.streams_ranked,
            "rows_examined": result.streams_ranked,
            "rows_written": result.rows_written,
            "streams_with_activity": int(active or 0),
            "top_score": float(top_score or 0.0),
            "duration_s": round(result.seconds, 3),
            "computed_at": now.isoformat(),
            "window_hours": config.window_hours,
            "half_life_hours": config.half_life_hours,
            **bad_rows_metadata(
                database.engine, JOB_TABLES["stream_rankings"], context.log.warning
            ),
            "preview": dg.MetadataValue.md(preview),
        }
    )


def _latest_metadata(context: dg.AssetCheckExecutionContext, asset: dg.AssetsDefinition) -> dict:
    """Metadata values of the asset's latest materialization ({} if none)."""
    event = context.instance.get_latest_materialization_event(asset.key)
    metadata = event.asset_materialization.metadata if event and event.asset_materialization else {}
    return {key: getattr(value, "value", value) for key, value in metadata.items()}


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
    latest = _latest_metadata(context, stream_rankings)
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


# --- user_trust_scores ----------------------------------------------------------------
# Scores are shown with two decimals: a recomputed score closer than this to the stored one
# would look the same, so it is not written (the stored score is never off by more).
TRUST_SCORE_PRECISION = 0.01
# Every score is rewritten at least this often, changed or not, so `trust_score_updated_at`
# says when the score was last confirmed.
TRUST_REFRESH_AFTER = timedelta(hours=24)


@dataclass(frozen=True)
class TrustScoreUpdate:
    examined: int  # users whose score was recomputed
    written: int  # users whose row was written: changed by >= the precision, or due a refresh


def _trust_score_sql(bind, users: str) -> str:
    """`id`, `score` (the new one), `stored` and `stored_at` of every user in `users`."""
    clamp = lambda expr: least(bind, "100.0", greatest(bind, "0.0", expr))  # noqa: E731
    decayed = f"weight * {decay_sql(bind, 'created_at')}"
    # An absurd weight is a bad row (counted in `bad_rows`), not a reason to pin a score.
    sane = f"weight BETWEEN -{ABSURD_WEIGHT} AND {ABSURD_WEIGHT}"
    if is_postgres(bind):
        # One pass: aggregate the events per user (hash aggregate), join every user to it.
        delta = "r.delta"
        source = f"""{users} AS m
            LEFT JOIN (
                SELECT user_id, SUM({decayed}) AS delta
                FROM reputation_events WHERE created_at <= :now AND {sane}
                GROUP BY user_id
            ) AS r ON r.user_id = m.id"""
    else:
        # SQLite: a correlated sum per user, served by ix_reputation_events_user_id.
        delta = f"""(SELECT SUM({decayed}) FROM reputation_events AS r
                     WHERE r.user_id = m.id AND r.created_at <= :now AND {sane})"""
        source = f"{users} AS m"
    return f"""
        SELECT m.id, {clamp(f":base + COALESCE({delta}, 0.0)")} AS score,
               m.trust_score AS stored, m.trust_score_updated_at AS stored_at
        FROM {source}
    """


def _changed_scores_sql(bind) -> str:
    # Only the rows worth writing are kept: new users (never scored), scores due a refresh,
    # and scores that moved by at least the precision (clamping included).
    return f"""
        INSERT INTO changed_trust_scores (id, score)
        SELECT id, score FROM ({_trust_score_sql(bind, "users")}) AS s
        WHERE stored_at IS NULL OR stored_at < :refresh_before OR stored IS NULL
           OR ABS(stored - score) >= :min_change
    """


def update_trust_scores(
    connection: Connection,
    now: datetime,
    base_score: float,
    half_life: timedelta,
    *,
    min_change: float = TRUST_SCORE_PRECISION,
    refresh_after: timedelta = TRUST_REFRESH_AFTER,
) -> TrustScoreUpdate:
    """Recompute every user's trust score as of `now` and write `trust_score` and
    `trust_score_updated_at` where the score moved by at least `min_change` or was last
    written before `now - refresh_after` (new users always). `min_change=0` rewrites every
    user (the full recompute)."""
    if not 0 <= base_score <= 100:
        raise ValueError(f"base score must be within 0–100, got {base_score}")
    if min_change < 0 or refresh_after < timedelta(0):
        raise ValueError("min_change and refresh_after must not be negative")
    params = {
        "now": now,
        "base": float(base_score),
        "min_change": float(min_change),
        "refresh_before": now - refresh_after,
        **decay_params(now, half_life),
    }
    postgres = is_postgres(connection)
    if postgres:
        # The per-user sums (one per user with events) hash-aggregated in memory rather than
        # sorted through the user_id index: several times faster at a million users.
        connection.execute(text("SET LOCAL work_mem = '64MB'"))
    # First the changed scores (a read of every user), then the write of those rows only,
    # joined through the primary key: the planner knows how few they are.
    create_temp_table(
        connection,
        "changed_trust_scores",
        "(id BIGINT PRIMARY KEY, score DOUBLE PRECISION NOT NULL)",
    )
    connection.execute(text(_changed_scores_sql(connection)), params)
    if postgres:
        connection.execute(text("ANALYZE changed_trust_scores"))
    written = connection.execute(
        text("""
            UPDATE users SET trust_score = c.score, trust_score_updated_at = :now
            FROM changed_trust_scores AS c WHERE users.id = c.id
        """),
        {"now": now},
    ).rowcount
    connection.execute(text("DROP TABLE changed_trust_scores"))
    examined = connection.execute(text("SELECT COUNT(*) FROM users")).scalar_one()
    return TrustScoreUpdate(examined=int(examined), written=written)


def trust_summary(connection: Connection, limit: int = 10) -> tuple[dict, str]:
    """Distribution figures and a Markdown preview (highest and lowest scores)."""
    users, low, avg, high, at_zero, at_hundred = connection.execute(
        text("""
            SELECT COUNT(*), MIN(trust_score), AVG(trust_score), MAX(trust_score),
                   SUM(CASE WHEN trust_score <= 0 THEN 1 ELSE 0 END),
                   SUM(CASE WHEN trust_score >= 100 THEN 1 ELSE 0 END)
            FROM users
        """)
    ).one()
    top = connection.execute(
        text("SELECT id, email, trust_score FROM users ORDER BY trust_score DESC, id LIMIT :n"),
        {"n": limit},
    ).all()
    bottom = connection.execute(
        text("SELECT id, email, trust_score FROM users ORDER BY trust_score, id LIMIT :n"),
        {"n": min(limit, 5)},
    ).all()
    figures = {
        "users": int(users or 0),
        "min_score": float(low or 0),
        "avg_score": round(float(avg or 0), 3),
        "max_score": float(high or 0),
        "users_at_0": int(at_zero or 0),
        "users_at_100": int(at_hundred or 0),
    }
    preview = (
        "**Highest trust**\n\n"
        + markdown_table(("user", "email", "trust"), [(i, e, float(s)) for i, e, s in top])
        + "\n\n**Lowest trust**\n\n"
        + markdown_table(("user", "email", "trust"), [(i, e, float(s)) for i, e, s in bottom])
    )
    return figures, preview


class TrustScoresConfig(dg.Config):
    base_score: float = Field(
        default=50.0, ge=0, le=100, description="Score of a user without reputation events."
    )
    half_life_days: float = Field(
        default=90.0, gt=0, description="A reputation event's weight halves every half-life."
    )
    min_change: float = Field(
        default=TRUST_SCORE_PRECISION,
        ge=0,
        description="A recomputed score is written when it moved by at least this much "
        "(the two decimals it is shown with); 0 rewrites every user.",
    )
    refresh_after_hours: float = Field(
        default=TRUST_REFRESH_AFTER.total_seconds() / 3600,
        ge=0,
        description="A score last written longer ago than this is rewritten even if unchanged.",
    )
    preview_rows: int = Field(default=10, ge=1, le=100)


@dg.asset(
    pool=asset_pool("user_trust_scores"),
    op_tags=op_tags("user_trust_scores"),
    group_name="engagement",
    owners=OWNERS,
    kinds={"sql", "postgres"},
    deps=app_table_keys("users", "reputation_events"),
    description=(
        "Trust score 0–100 of every user: a neutral base plus the user's reputation events, "
        "weighted and exponentially time-decayed, clamped. Recomputed for every user in one "
        "statement that writes `users.trust_score` and `users.trust_score_updated_at` only "
        "where the score moved by at least 0.01 or was last written over 24 h ago."
    ),
    metadata={"dagster/table_name": "users"},
)
def user_trust_scores(
    context: dg.AssetExecutionContext, config: TrustScoresConfig, database: Database
) -> dg.MaterializeResult:
    now = utcnow()
    started = time.perf_counter()
    with transient_retries(context), database.begin() as connection:
        update = update_trust_scores(
            connection,
            now,
            config.base_score,
            timedelta(days=config.half_life_days),
            min_change=config.min_change,
            refresh_after=timedelta(hours=config.refresh_after_hours),
        )
    seconds = time.perf_counter() - started
    with database.connect() as connection:
        figures, preview = trust_summary(connection, config.preview_rows)
    context.log.info(
        f"trust scores of {update.examined} users recomputed, {update.written} written, "
        f"in {seconds:.2f}s"
    )
    return dg.MaterializeResult(
        metadata={
            "row_count": update.examined,
            "rows_examined": update.examined,
            "rows_written": update.written,
            **figures,
            "duration_s": round(seconds, 3),
            "computed_at": now.isoformat(),
            "base_score": config.base_score,
            "half_life_days": config.half_life_days,
            "min_change": config.min_change,
            "refresh_after_hours": config.refresh_after_hours,
            **bad_rows_metadata(
                database.engine, JOB_TABLES["user_trust_scores"], context.log.warning
            ),
            "preview": dg.MetadataValue.md(preview),
        }
    )


@dg.asset_check(asset=user_trust_scores, description="Every trust score is set and within 0–100.")
def trust_scores_within_range(database: Database) -> dg.AssetCheckResult:
    with database.connect() as connection:
        out_of_range = connection.execute(
            text(
                "SELECT COUNT(*) FROM users WHERE trust_score IS NULL OR trust_score < 0 OR trust_score > 100"
            )
        ).scalar()
    return dg.AssetCheckResult(
        passed=out_of_range == 0, metadata={"users_out_of_range": out_of_range}
    )


@dg.asset_check(
    asset=user_trust_scores,
    description="Every user's score was written or confirmed by the latest run: none never "
    "scored, none last written longer than the refresh age before that run.",
)
def trust_scores_updated_for_every_user(
    context: dg.AssetCheckExecutionContext, database: Database
) -> dg.AssetCheckResult:
    latest = _latest_metadata(context, user_trust_scores)
    computed_at = as_utc(latest.get("computed_at"))
    refresh_hours = float(
        latest.get("refresh_after_hours", TrustScoresConfig().refresh_after_hours)
    )
    with database.connect() as connection:
        if computed_at is None:  # no run recorded: the newest write stands for it
            computed_at = as_utc(
                connection.execute(text("SELECT MAX(trust_score_updated_at) FROM users")).scalar()
            )
        stale = connection.execute(
            text("""
                SELECT COUNT(*) FROM users
                WHERE trust_score_updated_at IS NULL OR trust_score_updated_at < :oldest
            """),
            {"oldest": (computed_at or utcnow()) - timedelta(hours=refresh_hours)},
        ).scalar()
    return dg.AssetCheckResult(
        passed=stale == 0,
        metadata={
            "stale_users": stale,
            "latest_run": computed_at.isoformat() if computed_at else "never",
            "refresh_after_hours": refresh_hours,
        },
    )


defs = dg.Definitions(
    assets=[stream_rankings, user_trust_scores],
    asset_checks=[
        stream_ranks_dense_and_unique,
        one_ranking_row_per_stream,
        trust_scores_within_range,
        trust_scores_updated_for_every_user,
        no_bad_rows_check(stream_rankings, "stream_rankings"),
        no_bad_rows_check(user_trust_scores, "user_trust_scores"),
    ],
)
