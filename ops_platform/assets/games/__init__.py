"""Arcade assets: hourly `leaderboards`, and the prize pools finalized per
period and game type, `daily_prize_pools` (00:00 UTC, yesterday) and `weekly_prize_pools`
(Mondays 00:00 UTC, last week). One concern per module:

- `boards`: `leaderboards`: for every game type × period (daily = this UTC day, weekly = this
  week from Monday, alltime) the top players by best score, ranked with ROW_NUMBER() (equal
  scores: whoever reached it first), written to `leaderboard_standings`: only the places that
  changed, in one transaction.
- `pools`: the prize pool rule. The partition's pool row in `prize_pools` is created if the
  app never opened it, then finalized with the top scorer of the period (ties: the earliest
  score wins); a period without scores is `no_winner`. A pool that is already finalized (or
  `no_winner`) is never changed again, so re-materializing, backfilling or a catch-up run
  cannot move a prize. Periods older than 30 days also read `leaderboard_entries_archive`
  (game_cleanup's archive).
- `pool_assets`: the assets, partition = (period start date, game type). Each partition is
  its own transaction: a failing game type or day is reported and the others are still
  finalized. The assets take a single-run backfill policy, so `dagster asset materialize
  --partition-range` works from the CLI; a run over a range yields one materialization per
  partition that succeeded.
"""

import dagster as dg

from ops_platform.assets._malformed import malformed_rows_checks
from ops_platform.assets.games.boards import (
    BOARD_PERIODS,
    LeaderboardsConfig,
    compute_standings,
    every_board_readable,
    leaderboard_ranks_dense,
    leaderboards,
    period_starts,
)
from ops_platform.assets.games.pool_assets import (
    DAILY_POOL_PARTITIONS,
    WEEKLY_POOL_PARTITIONS,
    daily_prize_pools,
    one_winner_check,
    weekly_prize_pools,
)
from ops_platform.assets.games.pools import PoolResult, finalize_prize_pool

__all__ = [
    "BOARD_PERIODS",
    "DAILY_POOL_PARTITIONS",
    "WEEKLY_POOL_PARTITIONS",
    "LeaderboardsConfig",
    "PoolResult",
    "compute_standings",
    "daily_prize_pools",
    "every_board_readable",
    "finalize_prize_pool",
    "leaderboard_ranks_dense",
    "leaderboards",
    "period_starts",
    "weekly_prize_pools",
]

defs = dg.Definitions(
    assets=[leaderboards, daily_prize_pools, weekly_prize_pools],
    asset_checks=[
        every_board_readable,
        leaderboard_ranks_dense,
        one_winner_check(daily_prize_pools, "daily"),
        one_winner_check(weekly_prize_pools, "weekly"),
        *malformed_rows_checks(leaderboards, daily_prize_pools, weekly_prize_pools),
    ],
)
