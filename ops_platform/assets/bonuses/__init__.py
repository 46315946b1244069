"""`og_daily_bonus`: the daily bonus of active OG subscribers, one concern per module.

- `credit`: the rule: the Sydney day's UTC window, the amount of each active OG user and the
  batches that credit it exactly once (ledger row, balance and event in one transaction).
- `ledger`: what a dry run and the checks read: the day's ledger state per tier, and the
  checks that balances cover the ledger and each active OG user has one credit of the day.
- `asset`: the partitioned asset (days in Australia/Sydney) and its configuration.
"""

import dagster as dg

from ops_platform.assets._malformed import malformed_rows_checks
from ops_platform.assets.bonuses.asset import (
    OG_BONUS_PARTITIONS,
    OgDailyBonusConfig,
    og_daily_bonus,
)
from ops_platform.assets.bonuses.credit import (
    BonusInputError,
    BonusResult,
    credit_og_daily_bonus,
    idempotency_key,
    sydney_day_window,
)
from ops_platform.assets.bonuses.ledger import (
    DayState,
    bonus_day_state,
    check_balances_cover_ledger,
    check_one_credit_per_user,
)

__all__ = [
    "OG_BONUS_PARTITIONS",
    "BonusInputError",
    "BonusResult",
    "DayState",
    "OgDailyBonusConfig",
    "bonus_day_state",
    "check_balances_cover_ledger",
    "check_one_credit_per_user",
    "credit_og_daily_bonus",
    "idempotency_key",
    "og_daily_bonus",
    "sydney_day_window",
]

defs = dg.Definitions(assets=[og_daily_bonus], asset_checks=malformed_rows_checks(og_daily_bonus))
