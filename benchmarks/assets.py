"""stream_rankings, user_trust_scores and leaderboards at 1,000,000 users on Postgres:
our asset vs the floor vs row by row.

Seeds a schema of its own with `seed_database` (what `ops-platform seed` runs), then for
each asset times, alternating for `--rounds` rounds (best kept, VACUUM between):

- floor: one hand-written SQL statement rewriting the whole result as of `now`, written
  independently (the decay as POWER(0.5, age / half-life));
- ours: the asset function itself, invoked directly one schedule interval later (10 min,
  30 min, 1 h), as the next run after that full rewrite would; for user_trust_scores one user
  in twenty got a reputation event in between. It writes only what changed; its statements
  in a transaction, then the summary and preview queries it reports as metadata. The last
  round checks its result against the floor's full recompute as of the same time (ranks and
  standings exactly, scores within their 0.01 display precision);
- row by row: what the seeds did — one query per stream / user / leaderboard entry, each
  committed — on a `--sample` of rows, extrapolated to all of them.

Prints the three times, the ratios and the peak memory of the asset (Python allocations
during the asset, and the process's peak RSS). Targets: ours <= 1.3 x floor
(user_trust_scores: <= 0.25 x the full UPDATE), >= 50 x faster than row by row, peak memory
< 500 MB.

    .venv/bin/python -m benchmarks.assets [--users N] [--sample N] [--rounds N] [--only NAME] [--keep | --schema S]
"""

import argparse
import multiprocessing
import resource
import time
import tracemalloc
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from unittest import mock

import dagster as dg
from sqlalchemy import create_engine, text

from benchmarks import BENCH_POSTGRES_URL, vacuum
from ops_platform.assets import engagement, games
from ops_platform.assets.engagement import (
    STREAM_EVENT_WEIGHTS,
    StreamRankingsConfig,
    TrustScoresConfig,
    stream_rankings,
    user_trust_scores,
)
from ops_platform.assets.games import LeaderboardsConfig, leaderboards, period_starts
from ops_platform.db.engine import (
    LONG_STATEMENT_TIMEOUT_S,
    drop_schemas,
    make_engine,
    psycopg_url,
    schema_url,
    state_table,
    utcnow,
)
from ops_platform.db.migrate import upgrade
from ops_platform.db.schema import GAME_TYPES
from ops_platform.db.seed import seed_database
from ops_platform.resources.database import Database

TARGET_FLOOR_RATIO = 1.3
# user_trust_scores when at most 5 % of the scores changed: a quarter of the full UPDATE
TARGET_TRUST_RATIO = 0.25
TARGET_SPEEDUP = 50.0
TARGET_PEAK_MB = 500.0

RANK_CONFIG = StreamRankingsConfig()
TRUST_CONFIG = TrustScoresConfig()
BOARD_CONFIG = LeaderboardsConfig()


# --- the floors: one hand-written statement each -------------------------------------------
_KIND_WEIGHT = (
    "CASE kind "
    + " ".join(f"WHEN '{k}' THEN {w}" for k, w in STREAM_EVENT_WEIGHTS.items())
    + " ELSE 0 END"
)

FLOOR_RANKINGS = f"""
INSERT INTO stream_rankings (stream_id, score, rank, computed_at)
SELECT s.id, COALESCE(e.score, 0), ROW_NUMBER() OVER (ORDER BY COALESCE(e.score, 0) DESC, s.id), :now
FROM streams s
LEFT JOIN (
    SELECT stream_id,
           SUM({_KIND_WEIGHT} * GREATEST(value, 0)
               * POWER(0.5, date_part('epoch', :now - created_at) / {RANK_CONFIG.half_life_hours * 3600})) AS score
    FROM stream_events
    WHERE created_at >= :now - INTERVAL '{RANK_CONFIG.window_hours} hours' AND created_at <= :now
    GROUP BY stream_id
) e ON e.stream_id = s.id
WHERE (s.is_live OR s.ended_at >= :now - INTERVAL '{RANK_CONFIG.window_hours} hours')
  AND (s.started_at IS NULL OR s.started_at <= :now)
"""

FLOOR_TRUST = f"""
UPDATE users u
SET trust_score = LEAST(100, GREATEST(0, {TRUST_CONFIG.base_score} + COALESCE(r.delta, 0))),
    trust_score_updated_at = :now
FROM users m
LEFT JOIN (
    SELECT user_id,
           SUM(weight * POWER(0.5, date_part('epoch', :now - created_at) / {TRUST_CONFIG.half_life_days * 86400})) AS delta
    FROM reputation_events WHERE created_at <= :now GROUP BY user_id
) r ON r.user_id = m.id
WHERE u.id = m.id
"""

FLOOR_BOARDS = f"""
INSERT INTO {{standings}} (game_type, period, rank, player_address, score, period_start, computed_at)
SELECT game_type, period, rank, player_address, score,
       CASE period WHEN 'daily' THEN CAST(:daily AS date) WHEN 'weekly' THEN CAST(:weekly AS date) END, :now
FROM (
    SELECT period, game_type, player_address, score,
           ROW_NUMBER() OVER (PARTITION BY period, game_type ORDER BY score DESC, created_at, player_address) AS rank
    FROM (
        SELECT DISTINCT ON (p.period, e.game_type, e.player_address)
               p.period, e.game_type, e.player_address, e.score, e.created_at
        FROM leaderboard_entries e
        JOIN (VALUES ('daily', CAST(:daily AS timestamptz)), ('weekly', CAST(:weekly AS timestamptz)),
                     ('alltime', CAST('-infinity' AS timestamptz))) AS p(period, since)
          ON e.created_at >= p.since
        WHERE e.created_at <= :now AND e.game_type IN ({", ".join(f"'{g}'" for g in GAME_TYPES)})
        ORDER BY p.period, e.game_type, e.player_address, e.score DESC, e.created_at, e.id
    ) best
) ranked
WHERE rank <= {BOARD_CONFIG.top_n}
"""


def floor_rankings(engine, now) -> int:
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM stream_rankings"))
        return connection.execute(text(FLOOR_RANKINGS), {"now": now}).rowcount


def floor_trust(engine, now) -> int:
    with engine.begin() as connection:
        return connection.execute(text(FLOOR_TRUST), {"now": now}).rowcount


def floor_boards(engine, now) -> int:
    starts = period_starts(now)
    with engine.begin() as connection:
        standings = state_table(connection, "leaderboard_standings")
        connection.execute(text(f"DELETE FROM {standings}"))
        return connection.execute(
            text(FLOOR_BOARDS.format(standings=standings)),
            {"now": now, "daily": starts["daily"], "weekly": starts["weekly"]},
        ).rowcount


# --- row by row, as the seeds did ----------------------------------------------------------
def _spread(rows: list, sample: int) -> list:
    """`sample` rows evenly spread over `rows` (ids follow time: the first ones are the oldest;
    users and entries are spread the same way in SQL)."""
    step = max(1, len(rows) // max(sample, 1))
    return rows[::step][:sample]


def row_rankings(engine, sample: int) -> tuple[float, int, int]:
    """Per stream: read its events, score them in Python, upsert its row, commit; then a
    rank update per stream."""
    now = utcnow()
    since = now - timedelta(hours=RANK_CONFIG.window_hours)
    half_life = RANK_CONFIG.half_life_hours * 3600
    with engine.connect() as connection:
        eligible = (
            connection.execute(
                text(
                    "SELECT id FROM streams WHERE (is_live OR ended_at >= :since) AND (started_at IS NULL OR started_at <= :now) ORDER BY id"
                ),
                {"since": since, "now": now},
            )
            .scalars()
            .all()
        )
    chosen = _spread(eligible, sample)
    started = time.perf_counter()
    scores = {}
    with engine.connect() as connection:
        connection.execute(
            text(
                "CREATE TEMP TABLE row_rankings (stream_id bigint PRIMARY KEY, score float, rank int)"
            )
        )
        connection.commit()
        for stream_id in chosen:
            events = connection.execute(
                text(
                    "SELECT kind, value, created_at FROM stream_events WHERE stream_id = :s AND created_at >= :since AND created_at <= :now"
                ),
                {"s": stream_id, "since": since, "now": now},
            ).all()
            score = sum(
                STREAM_EVENT_WEIGHTS.get(kind, 0)
                * max(value, 0)
                * 0.5 ** ((now - created).total_seconds() / half_life)
                for kind, value, created in events
            )
            scores[stream_id] = score
            connection.execute(
                text(
                    "INSERT INTO row_rankings (stream_id, score) VALUES (:s, :score) ON CONFLICT (stream_id) DO UPDATE SET score = excluded.score"
                ),
                {"s": stream_id, "score": score},
            )
            connection.commit()
        for rank, stream_id in enumerate(sorted(scores, key=lambda s: (-scores[s], s)), start=1):
            connection.execute(
                text("UPDATE row_rankings SET rank = :r WHERE stream_id = :s"),
                {"r": rank, "s": stream_id},
            )
            connection.commit()
    return time.perf_counter() - started, len(chosen), len(eligible)


def row_trust(engine, sample: int) -> tuple[float, int, int]:
    """Per user: read their reputation events, compute the score in Python, update, commit."""
    now = utcnow()
    half_life = TRUST_CONFIG.half_life_days * 86400
    with engine.connect() as connection:
        total = connection.execute(text("SELECT COUNT(*) FROM users")).scalar()
        users = (
            connection.execute(
                text(
                    "SELECT id FROM (SELECT id, ROW_NUMBER() OVER (ORDER BY id) AS n FROM users) AS u "
                    "WHERE n % :step = 0 ORDER BY id LIMIT :sample"
                ),
                {"step": max(1, total // sample), "sample": sample},
            )
            .scalars()
            .all()
        )
    started = time.perf_counter()
    with engine.connect() as connection:
        for user_id in users:
            events = connection.execute(
                text(
                    "SELECT weight, created_at FROM reputation_events WHERE user_id = :u AND created_at <= :now"
                ),
                {"u": user_id, "now": now},
            ).all()
            delta = sum(
                weight * 0.5 ** ((now - created).total_seconds() / half_life)
                for weight, created in events
            )
            score = min(100.0, max(0.0, TRUST_CONFIG.base_score + delta))
            connection.execute(
                text(
                    "UPDATE users SET trust_score = :t, trust_score_updated_at = :now WHERE id = :u"
                ),
                {"t": score, "now": now, "u": user_id},
            )
            connection.commit()
    return time.perf_counter() - started, len(users), total


def row_boards(engine, sample: int) -> tuple[float, int, int]:
    """Per leaderboard entry: upsert the player's best on each board it counts for, commit;
    then the top N of every board read back and written rank by rank."""
    now = utcnow()
    starts = period_starts(now)
    with engine.connect() as connection:
        total = connection.execute(
            text("SELECT COUNT(*) FROM leaderboard_entries WHERE created_at <= :now"), {"now": now}
        ).scalar()
        entries = connection.execute(
            text(
                "SELECT game_type, player_address, score, created_at FROM ("
                "  SELECT *, ROW_NUMBER() OVER (ORDER BY id) AS n FROM leaderboard_entries WHERE created_at <= :now) AS e "
                "WHERE n % :step = 0 ORDER BY id LIMIT :sample"
            ),
            {"now": now, "step": max(1, total // sample), "sample": sample},
        ).all()
    started = time.perf_counter()
    with engine.connect() as connection:
        connection.execute(
            text(
                "CREATE TEMP TABLE row_best (game_type text, period text, player_address text, score bigint, "
                "created_at timestamptz, PRIMARY KEY (game_type, period, player_address))"
            )
        )
        connection.commit()
        for game_type, player, score, created in entries:
            for period in ("daily", "weekly", "alltime"):
                if starts[period] is not None and created < starts[period]:
                    continue
                connection.execute(
                    text("""
                        INSERT INTO row_best VALUES (:g, :p, :player, :score, :created)
                        ON CONFLICT (game_type, period, player_address) DO UPDATE
                        SET score = excluded.score, created_at = excluded.created_at
                        WHERE excluded.score > row_best.score
                           OR (excluded.score = row_best.score AND excluded.created_at < row_best.created_at)
                    """),
                    {
                        "g": game_type,
                        "p": period,
                        "player": player,
                        "score": score,
                        "created": created,
                    },
                )
            connection.commit()
    return time.perf_counter() - started, len(entries), total


# --- ours -------------------------------------------------------------------------------
def run_asset(asset, config, database: Database, now) -> dict:
    """The asset function invoked directly, its clock frozen at `now` (the floor's)."""
    with (
        mock.patch.object(engagement, "utcnow", lambda: now),
        mock.patch.object(games, "utcnow", lambda: now),
    ):
        result = asset(context=dg.build_asset_context(), config=config, database=database)
    return {key: getattr(value, "value", value) for key, value in result.metadata.items()}


@dataclass
class Case:
    name: str
    ours: Callable[[datetime], dict]  # the asset's metadata
    floor: Callable[[datetime], int]  # rows written
    row_by_row: Callable[[int], tuple[float, int, int]]
    tables: tuple[str, ...]
    # ours runs this long after the floor, as the next scheduled run would
    step: timedelta
    # the activity of that interval (untimed), and its removal after the round
    activity: Callable[[datetime], int] | None = None
    cleanup: Callable[[], None] | None = None
    # the asset's result as of `later` against the floor's for the same `later`
    compare: Callable[[datetime], str] | None = None


def _read(engine, sql: str, params: dict | None = None) -> list:
    with engine.connect() as connection:
        return connection.execute(text(sql), params or {}).all()


def _compare_rankings(engine, later) -> str:
    """Ranks must be the floor's exactly, scores within the display precision."""
    ours = {
        sid: (rank, score)
        for sid, rank, score in _read(engine, "SELECT stream_id, rank, score FROM stream_rankings")
    }
    floor_rankings(engine, later)
    floor = {
        sid: (rank, score)
        for sid, rank, score in _read(engine, "SELECT stream_id, rank, score FROM stream_rankings")
    }
    differs = sum(
        1
        for sid, (rank, score) in floor.items()
        if sid not in ours
        or ours[sid][0] != rank
        or abs(ours[sid][1] - score) >= engagement.STREAM_SCORE_PRECISION
    ) + len(set(ours) - set(floor))
    return f"{len(floor):,} streams against a full recompute: {differs} rank or score different"


def _compare_trust(engine, later) -> str:
    """Every user's score within the display precision of the floor's full recompute."""
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE IF EXISTS bench_trust_ours"))
        connection.execute(
            text("CREATE TABLE bench_trust_ours AS SELECT id, trust_score FROM users")
        )
    floor_trust(engine, later)
    with engine.begin() as connection:
        users, differs = connection.execute(
            text(
                "SELECT COUNT(*), SUM(CASE WHEN ABS(o.trust_score - u.trust_score) >= :p THEN 1 ELSE 0 END) "
                "FROM users u JOIN bench_trust_ours o ON o.id = u.id"
            ),
            {"p": engagement.TRUST_SCORE_PRECISION},
        ).one()
        connection.execute(text("DROP TABLE bench_trust_ours"))
    return f"{users:,} users against a full recompute: {differs or 0} scores off by >= 0.01"


def _compare_boards(engine, later) -> str:
    sql = (
        "SELECT game_type, period, rank, player_address, score "
        f"FROM {state_table(engine, 'leaderboard_standings')} ORDER BY 1, 2, 3"
    )
    ours = _read(engine, sql)
    floor_boards(engine, later)
    floor = _read(engine, sql)
    return f"{len(ours):,} standings rows, {'identical to' if ours == floor else 'DIFFERENT from'} a full recompute"


# Between two trust runs (30 minutes) one user in twenty gets a reputation event.
ACTIVITY_KIND = "bench_activity"


def _trust_activity(engine, at) -> int:
    with engine.begin() as connection:
        return connection.execute(
            text(
                "INSERT INTO reputation_events (user_id, kind, weight, created_at) "
                "SELECT id, :kind, CASE WHEN id % 40 = 0 THEN -3 ELSE 3 END, :at FROM users WHERE id % 20 = 0"
            ),
            {"kind": ACTIVITY_KIND, "at": at - timedelta(minutes=1)},
        ).rowcount


def _trust_cleanup(engine) -> None:
    with engine.begin() as connection:
        connection.execute(
            text("DELETE FROM reputation_events WHERE kind = :k"), {"k": ACTIVITY_KIND}
        )


def cases(engine, database: Database) -> list[Case]:
    return [
        Case(
            "stream_rankings",
            lambda now: run_asset(stream_rankings, RANK_CONFIG, database, now),
            lambda now: floor_rankings(engine, now),
            lambda n: row_rankings(engine, n),
            ("stream_rankings",),
            step=timedelta(minutes=10),
            compare=lambda later: _compare_rankings(engine, later),
        ),
        Case(
            "user_trust_scores",
            lambda now: run_asset(user_trust_scores, TRUST_CONFIG, database, now),
            lambda now: floor_trust(engine, now),
            lambda n: row_trust(engine, n),
            ("users", "reputation_events"),
            step=timedelta(minutes=30),
            activity=lambda at: _trust_activity(engine, at),
            cleanup=lambda: _trust_cleanup(engine),
            compare=lambda later: _compare_trust(engine, later),
        ),
        Case(
            "leaderboards",
            lambda now: run_asset(leaderboards, BOARD_CONFIG, database, now),
            lambda now: floor_boards(engine, now),
            lambda n: row_boards(engine, n),
            (state_table(engine, "leaderboard_standings"),),
            step=timedelta(hours=1),
            compare=lambda later: _compare_boards(engine, later),
        ),
    ]


def bench(case: Case, engine, rounds: int, sample: int) -> dict:
    """Per round: the floor rewrites everything as of `now`; then (after the interval's
    activity) ours runs as of `now + step`, as the next scheduled run would, and writes
    what changed. The last round checks ours against a full recompute as of the same time."""
    ours, floor, written = [], [], []
    now = utcnow()
    later = now + case.step
    agreement, activity = "", 0
    for round_number in range(rounds):
        started = time.perf_counter()
        floor_rows = case.floor(now)
        floor.append(time.perf_counter() - started)
        activity = case.activity(later) if case.activity else 0
        vacuum(engine, *case.tables)
        started = time.perf_counter()
        metadata = case.ours(later)
        ours.append(time.perf_counter() - started)
        written.append(metadata.get("rows_written", metadata["row_count"]))
        if round_number == rounds - 1 and case.compare:
            agreement = case.compare(later)
        if case.cleanup:
            case.cleanup()
        vacuum(engine, *case.tables)
    # Memory on a run of its own: tracing every allocation slows Python down.
    case.floor(now)
    tracemalloc.start()
    case.ours(later)
    python_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    vacuum(engine, *case.tables)
    row_seconds, sampled, total = case.row_by_row(sample)
    vacuum(engine, *case.tables)
    return {
        "rows": floor_rows,
        "written": min(written),
        "activity": activity,
        "ours": min(ours),
        "floor": min(floor),
        "row_seconds": row_seconds,
        "sampled": sampled,
        "total": total,
        "row_extrapolated": row_seconds / max(sampled, 1) * total,
        "python_peak_mb": python_peak / 2**20,
        "agreement": agreement,
    }


def _seed(url: str, users: int, queue) -> None:
    queue.put(seed_database(url, users=users, progress=None))


def seed_in_child_process(url: str, users: int) -> dict[str, int]:
    """Seed in a process of its own, so this process's peak RSS is the assets', not the
    seed's data frames."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_seed, args=(url, users, queue))
    child.start()
    counts = queue.get()
    child.join()
    if child.exitcode:
        raise SystemExit(f"seeding failed (exit code {child.exitcode})")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.assets", description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=10_000, help="rows processed row by row")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--only", action="append", help="stream_rankings | user_trust_scores | leaderboards"
    )
    parser.add_argument(
        "--url", default=BENCH_POSTGRES_URL, help="Postgres server (OPS_BENCH_POSTGRES_URL)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the seeded schema (prints its name)"
    )
    parser.add_argument("--schema", help="reuse a schema seeded by an earlier --keep run")
    args = parser.parse_args(argv)

    base = psycopg_url(args.url)
    admin = create_engine(base)
    schema = args.schema or f"bench_assets_{uuid.uuid4().hex[:8]}"
    url = schema_url(base, schema)
    if not args.schema:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = make_engine(url, statement_timeout_s=LONG_STATEMENT_TIMEOUT_S)
    database = Database(url=url)
    failures = 0
    try:
        if not args.schema:
            upgrade(url)
            started = time.perf_counter()
            counts = seed_in_child_process(url, args.users)
            print(
                f"  seeded {args.users:,} users in {time.perf_counter() - started:.0f}s: "
                f"{counts['stream_events']:,} stream events, {counts['streams']:,} streams, "
                f"{counts['reputation_events']:,} reputation events, {counts['leaderboard_entries']:,} leaderboard entries"
            )
        vacuum(
            engine, "users", "streams", "stream_events", "reputation_events", "leaderboard_entries"
        )
        for case in cases(engine, database):
            if args.only and case.name not in args.only:
                continue
            r = bench(case, engine, args.rounds, args.sample)
            ratio, speedup = r["ours"] / r["floor"], r["row_extrapolated"] / r["ours"]
            target_ratio = (
                TARGET_TRUST_RATIO if case.name == "user_trust_scores" else TARGET_FLOOR_RATIO
            )
            rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            ok = (
                ratio <= target_ratio
                and speedup >= TARGET_SPEEDUP
                and max(rss_mb, r["python_peak_mb"]) < TARGET_PEAK_MB
            )
            failures += not ok
            print(
                f"=== {case.name}: {r['rows']:,} rows; {case.step} after a full rewrite"
                + (f" and {r['activity']:,} new events" if r["activity"] else "")
                + f", ours wrote {r['written']:,}; {r['agreement']}"
            )
            print(
                f"  ours {r['ours']:.2f}s | floor (one statement) {r['floor']:.2f}s | ratio {ratio:.2f}x [target <= {target_ratio}x]"
            )
            print(
                f"  row by row: {r['row_seconds']:.1f}s for {r['sampled']:,} -> {r['row_extrapolated']:,.0f}s for "
                f"{r['total']:,} extrapolated | ours is {speedup:,.0f}x faster [target >= {TARGET_SPEEDUP:.0f}x]"
            )
            print(
                f"  peak memory: {r['python_peak_mb']:.1f} MB Python allocations during the asset, "
                f"{rss_mb:.0f} MB peak RSS of this process (imports included) [target < {TARGET_PEAK_MB:.0f} MB]"
            )
            print(f"  {'meets' if ok else 'MISSES'} the targets")
        return 1 if failures else 0
    finally:
        engine.dispose()
        database.engine.dispose()
        if args.keep or args.schema:
            print(f"  schema {schema} kept: --schema {schema}")
        else:
            with admin.begin() as connection:
                drop_schemas(connection, schema)
            print(f"  schema {schema} dropped")
        admin.dispose()


if __name__ == "__main__":
    raise SystemExit(main())
