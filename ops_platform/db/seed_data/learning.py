"""Courses, enrollments and learning events over the last 40 days."""

from __future__ import annotations

import numpy as np

from ops_platform.db.bulk_load import Frame
from ops_platform.db.seed_data._base import Context, ids, pick
from ops_platform.db.seed_data.clock import DAY, HOUR, MINUTE, NULL_TS, between, ts

COURSE_SUBJECTS = (
    "Python",
    "Data Analysis",
    "Web Design",
    "Photography",
    "Spanish",
    "Guitar",
    "Statistics",
    "Machine Learning",
    "Marketing",
    "Video Editing",
    "Public Speaking",
    "SQL",
)
COURSE_LEVELS = ("Introduction to", "Practical", "Advanced", "Foundations of", "Mastering")
LEARNING_KINDS = {
    "lesson_started": 0.3,
    "lesson_completed": 0.35,
    "quiz_submitted": 0.15,
    "video_watched": 0.2,
}
LEARNING_WINDOW = 40 * DAY


def learning(ctx: Context) -> list[Frame]:
    rng = ctx.rng("learning")
    now = ctx.now
    course_n = ctx.size("courses")
    names = [f"{level} {subject}" for subject in COURSE_SUBJECTS for level in COURSE_LEVELS]
    titles = [
        names[i % len(names)] + (f" ({i // len(names) + 1})" if i >= len(names) else "")
        for i in range(course_n)
    ]

    # enrollments: a (user, course) pair at most once; ~30% completed
    wanted = ctx.size("enrollments")
    enrolled = ctx.now - between(rng, HOUR, 120 * DAY, wanted)
    user = ctx.users_before(rng, enrolled)
    popularity = rng.lognormal(0, 1, course_n)
    course = rng.choice(course_n, wanted, p=popularity / popularity.sum()) + 1
    _, first = np.unique(user * (course_n + 1) + course, return_index=True)
    first.sort()
    enrolled, user, course = enrolled[first], user[first], course[first]
    n = len(first)
    finished = enrolled + between(rng, 3 * DAY, 60 * DAY, n)
    completed = np.where((rng.random(n) < 0.3) & (finished < now), finished, NULL_TS)
    # a few who enrolled three weeks ago and finished yesterday, so yesterday has completions
    yesterday = ctx.today - DAY
    pinned = np.zeros(n, dtype=bool)
    for i in range(min(n, 3)):
        enrolled[i], completed[i], pinned[i] = (
            yesterday - 20 * DAY,
            yesterday + (9 + i) * HOUR,
            True,
        )
    order = np.argsort(enrolled, kind="stable")
    enrolled, user, course, completed, pinned = (
        a[order] for a in (enrolled, user, course, completed, pinned)
    )
    enrollment_frame = Frame(
        "enrollments",
        {
            "id": ids(n),
            "course_id": course.astype(np.int64),
            "user_id": user,
            "enrolled_at": ts(enrolled),
            "completed_at": ts(completed),
        },
    )
    return [
        Frame("courses", {"id": ids(course_n), "title": titles}),
        enrollment_frame,
        _learning_events(ctx, rng, enrolled, user, course, completed, np.flatnonzero(pinned)),
    ]


def _learning_events(ctx: Context, rng, enrolled, user, course, completed, pinned) -> Frame:
    """course_started / course_completed at their moments, activity in between, over the
    last 40 days (including yesterday), so daily, weekly and monthly analytics have data."""
    now = ctx.now
    window_start = now - LEARNING_WINDOW
    finish = np.where(completed == NULL_TS, now, completed)
    active = np.flatnonzero(finish > window_start)
    started_in_window = np.flatnonzero(enrolled >= window_start)
    completed_in_window = np.flatnonzero((completed != NULL_TS) & (completed >= window_start))
    activity_n = max(
        0, ctx.size("learning_events") - len(started_in_window) - len(completed_in_window)
    )
    pick_rows = (
        active[rng.integers(0, len(active), activity_n)]
        if len(active)
        else np.array([], dtype=np.int64)
    )
    low = np.maximum(enrolled[pick_rows], window_start)
    moments = between(rng, low, finish[pick_rows])
    codes = pick(rng, len(pick_rows), LEARNING_KINDS)[rng.permutation(len(pick_rows))]
    kinds = np.array(list(LEARNING_KINDS), dtype=object)[codes]
    # pinned: the enrollments finishing yesterday also completed a lesson and a quiz that morning
    pinned_at = ctx.today - DAY + 8 * HOUR + np.arange(len(pinned)) * HOUR
    rows = np.r_[started_in_window, completed_in_window, pick_rows, pinned, pinned]
    created = np.r_[
        enrolled[started_in_window],
        completed[completed_in_window],
        moments,
        pinned_at,
        pinned_at + 30 * MINUTE,
    ]
    kind = np.r_[
        np.full(len(started_in_window), "course_started", dtype=object),
        np.full(len(completed_in_window), "course_completed", dtype=object),
        kinds,
        np.full(len(pinned), "lesson_completed", dtype=object),
        np.full(len(pinned), "quiz_submitted", dtype=object),
    ]
    order = np.argsort(created, kind="stable")
    rows, created, kind = rows[order], created[order], kind[order]
    quiz = kind == "quiz_submitted"
    score = np.where(quiz, rng.normal(74, 14, len(rows)).clip(0, 100).round(1), np.nan)
    return Frame(
        "learning_events",
        {
            "id": ids(len(rows)),
            "user_id": user[rows],
            "course_id": course[rows].astype(np.int64),
            "kind": kind,
            "score": score,
            "created_at": ts(created),
        },
    )
