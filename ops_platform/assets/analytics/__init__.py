"""Learning analytics and platform reports, one concern per module.

- `partitions`: the analytics calendar (daily, weekly from Sunday, monthly, hourly; UTC).
- `sources`: the SQL that aggregates the app tables, and the SQL ↔ pandas bridge.
- `rendering`: the Markdown report, KPI formatting and the charts (matplotlib, Agg).
- `storage`: reports to the object store (`reports/<asset>/<period>`) and `analytics_reports`.
- `daily`: `daily_course_analytics`, `daily_student_analytics` (tables, per UTC day).
- `weekly`: `weekly_trend_report`; `monthly`: `monthly_executive_summary`.
- `hourly`: `hourly_platform_metrics`.
- `reports`: what the two report assets share (inputs looked up, report built and stored).

Malformed app rows (a negative or absurd score or amount, JSON of the wrong shape, an
enrollment completed before it began) are skipped by every aggregate and counted in each
materialization's `bad_rows`; a non-blocking check warns while any are there.

pandas and matplotlib are imported inside the functions that use them: loading the
definitions does not pay for them.
"""

import dagster as dg

from ops_platform.assets._malformed import malformed_rows_checks
from ops_platform.assets.analytics.daily import daily_course_analytics, daily_student_analytics
from ops_platform.assets.analytics.hourly import hourly_platform_metrics
from ops_platform.assets.analytics.monthly import monthly_executive_summary
from ops_platform.assets.analytics.weekly import weekly_trend_report

ANALYTICS_ASSETS = [
    daily_course_analytics,
    daily_student_analytics,
    weekly_trend_report,
    monthly_executive_summary,
    hourly_platform_metrics,
]

defs = dg.Definitions(
    assets=ANALYTICS_ASSETS, asset_checks=malformed_rows_checks(*ANALYTICS_ASSETS)
)
