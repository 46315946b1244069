"""Times of the seed generators: whole epoch seconds in int64 columns, NULL_TS for NULL."""

from __future__ import annotations

import numpy as np

MINUTE, HOUR, DAY = 60, 3_600, 86_400
NULL_TS = np.iinfo(np.int64).min  # becomes NaT: a NULL timestamp


def between(rng: np.random.Generator, low, high, n: int | None = None) -> np.ndarray:
    """Whole seconds uniformly in [low, high); low/high may be arrays."""
    low = np.asarray(low, dtype=np.int64)
    high = np.asarray(high, dtype=np.int64)
    if n is None:
        n = int(np.broadcast(low, high).size)
    return (low + rng.random(n) * np.maximum(high - low, 0)).astype(np.int64)


def ts(seconds: np.ndarray) -> np.ndarray:
    """Epoch seconds (NULL_TS for NULL) → datetime64[s] (NaT for NULL)."""
    return np.asarray(seconds, dtype=np.int64).view("datetime64[s]")


def null_ts(n: int) -> np.ndarray:
    return np.full(n, NULL_TS, dtype=np.int64)
