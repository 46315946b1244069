"""Reading the app tables: the SQL that aggregates learning activity, and the bridge
between SQL results and pandas frames. The database aggregates; pandas only joins and
derives rates on the aggregated frames.

Learning event kinds: `lesson_completed` (or `lesson_complete`) is a finished lesson; any
kind starting with `quiz` that carries a score is a quiz result. Malformed rows (a negative or
absurd score, an enrollment completed before it began) are skipped, and counted apart
(`ops_platform.db.bad_rows`).
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from sqlalchemy import Connection, text

from ops_platform.assets.analytics.partitions import utc_day_window
from ops_platform.db.bad_rows import well_formed
from ops_platform.db.engine import is_postgres

if TYPE_CHECKING:
    import pandas as pd

LESSON_KINDS = ("lesson_completed", "lesson_complete")
IS_LESSON = "kind IN ('lesson_completed', 'lesson_complete')"
IS_QUIZ = "(kind LIKE 'quiz%' AND score IS NOT NULL)"


def day_sql(bind, column: str) -> str:
    """SQL giving the UTC day (YYYY-MM-DD text) of a timestamp column."""
    if is_postgres(bind):
        return f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
    return f"substr({column}, 1, 10)"


def read_frame(connection: Connection, sql, params: dict | None = None) -> pd.DataFrame:
    """The result of a query (SQL text or a SQLAlchemy select) as a DataFrame."""
    import pandas as pd

    query = text(sql) if isinstance(sql, str) else sql
    return pd.read_sql(query, connection, params=params)


def records(frame: pd.DataFrame) -> list[dict]:
    """Rows of an aggregated frame as plain Python values (NaN → None) for an INSERT."""
    rows = []
    for row in frame.to_dict("records"):
        clean = {}
        for key, value in row.items():
            if hasattr(value, "item"):
                value = value.item()
            if isinstance(value, float) and value != value:
                value = None
            clean[key] = value
        rows.append(clean)
    return rows


def learning_per(
    connection: Connection, day: date, per: str, distinct: str, distinct_as: str
) -> pd.DataFrame:
    """Learning events of `day` (UTC) per `per` column (rows with one), in its order: the
    number of distinct `distinct` values (as `distinct_as`), lessons completed, quizzes taken
    and the average quiz score."""
    start, end = utc_day_window(day)
    return read_frame(
        connection,
        f"""
        SELECT {per},
               COUNT(DISTINCT {distinct}) AS {distinct_as},
               SUM(CASE WHEN {IS_LESSON} THEN 1 ELSE 0 END) AS lessons_completed,
               SUM(CASE WHEN {IS_QUIZ} THEN 1 ELSE 0 END) AS quizzes_taken,
               AVG(CASE WHEN {IS_QUIZ} THEN score END) AS avg_quiz_score
        FROM learning_events
        WHERE created_at >= :start AND created_at < :end AND {per} IS NOT NULL
          AND {well_formed(connection, "learning_events")}
        GROUP BY {per}
        ORDER BY {per}""",
        {"start": start, "end": end},
    )


COURSE_DAY_COLUMNS = [
    "day",
    "course_id",
    "active_students",
    "lessons_completed",
    "enrollments",
    "completions",
    "completion_rate",
    "avg_quiz_score",
]


def course_day_frame(connection: Connection, day: date) -> pd.DataFrame:
    """One row per course with activity on `day` (UTC), in the table's columns."""
    start, end = utc_day_window(day)
    params = {"start": start, "end": end}
    events = learning_per(connection, day, "course_id", "user_id", "active_students")
    enrolled = read_frame(
        connection,
        f"""
        SELECT course_id,
               SUM(CASE WHEN enrolled_at >= :start AND enrolled_at < :end THEN 1 ELSE 0 END) AS enrollments,
               SUM(CASE WHEN completed_at >= :start AND completed_at < :end THEN 1 ELSE 0 END) AS completions,
               SUM(CASE WHEN enrolled_at IS NULL OR enrolled_at < :end THEN 1 ELSE 0 END) AS enrolled_total,
               SUM(CASE WHEN completed_at < :end THEN 1 ELSE 0 END) AS completed_total
        FROM enrollments WHERE {well_formed(connection, "enrollments")}
        GROUP BY course_id""",
        params,
    )
    frame = events.merge(enrolled, on="course_id", how="outer")
    counts = [
        "active_students",
        "lessons_completed",
        "enrollments",
        "completions",
        "enrolled_total",
        "completed_total",
    ]
    frame[counts] = frame[counts].fillna(0).astype("int64")
    frame = frame[
        (frame.active_students > 0) | (frame.enrollments > 0) | (frame.completions > 0)
    ].copy()
    rate = frame.completed_total / frame.enrolled_total.where(frame.enrolled_total > 0)
    frame["completion_rate"] = rate.clip(upper=1.0)
    frame["avg_quiz_score"] = frame["avg_quiz_score"].astype("float64")
    frame["day"] = day
    frame["course_id"] = frame["course_id"].astype("int64")
    return frame[COURSE_DAY_COLUMNS].sort_values("course_id").reset_index(drop=True)


def student_day_frame(connection: Connection, day: date) -> pd.DataFrame:
    """One row per student with learning events on `day` (UTC), in the table's columns."""
    frame = learning_per(connection, day, "user_id", "course_id", "courses_active")
    frame["day"] = day
    for column in ("user_id", "courses_active", "lessons_completed", "quizzes_taken"):
        frame[column] = frame[column].fillna(0).astype("int64")
    frame["avg_quiz_score"] = frame["avg_quiz_score"].astype("float64")
    return frame[
        ["day", "user_id", "courses_active", "lessons_completed", "quizzes_taken", "avg_quiz_score"]
    ]


def stored_or_computed(
    connection: Connection, table, compute, days: list[date]
) -> tuple[pd.DataFrame, set[date]]:
    """Rows of the daily table `table` for `days`: the stored ones, and for a day with no
    stored rows the same figures computed from the source tables with `compute(connection,
    day)`. Returns the rows and the days computed."""
    import pandas as pd
    from sqlalchemy import select

    stored = read_frame(
        connection, select(table).where(table.c.day >= days[0], table.c.day <= days[-1])
    )
    parts, computed = [stored], set()
    for day in days:
        if not (stored.day == day).any():
            parts.append(compute(connection, day))
            computed.add(day)
    frame = pd.concat([p for p in parts if not p.empty] or [stored], ignore_index=True)
    return frame, computed


def quiz_average(students: pd.DataFrame) -> float | None:
    """Average quiz score over student-day rows, weighted by their quizzes (None: no quiz)."""
    quizzes = int(students.quizzes_taken.sum())
    weighted = (students.avg_quiz_score.fillna(0) * students.quizzes_taken).sum()
    return round(float(weighted / quizzes), 2) if quizzes else None
