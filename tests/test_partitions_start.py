"""OPS_PARTITIONS_START: the first day of every partitioned asset; by default a few months
back, so the UI shows filled months rather than years of empty partitions."""

import os
import subprocess
import sys
from datetime import date

import pytest

from ops_platform.settings import SettingsError, load_settings, partitions_start


def test_default_is_the_first_of_the_month_three_months_back():
    assert partitions_start({}, today=date(2026, 12, 2)) == "2026-09-01"
    assert partitions_start({}, today=date(2026, 2, 15)) == "2025-11-01"


def test_a_bad_value_names_the_variable():
    assert partitions_start({"OPS_PARTITIONS_START": "2026-05-04"}) == "2026-05-04"
    with pytest.raises(SettingsError, match="OPS_PARTITIONS_START='May 4'"):
        load_settings({"OPS_PARTITIONS_START": "May 4"})


def test_every_partitioned_asset_starts_there():
    code = (
        "import dagster as dg\n"
        "from ops_platform.definitions import defs\n"
        "g = defs.get_repository_def().asset_graph\n"
        "for a in g.assets_defs:\n"
        "    p = a.partitions_def\n"
        "    if p is None or a.is_external: continue\n"
        "    t = getattr(p, 'time_window_dimension', None)\n"
        "    t = t.partitions_def if t else p\n"
        "    print(a.key.to_user_string(), t.get_first_partition_key()[:10])\n"
    )
    env = {**os.environ, "OPS_PARTITIONS_START": "2026-06-01"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    starts = dict(line.split() for line in out.stdout.splitlines())
    assert len(starts) >= 8, out.stderr[-2000:]
    # Daily and hourly start that day; weeks and months at their first boundary from it.
    assert starts["daily_course_analytics"] == starts["og_daily_bonus"] == "2026-06-01"
    assert starts["hourly_platform_metrics"] == "2026-06-01"
    assert starts["weekly_trend_report"] == "2026-06-07"  # a Sunday
    assert starts["weekly_prize_pools"] == "2026-06-01"  # a Monday
    assert starts["monthly_executive_summary"] == "2026-06-01"
