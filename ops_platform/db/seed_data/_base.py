"""Row counts, random helpers and the shared context of the seed generators."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from ops_platform.db.seed_data.clock import DAY, HOUR

# rows per user, and the minimum so that a tiny data set still covers every case
SIZES: dict[str, tuple[float, int]] = {
    "sessions": (2.0, 40),
    "refresh_tokens": (0.5, 20),
    "email_verification_tokens": (0.1, 12),
    "password_reset_tokens": (0.05, 12),
    "coin_transactions": (0.5, 30),
    "payments": (0.2, 30),
    "projects": (0.02, 10),
    "notification_batches": (0.2, 30),
    "loose_notifications": (0.3, 20),
    "realtime_events": (0.01, 20),
    "streams": (0.05, 10),
    "stream_events": (5.0, 300),
    "reputation_events": (1.0, 60),
    "game_sessions": (0.3, 80),
    "players": (0.1, 12),
    "courses": (0.0005, 5),
    "enrollments": (0.3, 40),
    "learning_events": (1.5, 200),
    "stored_files": (0.2, 20),
    "webhook_events": (0.02, 100),
}


def size(name: str, users: int) -> int:
    per_user, minimum = SIZES[name]
    return max(minimum, int(round(users * per_user)))


# --- helpers -------------------------------------------------------------------------
def pick(rng: np.random.Generator, n: int, weights: dict[str, float]) -> np.ndarray:
    """A case index per row, drawn with `weights`; the first rows take every case once, so
    each case exists whenever n >= number of cases."""
    p = np.array(list(weights.values()), dtype=float)
    codes = rng.choice(len(p), size=n, p=p / p.sum())
    forced = min(n, len(p))
    codes[:forced] = np.arange(forced)
    return codes


def cases(codes: np.ndarray, weights: dict[str, float]):
    """(case name, row indices) for each case."""
    for code, name in enumerate(weights):
        yield name, np.flatnonzero(codes == code)


def nullable(values: np.ndarray, missing: np.ndarray) -> np.ma.MaskedArray:
    return np.ma.MaskedArray(np.asarray(values, dtype=np.int64), mask=missing)


def hex_tokens(rng: np.random.Generator, n: int, chars: int) -> list[str]:
    raw = rng.bytes(n * chars // 2).hex()
    return [raw[i : i + chars] for i in range(0, n * chars, chars)]


def sort_by(key: np.ndarray, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    order = np.argsort(key, kind="stable")
    return {name: values[order] for name, values in columns.items()}


def ids(n: int) -> np.ndarray:
    return np.arange(1, n + 1, dtype=np.int64)


def choose(rng: np.random.Generator, options, n: int, p=None) -> np.ndarray:
    """Strings drawn from `options` as an object array (one shared object per option)."""
    table = np.array(list(options), dtype=object)
    weights = None if p is None else np.asarray(p, dtype=float) / np.sum(p)
    return table[rng.choice(len(table), size=n, p=weights)]


@dataclass
class Context:
    """What the generators share: the clock, the seed, and facts about earlier tables."""

    users: int
    seed: int
    now_dt: datetime
    user_created: np.ndarray = field(default=None, repr=False)  # epoch seconds, ascending by id
    emails: list[str] = field(default=None, repr=False)
    unverified_ids: np.ndarray = field(default=None, repr=False)
    og_ids: np.ndarray = field(default=None, repr=False)
    streams: dict = field(default=None, repr=False)

    def __post_init__(self):
        self.now = int(self.now_dt.timestamp())
        self.today = self.now - self.now % DAY  # UTC midnight
        self.hour = self.now - self.now % HOUR  # start of the current hour

    def rng(self, name: str) -> np.random.Generator:
        return np.random.default_rng([self.seed, zlib.crc32(name.encode())])

    def size(self, name: str) -> int:
        return size(name, self.users)

    def draw(self, name: str, size_name: str | None = None) -> tuple[np.random.Generator, int]:
        """Generator `name`'s random stream and its row count (of `size_name`, else `name`)."""
        return self.rng(name), self.size(size_name or name)

    def users_before(self, rng: np.random.Generator, moments: np.ndarray) -> np.ndarray:
        """A random user id per moment, among the users who had signed up by then."""
        signed_up = np.searchsorted(self.user_created, moments, side="right")
        signed_up = np.maximum(signed_up, 1)
        return (1 + (rng.random(len(moments)) * signed_up).astype(np.int64)).clip(1, self.users)

    def random_users(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.integers(1, self.users + 1, n, dtype=np.int64)
