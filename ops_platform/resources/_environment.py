"""Secret-bearing settings reach resources by name, never by value."""

from __future__ import annotations

import dagster as dg


def from_environment(name: str, value: str | None) -> str | None:
    """`dg.EnvVar(name)` when the variable is set: Dagster reads it when a run or sensor
    starts, and the UI, GraphQL and stored job snapshots show only the variable's name.
    None when it is not set (the resource's embedded default)."""
    return dg.EnvVar(name) if value else None
