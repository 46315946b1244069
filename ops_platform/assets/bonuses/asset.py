"""The `og_daily_bonus` asset: a Sydney day's partition credited (see `credit` for the rule),
or with `dry_run` what would be, and its blocking checks on the ledger (see `ledger`)."""

import dagster as dg
from pydantic import Field

from ops_platform.assets._decorators import catalog_asset
from ops_platform.assets._malformed import asset_bad_rows
from ops_platform.assets._ranges import PartitionOutcome, materialize_partitions
from ops_platform.assets.bonuses.credit import credit_og_daily_bonus
from ops_platform.assets.bonuses.ledger import (
    bonus_day_state,
    check_balances_cover_ledger,
    check_one_credit_per_user,
    tier_preview,
)
from ops_platform.db.engine import utcnow
from ops_platform.resources.database import Database
from ops_platform.retries import transient_retries
from ops_platform.settings import partitions_start

OG_BONUS_PARTITIONS = dg.DailyPartitionsDefinition(
    start_date=partitions_start(), timezone="Australia/Sydney", end_offset=1
)


class OgDailyBonusConfig(dg.Config):
    batch_size: int = Field(
        default=20_000, gt=0, le=1_000_000, description="Users credited per transaction."
    )
    dry_run: bool = Field(
        default=False, description="Report what would be credited; credit nothing."
    )


@catalog_asset(
    "og_daily_bonus",
    OG_BONUS_PARTITIONS,
    group_name="engagement",  # its schedule table group: OPS_ENABLE_ENGAGEMENT switches it
    deps=[dg.AssetKey("users"), dg.AssetKey("og_tiers")],
    kinds={"sql", "postgres"},
    owners=["team:bonuses"],
    tags={"domain": "bonuses", "money": "true"},
    description=(
        "Daily OG bonus (Australia/Sydney day): floor(price_coins * 0.6 / duration_days) into "
        "users.bonus_balance of every active OG user, one coin_transactions row per user and "
        "day (idempotency key og_daily_bonus:<user>:<day>) and a bonus:credited event, exactly once."
    ),
    check_specs=[
        dg.AssetCheckSpec(
            "bonus_balances_cover_ledger",
            asset="og_daily_bonus",
            description="Blocking: no negative bonus balance; none below the OG bonus credits in "
            "its ledger. A failure fails the run (alerted) and stops anything downstream.",
            blocking=True,
        ),
        dg.AssetCheckSpec(
            "one_credit_per_active_og_user",
            asset="og_daily_bonus",
            description="Blocking: each active OG user of the day has exactly one ledger row of the "
            "right amount, and the run's ledger credits equal its balance increase.",
            blocking=True,
        ),
    ],
)
def og_daily_bonus(
    context: dg.AssetExecutionContext, config: OgDailyBonusConfig, database: Database
):
    # A range (a backfill) credits day after day, each exactly once by its idempotency keys.
    yield from materialize_partitions(
        context, lambda day: _bonus_day(context, config, database, day)
    )


def _bonus_day(
    context: dg.AssetExecutionContext, config: OgDailyBonusConfig, database: Database, day: str
) -> PartitionOutcome:
    engine = database.engine
    bad_rows = asset_bad_rows(context, database)
    if config.dry_run:
        state = bonus_day_state(engine, day, utcnow())
        would = [t for t in state.tiers if t["amount"] > 0]
        return PartitionOutcome(
            metadata={
                "dry_run": True,
                "day": day,
                "credited": 0,
                "would_credit_users": sum(t["missing"] for t in would),
                "would_credit_coins": sum(t["missing"] * t["amount"] for t in would),
                "already_credited": state.total("ledger_rows"),
                "skipped_bad_tier": state.skipped_bad_tier,
                **bad_rows,
                "preview": dg.MetadataValue.md(tier_preview(state)),
            },
            # A dry run moves no money: what its checks find is reported (WARN), never blocking.
            checks=[
                check_balances_cover_ledger(engine, dg.AssetCheckSeverity.WARN),
                check_one_credit_per_user(state, severity=dg.AssetCheckSeverity.WARN),
            ],
        )
    now = utcnow()
    with transient_retries(context):
        result = credit_og_daily_bonus(
            engine, day, now=now, batch_size=config.batch_size, progress=context.log.info
        )
    state = bonus_day_state(engine, day, now)
    context.log.info(
        f"og_daily_bonus {day}: credited {result.credited_users} users {result.total_coins} coins "
        f"in {result.batches} batches; {result.already_credited} already credited"
    )
    return PartitionOutcome(
        metadata={
            "day": day,
            "window_utc": f"{result.window_start.isoformat()} – {result.window_end.isoformat()}",
            "credited": result.credited_users,
            "total_coins": result.total_coins,
            "balance_increase": result.balance_increase,
            "already_credited": result.already_credited,
            "zero_amount": result.zero_amount,
            "skipped_bad_tier": state.skipped_bad_tier,
            **bad_rows,
            "batches": result.batches,
            "duration_s": round(result.seconds, 3),
            "longest_transaction_s": round(result.longest_batch_seconds, 3),
            "preview": dg.MetadataValue.md(tier_preview(state)),
        },
        checks=[
            check_balances_cover_ledger(engine),
            check_one_credit_per_user(state, result),
        ],
    )
