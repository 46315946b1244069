"""Reports wait for complete inputs: the weekly report's automation condition against the
instance's materializations of its daily inputs, what a report says it used, and the
checks of the daily analytics tables."""

from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pytest
from sqlalchemy import delete, insert, select

from ops_platform.assets.analytics.checks import (
    IN_RANGE,
    NEAR_MEDIAN,
    check_course_rows,
    check_row_count_near_median,
)
from ops_platform.assets.analytics.daily import daily_course_analytics, daily_student_analytics
from ops_platform.assets.analytics.inputs import DAILY_INPUTS
from ops_platform.assets.analytics.monthly import monthly_executive_summary
from ops_platform.assets.analytics.weekly import weekly_trend_report
from ops_platform.db import schema
from ops_platform.resources.object_store import LocalObjectStore
from tests.assets.test_analytics import learning  # noqa: F401  (the fixture of a learning week)

WEEK = "2026-11-15"  # Sunday 2026-11-15 → Saturday 2026-11-21; it reads 2026-11-08 → 11-21
INPUT_DAYS = [(date(2026, 11, 8) + timedelta(days=n)).isoformat() for n in range(14)]
WEEK_DAYS = INPUT_DAYS[7:]
LATE_DAY = "2026-11-18"
REPORT = weekly_trend_report.key


@pytest.fixture
def object_store(tmp_path):
    return LocalObjectStore(root=str(tmp_path / "objects"))


@pytest.fixture
def resources(database, object_store):
    return {"database": database, "object_store": object_store}


def report_input_day(instance, day: str, assets=DAILY_INPUTS):
    """An input partition materialized and its blocking check passed (what the daily run
    records on the instance)."""
    for asset in assets:
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=asset, partition=day))
        instance.report_runless_asset_event(
            dg.AssetCheckEvaluation(
                asset_key=dg.AssetKey(asset), check_name=IN_RANGE, passed=True, blocking=True
            )
        )


def report_input_days_but_the_late_one(instance):
    for day in INPUT_DAYS:
        if day != LATE_DAY:
            report_input_day(instance, day)


class Ticks:
    """Successive evaluations of the automation conditions, as the automation sensor runs them."""

    def __init__(self, instance, resources, assets=None):
        self.instance, self.cursor = instance, None
        self.defs = dg.Definitions(
            assets=assets or [daily_course_analytics, daily_student_analytics, weekly_trend_report],
            resources=resources,
        )

    def requested(self, at: datetime, asset=REPORT) -> set[str]:
        result = dg.evaluate_automation_conditions(
            defs=self.defs, instance=self.instance, evaluation_time=at, cursor=self.cursor
        )
        self.cursor = result.cursor
        return set(result.get_requested_partitions(asset))


def at(day: int, hour: int) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=UTC)


def materialize_report(instance, resources, partition=WEEK):
    result = dg.materialize(
        [weekly_trend_report], partition_key=partition, resources=resources, instance=instance
    )
    assert result.success
    return result.asset_materializations_for_node("weekly_trend_report")[0].metadata


def test_weekly_report_waits_for_a_missing_day_then_runs_once_with_all_inputs(
    learning,  # noqa: F811
    database,
    resources,
):
    with dg.instance_for_test() as instance:
        report_input_days_but_the_late_one(instance)
        ticks = Ticks(instance, resources)
        assert ticks.requested(at(21, 12)) == set()  # the week is not over
        assert ticks.requested(at(22, 0)) == set()  # over, but 2026-11-18 is missing
        assert ticks.requested(at(22, 6)) == set()  # still missing: still not produced
        # The late day lands (its daily runs, for real).
        for asset in (daily_course_analytics, daily_student_analytics):
            dg.materialize(
                [asset], partition_key=LATE_DAY, resources={"database": database}, instance=instance
            )
        assert ticks.requested(at(22, 7)) == {WEEK}
        metadata = materialize_report(instance, resources)
        assert ticks.requested(at(22, 8)) == set()  # produced once
        assert ticks.requested(at(22, 9)) == set()

        assert metadata["inputs_complete"].value is True
        assert metadata["inputs_missing"].value == "none"
        inputs = metadata["input_partitions"].value
        assert set(inputs) == set(DAILY_INPUTS)
        for asset in DAILY_INPUTS:
            assert list(inputs[asset]) == INPUT_DAYS  # this week and the week before
            assert all(inputs[asset][day] for day in WEEK_DAYS)  # all seven, with their times
        late = datetime.fromisoformat(inputs["daily_course_analytics"][LATE_DAY])
        assert late == max(
            datetime.fromisoformat(t) for t in inputs["daily_course_analytics"].values()
        )
        assert "**Inputs: complete** (28 partitions" in metadata["report"].value


def test_a_rematerialized_day_makes_its_week_stale_once(learning, resources):  # noqa: F811
    with dg.instance_for_test() as instance:
        for day in INPUT_DAYS:
            report_input_day(instance, day)
        ticks = Ticks(instance, resources)
        assert ticks.requested(at(21, 12)) == set()
        assert ticks.requested(at(22, 0)) == {WEEK}
        first = materialize_report(instance, resources)
        assert ticks.requested(at(22, 1)) == set()
        # A backfill re-materializes one day of the week: the report is stale, recomputed once.
        report_input_day(instance, LATE_DAY, ["daily_course_analytics"])
        assert ticks.requested(at(23, 3)) == {WEEK}
        assert ticks.requested(at(23, 4)) == set()
        second = materialize_report(instance, resources)
        assert ticks.requested(at(23, 5)) == set()
        before = first["input_partitions"].value["daily_course_analytics"][LATE_DAY]
        after = second["input_partitions"].value["daily_course_analytics"][LATE_DAY]
        assert after > before


def test_a_report_run_by_hand_with_incomplete_inputs_names_what_is_missing(
    learning,  # noqa: F811
    resources,
):
    with dg.instance_for_test() as instance:
        report_input_days_but_the_late_one(instance)
        metadata = materialize_report(instance, resources)
    assert metadata["inputs_complete"].value is False
    assert metadata["inputs_missing"].value == (
        f"daily_course_analytics:{LATE_DAY}, daily_student_analytics:{LATE_DAY}"
    )
    markdown = metadata["report"].value
    assert "**Inputs: incomplete**: 2 of 28 input partitions not materialized" in markdown
    assert f"daily_course_analytics {LATE_DAY}; daily_student_analytics {LATE_DAY}" in markdown
    with resources["database"].engine.connect() as connection:
        [metrics] = connection.execute(select(schema.analytics_reports.c.metrics)).scalars()
    assert metrics["inputs_complete"] is False
    assert metrics["inputs"]["daily_course_analytics"][LATE_DAY] is None


def test_the_monthly_summary_waits_for_its_daily_student_partitions(learning, resources):  # noqa: F811
    days = [(date(2026, 10, 1) + timedelta(days=n)).isoformat() for n in range(61)]
    with dg.instance_for_test() as instance:
        for day in days[:-1]:  # 2026-11-30 is missing
            report_input_day(instance, day, ["daily_student_analytics"])
        ticks = Ticks(instance, resources, [daily_student_analytics, monthly_executive_summary])
        summary = monthly_executive_summary.key
        assert ticks.requested(datetime(2026, 11, 30, 12, tzinfo=UTC), summary) == set()
        assert ticks.requested(datetime(2026, 12, 1, 3, tzinfo=UTC), summary) == set()
        report_input_day(instance, days[-1], ["daily_student_analytics"])
        assert ticks.requested(datetime(2026, 12, 1, 4, tzinfo=UTC), summary) == {"2026-11-01"}
        assert ticks.requested(datetime(2026, 12, 1, 5, tzinfo=UTC), summary) == set()


# --- checks of the daily tables -------------------------------------------------------------


COURSE_ROW = {
    "active_students": 1,
    "lessons_completed": 1,
    "enrollments": 0,
    "completions": 0,
    "computed_at": datetime(2026, 11, 21, tzinfo=UTC),
}


def _fill_course_days(engine, counts: dict[date, int]):
    rows = [
        {**COURSE_ROW, "day": day, "course_id": course}
        for day, n in counts.items()
        for course in range(1, n + 1)
    ]
    with engine.begin() as connection:
        connection.execute(insert(schema.daily_course_analytics), rows)


def test_row_count_far_from_the_trailing_median_warns(engine):
    day = date(2026, 11, 20)
    history = {day - timedelta(days=n): 10 for n in range(1, 11)}
    _fill_course_days(engine, {**history, day: 2})
    result = check_row_count_near_median(engine, schema.daily_course_analytics, day)
    assert result.check_name == NEAR_MEDIAN and not result.passed
    assert result.severity == dg.AssetCheckSeverity.WARN
    assert result.metadata["trailing_median"].value == 10.0 and result.metadata["rows"].value == 2
    with engine.begin() as connection:
        table = schema.daily_course_analytics
        connection.execute(delete(table).where(table.c.day == day))
    _fill_course_days(engine, {day: 12})
    assert check_row_count_near_median(engine, schema.daily_course_analytics, day).passed


def test_row_count_without_enough_history_is_not_judged(engine):
    day = date(2026, 11, 20)
    _fill_course_days(engine, {day - timedelta(days=1): 50, day: 1})
    result = check_row_count_near_median(engine, schema.daily_course_analytics, day)
    assert result.passed and result.metadata["history_days"].value == 1


def test_negative_counts_fail_a_blocking_check(engine):
    day = date(2026, 11, 20)
    with engine.begin() as connection:
        connection.execute(
            insert(schema.daily_course_analytics),
            [{**COURSE_ROW, "day": day, "course_id": 1, "lessons_completed": -1}],
        )
    result = check_course_rows(engine, day)
    assert not result.passed and result.metadata["negative_counts"].value == 1
    for asset in (daily_course_analytics, daily_student_analytics):
        specs = {spec.name: spec for spec in asset.check_specs}
        assert specs[IN_RANGE].blocking and not specs[NEAR_MEDIAN].blocking
