"""The blast-radius gate of the jobs that change app rows, and their pacing limits.

Before changing anything, a run counts what it would change (its dry-run path) and compares
that with the size of each table it would change and with the median `rows_changed` of the
job's last successful runs of the same scope (read from the Dagster instance; at least 3).
From `gate_min_rows` rows on, it refuses more than `max_fraction` of a table, or more than
`max_factor` x that median: a clock skew or an app bug that expires every row must not
empty a table at 03:00. A refused run changes nothing and fails with the figures and the
run-config key that overrides it (`confirm_large: true`); the failure's metadata holds the
dry-run figures and a sample of the ids, and the run-failure alert sensor alerts once.
Limits come from run config, else the job's row in the schedule table.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import dagster as dg
from sqlalchemy import Engine, text

from ops_platform.db.batching import BatchResult
from ops_platform.db.pacing import PACING_KEYS, Pacer, Pacing
from ops_platform.jobs._history import recent_rows_changed
from ops_platform.schedules.catalog import GATE_KEYS, Gate, row_of_run

HISTORY_RUNS = 10  # the median is over at most this many recent runs
MIN_HISTORY = 3  # fewer comparable runs than this: the factor is not checked
HISTORY_LOOKBACK = 50  # successful runs looked at to find them
SCHEDULE_TAG = "dagster/schedule_name"


@dataclass
class Preview:
    """What a run would do: rows it would change or add (comparable with `rows_changed`),
    existing rows it would change per table, and a sample of their ids per rule."""

    rows: int = 0
    tables: dict[str, int] = field(default_factory=dict)
    samples: dict[str, list] = field(default_factory=dict)

    @classmethod
    def of(cls, results: Iterable[BatchResult]) -> Preview:
        preview = cls()
        for result in results:
            preview.rows += result.matched
            if result.matched and not result.inserts:
                preview.tables[result.table] = preview.tables.get(result.table, 0) + result.matched
            if result.sample_ids:
                preview.samples[result.label] = list(result.sample_ids)
        return preview


@dataclass
class Verdict:
    applies: bool
    refusals: list[str]
    metadata: dict

    @property
    def refused(self) -> bool:
        return bool(self.refusals)


def _overrides(config, keys: Iterable[str]) -> dict:
    return {key: getattr(config, key) for key in keys if getattr(config, key, None) is not None}


def limits_for(context: dg.OpExecutionContext, config) -> tuple[Gate, Pacing]:
    return limits(context.job_name, context.run.tags.get(SCHEDULE_TAG), config)


def limits(job_name: str, schedule_name: str | None, config) -> tuple[Gate, Pacing]:
    """A run's gate and pacing: run config, else its schedule's row, else the defaults."""
    row = row_of_run(job_name, schedule_name)
    gate = row.gate if row else Gate()
    pacing = row.pacing if row else Pacing()
    return replace(gate, **_overrides(config, GATE_KEYS)), replace(
        pacing, **_overrides(config, PACING_KEYS)
    )


def pacer_for(context: dg.OpExecutionContext, config) -> tuple[Gate, Pacer]:
    gate, pacing = limits_for(context, config)
    return gate, Pacer(pacing, log=context.log.info)


def table_sizes(engine: Engine, tables: Iterable[str]) -> dict[str, int]:
    with engine.connect() as connection:
        return {
            table: connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
            for table in tables
        }


def judge(preview: Preview, sizes: dict[str, int], history: list[int], gate: Gate) -> Verdict:
    """Refusals (empty: the run may go) and the figures behind them."""
    metadata: dict = {
        "gate_rows": preview.rows,
        "gate_min_rows": gate.gate_min_rows,
        "gate_max_fraction": gate.max_fraction,
        "gate_max_factor": gate.max_factor,
        "gate_history_runs": len(history),
    }
    refusals = []
    applies = preview.rows >= gate.gate_min_rows
    for table, rows in sorted(preview.tables.items()):
        if table not in sizes:
            continue
        size = sizes[table]
        fraction = rows / size if size else 1.0
        metadata[f"gate_{table}_rows"] = rows
        metadata[f"gate_{table}_size"] = size
        metadata[f"gate_{table}_fraction"] = round(fraction, 4)
        if applies and fraction > gate.max_fraction:
            refusals.append(
                f"{rows:,} of the {size:,} rows of {table} ({fraction:.0%}; "
                f"max_fraction {gate.max_fraction:g})"
            )
    if len(history) >= MIN_HISTORY:
        median = statistics.median(history)
        metadata["gate_history_median"] = median
        if applies and preview.rows > gate.max_factor * median:
            times = f"{preview.rows / median:.1f}x" if median else "infinitely many times"
            refusals.append(
                f"{preview.rows:,} rows, {times} the median {median:,g} of its last "
                f"{len(history)} successful runs (max_factor {gate.max_factor:g})"
            )
    if preview.samples:
        metadata["sample_ids"] = dg.MetadataValue.json(preview.samples)
    return Verdict(applies, refusals, metadata)


def gate_status(verdict: Verdict, gate: Gate, *, dry_run: bool, confirmed: bool) -> str:
    if not verdict.applies:
        return f"not applied: {verdict.metadata['gate_rows']:,} rows, under gate_min_rows {gate.gate_min_rows:,}"
    if not verdict.refused:
        return "passed"
    if dry_run:
        return "a real run would be refused: " + "; ".join(verdict.refusals)
    return "refused, overridden by confirm_large" if confirmed else "refused"


def refusal_message(job_name: str, op_name: str, verdict: Verdict) -> str:
    return (
        f"{job_name} refused by the blast-radius gate; nothing was changed. It would change "
        + " and ".join(verdict.refusals)
        + ". If this is intended, run it again with confirm_large: true "
        f"(ops: {{{op_name}: {{config: {{confirm_large: true}}}}}}); the limits are "
        "gate_min_rows, max_fraction and max_factor in run config or the schedule table. "
        f"Dry-run figures and sample ids: {json.dumps(_plain(verdict.metadata))}"
    )


def _plain(metadata: dict) -> dict:
    return {key: getattr(value, "data", value) for key, value in metadata.items()}


def check_blast_radius(
    context: dg.OpExecutionContext,
    engine: Engine,
    config,
    gate: Gate,
    preview: Preview,
    sizes: dict[str, int] | None = None,
) -> dict:
    """Judge the preview; raise a failure (nothing changed yet) when the gate refuses a real
    run that `confirm_large` does not override. Returns the gate's output metadata. `sizes`
    are the sizes of what the preview counts when they are not app tables (object prefixes)."""
    applies = preview.rows >= gate.gate_min_rows
    # Sizes and history are read only when the gate applies: most runs change a few rows.
    history = (
        recent_rows_changed(
            context.instance, context.job_name, config.gate_scope(), HISTORY_RUNS, HISTORY_LOOKBACK
        )
        if applies
        else []
    )
    if sizes is None:
        sizes = table_sizes(engine, preview.tables) if applies else {}
    verdict = judge(preview, sizes, history, gate)
    status = gate_status(verdict, gate, dry_run=config.dry_run, confirmed=config.confirm_large)
    metadata = {"gate": status, "gate_scope": config.gate_scope(), **verdict.metadata}
    if verdict.refused and not config.dry_run:
        if not config.confirm_large:
            raise dg.Failure(
                description=refusal_message(context.job_name, context.op_def.name, verdict),
                metadata=metadata,
                allow_retries=False,
            )
        context.log.warning(
            f"{context.job_name}: blast-radius gate overridden by confirm_large: would change "
            + " and ".join(verdict.refusals)
        )
    return metadata
