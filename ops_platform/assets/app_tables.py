"""The web app's tables that assets read, as external assets.

The app owns these tables; Dagster never materializes them. Declaring them as
asset specs puts them in the lineage graph, so the UI shows `users`, `stream_events`, … feeding
each asset. Keys equal table names: an asset lists what it reads with
`deps=app_table_keys("users", "reputation_events")` (or `deps=[dg.AssetKey("users")]`).

Tables an asset produces itself (`stream_rankings`, `leaderboard_standings`, the analytics
tables) are not here: they are that asset.
"""

import dagster as dg
from sqlalchemy.dialects import postgresql

from ops_platform.db import schema

APP_OWNER = "team:web-app"

# table name -> what the app keeps there (shown in the UI).
APP_TABLES: dict[str, str] = {
    "users": "Accounts: trust score, coin and bonus balances, OG tier and expiry.",
    "sessions": "Login sessions of users and anonymous players.",
    "og_tiers": "OG tier catalogue: price in coins and duration in days.",
    "coin_transactions": "Coin and bonus ledger; one row per movement, unique idempotency key.",
    "payments": "Payments with the external provider and their status.",
    "notification_email_queue": "Batches of notification emails waiting to be sent.",
    "realtime_events": "Outbox of events for the web app's real-time channel.",
    "streams": "Live streams: owner, live flag, start and end.",
    "stream_events": "Viewer activity on streams: views, chats, gifts, follows, shares.",
    "reputation_events": "Signed reputation signals about users (reports, endorsements, …).",
    "game_sessions": "Arcade game sessions per player.",
    "leaderboard_entries": "Arcade scores, one row per finished game.",
    "leaderboard_entries_archive": "Arcade scores older than 90 days, moved here by the game_cleanup job.",
    "prize_pools": "Daily and weekly prize pools per game type, opened and funded by the app.",
    "courses": "Courses of the learning platform.",
    "enrollments": "Students enrolled in courses, with completion time.",
    "learning_events": "Lesson completions, quiz results and other learning activity.",
}


def app_table_keys(*names: str) -> list[dg.AssetKey]:
    """Asset keys of app tables, for `deps=`; an unknown name is a clear error."""
    unknown = [name for name in names if name not in APP_TABLES]
    if unknown:
        raise KeyError(
            f"{', '.join(unknown)} not declared in ops_platform/assets/app_tables.py APP_TABLES"
        )
    return [dg.AssetKey(name) for name in names]


def _column_schema(table_name: str) -> dg.TableSchema:
    table = schema.find_table(table_name)
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=column.name,
                type=column.type.compile(dialect=postgresql.dialect()).lower(),
                constraints=dg.TableColumnConstraints(nullable=bool(column.nullable)),
            )
            for column in table.columns
        ]
    )


def _spec(name: str, description: str) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=name,
        description=description,
        group_name="app_database",
        kinds={"postgres", "table"},
        owners=[APP_OWNER],
        metadata={
            "dagster/table_name": name,
            "dagster/column_schema": _column_schema(name),
            "owned_by": (
                "ops_platform (its own schema)"
                if schema.find_table(name).schema == schema.STATE
                else "web app (read by ops_platform assets)"
            ),
        },
    )


APP_TABLE_SPECS = [_spec(name, description) for name, description in APP_TABLES.items()]

defs = dg.Definitions(assets=APP_TABLE_SPECS)
