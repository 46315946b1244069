"""The contract tables as a web app would have created them: hand-written DDL with only the
contract's columns, in other compatible types than the project's own (text vs varchar,
integer vs bigint, numeric vs double, json vs jsonb, timestamp vs timestamptz), the app's own
index names, and a few rows that exist before the project ever runs."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text

# {id} is the app's id column, {ts}/{tsz} a timestamp without/with time zone, {json} its
# JSON type, {real} a floating type, {bool} a boolean, {now} the current time as default.
_TABLES = """
users (id {id}, email varchar(255) NOT NULL, created_at {tsz} NOT NULL DEFAULT {now},
  email_verified_at {ts}, trust_score numeric(6,2) NOT NULL DEFAULT 50,
  trust_score_updated_at {tsz}, coin_balance bigint NOT NULL DEFAULT 0,
  bonus_balance integer NOT NULL DEFAULT 0, og_level smallint NOT NULL DEFAULT 0,
  og_tier_id integer, og_expires_at {ts})
sessions (id {id}, user_id integer, kind text NOT NULL DEFAULT 'user',
  created_at {ts} NOT NULL DEFAULT {now}, last_seen_at {ts}, expires_at {tsz}, revoked_at {ts})
refresh_tokens (id {id}, user_id integer, token_hash text NOT NULL,
  created_at {tsz} NOT NULL DEFAULT {now}, expires_at {ts})
email_verification_tokens (id {id}, user_id integer, token_hash varchar(64) NOT NULL,
  created_at {ts} NOT NULL DEFAULT {now}, expires_at {ts})
password_reset_tokens (id {id}, user_id bigint, token_hash text NOT NULL,
  created_at {tsz} NOT NULL DEFAULT {now}, expires_at {tsz})
secrets (id {id}, name text NOT NULL, version integer NOT NULL DEFAULT 1,
  value_ciphertext text NOT NULL, status varchar(20) NOT NULL DEFAULT 'active',
  created_at {ts} NOT NULL DEFAULT {now}, expires_at {ts}, rotated_at {ts})
og_tiers (id {id}, level integer NOT NULL, price_coins integer NOT NULL,
  duration_days integer NOT NULL)
coin_transactions (id {id}, user_id integer NOT NULL, kind text NOT NULL, amount integer NOT NULL,
  balance text NOT NULL DEFAULT 'coin', idempotency_key text NOT NULL UNIQUE,
  created_at {ts} NOT NULL DEFAULT {now})
payments (id {id}, provider_ref text NOT NULL, user_id integer, amount_cents integer NOT NULL,
  currency char(3) NOT NULL DEFAULT 'USD', status text NOT NULL DEFAULT 'pending',
  created_at {ts} NOT NULL DEFAULT {now}, check_count integer NOT NULL DEFAULT 0,
  next_check_at {ts}, last_checked_at {ts}, settled_at {ts})
projects (id {id}, name text NOT NULL)
project_team (id {id}, project_id integer NOT NULL, user_id integer NOT NULL,
  is_primary_contact {bool} NOT NULL DEFAULT {false}, removed_at {ts})
project_payment_status (project_id integer PRIMARY KEY, advance_paid {bool} NOT NULL DEFAULT {false},
  advance_paid_at {ts}, balance_paid {bool} NOT NULL DEFAULT {false})
payment_reminders (id {id}, project_id integer NOT NULL, kind text NOT NULL,
  status text NOT NULL DEFAULT 'PENDING', recipient_email text, scheduled_for {ts}, sent_at {ts})
deliverables (id {id}, project_id integer, delivered_at {ts}, expires_at {ts},
  status text NOT NULL DEFAULT 'delivered')
notifications (id {id}, user_id integer, title text NOT NULL, body text,
  created_at {ts} NOT NULL DEFAULT {now})
notification_email_queue (id {id}, user_id integer, notification_ids {json},
  scheduled_for {ts}, status text NOT NULL DEFAULT 'pending', attempts integer NOT NULL DEFAULT 0,
  claimed_at {ts}, sent_at {ts}, error_message text)
realtime_events (id {id}, channel text NOT NULL, event text NOT NULL, payload {json},
  created_at {ts} NOT NULL DEFAULT {now}, published_at {ts})
streams (id {id}, owner_id integer, title text, is_live {bool} NOT NULL DEFAULT {false},
  started_at {ts}, ended_at {ts})
stream_events (id {id}, stream_id integer NOT NULL, user_id integer, kind text NOT NULL,
  value {real} NOT NULL DEFAULT 1, created_at {ts} NOT NULL DEFAULT {now})
stream_rankings (stream_id integer PRIMARY KEY, score {real} NOT NULL, rank integer NOT NULL,
  computed_at {ts} NOT NULL)
reputation_events (id {id}, user_id integer NOT NULL, kind text NOT NULL,
  weight numeric NOT NULL DEFAULT 1, created_at {ts} NOT NULL DEFAULT {now})
thrones (id {id}, stream_id integer, holder_id integer, total_coins integer NOT NULL DEFAULT 0,
  started_at {ts}, expires_at {ts}, is_active {bool} NOT NULL DEFAULT {true})
festivals (id {id}, name text NOT NULL, theme text, start_at {ts}, end_at {ts},
  is_active {bool} NOT NULL DEFAULT {false})
gifts (id {id}, name text NOT NULL, price_coins integer NOT NULL DEFAULT 0, festival_id integer,
  is_active {bool} NOT NULL DEFAULT {true})
game_sessions (id {id}, game_type text NOT NULL, player_address text NOT NULL,
  status text NOT NULL DEFAULT 'active', started_at {ts}, ended_at {ts})
leaderboard_entries (id {id}, session_id integer, game_type text NOT NULL,
  player_address text NOT NULL, score integer NOT NULL, created_at {ts} NOT NULL DEFAULT {now})
prize_pools (id {id}, game_type text NOT NULL, period text NOT NULL, period_start date NOT NULL,
  total_amount numeric(18,2) NOT NULL DEFAULT 0, status text NOT NULL DEFAULT 'open',
  winner_address text, winning_score integer, finalized_at {ts},
  UNIQUE (game_type, period, period_start))
courses (id {id}, title text NOT NULL)
enrollments (id {id}, course_id integer NOT NULL, user_id integer NOT NULL, enrolled_at {ts},
  completed_at {ts})
learning_events (id {id}, user_id integer NOT NULL, course_id integer, kind text NOT NULL,
  score numeric(5,2), created_at {ts} NOT NULL DEFAULT {now})
stored_files (id {id}, s3_key text NOT NULL, owner_id integer, created_at {ts} NOT NULL DEFAULT {now})
webhook_events (id {id}, provider text, source_ip text, event_id text,
  signature_valid {bool} NOT NULL DEFAULT {true}, received_at {ts} NOT NULL DEFAULT {now})
security_alerts (id {id}, kind text NOT NULL, severity text NOT NULL, details {json},
  created_at {ts} NOT NULL DEFAULT {now})
"""

_TYPES = {
    "postgresql": {
        "id": "serial PRIMARY KEY",
        "ts": "timestamp without time zone",
        "tsz": "timestamptz",
        "json": "json",
        "real": "double precision",
        "bool": "boolean",
        "true": "true",
        "false": "false",
        "now": "(now() AT TIME ZONE 'utc')",
    },
    "sqlite": {
        "id": "INTEGER PRIMARY KEY AUTOINCREMENT",
        "ts": "TIMESTAMP",
        "tsz": "DATETIME",
        "json": "TEXT",
        "real": "REAL",
        "bool": "BOOLEAN",
        "true": "1",
        "false": "0",
        "now": "CURRENT_TIMESTAMP",
    },
}


def app_table_statements(dialect: str, replace: dict[str, str] | None = None) -> list[str]:
    """CREATE TABLE statements of the app's own schema on `dialect`; `replace` edits the
    template first (a column left out, another type)."""
    template = _TABLES
    for old, new in (replace or {}).items():
        template = template.replace(old, new)
    statements = []
    for block in template.strip().split("\n"):
        if block.startswith(" "):
            statements[-1] += " " + block.strip()
        else:
            statements.append(block)
    return [f"CREATE TABLE {s.format(**_TYPES[dialect])}" for s in statements]


def create_app_schema(engine, replace: dict[str, str] | None = None) -> None:
    """The app's tables (its own index names) on `engine`, empty; `replace` edits the DDL
    (a column left out, another type)."""
    with engine.begin() as connection:
        for statement in app_table_statements(engine.dialect.name, replace):
            connection.execute(text(statement))
        connection.execute(text("CREATE INDEX app_sessions_expiry ON sessions (expires_at)"))
        connection.execute(text("CREATE INDEX app_users_email ON users (email)"))


# Jobs run by hand with a config naming what to do (no schedule runs them bare).
NEEDS_CONFIG = {"replay_dead_items", "maintenance_window"}


def _defaults(job) -> dict:
    """Every configurable op with its config's defaults, as a schedule's tick sends it."""
    ops = {
        node.name: {"config": {}}
        for node in job.graph.nodes
        if node.definition.config_schema.as_field() is not None
        and node.definition.config_schema.as_field().config_type.kind.name.endswith("SHAPE")
    }
    return {"ops": ops} if ops else {}


def _cause(result) -> str:
    for event in result.all_events:
        if event.is_step_failure:
            error = event.event_specific_data.error
            while error.cause is not None:
                error = error.cause
            return error.message.strip().splitlines()[0]
    return ""


def run_every_job(defs) -> tuple[list[str], int]:
    """Every asset job's latest partitions and every op job, as the demo runs them, on an
    ephemeral instance: (one line per failed run, runs)."""
    import dagster as dg

    from ops_platform.demo import _demo_runs, _failure_message

    failures, runs = [], 0
    with dg.DagsterInstance.ephemeral() as instance:
        for label, job, partition_key in _demo_runs(defs, datetime.now(UTC)):
            if label in NEEDS_CONFIG:
                continue
            result = job.execute_in_process(
                instance=instance,
                partition_key=partition_key,
                raise_on_error=False,
                run_config=_defaults(job),
            )
            runs += 1
            if not result.success:
                failures.append(f"{label}: {_failure_message(result)} {_cause(result)}")
    return failures, runs
