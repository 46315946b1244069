"""Agency projects: teams, payment status, reminders, deliverables."""

from __future__ import annotations

import numpy as np

from ops_platform.db.bulk_load import Frame
from ops_platform.db.seed_data._base import Context, cases, ids, pick
from ops_platform.db.seed_data.clock import DAY, HOUR, MINUTE, NULL_TS, between, null_ts, ts

PROJECT_ADJECTIVES = [
    "Bold",
    "Bright",
    "Quiet",
    "Swift",
    "Golden",
    "Urban",
    "Coastal",
    "Modern",
    "Wild",
    "Clear",
    "Prime",
    "Lunar",
]
PROJECT_NOUNS = [
    "Harbor",
    "Summit",
    "Canvas",
    "Orbit",
    "Meadow",
    "Forge",
    "Atlas",
    "Beacon",
    "Vertex",
    "Grove",
    "Pulse",
    "Tide",
]
PROJECT_WORKS = (
    "brand film",
    "product launch video",
    "explainer series",
    "event recap",
    "social campaign",
)
TEAM_CASES = {"member": 0.75, "removed_long_ago": 0.12, "removed_recently": 0.13}  # 90-day boundary
PAYMENT_STATUS_CASES = {
    "balance_overdue": 0.30,  # advance paid over 3 days ago, balance unpaid: remind
    "advance_recent": 0.15,  # advance paid under 3 days ago: not yet
    "fully_paid": 0.30,
    "nothing_paid": 0.25,
}


def projects(ctx: Context) -> list[Frame]:
    rng, n = ctx.draw("projects")
    now = ctx.now
    project_ids = ids(n)
    names = [
        f"{PROJECT_ADJECTIVES[a]} {PROJECT_NOUNS[b]} {PROJECT_WORKS[c]}"
        for a, b, c in zip(
            *(
                rng.integers(0, len(options), n).tolist()
                for options in (PROJECT_ADJECTIVES, PROJECT_NOUNS, PROJECT_WORKS)
            )
        )
    ]

    # team: a primary contact first, then 1-5 other members, some soft-removed
    team_size = rng.integers(2, 7, n)
    member_project = np.repeat(project_ids, team_size)
    m = len(member_project)
    primary = np.r_[True, member_project[1:] != member_project[:-1]]
    member_user = ctx.random_users(rng, m)
    removed = null_ts(m)
    others = np.flatnonzero(~primary)
    team_codes = pick(rng, len(others), TEAM_CASES)
    for case, idx in cases(team_codes, TEAM_CASES):
        rows = others[idx]
        if case == "removed_long_ago":
            removed[rows] = now - between(rng, 90 * DAY + HOUR, 400 * DAY, len(rows))
        elif case == "removed_recently":
            removed[rows] = now - between(rng, DAY, 90 * DAY - HOUR, len(rows))
    primary_user = member_user[primary]

    # payment status per project
    status_codes = pick(rng, n, PAYMENT_STATUS_CASES)
    advance_paid = np.zeros(n, dtype=bool)
    balance_paid = np.zeros(n, dtype=bool)
    advance_at = null_ts(n)
    for case, idx in cases(status_codes, PAYMENT_STATUS_CASES):
        k = len(idx)
        if case == "balance_overdue":
            advance_paid[idx], advance_at[idx] = (
                True,
                now - between(rng, 3 * DAY + HOUR, 60 * DAY, k),
            )
        elif case == "advance_recent":
            advance_paid[idx], advance_at[idx] = True, now - between(rng, HOUR, 3 * DAY - HOUR, k)
        elif case == "fully_paid":
            advance_paid[idx], balance_paid[idx] = True, True
            advance_at[idx] = now - between(rng, 10 * DAY, 300 * DAY, k)

    frames = [
        Frame("projects", {"id": project_ids, "name": names}),
        Frame(
            "project_team",
            {
                "id": ids(m),
                "project_id": member_project,
                "user_id": member_user,
                "is_primary_contact": primary,
                "removed_at": ts(removed),
            },
        ),
        Frame(
            "project_payment_status",
            {
                "project_id": project_ids,
                "advance_paid": advance_paid,
                "advance_paid_at": ts(advance_at),
                "balance_paid": balance_paid,
            },
        ),
        *_payment_reminders(
            ctx, rng, project_ids[status_codes == 0], primary_user[status_codes == 0]
        ),
        _deliverables(ctx, rng, project_ids),
    ]
    return frames


def _payment_reminders(
    ctx: Context, rng, overdue_projects: np.ndarray, contacts: np.ndarray
) -> list[Frame]:
    """Reminders already sent on earlier days; the first overdue project also got today's.
    The day each is for is the project's own record (`payment_reminder_days`)."""
    per_project = rng.integers(0, 4, len(overdue_projects))
    project = np.repeat(overdue_projects, per_project)
    contact = np.repeat(contacts, per_project)
    # distinct earlier days per project: 1, 2, 3 … days before today
    rank = np.arange(len(project)) - np.repeat(np.cumsum(per_project) - per_project, per_project)
    day = ctx.today - (rank + 1) * DAY
    status = np.full(len(project), "SENT", dtype=object)
    if len(overdue_projects) > 1:  # today's reminder already sent: must not be sent twice
        project = np.r_[overdue_projects[0], project]
        contact = np.r_[contacts[0], contact]
        day = np.r_[ctx.today, day]
        status = np.r_[np.array(["SENT"], dtype=object), status]
    n = len(project)
    scheduled = day + 10 * HOUR
    scheduled = np.minimum(scheduled, ctx.now - MINUTE)
    kind = np.full(n, "BALANCE_DUE", dtype=object)
    return [
        Frame(
            "payment_reminders",
            {
                "id": ids(n),
                "project_id": project,
                "kind": kind,
                "status": status,
                "recipient_email": [ctx.emails[u - 1] for u in contact.tolist()],
                "scheduled_for": ts(scheduled),
                "sent_at": ts(scheduled + between(rng, 1, 30, n)),
            },
        ),
        Frame(
            "payment_reminder_days",
            {
                "reminder_id": ids(n),
                "project_id": project,
                "kind": kind,
                "reminder_date": (day // DAY).astype("datetime64[D]"),
            },
        ),
    ]


DELIVERABLE_CASES = {
    "delivered_live": 0.55,
    "delivered_past_expiry": 0.25,
    "already_expired": 0.12,
    "in_progress": 0.08,
}


def _deliverables(ctx: Context, rng, project_ids: np.ndarray) -> Frame:
    project = np.repeat(project_ids, rng.integers(1, 6, len(project_ids)))
    n = len(project)
    delivered = null_ts(n)
    status = np.empty(n, dtype=object)
    for case, idx in cases(pick(rng, n, DELIVERABLE_CASES), DELIVERABLE_CASES):
        k = len(idx)
        if case == "delivered_live":
            delivered[idx], status[idx] = ctx.now - between(rng, DAY, 364 * DAY, k), "delivered"
        elif case == "delivered_past_expiry":
            delivered[idx], status[idx] = (
                ctx.now - between(rng, 365 * DAY + HOUR, 700 * DAY, k),
                "delivered",
            )
        elif case == "already_expired":
            delivered[idx], status[idx] = ctx.now - between(rng, 366 * DAY, 700 * DAY, k), "expired"
        else:
            status[idx] = "in_progress"
    expires = np.where(delivered == NULL_TS, NULL_TS, delivered + 365 * DAY)
    return Frame(
        "deliverables",
        {
            "id": ids(n),
            "project_id": project,
            "delivered_at": ts(delivered),
            "expires_at": ts(expires),
            "status": status,
        },
    )
