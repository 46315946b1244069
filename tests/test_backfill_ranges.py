"""`dagster asset materialize --partition-range A...B` works for every partitioned asset: one
run does each partition of the range, and the OG bonus still credits each user once a day."""

import os
import subprocess
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from sqlalchemy import create_engine, text

from ops_platform.assets._ranges import RANGE_IN_ONE_RUN
from ops_platform.db.migrate import upgrade
from ops_platform.db.seed import seed_database
from ops_platform.definitions import defs
from tests.platform_env import run_dagster

TODAY = datetime.now(UTC).date()


def _day(days_ago: int) -> str:
    return (TODAY - timedelta(days=days_ago)).isoformat()


def _sunday(weeks_ago: int) -> str:
    last_sunday = TODAY - timedelta(days=(TODAY.weekday() + 1) % 7)
    return (last_sunday - timedelta(weeks=weeks_ago)).isoformat()


# asset (or assets sharing partitions) → (range start, range end, partitions in the range)
RANGES = {
    "daily_course_analytics,daily_student_analytics": (_day(4), _day(2), 3),
    "hourly_platform_metrics": (f"{_day(1)}-01:00", f"{_day(1)}-04:00", 4),
    "og_daily_bonus": (_day(3), _day(1), 3),
    "weekly_trend_report": (_sunday(3), _sunday(2), 2),
    "monthly_executive_summary": (None, None, 2),
    # A multi-partition range spans each dimension: two days × every game type.
    "daily_prize_pools": (f"{_day(3)}|snake", f"{_day(2)}|space_invaders", 10),
}


def _last_months() -> tuple[str, str]:
    first = TODAY.replace(day=1)
    previous = (first - timedelta(days=1)).replace(day=1)
    before = (previous - timedelta(days=1)).replace(day=1)
    return before.isoformat(), previous.isoformat()


@pytest.fixture(scope="module")
def environment(tmp_path_factory):
    root = tmp_path_factory.mktemp("ranges")
    url = f"sqlite:///{root / 'data' / 'app.db'}"
    upgrade(url)
    seed_database(url, users=40, seed=3, progress=None)
    (root / "dagster").mkdir()
    env = {
        **os.environ,
        "OPS_DATA_DIR": str(root / "data"),
        "DAGSTER_HOME": str(root / "dagster"),
    }
    env.pop("OPS_DATABASE_URL", None)
    return env, url


def test_every_partitioned_asset_backfills_a_range_in_one_run():
    for asset in defs.get_repository_def().asset_graph.assets_defs:
        if asset.partitions_def is not None and not asset.is_external:
            assert asset.backfill_policy == RANGE_IN_ONE_RUN, asset.key


def _materialize(env, select: str, start: str, end: str) -> subprocess.CompletedProcess:
    return run_dagster(
        "asset materialize", "--select", select, "--partition-range", f"{start}...{end}", env=env
    )


@pytest.mark.parametrize("select", list(RANGES))
def test_a_range_from_the_command_line(select, environment):
    env, _ = environment
    start, end, count = RANGES[select]
    if start is None:
        start, end = _last_months()
    result = _materialize(env, select, start, end)
    assert result.returncode == 0, result.stderr[-3000:]
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        for name in select.split(","):
            done = instance.get_materialized_partitions(dg.AssetKey(name))
            first, last = start.split("|")[0], end.split("|")[0]
            in_range = [key for key in done if first <= key.split("|")[0] <= last]
            assert len(in_range) >= count, (name, sorted(done))


def test_overlapping_bonus_ranges_credit_each_user_once_a_day(environment):
    env, url = environment
    assert _materialize(env, "og_daily_bonus", _day(3), _day(1)).returncode == 0
    second = _materialize(env, "og_daily_bonus", _day(2), _day(0))
    assert second.returncode == 0, second.stderr[-3000:]
    engine = create_engine(url)
    with engine.connect() as connection:
        duplicates = connection.execute(
            text(
                "SELECT idempotency_key, COUNT(*) FROM coin_transactions "
                "WHERE kind = 'og_daily_bonus' GROUP BY idempotency_key HAVING COUNT(*) > 1"
            )
        ).all()
        days = connection.execute(
            text(
                "SELECT DISTINCT substr(idempotency_key, -10) FROM coin_transactions "
                "WHERE kind = 'og_daily_bonus'"
            )
        ).scalars()
        days = set(days)
    engine.dispose()
    assert duplicates == []
    assert {_day(n) for n in range(4)} <= days  # days 3..0 ago, each credited
