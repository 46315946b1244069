"""What a dry run and the checks of `og_daily_bonus` read: the ledger state of one Sydney
day per tier, and the two checks (balances cover the ledger; one credit per active OG user)."""

from dataclasses import dataclass
from datetime import date, datetime

import dagster as dg
from sqlalchemy import Engine, text

from ops_platform.assets.bonuses.credit import (
    AMOUNT,
    ELIGIBLE_FROM,
    KEY_SQL,
    USABLE_TIER,
    BonusResult,
    sydney_day_window,
)
from ops_platform.markdown import markdown_table

_DAY_STATE = f"""
    SELECT e.tier_id, e.level, e.price_coins, e.duration_days, e.amount,
           COUNT(*) AS users,
           SUM(CASE WHEN c.id IS NULL THEN 1 ELSE 0 END) AS missing,
           SUM(CASE WHEN c.id IS NOT NULL AND c.amount <> e.amount THEN 1 ELSE 0 END) AS wrong_amount,
           COALESCE(SUM(c.amount), 0) AS ledger_coins,
           SUM(CASE WHEN c.id IS NULL THEN 0 ELSE 1 END) AS ledger_rows
    FROM (
        SELECT u.id AS user_id, t.id AS tier_id, t.level, t.price_coins, t.duration_days, {AMOUNT} AS amount
        {ELIGIBLE_FROM.format(users="users")}
    ) e
    LEFT JOIN coin_transactions c ON c.idempotency_key = {KEY_SQL.format(user_id="e.user_id")}
    GROUP BY e.tier_id, e.level, e.price_coins, e.duration_days, e.amount
    ORDER BY e.level, e.tier_id
"""

# Active OG users without a usable tier (none, or one the rule does not pay from).
_UNRESOLVED = f"""
    SELECT COUNT(*) FROM users u
    LEFT JOIN (SELECT level, MIN(id) AS id FROM og_tiers GROUP BY level) level_tier
           ON level_tier.level = u.og_level
    LEFT JOIN og_tiers t ON t.id = COALESCE(u.og_tier_id, level_tier.id)
    WHERE u.og_level > 0 AND u.og_expires_at > :now
      AND CASE WHEN {USABLE_TIER} THEN 0 ELSE 1 END = 1
"""


@dataclass
class DayState:
    """Ledger state of one Sydney day, per tier, from the rule's point of view."""

    day: str
    tiers: list[dict]
    skipped_bad_tier: int

    @property
    def eligible(self) -> int:
        return sum(t["users"] for t in self.tiers if t["amount"] > 0)

    @property
    def expected_coins(self) -> int:
        return sum(t["users"] * t["amount"] for t in self.tiers)

    def total(self, column: str) -> int:
        return sum(int(t[column]) for t in self.tiers if t["amount"] > 0)


def bonus_day_state(engine: Engine, day: str | date, now: datetime) -> DayState:
    """Per tier: OG users active at `now`, their amount for `day`, and the ledger rows they
    have for that day."""
    day, _, _ = sydney_day_window(day)
    params = {"day": day.isoformat(), "now": now}
    with engine.connect() as connection:
        tiers = [dict(row) for row in connection.execute(text(_DAY_STATE), params).mappings()]
        skipped = connection.execute(text(_UNRESOLVED), params).scalar_one()
    for tier in tiers:
        for column in ("users", "missing", "wrong_amount", "ledger_coins", "ledger_rows", "amount"):
            tier[column] = int(tier[column] or 0)
    return DayState(day=day.isoformat(), tiers=tiers, skipped_bad_tier=int(skipped))


# The credits this asset wrote (its own idempotency keys), per user. Other bonus rows (e.g.
# imported history) carry other keys and are not this asset's to vouch for.
_OUR_CREDITS = """
    SELECT user_id, SUM(amount) AS credited FROM coin_transactions
    WHERE kind = 'og_daily_bonus' AND balance = 'bonus' AND idempotency_key LIKE 'og_daily_bonus:%'
    GROUP BY user_id
"""

_BALANCES_VS_LEDGER = f"""
    WITH credits AS ({_OUR_CREDITS})
    SELECT
      (SELECT COUNT(*) FROM users WHERE bonus_balance < 0) AS negative_balances,
      (SELECT COUNT(*) FROM credits c JOIN users u ON u.id = c.user_id
        WHERE u.bonus_balance < c.credited) AS below_credits,
      (SELECT COUNT(*) FROM credits c LEFT JOIN users u ON u.id = c.user_id
        WHERE u.id IS NULL) AS credits_without_user,
      (SELECT COUNT(*) FROM credits) AS credited_users_all_days
"""

_BELOW_LEDGER_SAMPLE = f"""
    WITH credits AS ({_OUR_CREDITS})
    SELECT u.id AS user_id, u.bonus_balance, COALESCE(c.credited, 0) AS credited
    FROM users u LEFT JOIN credits c ON c.user_id = u.id
    WHERE u.bonus_balance < 0 OR u.bonus_balance < c.credited
    ORDER BY u.id LIMIT 5
"""


# What each check of the asset proves, as its result says it.
CHECK_DESCRIPTIONS = {
    "bonus_balances_cover_ledger": "no negative bonus balance; no balance below the OG bonus "
    "credits in its ledger",
    "one_credit_per_active_og_user": "each active OG user has exactly one ledger row of the day "
    "with the rule's amount",
}


def _result(
    name: str, passed: bool, metadata: dict, severity: dg.AssetCheckSeverity
) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=name,
        passed=passed,
        metadata=metadata,
        severity=severity,
        description=CHECK_DESCRIPTIONS[name],
    )


def check_balances_cover_ledger(
    engine: Engine, severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR
) -> dg.AssetCheckResult:
    """Bonus balances are never negative, and never below the sum of the OG bonus credits
    in the ledger (bonus coins cannot be spent: a balance below its credits lost one)."""
    with engine.connect() as connection:
        counts = dict(connection.execute(text(_BALANCES_VS_LEDGER)).mappings().one())
        sample = []
        if counts["negative_balances"] or counts["below_credits"]:
            sample = [dict(r) for r in connection.execute(text(_BELOW_LEDGER_SAMPLE)).mappings()]
    passed = counts["negative_balances"] == 0 and counts["below_credits"] == 0
    metadata = {name: int(value or 0) for name, value in counts.items()}
    if sample:
        metadata["sample"] = dg.MetadataValue.md(markdown_table(None, sample))
    return _result("bonus_balances_cover_ledger", passed, metadata, severity)


def check_one_credit_per_user(
    state: DayState,
    result: BonusResult | None = None,
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
) -> dg.AssetCheckResult:
    """Every active OG user of the day has exactly one ledger row of the right amount, and
    this run added to balances exactly what it wrote to the ledger."""
    missing, wrong = state.total("missing"), state.total("wrong_amount")
    passed = missing == 0 and wrong == 0
    metadata = {
        "day": state.day,
        "eligible_users": state.eligible,
        "ledger_rows_for_day": state.total("ledger_rows"),
        "ledger_coins_for_day": state.total("ledger_coins"),
        "expected_coins_for_day": state.expected_coins,
        "missing_credits": missing,
        "wrong_amounts": wrong,
    }
    if result is not None:
        passed = passed and result.complete and result.total_coins == result.balance_increase
        metadata.update(
            run_ledger_coins=result.total_coins, run_balance_increase=result.balance_increase
        )
    return _result("one_credit_per_active_og_user", passed, metadata, severity)


def tier_preview(state: DayState) -> str:
    rows = [
        {
            "tier": t["tier_id"],
            "level": t["level"],
            "price_coins": t["price_coins"],
            "duration_days": t["duration_days"],
            "daily_amount": t["amount"],
            "users": t["users"],
            "credited": t["ledger_rows"],
        }
        for t in state.tiers
    ]
    return markdown_table(None, rows)
