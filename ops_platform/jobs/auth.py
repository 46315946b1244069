"""Auth cleanup: expired tokens and accounts never verified.

- `token_cleanup`: tokens of each kind past `expires_at` plus the kind's retention —
  refresh tokens are kept 7 days after expiry, password-reset tokens 24 h, email
  verification tokens none (all configurable). The schedule table runs one kind per
  schedule (refresh daily, the other two weekly). Tokens with no expiry are bad rows:
  kept and counted.
- `unverified_account_cleanup`: users whose email is still unverified 30 days after they
  signed up are deleted together with their sessions and tokens, in the same batch
  transaction (there are no foreign keys to cascade). An unverified account that holds
  coins or bonus coins is never deleted (money is not destroyed by a cleanup): it is kept
  and counted.
"""

from datetime import datetime, timedelta
from enum import StrEnum

import dagster as dg
from pydantic import Field, field_validator
from sqlalchemy import Engine

from ops_platform.db.batch_steps import Follower, delete_batch
from ops_platform.db.batching import count_rows, delete_in_batches, dry_run_results, run_in_batches
from ops_platform.jobs._cleanup import RuleOutcome, rule_job
from ops_platform.jobs._common import GuardedJobConfig
from ops_platform.log_line import LogLine

TOKEN_TABLES = {
    "refresh": "refresh_tokens",
    "email_verification": "email_verification_tokens",
    "password_reset": "password_reset_tokens",
}
TOKEN_KINDS = tuple(TOKEN_TABLES)
# The launchpad offers these; any other value is refused before a run starts.
TokenKind = StrEnum("TokenKind", {kind: kind for kind in TOKEN_KINDS})


def kept_after_expiry(default: int, tokens: str):
    """The retention of a token kind after its expiry, zero or more."""
    return Field(
        default=default, ge=0, description=f"{tokens} tokens are kept this long after expiry."
    )


class TokenCleanupConfig(GuardedJobConfig):
    kinds: list[TokenKind] = Field(
        default=list(TOKEN_KINDS),
        description="Token kinds to clean: refresh, email_verification, password_reset.",
    )
    refresh_retention_days: int = kept_after_expiry(7, "Refresh")
    email_verification_retention_hours: int = kept_after_expiry(0, "Email verification")
    password_reset_retention_hours: int = kept_after_expiry(24, "Password reset")

    @field_validator("kinds")
    @classmethod
    def _some_kinds(cls, kinds: list[TokenKind]) -> list[TokenKind]:
        if not kinds:
            raise ValueError(f"kinds must name at least one of {', '.join(TOKEN_KINDS)}")
        return list(dict.fromkeys(kinds))

    def gate_scope(self) -> str:
        return "kinds=" + ",".join(sorted(self.kinds))


def token_retention(kind: str, config: TokenCleanupConfig) -> timedelta:
    return {
        "refresh": timedelta(days=config.refresh_retention_days),
        "email_verification": timedelta(hours=config.email_verification_retention_hours),
        "password_reset": timedelta(hours=config.password_reset_retention_hours),
    }[kind]


def delete_expired_tokens(
    engine: Engine, config: TokenCleanupConfig, now: datetime, log: LogLine | None = None
) -> RuleOutcome:
    """Delete expired refresh, email verification and password reset tokens in bounded batches."""
    tables = {kind: TOKEN_TABLES[kind] for kind in config.kinds}
    return RuleOutcome(
        [
            delete_in_batches(
                engine,
                table,
                "expires_at < :cutoff",
                {"cutoff": now - token_retention(kind, config)},
                **config.batching(log),
                label=f"{table}_expired",
            )
            for kind, table in tables.items()
        ],
        {
            f"{table}_skipped_null_expiry": count_rows(engine, table, "expires_at IS NULL", {})
            for table in tables.values()
        },
    )


token_cleanup = rule_job(
    "token_cleanup",
    "cleanup_tokens",
    delete_expired_tokens,
    description="Delete expired tokens past their retention.",
    metadata=lambda config: {"kinds": ", ".join(config.kinds)},
)


# --- unverified accounts ------------------------------------------------------------------

USER_DEPENDENTS = tuple(
    Follower(table=table, foreign_key="user_id", label=f"{table}_of_deleted_users")
    for table in (
        "sessions",
        "refresh_tokens",
        "email_verification_tokens",
        "password_reset_tokens",
    )
)
UNVERIFIED = "email_verified_at IS NULL AND created_at < :cutoff"
HOLDS_MONEY = "(coin_balance <> 0 OR bonus_balance <> 0)"


class UnverifiedAccountCleanupConfig(GuardedJobConfig):
    retention_days: int = Field(
        default=30, ge=1, description="Delete accounts still unverified this long after sign-up."
    )


def delete_unverified_accounts(
    engine: Engine,
    config: UnverifiedAccountCleanupConfig,
    now: datetime,
    log: LogLine | None = None,
) -> RuleOutcome:
    """Delete accounts never verified within the retention, with their sessions and tokens."""
    where = f"{UNVERIFIED} AND NOT {HOLDS_MONEY}"
    params = {"cutoff": now - timedelta(days=config.retention_days)}
    if config.dry_run:
        results = dry_run_results(
            engine, "users", where, params, label="users_unverified", followers=USER_DEPENDENTS
        )
    else:
        results = run_in_batches(
            engine,
            "users",
            where,
            params,
            lambda connection, batch_where, batch_params: delete_batch(
                connection,
                "users",
                batch_where,
                batch_params,
                label="users_unverified",
                dependents=USER_DEPENDENTS,
            ),
            batch_size=config.batch_size,
            progress=log,
            label="users_unverified",
            verb="deleted",
            tables={d.name: d.table for d in USER_DEPENDENTS},
        )
    kept = count_rows(engine, "users", f"{UNVERIFIED} AND {HOLDS_MONEY}", params)
    return RuleOutcome(results, {"users_skipped_holding_coins": kept})


unverified_account_cleanup = rule_job(
    "unverified_account_cleanup",
    "cleanup_unverified_accounts",
    delete_unverified_accounts,
    description="Delete accounts never verified after 30 days.",
)


defs = dg.Definitions(jobs=[token_cleanup, unverified_account_cleanup])
