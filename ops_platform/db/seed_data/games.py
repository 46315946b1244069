"""Arcade game sessions, leaderboard entries and prize pools."""

from __future__ import annotations

import numpy as np

from ops_platform.db.bulk_load import Frame
from ops_platform.db.schema import GAME_TYPES
from ops_platform.db.seed_data._base import Context, cases, hex_tokens, ids, nullable, pick
from ops_platform.db.seed_data.clock import DAY, HOUR, MINUTE, NULL_TS, between, null_ts, ts

GAME_CASES = {"completed": 0.85, "active_fresh": 0.03, "active_abandoned": 0.05, "expired": 0.07}
GAME_WEIGHTS = (0.3, 0.25, 0.15, 0.15, 0.15)
GAME_SCORE_SCALE = {
    "snake": 120,
    "tetris": 40_000,
    "pong": 11,
    "breakout": 900,
    "space_invaders": 6_000,
}


def games(ctx: Context) -> list[Frame]:
    rng, n = ctx.draw("games", "game_sessions")
    now = ctx.now
    players = ["0x" + token for token in hex_tokens(rng, ctx.size("players"), 40)]
    game = rng.choice(len(GAME_TYPES), n, p=GAME_WEIGHTS)
    codes = pick(rng, n, GAME_CASES)
    started = null_ts(n)
    ended = null_ts(n)
    status = np.empty(n, dtype=object)
    for case, idx in cases(codes, GAME_CASES):
        k = len(idx)
        if case == "completed":
            band = rng.choice(3, k, p=[0.45, 0.25, 0.30])
            age = np.where(
                band == 0,
                between(rng, 30 * MINUTE, 8 * DAY, k),
                np.where(
                    band == 1,
                    between(rng, 8 * DAY, 90 * DAY, k),
                    between(rng, 91 * DAY, 180 * DAY, k),
                ),
            )
            started[idx], status[idx] = now - age, "completed"
            ended[idx] = started[idx] + between(rng, MINUTE, 25 * MINUTE, k)
        elif case == "active_fresh":
            started[idx], status[idx] = now - between(rng, MINUTE, 25 * MINUTE, k), "active"
        elif case == "active_abandoned":
            started[idx], status[idx] = now - between(rng, 31 * MINUTE, 3 * DAY, k), "active"
        else:
            started[idx], status[idx] = now - between(rng, HOUR, 60 * DAY, k), "expired"
            ended[idx] = started[idx] + 30 * MINUTE
    # per game type: a completed game yesterday, one last (Monday-start) week, one past 90 days
    last_monday = ctx.today - ((ctx.today // DAY + 3) % 7) * DAY - 7 * DAY
    pinned_starts = (
        ctx.today - DAY + 12 * HOUR,
        last_monday + 2 * DAY + 15 * HOUR,
        now - 120 * DAY,
    )
    completed = np.flatnonzero(status == "completed")
    for slot, row in enumerate(completed[: len(GAME_TYPES) * len(pinned_starts)]):
        game[row] = slot % len(GAME_TYPES)
        started[row] = pinned_starts[slot // len(GAME_TYPES)] + slot * MINUTE
        ended[row] = started[row] + 10 * MINUTE
    order = np.argsort(started, kind="stable")
    game, started, ended, status = game[order], started[order], ended[order], status[order]
    player = rng.integers(0, len(players), n)
    session_ids = ids(n)

    # one leaderboard entry per completed game; ~3% of those sessions were deleted since
    done = np.flatnonzero(status == "completed")
    scale = np.array([GAME_SCORE_SCALE[g] for g in GAME_TYPES], dtype=float)[game[done]]
    score = (rng.gamma(2.0, 0.5, len(done)) * scale).astype(np.int64)
    deleted = np.zeros(n, dtype=bool)
    deleted[done[rng.random(len(done)) < 0.03]] = True
    if len(done) > 1:
        deleted[done[-1]] = True  # at least one orphaned entry, recent enough to be seen
    entry_order = np.argsort(ended[done], kind="stable")
    entry_rows = done[entry_order]
    entry_created = ended[entry_rows]
    types = np.array(GAME_TYPES, dtype=object)
    players_arr = np.array(players, dtype=object)
    entries = Frame(
        "leaderboard_entries",
        {
            "id": ids(len(entry_rows)),
            "session_id": session_ids[entry_rows],
            "game_type": types[game[entry_rows]],
            "player_address": players_arr[player[entry_rows]],
            "score": score[entry_order],
            "created_at": ts(entry_created),
        },
    )
    kept = ~deleted
    sessions_frame = Frame(
        "game_sessions",
        {
            "id": session_ids[kept],
            "game_type": types[game[kept]],
            "player_address": players_arr[player[kept]],
            "status": status[kept],
            "started_at": ts(started[kept]),
            "ended_at": ts(ended[kept]),
        },
    )
    pools = _prize_pools(
        ctx,
        rng,
        game[entry_rows],
        entry_created,
        score[entry_order],
        players_arr[player[entry_rows]],
    )
    return [sessions_frame, entries, pools]


def _prize_pools(ctx: Context, rng, game, created, score, player) -> Frame:
    """Finalized pools for past periods, open pools for the latest past periods and today."""
    today = ctx.today
    this_monday = today - ((today // DAY + 3) % 7) * DAY
    periods = [("daily", today - d * DAY, DAY, d >= 3) for d in range(14)]
    periods += [("weekly", this_monday - w * 7 * DAY, 7 * DAY, w >= 2) for w in range(6)]
    rows = []
    for code, game_type in enumerate(GAME_TYPES):
        of_game = game == code
        for period, start, length, finalized in periods:
            in_period = of_game & (created >= start) & (created < start + length)
            entries = int(in_period.sum())
            amount = round(entries * 0.25 + float(rng.uniform(0, 5)), 2)
            if not finalized:
                rows.append((game_type, period, start, amount, "open", None, NULL_TS, NULL_TS))
            elif entries == 0:
                rows.append(
                    (
                        game_type,
                        period,
                        start,
                        amount,
                        "no_winner",
                        None,
                        NULL_TS,
                        start + length + 5 * MINUTE,
                    )
                )
            else:
                best = np.flatnonzero(in_period)[np.argmax(score[in_period])]
                rows.append(
                    (
                        game_type,
                        period,
                        start,
                        amount,
                        "finalized",
                        player[best],
                        int(score[best]),
                        start + length + 5 * MINUTE,
                    )
                )
    game_type, period, start, amount, status, winner, winning, finalized_at = zip(*rows)
    winning = np.array(winning, dtype=np.int64)
    return Frame(
        "prize_pools",
        {
            "id": ids(len(rows)),
            "game_type": list(game_type),
            "period": list(period),
            "period_start": (np.array(start, dtype=np.int64) // DAY).astype("datetime64[D]"),
            "total_amount": np.array(amount, dtype=float),
            "status": list(status),
            "winner_address": list(winner),
            "winning_score": nullable(np.where(winning == NULL_TS, 0, winning), winning == NULL_TS),
            "finalized_at": ts(np.array(finalized_at, dtype=np.int64)),
        },
    )
