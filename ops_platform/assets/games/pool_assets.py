"""The prize pool assets, `daily_prize_pools` (00:00 UTC, yesterday) and `weekly_prize_pools`
(Mondays 00:00 UTC, last week), partitioned by (period start date, game type); each partition
is its own transaction (see `pools` for the rule), and their blocking winner checks."""

import time
from collections.abc import Iterator
from datetime import datetime, timedelta

import dagster as dg
from sqlalchemy import text

from ops_platform.assets._malformed import asset_bad_rows
from ops_platform.assets._sql_assets import sql_asset
from ops_platform.assets.games.pools import (
    PoolResult,
    finalize_prize_pool,
    winners_without_a_score,
)
from ops_platform.db.engine import utcnow
from ops_platform.db.schema import GAME_TYPES
from ops_platform.markdown import markdown_table
from ops_platform.resources.database import Database
from ops_platform.retries import MAX_TRANSIENT_RETRIES, backoff_seconds, is_transient
from ops_platform.settings import partitions_start

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
    bad_rows = asset_bad_rows(context, database)  # entries no pool is won with, counted once
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
                metadata={**_pool_metadata(result, end), **bad_rows},
            )
        _raise_for(context, period, failures, len(context.partition_keys))
    if len(results) == 1:
        _, result, end = results[0]
        yield dg.MaterializeResult(
            metadata={
                **_pool_metadata(result, end),
                **bad_rows,
                "duration_s": round(time.perf_counter() - started, 3),
            }
        )
    else:
        summary = _range_metadata([(k, r) for k, r, _ in results], time.perf_counter() - started)
        yield dg.MaterializeResult(metadata={**summary, **bad_rows})


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
    @sql_asset(
        name,
        "games",
        "prize_pools",
        reads=("leaderboard_entries", "leaderboard_entries_archive", "prize_pools"),
        partitions_def=partitions_def,
        description=description,
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


# entries whose session is gone, so an old pool's winning row may no longer exist.
SCORED_WINNER_LOOKBACK = timedelta(days=2)


def one_winner_check(asset, period: str):
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
